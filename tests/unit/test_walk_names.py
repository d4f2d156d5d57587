"""The per-name tests of a walk: the fast extension and the compiled exclusions agree with splitext and fnmatch."""

from __future__ import annotations

import fnmatch
import os

from imgd.daemon.filetypes import DEFAULT_EXCLUDES, extension
from imgd.daemon.ingest.scanner import PathFilter

NAMES = [
    "a.jpg", "A.JPG", ".jpg", "..jpg", "a..jpg", "...a.b", "a.", ".", "..", "", "name", "x.tar.gz",
    "/r/.hidden/f.PNG", "/r/x.y/z", "/r/x.y/.z", "/r/x/..", "/r/.x.jpg", "p/a.part", "a~", "@eaDir",
    "#recycle", "$RECYCLE.BIN", "f.CRDOWNLOAD", "thumbs.db", "b.tmp.jpg",
]  # fmt: skip


def test_extension_is_splitexts_lowered():
    for path in NAMES:
        assert extension(path) == os.path.splitext(path)[1].lower(), path


def test_excluded_name_matches_each_pattern_as_fnmatch_does():
    for excludes in (DEFAULT_EXCLUDES, ("*.TMP", "raw_[0-9]*", "a?c"), ()):
        path_filter = PathFilter(excludes)
        for name in [*NAMES, "raw_1.jpg", "RAW_x.jpg", "abc", "ABC", "abbc"]:
            want = any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in excludes if "/" not in p)
            assert path_filter.excluded_name(name) is want, (excludes, name)
