"""The catalog's saved searches and the short log of what they did (tables `alerts` and `alert_log`).

Functions over a Catalog's connection, kept apart from catalog.py for its size. A saved search is
stored as JSON (the whole search request and its action), so the store knows nothing of queries.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .catalog import Catalog
from .core import path_key
from .selection import Clause

LOG_KEEP = 500  # actions kept in the log: a short history, not an archive


@dataclass(frozen=True)
class SavedRow:
    """One saved search as stored: its name, the search request and the action, each as decoded JSON."""

    name: str
    query: dict[str, Any]
    action: dict[str, Any]
    created: float


def saved(catalog: Catalog) -> list[SavedRow]:
    """Every saved search, by name."""
    rows = catalog.conn.execute("SELECT name, query, action, created FROM alerts ORDER BY name")
    return [SavedRow(name, json.loads(query), json.loads(action), created) for name, query, action, created in rows]


def save(catalog: Catalog, name: str, query: dict[str, Any], action: dict[str, Any]) -> bool:
    """Store a saved search (replacing one of that name); True if it replaced one."""
    with catalog.transaction():
        replaced = catalog.conn.execute("DELETE FROM alerts WHERE name = ?", (name,)).rowcount > 0
        catalog.conn.execute(
            "INSERT INTO alerts(name, query, action, created) VALUES (?, ?, ?, ?)",
            (name, json.dumps(query, sort_keys=True), json.dumps(action, sort_keys=True), time.time()),
        )
    return replaced


def remove(catalog: Catalog, name: str) -> bool:
    """Forget a saved search (its log stays); False if there was none of that name."""
    with catalog.transaction():
        return catalog.conn.execute("DELETE FROM alerts WHERE name = ?", (name,)).rowcount > 0


def log_action(
    catalog: Catalog, name: str, path: str, score: float, action: str, outcome: str, detail: str = ""
) -> None:
    """Record one action and trim the log to its last LOG_KEEP rows."""
    with catalog.transaction():
        row = catalog.conn.execute(
            "INSERT INTO alert_log(at, name, path, score, action, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), name, path, float(score), action, outcome, detail),
        )
        catalog.conn.execute("DELETE FROM alert_log WHERE id <= ?", (row.lastrowid - LOG_KEEP,))


def action_log(catalog: Catalog, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest actions, oldest first (of one saved search, or of all)."""
    where, args = ("WHERE name = ?", [name]) if name is not None else ("", [])
    rows = catalog.conn.execute(
        f"SELECT at, name, path, score, action, outcome, detail FROM alert_log {where} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    keys = ("at", "name", "path", "score", "action", "outcome", "detail")
    return [dict(zip(keys, row, strict=True)) for row in reversed(rows)]


def content_vectors(catalog: Catalog, content_id: int) -> np.ndarray:
    """All of a content's vectors (a video's frames: several), float32; empty if it is gone."""
    blobs = [r[0] for r in catalog.conn.execute("SELECT vector FROM vectors WHERE content_id = ?", (content_id,))]
    return catalog._decode_vectors(blobs) if blobs else np.zeros((0, 0), dtype=np.float32)


def camera_of(catalog: Catalog, content_id: int) -> list[tuple[str | None, str | None]]:
    """The (make, model) of one content: the only camera a check of that content needs to know."""
    return list(catalog.conn.execute("SELECT make, model FROM media WHERE content_id = ?", (content_id,)))


def path_passes(catalog: Catalog, path: str, clauses: Sequence[Clause]) -> bool:
    """Does this live file, with its content's metadata, pass every clause? One indexed lookup."""
    sql = " AND ".join(f"({text})" for text, _ in clauses) or "1"
    args = [value for _, values in clauses for value in values]
    row = catalog.conn.execute(
        "SELECT 1 FROM files f CROSS JOIN media m ON m.content_id = f.content_id "
        f"WHERE f.path = ? AND f.status = 'ok' AND {sql}",
        [path_key(os.fspath(path)), *args],
    ).fetchone()
    return row is not None
