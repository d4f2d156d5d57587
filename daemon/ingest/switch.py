"""A model change as the engine drives it: begin, one batch at a time, then one switch of catalog, index and model.

A part of Engine (it inherits ModelSwitch), split out for size; the batches themselves are modelchange.py's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

from ..config import Config
from ..embedders import Embedder
from ..errors import display_path
from ..store.catalog import Catalog
from ..store.index import VectorIndex
from .modelchange import ModelChange
from .pool import Stopped

log = logging.getLogger("imgd.daemon.ingest.engine")


class ModelSwitch:
    """Engine's side of a model change."""

    catalog: Catalog
    index: VectorIndex
    embedder: Embedder
    config: Config
    change: ModelChange | None
    _pool: ThreadPoolExecutor
    _released: dict
    should_stop: Callable[[], bool]

    def begin_change(self, embedder: Embedder) -> ModelChange:
        """Start (or go on with) re-embedding everything with `embedder` beside the live vectors."""
        self.change = ModelChange(self.catalog, embedder, self._pool, self.config.max_image_pixels)
        return self.change

    def reembed_step(self) -> int:
        """One batch of the change (newest images first); 0 once every image has been tried."""
        if self.change is None:
            return 0
        if self.should_stop():
            raise Stopped
        return self.change.step(self.config.batch_size)

    def finish_change(
        self, exclusive: Callable[[Embedder], AbstractContextManager[object]] = lambda _: nullcontext()
    ) -> list[int]:
        """Make the new model's vectors live: index built first, then catalog, index and model in one step.

        `exclusive(new_model)` holds searches off for that step (the daemon's searcher), so no search
        mixes a query of one model with vectors of the other: from the commit to the swap, not while
        the catalog rewrites its vectors (readers see the old ones until the commit). Returns the contents
        dropped because none of their files could be read again; the next reconcile embeds their files.
        """
        change = self.change
        if change is None:
            return []
        started = time.monotonic()
        fresh = VectorIndex.build(self.catalog, change.embedder.dim, change.catalog.iter_next_vectors())
        with contextlib.ExitStack() as held:
            with self.catalog.transaction():
                # Every vector is rewritten here, unseen by searches until the commit (seconds at 1M) ...
                dropped = self.catalog.finish_model_change()
                # ... so they are held off only from just before it until index and model follow.
                waited = time.monotonic()
                held.enter_context(exclusive(change.embedder))
                log.debug("searches waited %.2fs for those in flight", time.monotonic() - waited)
            self.index.adopt(fresh, self.catalog)
            self.embedder = change.embedder
            self.change = None
        gone = set(dropped)
        self._released = {cid: entry for cid, entry in self._released.items() if cid not in gone}
        log.info(
            "switched to model %s in %.1fs: %s",
            display_path(change.name),
            time.monotonic() - started,
            change.summary(dropped),
        )
        return dropped
