"""The engine's part that keeps pairs in step with the disk: companions claimed by their photo, freed when it goes.

A mixin of `Engine` (engine.py), split off for its size. The rule itself is companions.pair_up; this
applies it to one event's stem groups (a fixed number of stats and index lookups per path) and hands
back what the event made a companion (its files row, and so its vector, is dropped) and what it freed
(a RAW whose photo went away: embedded now on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..config import Config
from ..errors import display_path
from ..store.catalog import Catalog
from ..store.records import FileStat
from . import companions
from .scanner import PathFilter, scan

log = logging.getLogger(__name__)


class Pairing:
    """Companion bookkeeping for the engine's single changes and its reconcile."""

    catalog: Catalog
    config: Config
    filter: PathFilter
    should_stop: Callable[[], bool]

    # OrphanHold's (orphans.py), declared only: a method here would come first in Engine's order and shadow it.
    _drop_orphans: Callable[..., None]

    def walk_pairs(self, root: str) -> list[FileStat]:
        """The files below root to index: a folder walk less the companions (recorded as such here) and
        the videos no photo claims. No stat beyond the walk's own."""
        stats = list(scan(root, self.filter, self.config.follow_symlinks, should_stop=self.should_stop))
        paired = companions.pair_up(stat.path for stat in stats)
        self.catalog.replace_siblings_under(root, paired)
        return [s for s in stats if s.path not in paired and self.filter.is_indexed_name(s.path)]

    def settle_pairs(self, paths: Iterable[str]) -> tuple[dict[str, str], list[str]]:
        """Bring the siblings rows of these paths' stem groups in line with the disk.

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
                pairs = companions.pair_up(group)
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

    def free_pairs(self, paths: Iterable[str]) -> None:
        """After a delete or a rename: settle these paths' pairs, and embed the RAWs left standing alone."""
        _, freed = self.settle_pairs(paths)
        if freed:
            self.upsert(freed)

    def upsert(self, paths: Iterable[str]) -> object:
        raise NotImplementedError  # the engine's
