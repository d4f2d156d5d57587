"""paths: the one "is this path under that folder?" rule the scanner, watcher, search, dupes and CLI share."""

from __future__ import annotations

import pytest
from imgd.daemon.paths import is_under


@pytest.mark.parametrize(
    ("path", "folder", "under"),
    [
        ("/pics/a.jpg", "/pics", True),
        ("/pics/deep/down/a.jpg", "/pics", True),
        ("/pics", "/pics", True),  # the folder itself: a watched root, a folder deleted as a whole
        ("/pics/a.jpg", "/pics/", True),  # a trailing separator changes nothing
        ("/pics-old/a.jpg", "/pics", False),  # a shared prefix is not a parent
        ("/picsa.jpg", "/pics", False),
        ("/pi", "/pics", False),
        ("/elsewhere/a.jpg", "/pics", False),
        ("/pics/a.jpg", "/", True),
    ],
)
def test_a_path_is_under_its_folders_and_the_folder_itself_never_under_a_sibling_with_a_shared_prefix(
    path: str, folder: str, under: bool
) -> None:
    assert is_under(path, folder) is under
