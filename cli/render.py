"""Turn engine results into terminal lines or JSON; nothing here touches the engine's state."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from imgd.daemon.errors import display_path

if TYPE_CHECKING:  # `imgd search` through the daemon imports no more than it needs
    from imgd.daemon.store.records import IndexSummary


FALLBACK_SIZE = (80, 24)  # columns, rows: for a terminal that reports 0x0 (serial consoles, some containers)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """None when the terminal reports its size (the bar follows resizes), else a fixed fallback.

    tqdm draws nothing at all in a 0x0 terminal: its row count comes out negative.
    """
    try:
        size = os.get_terminal_size(fd)
    except (OSError, ValueError):
        return FALLBACK_SIZE
    return None if size.columns > 0 and size.lines > 0 else FALLBACK_SIZE


@contextlib.contextmanager
def progress_bar(
    enabled: bool, unit: str = "img"
) -> Iterator[tuple[Callable[[int], None] | None, Callable[[int], None] | None]]:
    """Yield (on_total, progress) callbacks that draw a tqdm bar on stderr, or (None, None) if not enabled.

    The bar appears only once there is something to count; meanwhile log lines are written above
    it (tqdm.write) instead of being glued to its end.
    """
    if not enabled:
        yield None, None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar: tqdm | None = None

    def on_total(total: int) -> None:
        """Start a bar for `total` items, in place of the last one."""
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        if total > 0:
            fixed = terminal_size(sys.stderr.fileno())
            size = {"ncols": fixed[0], "nrows": fixed[1]} if fixed else {"dynamic_ncols": True}
            bar = tqdm(total=total, unit=unit, file=sys.stderr, leave=False, **size)

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    with logging_redirect_tqdm():
        try:
            yield on_total, progress
        finally:
            if bar is not None:
                bar.close()


def plural(count: int, noun: str) -> str:
    """`1 image`, `2 images`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def scores(values: Iterable[float]) -> list[str]:
    """Scores to 4 places, right-aligned to the widest, so a negative one does not shift its line's columns."""
    texts = [f"{value:.4f}" for value in values]
    width = max(map(len, texts), default=0)
    return [text.rjust(width) for text in texts]


SNIPPET_CHARS = 60  # the matched words shown after a hit's path, at most


def words_snippet(lines: Iterable[str]) -> str:
    """A hit's matched lines of words, quoted, on one line: `  "HARDWARE STORE | TOTAL 17.49"`."""
    text = " | ".join(" ".join(line.split()) for line in lines)
    if len(text) > SNIPPET_CHARS:
        text = text[: SNIPPET_CHARS - 1] + "\u2026"
    return f'  "{text}"'


def hits_lines(hits: Iterable[Mapping[str, Any]], places: bool = False) -> list[str]:
    """`score  path` (` @ 1:23` for a video), the place with `places` ("-" for none), the matched words."""
    hits = list(hits)
    texts = scores(hit["score"] for hit in hits)
    lines = [f"{score}  {display_path(hit['path'])}{at(hit)}" for score, hit in zip(texts, hits, strict=True)]
    if places:
        lines = [f"{line}  {place_label(hit.get('place'))}" for line, hit in zip(lines, hits, strict=True)]
    return [
        line + (words_snippet(hit["words"]) if hit.get("words") else "") for line, hit in zip(lines, hits, strict=True)
    ]


def place_label(place: Mapping[str, Any] | None) -> str:
    """ "Lisbon, Portugal", "Portland, Oregon, United States"; "-" for no place."""
    if not place:
        return "-"
    return ", ".join(str(place[key]) for key in ("city", "region", "country") if place.get(key))


def clock(seconds: float) -> str:
    """A time into a video as people write it: `1:23`, `1:02:03`."""
    whole = int(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def at(hit: Mapping[str, Any]) -> str:
    """` @ 1:23` after a video's path (its best frame's time); nothing for a photo."""
    return f" @ {clock(hit['time'])}" if hit.get("time") is not None else ""


def json_text(value: object) -> str:
    """JSON that stays valid UTF-8: a file name's undecodable bytes (surrogates) become \\udcXX escapes.

    json.loads turns those back into the same surrogates, so os.fsencode(path) gives the bytes on disk.
    """
    return re.sub("[\udc80-\udcff]", lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


HIT_FIELDS = (
    *("rank", "score", "path", "sibling", "siblings", "id", "size", "width", "height", "type", "taken"),
    "taken_source",
    "camera",
    *("place", "near"),  # a place where the GPS names one; `near` under --near
    *("time", "duration", "frames"),  # videos only
    "words",  # the matched lines of the words read in the picture, when words were matched
)


def hit_record(hit: Mapping[str, Any]) -> dict[str, Any]:
    """What --json and --jsonl show of a hit: the HIT_FIELDS it has, in that order."""
    return {name: hit[name] for name in HIT_FIELDS if name in hit}


def summary_line(summary: IndexSummary, seconds: float) -> str:
    parts = [
        f"{summary.added} added",
        f"{summary.updated} updated",
        f"{summary.moved} moved",
        f"{summary.removed} removed",
        f"{summary.failed} failed",
        f"{summary.unchanged} unchanged",
    ]
    if summary.missing:
        parts.append(f"{summary.missing} missing")
    return ", ".join(parts) + f" in {seconds:.1f}s"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ago(stamp: float | None) -> str:
    if not stamp:
        return "never"
    seconds = max(0, time.time() - stamp)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


DUPE_MEMBER_FIELDS = ("path", "size", "width", "height", "taken", "score", "same_content")


def dupe_groups(groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups as `imgd dupes` prints them: members without the content ids the gallery names files by."""
    return [
        {**group, "members": [{k: m[k] for k in DUPE_MEMBER_FIELDS if k in m} for m in group["members"]]}
        for group in groups
    ]


def dupes_lines(groups: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each group: a heading, then `keep`/blank, score to the keeper, dimensions, size, path; a blank line between.

    Scores and dimensions are padded to the widest in the listing, so the columns line up in every group.
    """
    groups = list(groups)
    members = [member for group in groups for member in group["members"]]
    score_texts = iter(scores(member["score"] for member in members))
    dims_width = max((len(f"{m['width']}x{m['height']}") for m in members), default=0)
    lines: list[str] = []
    for group in groups:
        if lines:
            lines.append("")
        count = len(group["members"])
        lines.append(f"{group['kind']} ({plural(count, 'image')}, {_size(group['reclaimable'])} in the others)")
        for position, member in enumerate(group["members"]):
            mark = "keep" if position == 0 else ("same" if member["same_content"] else "    ")
            dims = f"{member['width']}x{member['height']}"
            lines.append(
                f"  {mark}  {next(score_texts)}  {dims:<{dims_width}}"
                f"  {_size(member['size']):>9}  {display_path(member['path'])}"
            )
    return lines


def dupes_summary(groups: list[Mapping[str, Any]], threshold: float) -> str:
    if not groups:
        return f"imgd: no duplicates (threshold {threshold:g})."
    others = sum(len(g["members"]) - 1 for g in groups)
    reclaimable = sum(g["reclaimable"] for g in groups)
    return (
        f"imgd: {plural(len(groups), 'group')}, {plural(others, 'image')} besides the keepers"
        f", {_size(reclaimable)} in them "
        f"(threshold {threshold:g})"
    )


def taken_fields(path: str, taken: str | None) -> dict[str, str | None]:
    """`taken` as ISO 8601 and where it came from: the picture's date, else its file's time (as `search` gives)."""
    from datetime import datetime

    if taken:
        try:
            return {"taken": datetime.fromisoformat(taken).isoformat(timespec="seconds"), "taken_source": "exif"}
        except ValueError:
            pass
    try:
        stamp = datetime.fromtimestamp(os.stat(path).st_mtime).astimezone().isoformat(timespec="seconds")
    except (OSError, OverflowError, ValueError):
        return {"taken": None, "taken_source": None}
    return {"taken": stamp, "taken_source": "mtime"}


def dupes_record(group: Mapping[str, Any]) -> dict[str, Any]:
    """What --json and --jsonl show of a group: its members' `taken` in the same form as every listing's."""
    members = []
    for member in group["members"]:
        row: dict[str, Any] = {}
        for key, value in member.items():
            row.update(taken_fields(member["path"], value) if key == "taken" else {key: value})
        members.append(row)
    return {**group, "members": members}


def change_line(change: Mapping[str, Any], current: str | None) -> str:
    """`imgd status` on a model change under way."""
    done, total = change.get("done", 0), change.get("total", 0)
    share = f" ({100 * done / total:.0f}%)" if total else ""
    line = f"model change: to {display_path(str(change.get('to')))}, {done} of {total} images re-embedded{share}"
    if change.get("rate"):
        line += f", {change['rate']:.1f} images/s"
    if change.get("eta_s"):
        line += f", about {change['eta_s']:.0f}s left"
    if change.get("failed"):
        line += f", {change['failed']} unreadable"
    return line + f"; searches use {display_path(str(current))} until it is done"


def status_lines(status: Mapping[str, Any]) -> list[str]:
    lines = []
    daemon = status.get("daemon") or {}
    if daemon.get("running"):
        lines.append(f"daemon: running (pid {daemon['pid']}, up {daemon['uptime_s']:.0f}s)")
    elif daemon.get("starting"):  # it holds the state folder but does not answer yet
        lines.append(f"daemon: starting (preparing the model, pid {daemon['pid']})")
    else:
        lines.append("daemon: not running")
    counts = status.get("counts", {})
    lines.append(
        f"files: {counts.get('files', 0)} indexed ({counts.get('contents', 0)} unique images), "
        f"{counts.get('failed', 0)} failed, {counts.get('missing', 0)} missing"
    )
    pending = (status.get("metadata") or {}).get("pending")
    if pending:
        lines.append(f"metadata: {pending} images indexed before imgd kept it, waiting for their headers to be read")
    unplaced = (status.get("metadata") or {}).get("places_pending")
    if unplaced:
        lines.append(f"places: {unplaced} photos with GPS waiting for their place to be named")
    words = status.get("words") or {}
    if words.get("pending"):
        line = f"words: {words['pending']} images waiting to be read, {words.get('found', 0)} with words so far"
        if words.get("rate"):
            line += f", {words['rate']:.1f} images/s"
        lines.append(line)
    for folder in status.get("folders", []):
        lines.append(f"watching: {display_path(folder['path'])} ({folder['mode']})")
    queue = status.get("queue")
    if queue is not None:
        line = f"queue: {queue.get('pending', 0)} waiting"
        if queue.get("rate"):
            line += f", {queue['rate']:.1f} images/s"
        if queue.get("eta_s"):
            line += f", about {queue['eta_s']:.0f}s left"
        lines.append(line)
    model = status.get("model") or {}
    if model:
        detail = ", ".join(str(model[k]) for k in ("backend", "device", "precision") if model.get(k))
        freed = [kind for kind in ("image", "text") if model.get(f"{kind}_loaded") is False]
        if freed:
            detail += f", {' and '.join(freed)} model{'s' if len(freed) > 1 else ''} freed while idle"
        lines.append(f"model: {model.get('name')} ({model.get('dim')} dims{', ' + detail if detail else ''})")
        if model.get("reason"):
            lines.append(f"backend: {model['reason']}")
        if model.get("text"):
            lines.append(f"text model: {model['text']}")
        change = model.get("change")
        if change:
            lines.append(change_line(change, model.get("name")))
    search = status.get("search")
    if search:
        line = f"search: {search['kind']} over {search['vectors']} vectors"
        if search.get("nprobe"):
            line += f" (IVF, {search['nprobe']} lists probed per query)"
        scan = search.get("scan")
        if scan:  # no usable index file at start: built from the catalog while searches scan it
            line += f"; being built ({scan_progress(scan)}), searches scan the catalog meanwhile"
        elif search.get("building"):
            line += "; rebuilding in the background"
        if search.get("build_error"):
            line += f"; the last rebuild failed ({search['build_error']})"
        lines.append(line)
    dupes = status.get("dupes")
    if dupes:
        if dupes.get("computing"):
            lines.append("duplicates: being computed")
        elif dupes.get("error"):
            lines.append(f"duplicates: not available ({dupes['error']})")
        else:
            lines.append(
                f"duplicates: {dupes['groups']} groups, {_size(dupes['reclaimable'])} in images besides the keepers"
                f" (threshold {dupes['threshold']:g})"
            )
    lines.append(
        f"last persisted: {_ago(status.get('last_persist'))}; last reconciled: {_ago(status.get('last_reconcile'))}"
    )
    disk = status.get("disk", {})
    lines.append(f"on disk: catalog {_size(disk.get('catalog'))}, index {_size(disk.get('index'))}")
    watches = status.get("inotify")
    if watches:
        lines.append(f"inotify watches: {watches.get('used', '?')} of {watches.get('max', '?')}")
    return lines


def scan_progress(scan: dict[str, Any]) -> str:
    """How far the start-up build of the index is: its step, and while filling, how many vectors are in."""
    if scan.get("step") == "filling" and scan.get("total"):
        return f"filling, {scan['filled']:,} of {scan['total']:,} vectors"
    return str(scan.get("step"))
