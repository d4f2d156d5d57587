"""Catalogs kept from earlier releases (schemas 1, 2 and 3) upgrade to vector ids in place and answer as before.

tests/data holds a catalog written by each schema over the same images (tests/data/v1-images, made by
make_v1_images.py): catalog-v1.db (schema 1), catalog-v2.db (schema 2, imgd at 683c8c8),
catalog-v3.db (schema 3, imgd at 7bafcc2, the last release before vector ids) and
catalog-v3-changing.db (the v3 catalog with a model change under way: one image already has the
new model's vector). kept-answers.json holds what that last release answered over each of them
(`imgd search|similar|dupes ... --direct --json`, paths under <ROOT>). The index files saved beside
the v2 and v3 catalogs are kept too: the upgrade keeps each vector's id, so they are still served.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from imgd.cli.main import cli
from imgd.daemon.service.library import open_library
from imgd.daemon.store.catalog import SCHEMA_VERSION, Catalog
from test_migrations import relocate

DATA = Path(__file__).parents[1] / "data"
KEPT = {  # name: (catalog file, index file or None, the folder its images were in when it was made)
    "v1": ("catalog-v1.db", "index-v1.faiss", "/tmp/imgd-v1/images"),
    "v2": ("catalog-v2.db", "index-v2.faiss", "/tmp/imgd-v2/images"),
    "v3": ("catalog-v3.db", "index-v3.faiss", "/tmp/imgd-v3/images"),
    "v3-changing": ("catalog-v3-changing.db", None, "/tmp/imgd-v3/images"),
}
ANSWERS = json.loads((DATA / "kept-answers.json").read_text())
QUERIES = {  # the kept answers' queries, with <ROOT> for the images folder
    "search": ["search", "a red square", "-k", "10"],
    "search_not": ["search", "2:blue", "--not", "green", "-k", "10"],
    "similar": ["similar", "<ROOT>/plain.png"],
    "dupes": ["dupes", "--threshold", "0.5"],
    "search_in": ["search", "photo", "--in", "<ROOT>/album"],
}


@dataclass
class Kept:
    name: str
    state: Path
    images: Path

    @property
    def catalog(self) -> Path:
        return self.state / "catalog.db"

    def ask(self, model: Path, query: str) -> dict[str, object]:
        args = [arg.replace("<ROOT>", str(self.images)) for arg in QUERIES[query]]
        result = CliRunner().invoke(
            cli, ["--state-dir", str(self.state), "--model", str(model), *args, "--direct", "--json"]
        )
        root = f"{self.images}/"
        return {
            "rc": result.exit_code,
            "out": json.loads(result.stdout.replace(root, "<ROOT>/")) if result.stdout.strip() else None,
            "err": result.stderr.replace(root, "<ROOT>/").replace(str(self.catalog), "<CATALOG>").strip(),
        }


def raw(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture(params=list(KEPT))
def kept(request, tmp_path: Path, state_dir: Path, tiny_model: Path, wide_model: Path, monkeypatch) -> Kept:
    """A copy of one kept catalog and its images, as if that library had lived at tmp_path/images."""
    # The kept answers were made at float32 (an AVX2 CPU's `auto`); on a CPU with native bf16 `auto` embeds the
    # query in bf16 (torch autocast), which moves a score by ~1e-3 and can swap equal ones.
    monkeypatch.setenv("IMGD_PRECISION", "float32")
    name = request.param
    catalog_file, index_file, root = KEPT[name]
    copy = Kept(name, state_dir, tmp_path / "images")
    shutil.copyfile(DATA / catalog_file, copy.catalog)
    if index_file:
        shutil.copyfile(DATA / index_file, state_dir / "index.faiss")
    relocate(copy.catalog, copy.images, root, {"model": str(tiny_model), "next_model": str(wide_model)})
    return copy


def expected(kept: Kept, query: str) -> dict[str, object]:
    answer = dict(ANSWERS[kept.name][query])
    answer["err"] = str(answer["err"]).replace(f"/tmp/rec-{kept.name}/catalog.db", "<CATALOG>")
    return answer


# Fields whose form a later release changed on purpose: dupes gives `taken` in ISO 8601 with the file-time
# fallback, as search does (issue 25), where 7bafcc2 gave SQLite's text and null without EXIF.
REWORDED = {"dupes": {"taken"}}


def within(answer: object, before: object, reworded: frozenset[str] = frozenset()) -> bool:
    """`answer` holds everything `before` does, equal, in the same order; its dicts may hold more keys."""
    if isinstance(before, dict):
        return isinstance(answer, dict) and all(
            k in answer and (k in reworded or within(answer[k], v, reworded)) for k, v in before.items()
        )
    if isinstance(before, list):
        return (
            isinstance(answer, list)
            and len(answer) == len(before)
            and all(within(a, b, reworded) for a, b in zip(answer, before, strict=True))
        )
    return answer == before


def as_before(answer: dict[str, object], before: dict[str, object], query: str) -> bool:
    return within(answer, before, frozenset(REWORDED.get(query, ())))


def vectors_by_content(path: Path) -> dict[int, bytes]:
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "vectors" in tables:
        return dict(raw(path, "SELECT content_id, vector FROM vectors"))
    return dict(raw(path, "SELECT id, vector FROM contents"))


@pytest.mark.parametrize("query", list(QUERIES))
def test_a_reader_answers_an_unmigrated_kept_catalog_as_its_own_release_did(
    kept: Kept, tiny_model: Path, query: str
) -> None:
    """Without a writer the catalog stays at its schema: the reader sees it through views, unchanged."""
    before = kept.catalog.read_bytes()
    answer = kept.ask(tiny_model, query)
    assert as_before(answer, expected(kept, query), query) and answer.keys() == {"rc", "out", "err"}
    assert kept.catalog.read_bytes() == before


def test_a_kept_catalog_upgrades_to_vector_ids_in_place_and_answers_as_before(
    kept: Kept, tiny_model: Path, make_config, embedder
) -> None:
    vectors_before = vectors_by_content(kept.catalog)
    next_before = raw(kept.catalog, "SELECT * FROM next_vectors") if kept.name.startswith("v3") else []
    calls = []

    class Counting:
        """The real embedder, failing the test if the upgrade asks it for any image's vector."""

        def __getattr__(self, name: str):
            return getattr(embedder, name)

        def encode_images(self, images):
            calls.append(len(images))
            return embedder.encode_images(images)

    upgraded = Catalog(kept.catalog)  # the upgrade itself: a catalog has no model to call
    assert upgraded.schema_version == SCHEMA_VERSION == 11
    upgraded.close()
    assert raw(kept.catalog, "SELECT count(*) FROM siblings") == [(0,)]  # no pair was known before schema 6
    if kept.name != "v3-changing":  # (opening the library with the old model would cancel the change)
        lib = open_library(make_config(state_dir=kept.state), Counting())
        try:  # the kept index file is served as it is: same ids, same vectors; nothing is embedded
            assert lib.index.dirty is False
            assert sorted(lib.index.ids().tolist()) == sorted(vectors_before)
        finally:
            lib.close()
        assert calls == []
    # Each vector keeps its content's id as its own id, and new ids continue above every old one.
    rows = raw(kept.catalog, "SELECT id, content_id, at, vector FROM vectors ORDER BY id")
    assert [(vid, cid, at) for vid, cid, at, _ in rows] == [(cid, cid, 0.0) for cid in sorted(vectors_before)]
    assert {cid: blob for _, cid, _, blob in rows} == vectors_before
    assert "vector" not in {r[1] for r in raw(kept.catalog, "PRAGMA table_info(contents)")}
    assert raw(kept.catalog, "SELECT * FROM next_vectors") == next_before  # now keyed by vector id
    (seq,) = raw(kept.catalog, "SELECT seq FROM sqlite_sequence WHERE name = 'vectors'")[0]
    assert seq >= max(vectors_before)

    for query in QUERIES:
        if kept.name == "v1" and query == "search_in":
            continue  # the v1 release could not filter before its metadata was read; now it can
        answer, before = kept.ask(tiny_model, query), expected(kept, query)
        # Every field the last release gave is the same. Rows may carry more: v1's gain the metadata it did
        # not have yet, and dupes members the date taken that later releases list for every image.
        assert as_before(answer, before, query), (query, answer, before)


def test_the_kept_catalogs_really_are_of_their_schemas() -> None:
    for name, version in [("v1", 1), ("v2", 2), ("v3", 3), ("v3-changing", 3)]:
        path = DATA / KEPT[name][0]
        tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "vectors" not in tables
        assert raw(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(version),)]
    assert raw(DATA / "catalog-v3-changing.db", "SELECT count(*) FROM next_vectors") == [(1,)]


def test_new_vector_ids_never_reuse_an_old_content_id(kept: Kept) -> None:
    """An index file saved before a removal may still hold an old id: a new vector must not take it."""
    catalog = Catalog(kept.catalog)
    try:
        highest = max(catalog.content_ids().tolist())
        with catalog.transaction():
            removed = catalog.delete_contents([highest])
            content_id, vector_id = catalog.add_photo("f" * 64, catalog.vectors_by_id([1])[0], 4, 4)
        assert removed == [highest]
        assert vector_id > highest and content_id > highest
        assert catalog.contents_of([vector_id]) == {vector_id: content_id}
    finally:
        catalog.close()


def test_a_reader_counts_and_reads_vectors_of_an_unmigrated_catalog(kept: Kept) -> None:
    reader = Catalog(kept.catalog, readonly=True)
    try:
        assert reader.schema_version < 4
        assert reader.count_vectors() == reader.count_contents() == 3
        assert sorted(reader.vector_ids().tolist()) == sorted(reader.content_ids().tolist())
        assert reader.contents_of(reader.vector_ids()) == {i: i for i in reader.vector_ids().tolist()}
    finally:
        reader.close()
