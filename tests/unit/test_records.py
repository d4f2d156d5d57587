"""records: the one "is this file unchanged?" rule the engine, the worker and the searcher share."""

from __future__ import annotations

from imgd.daemon.store.records import FileRecord, FileStat

ROW = FileRecord("/pics/a.jpg", 1000, 1_700_000_000_000_000_000, 7, "ok")


def test_a_file_is_unchanged_while_its_size_and_mtime_match_its_row() -> None:
    assert ROW.unchanged(FileStat(ROW.path, ROW.size, ROW.mtime_ns))
    assert not ROW.unchanged(FileStat(ROW.path, ROW.size + 1, ROW.mtime_ns)), "grown or shrunk"
    assert not ROW.unchanged(FileStat(ROW.path, ROW.size, ROW.mtime_ns + 1)), "rewritten with the same size"
    assert not ROW.unchanged(FileStat(ROW.path, ROW.size, ROW.mtime_ns - 10**9)), "an older file put back"


def test_a_failed_row_stands_until_the_file_changes_but_never_counts_as_indexed() -> None:
    failed = FileRecord(ROW.path, ROW.size, ROW.mtime_ns, None, "failed", "permission denied")
    same = FileStat(ROW.path, ROW.size, ROW.mtime_ns)
    assert failed.unchanged(same), "a reconcile does not read a broken file again until it changes"
    assert not failed.unchanged(same, indexed=True), "an event on it (chmod made it readable) tries it again"
    assert ROW.unchanged(same, indexed=True)
    missing = FileRecord(ROW.path, ROW.size, ROW.mtime_ns, 7, "missing")
    assert not missing.unchanged(same, indexed=True)


def test_a_row_whose_vector_was_dropped_never_matches_a_file() -> None:
    # A model change that could not re-read a file forgets its size and mtime so the next reconcile embeds it.
    dropped = FileRecord(ROW.path, -1, -1, None, "ok")
    assert not dropped.unchanged(FileStat(ROW.path, 0, 0))
