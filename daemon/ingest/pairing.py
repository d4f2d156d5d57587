"""The engine's part that keeps pairs in step with the disk: companions claimed by their photo, freed when it goes.

A mixin of `Engine` (engine.py), split off for its size. The rule itself is companions.pair_up; this
applies it to one event's stem groups (a fixed number of stats and index lookups per path) and hands
back what the event made a companion (its files row, and so its vector, is dropped) and what it freed
(a RAW whose photo went away: embedded now on its own). A photo that fails to decode frees its
companions the same way, and claims none while its file stays the one that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping

from ..config import Config
from ..errors import display_path
from ..filetypes import extension
from ..store.catalog import Catalog
from ..store.records import FileRecord, FileStat, IndexSummary
from . import companions
from .scanner import PathFilter, scan, stat_file

log = logging.getLogger(__name__)


def _failed_as_is(record: FileRecord | None, stat: FileStat) -> bool:
    """Does this row say the file failed to decode, and is the file still the one that failed?"""
    return record is not None and record.status == "failed" and record.unchanged(stat)


class Pairing:
    """Companion bookkeeping for the engine's single changes and its reconcile."""

    catalog: Catalog
    config: Config
    filter: PathFilter
    should_stop: Callable[[], bool]

    # OrphanHold's (orphans.py), declared only: a method here would come first in Engine's order and shadow it.
    _drop_orphans: Callable[..., None]

    def walk_pairs(self, root: str, known: Mapping[str, tuple] | None = None) -> list[FileStat]:
        """The files below root to index: a folder walk less the companions (recorded as such here) and
        the videos no photo claims. No stat beyond the walk's own; `known` (the rows below root, as
        `Catalog.file_rows_under` reads them) says which stills failed as they are now: those claim no
        companion."""
        stats = list(scan(root, self.filter, self.config.follow_symlinks, should_stop=self.should_stop))
        known = known or {}
        failing = {path for path, row in known.items() if row[4] == "failed"}  # few: a set test per file
        failed = {s.path for s in stats if s.path in failing and _failed_as_is(self.catalog._record(known[s.path]), s)}
        kinds = [extension(s.path) for s in stats]  # once per file: at 1M each pass over the names costs 1-2 s
        # Without a RAW or a video in the walk there is no pair to make (pair_up would say so, per file).
        pairing = not companions.COMPANION_SET.isdisjoint(kinds)
        paired = companions.pair_up([stat.path for stat in stats], failed) if pairing else {}
        self.catalog.replace_siblings_under(root, paired)
        indexed = frozenset(self.filter.indexed)
        return [s for s, kind in zip(stats, kinds, strict=True) if kind in indexed and s.path not in paired]

    def settle_pairs(self, paths: Iterable[str], trying: Collection[str] = ()) -> tuple[dict[str, str], list[str]]:
        """Bring the siblings rows of these paths' stem groups in line with the disk.

        A still whose row says it failed, as it is now, claims no companion, unless it is in `trying`
        (about to be read again: an event on it). A fixed number of row lookups per group.

        Returns (companion -> primary for the companions among the groups, paths freed: RAWs whose
        photo is gone, to be embedded on their own). A file that becomes a companion loses its files
        row: its content is released like a deleted file's.
        """
        paired: dict[str, str] = {}
        freed: list[str] = []
        released: dict[int, list[str]] = {}
        catalog = self.catalog
        with catalog.transaction():
            for path in dict.fromkeys(paths):
                if not companions.may_pair(path):
                    continue
                group = companions.stem_group(path, self.config.follow_symlinks)
                pairs = companions.pair_up(group, self._failed_stills(group, trying))
                for member in dict.fromkeys([*group, path, *catalog.siblings_of(path)]):
                    primary = pairs.get(member)
                    before = catalog.sibling_primary(member)
                    if primary is not None:
                        paired[member] = primary
                        if before != primary:
                            catalog.set_sibling(member, primary)
                            log.info("paired %s with %s", display_path(member), display_path(primary))
                        record = catalog.get_file(member)
                        if record is not None and catalog.remove_file(member) and record.content_id is not None:
                            released.setdefault(record.content_id, []).append(member)
                    elif before is not None:
                        catalog.drop_sibling(member)
                        if member in group and self.filter.is_indexed_name(member):
                            freed.append(member)
                            log.info("%s stands alone now", display_path(member))
        if released:
            self._drop_orphans(released, candidates=())
        return paired, freed

    def _failed_stills(self, group: Iterable[str], trying: Collection[str]) -> set[str]:
        """The stills of a stem group whose failed rows still describe them (not about to be tried again)."""
        failed = set()
        for member in group:
            if companions.is_still(member) and member not in trying:
                stat = stat_file(member, self.config.follow_symlinks)
                if stat is not None and _failed_as_is(self.catalog.get_file(member), stat):
                    failed.add(member)
        return failed

    def release_failed(self, failures: Iterable[tuple[str, str]]) -> IndexSummary:
        """After a run's failures: the RAWs and videos of stills that failed stand alone now, embedded on their own."""
        claiming = [path for path, _ in failures if companions.is_still(path) and self.catalog.siblings_of(path)]
        if not claiming:
            return IndexSummary()
        _, freed = self.settle_pairs(claiming)
        return self.upsert(freed)

    def free_pairs(self, paths: Iterable[str]) -> None:
        """After a delete or a rename: settle these paths' pairs, and embed the RAWs left standing alone."""
        _, freed = self.settle_pairs(paths)
        if freed:
            self.upsert(freed)

    def upsert(self, paths: Iterable[str]) -> IndexSummary:
        raise NotImplementedError  # the engine's
