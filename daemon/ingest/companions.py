"""Which files are the other half of a photo: a RAW beside its JPEG or HEIC, a live photo's video beside its still.

The one rule (`pair_up`): files in one folder whose stems match in any case form a group; if the group
holds a still (JPEG, else HEIC), its first is the primary, and every RAW and video in the group is its
companion: one photo, its vector from the still, the companions listed through it. A RAW or a video
with no still beside it, or only stills that failed to decode, stands alone (a lone RAW is embedded
like any photo). The engine applies the rule to a whole folder walk (reconcile) or, per event, to the
group on disk around one path (`stem_group`: a fixed number of stats, whatever the folder or library
holds). `companion_of` is the question a decoder asks first: is this file a companion, and of which
primary?
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable

from ..filetypes import RAW_EXTENSIONS, VIDEO_EXTENSIONS
from ..filetypes import extension as _extension

# Stills a companion is paired with, in order of preference when a group holds several.
STILL_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".jpe", ".heic", ".heif")
COMPANION_EXTENSIONS: tuple[str, ...] = RAW_EXTENSIONS + VIDEO_EXTENSIONS
PAIRED_EXTENSIONS: tuple[str, ...] = STILL_EXTENSIONS + COMPANION_EXTENSIONS
COMPANION_SET = frozenset(COMPANION_EXTENSIONS)


def _group_key(path: str) -> tuple[str, str]:
    folder, name = os.path.split(path)
    return folder, os.path.splitext(name)[0].casefold()


def is_still(path: str) -> bool:
    return _extension(path) in STILL_EXTENSIONS


def may_pair(path: str) -> bool:
    """Can this file be either half of a pair (by its name)?"""
    return _extension(path) in PAIRED_EXTENSIONS


def pair_up(paths: Iterable[str], failed: Collection[str] = ()) -> dict[str, str]:
    """Companion -> primary for every pair among paths (same folder, same stem in any case).

    A still in `failed` (its bytes could not be decoded) is no primary: it must not hide its RAW or
    video, which then pair with another still of the group or stand alone and are searchable.
    """
    paths = list(paths)
    # Only a folder holding a RAW or a video can hold a pair: a library of JPEGs alone (a million of
    # them at start-up) costs one extension test per file, not a group key.
    folders = {path.rpartition(os.sep)[0] for path in paths if _extension(path) in COMPANION_EXTENSIONS}
    if not folders:
        return {}
    groups: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        if may_pair(path) and path.rpartition(os.sep)[0] in folders:
            groups.setdefault(_group_key(path), []).append(path)
    pairs: dict[str, str] = {}
    for members in groups.values():
        stills = [p for p in members if is_still(p) and p not in failed]
        if not stills:
            continue
        primary = min(stills, key=lambda p: (STILL_EXTENSIONS.index(_extension(p)), os.fsencode(p)))
        for member in members:
            if _extension(member) in COMPANION_EXTENSIONS:
                pairs[member] = primary
    return pairs


def stem_group(path: str, follow_symlinks: bool = False) -> list[str]:
    """The regular files on disk that share path's folder and stem (path itself included if it exists).

    Looked up name by name (the stem as written, in lower and in upper case; each extension in lower
    and upper case), not by listing the folder: an event costs the same in a folder of ten files or of
    a hundred thousand.
    """
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    found = {path} if _regular(path, follow_symlinks) else set()
    for variant in dict.fromkeys((stem, stem.lower(), stem.upper())):
        for extension in PAIRED_EXTENSIONS:
            for spelled in (extension, extension.upper()):
                candidate = os.path.join(folder, variant + spelled)
                if candidate not in found and _regular(candidate, follow_symlinks):
                    found.add(candidate)
    return sorted(found, key=os.fsencode)


def _regular(path: str, follow_symlinks: bool) -> bool:
    try:
        info = os.stat(path, follow_symlinks=follow_symlinks)
    except (OSError, ValueError):
        return False
    return (info.st_mode & 0o170000) == 0o100000


def companion_of(path: str, follow_symlinks: bool = False) -> str | None:
    """The primary path is the companion of, judged from the disk now; None when it stands alone or is a still."""
    if _extension(path) not in COMPANION_EXTENSIONS:
        return None
    return pair_up(stem_group(path, follow_symlinks)).get(path)
