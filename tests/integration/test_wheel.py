"""The wheel holds every module and the gallery's files: an editable install would hide a package left out."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest


def repo_root() -> Path:
    """The checkout this test file lives in (the mutation check runs it in a copy)."""
    here = Path(__file__).resolve().parent
    return next(folder for folder in (here, *here.parents) if (folder / "pyproject.toml").is_file())


@pytest.mark.slow
def test_the_wheel_holds_every_module_of_every_package_folder_and_the_static_files(tmp_path: Path) -> None:
    root = repo_root()
    config = tomllib.loads((root / "pyproject.toml").read_text())
    package_dirs = config["tool"]["setuptools"]["package-dir"]  # imgd.daemon -> daemon, ...
    # Built from a clean copy: an in-tree build reuses build/lib, where a package dropped from the
    # list since the last build would still lie, and two builds at once would share it.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", config["project"]["readme"]):
        shutil.copy2(root / name, source / name)
    for folder in package_dirs.values():
        shutil.copytree(root / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    built = subprocess.run([*command, "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("imgd-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())

    expected = set()
    for package, folder in package_dirs.items():
        prefix = package.replace(".", "/")
        for path in (source / folder).rglob("*.py"):
            expected.add(f"{prefix}/{path.relative_to(source / folder).as_posix()}")
    static = [p for p in (source / "web" / "static").rglob("*") if p.is_file()]
    assert static, "the gallery's static files are where this test looks for them"
    expected |= {f"imgd/web/{p.relative_to(source / 'web').as_posix()}" for p in static}
    # Every folder with .py files: the subpackages of daemon/ at least, so a walk that found none fails.
    assert {"imgd/daemon/store/catalog.py", "imgd/daemon/api/facade.py", "imgd/cli/main.py"} <= expected
    missing = sorted(expected - inside)
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
