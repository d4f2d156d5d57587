"""Filters checked on a search's best candidates, for a filter that lets through too many to select.

A filter's selection (every vector id it lets through, handed to FAISS as a bitmap) costs in
proportion to its size: at 1M contents, `--near Lisbon` selects 250k and took 10 s, a `--words` of a
common word 26k and over 1 s (benchmarks/RESULTS.md). A filter that lets that many through does not
need them: the search asks the index for more candidates than it needs (the lists a filtered search
probes, the whole index when exact) and checks only those, fetching more until k pass. So a
selection is tried within a small budget; a selection that runs past it is left, and the candidates
are checked instead: the place and other filters by their SQL clause, per content; a literal
`--words` by its Python rule on the candidates' stored text (FTS5 answers a MATCH restricted to a few
rowids no faster than the whole MATCH). On an exact index the answer is the selection's; on IVF the
candidates come from every list a filtered search probes, so an answer is the same or a closer one.
A search that needs the whole selection (`auto`'s background sample, an FTS5 expression) selects.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np

from ..protocol import Filters, Options
from ..store.catalog import Catalog
from .filters import from_request
from .words import WordsMatch

SELECT_BUDGET = 0.005  # seconds a filter's selection may take before the search checks candidates instead
FETCH_LIMIT = 4096  # candidates a search would check at most (by the share passing so far); past it, select
# Contents below which a search always selects: a selection costs milliseconds there, and one path keeps
# the scores alike to the last digit (a narrow selection is scored by numpy, candidates by FAISS).
MIN_LIBRARY = 50_000
SAMPLE = 640  # candidates enough to tell that too few pass (a filter letting 1 in 1,000 through)
SPARE = 4  # a first fetch of SPARE x k candidates: a filter past the budget lets many through

LATER = 64  # filters remembered for the background selection (a few bytes each)

Check = Callable[[Iterable[int]], set[int]]  # content ids -> those that pass

log = logging.getLogger(__name__)


def wanted(options: Options, library: int) -> bool:
    """Whether a search may check candidates instead of selecting: it needs no whole selection, and the
    library is large enough for a selection to cost (below that, one path answers every search alike)."""
    filters = options.filters
    return library > MIN_LIBRARY and filters.active and not options.auto_cut and filters.words_match is None


def hopeless(fetch: int, found: int, k: int) -> bool:
    """Whether checking more candidates is not worth it: the next fetch would pass the limit, or at the
    share that passed so far (among enough candidates to tell) k would need more than the limit."""
    return fetch * 4 > FETCH_LIMIT or (fetch >= SAMPLE and found * FETCH_LIMIT < k * fetch)


class Checker:
    """Which of some contents pass every filter of a request, looked up per content, each once a search."""

    def __init__(self, catalog: Catalog, filters: Filters) -> None:
        chosen = from_request(filters, catalog.cameras)
        self.catalog = catalog
        self.phrases = [f for f in chosen if isinstance(f, WordsMatch)]
        self.rest = [f for f in chosen if not isinstance(f, WordsMatch)]
        self.checked: dict[int, bool] = {}  # over a search's rounds of candidates

    def __call__(self, ids: Iterable[int]) -> set[int]:
        ids = set(ids)
        found = {cid for cid in ids if cid not in self.checked}
        new = set(found)
        if self.phrases and found:
            texts = self.catalog.words_texts(found)
            # WordsMatch.match's rule (the needle in the folded text), without a FileRow per candidate.
            found = {cid for cid in found if all(f.needle in texts.get(cid, "") for f in self.phrases)}
        if self.rest and found:
            found = self.catalog.content_ids_passing(self.rest, found)
        self.checked.update((cid, cid in found) for cid in new)
        return {cid for cid in ids if self.checked[cid]}


def check(catalog: Catalog, filters: Filters) -> Checker:
    """Which of some contents pass every filter of a request (a callable, called per round of candidates)."""
    return Checker(catalog, filters)


def of_selection(allowed: np.ndarray | None) -> Check | None:
    """Which contents pass, by a filter's whole selection of content ids (None: no filter)."""
    if allowed is None:
        return None
    chosen = set(allowed.tolist())
    return lambda ids: chosen.intersection(ids)


class Later:
    """When to select a checked filter whole in the background: on its second checked answer, once.

    Checking candidates answers a broad filter's first query without its selection (seconds at 1M), but
    every later query pays for probing every list a filtered search may need and for checking rounds of
    candidates; a filter asked for twice is being refined (people change a query's words far more often
    than its filters), so its selection is built aside and later queries search its cached bitmap. A
    one-off search (the direct path's one query) never starts one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple, bool] = OrderedDict()  # filter and catalog state -> selection started

    def due(self, key: tuple) -> bool:
        """Whether to start selecting this filter now (its second checked answer at this catalog state)."""
        with self._lock:
            started = self._seen.get(key)
            self._seen[key] = started is not None
            self._seen.move_to_end(key)
            while len(self._seen) > LATER:
                self._seen.popitem(last=False)
            return started is False


def in_background(select: Callable[[Filters], object], filters: Filters, done: Callable[[], object]) -> None:
    """Run a filter's selection on a thread of its own, then `done` (its catalog reader closed): the query
    that asked has its answer already."""

    def work() -> None:
        try:
            select(filters)
        except Exception:  # the foreground keeps checking candidates: a failed selection costs nothing more
            log.exception("selecting a filter in the background failed")
        finally:
            done()

    threading.Thread(target=work, name="imgd-select", daemon=True).start()
