"""The duplicates pass's rows in the catalog: its key, plan, progress and pairs (schema 11).

The daemon's tracker writes them from its own thread through a connection of its own (the worker's
is busy with new files), one short transaction per group of lists, so a restart or a SIGKILL loses at
most the group under way. A key names what the pairs were computed for (catalog identity, model,
threshold): rows under another key are dropped and the pass starts over.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

PairArrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b, score), a < b: vector ids


class PassRows:
    """The pass's state and pairs, read and written through one connection of their own."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.dim = int(self._one("SELECT value FROM meta WHERE key = 'dim'") or 0)

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, args: tuple = ()) -> object:
        row = self.conn.execute(sql, args).fetchone()
        return row[0] if row else None

    # -- the library as the pass reads it ------------------------------------------------------------

    def identity(self) -> str:
        """What the pairs depend on besides the threshold: the catalog's identity and its model."""
        rows = dict(self.conn.execute("SELECT key, value FROM meta WHERE key IN ('catalog_id', 'model', 'dim')"))
        return f"{rows.get('catalog_id')}|{rows.get('model')}|{rows.get('dim')}"

    def vector_ids(self, above: int = 0) -> np.ndarray:
        """Ids of the vectors past `above`, in order."""
        rows = self.conn.execute("SELECT id FROM vectors WHERE id > ? ORDER BY id", (above,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vector_count(self) -> int:
        return int(self._one("SELECT count(*) FROM vectors") or 0)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids still present, their float16 vectors), in the order asked; removed ones are left out.
        Filled in place 500 rows at a time: no list of every row's bytes beside the array."""
        wanted = [int(i) for i in ids]
        out = np.empty((len(wanted), self.dim), np.float16)
        found = np.zeros(len(wanted), bool)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            where = {vector_id: start + n for n, vector_id in enumerate(chunk)}
            marks = ",".join("?" * len(chunk))
            for vector_id, blob in self.conn.execute(f"SELECT id, vector FROM vectors WHERE id IN ({marks})", chunk):
                out[where[vector_id]] = np.frombuffer(blob, dtype=np.float16)
                found[where[vector_id]] = True
        if found.all():
            return np.asarray(wanted, dtype=np.int64), out
        return np.asarray(wanted, dtype=np.int64)[found], out[found]

    def iter_vectors(self, chunk: int = 20_000, upto: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float16 vectors) in id order, a chunk at a time, up to vector id `upto`."""
        last, upto = 0, upto if upto is not None else 2**62
        while True:
            rows = self.conn.execute(
                "SELECT id, vector FROM vectors WHERE id > ? AND id <= ? ORDER BY id LIMIT ?", (last, upto, chunk)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), self.dim)
            last = int(ids[-1])

    # -- state ------------------------------------------------------------------------------------

    def state(self, key: str) -> dict[str, object] | None:
        """The stored pass under this key (plan, next, high_water, finished), or None (none, or another key's)."""
        values = dict(self.conn.execute("SELECT name, value FROM dupe_pass"))
        if values.get("key") != key:
            return None
        plan = values.get("plan")
        return {
            "plan": dict(np.load(io.BytesIO(plan))) if plan else None,
            "next": int(values.get("next") or 0),
            "high_water": int(values.get("high_water") or 0),
            "finished": bool(values.get("finished")),
        }

    def begin(self, key: str, high_water: int, plan: dict[str, np.ndarray] | None) -> None:
        """Start a pass anew: the old pairs and state go, the plan (None: computed in one go) is kept."""
        blob = None
        if plan is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **plan)
            blob = buffer.getvalue()
        with self._transaction():
            self.conn.execute("DELETE FROM dupe_pairs")
            self.conn.execute("DELETE FROM dupe_pass")
            self.conn.executemany(
                "INSERT INTO dupe_pass (name, value) VALUES (?, ?)",
                [("key", key), ("high_water", high_water), ("next", 0), ("finished", 0), ("plan", blob)],
            )

    def done_group(self, key: str, pairs: PairArrays, following: int) -> bool:
        """Store a group's pairs and the next group to do, both or neither; False if the key changed meanwhile."""
        with self._transaction():
            if self._one("SELECT value FROM dupe_pass WHERE name = 'key'") != key:
                return False
            self._insert(pairs)
            self.conn.execute("UPDATE dupe_pass SET value = ? WHERE name = 'next'", (following,))
        return True

    def finish(self, key: str, pairs: PairArrays) -> None:
        """The pass is done: these pairs replace those stored, and the plan is no longer needed."""
        with self._transaction():
            if self._one("SELECT value FROM dupe_pass WHERE name = 'key'") != key:
                return
            self.conn.execute("DELETE FROM dupe_pairs")
            self._insert(pairs)
            self.conn.execute("UPDATE dupe_pass SET value = 1 WHERE name = 'finished'")
            self.conn.execute("UPDATE dupe_pass SET value = NULL WHERE name = 'plan'")

    def caught_up(self, key: str, pairs: Iterable[tuple[int, int, float]], high_water: int) -> None:
        """Pairs of the vectors added since the pass, and the new high-water mark past them."""
        with self._transaction():
            if self._one("SELECT value FROM dupe_pass WHERE name = 'key'") != key:
                return
            self.conn.executemany("INSERT OR REPLACE INTO dupe_pairs (a, b, score) VALUES (?, ?, ?)", pairs)
            self.conn.execute("UPDATE dupe_pass SET value = ? WHERE name = 'high_water'", (high_water,))

    def pairs(self) -> PairArrays:
        """Every stored pair whose two vectors are still in the catalog; the others are deleted."""
        with self._transaction():
            self.conn.execute(  # a lookup per pair, not a list of every vector id
                "DELETE FROM dupe_pairs WHERE NOT EXISTS (SELECT 1 FROM vectors WHERE id = a)"
                " OR NOT EXISTS (SELECT 1 FROM vectors WHERE id = b)"
            )
            rows = self.conn.execute("SELECT a, b, score FROM dupe_pairs ORDER BY a, b").fetchall()
        a = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        b = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return a, b, np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))

    def _insert(self, pairs: PairArrays) -> None:
        rows = zip(pairs[0].tolist(), pairs[1].tolist(), pairs[2].tolist(), strict=True)
        self.conn.executemany("INSERT OR REPLACE INTO dupe_pairs (a, b, score) VALUES (?, ?, ?)", rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on an error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
