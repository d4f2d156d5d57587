"""The import graph of imgd.daemon, imgd.cli and imgd.web: no cycles, no front end in the engine, layers flow down.

Read from the source with `ast`, not by importing: every `import` and `from ... import` counts, at module
level, inside functions and under `if TYPE_CHECKING:` alike, relative ones resolved against their package.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest


def repo_root() -> Path:
    """The checkout this test file lives in (the mutation check runs it in a copy)."""
    here = Path(__file__).resolve().parent
    return next(folder for folder in (here, *here.parents) if (folder / "pyproject.toml").is_file())


# -- the rules ----------------------------------------------------------------------------------

# Every module belongs to one layer, by its dotted name: the longest prefix listed here decides.
LAYER_OF = {
    "imgd.daemon": "base",  # daemon/__init__.py
    "imgd.daemon.config": "base",
    "imgd.daemon.errors": "base",
    "imgd.daemon.protocol": "base",
    "imgd.daemon.verbosity": "base",
    "imgd.daemon.embedders": "base",
    "imgd.daemon.store": "store",
    "imgd.daemon.ingest": "ingest",
    "imgd.daemon.search": "search",
    "imgd.daemon.service": "service",
    "imgd.daemon.api": "api",
    "imgd.cli": "cli",
    "imgd.web": "web",
}

# The layers each layer may import besides its own: base <- store <- ingest, search <- service <- api <- cli, web.
# A layer may reach past the one below it (the CLI opens the service's library itself for `--direct`).
MAY_IMPORT = {
    "base": set(),
    "store": {"base"},
    "ingest": {"base", "store"},
    "search": {"base", "store"},
    "service": {"base", "store", "ingest", "search"},
    "api": {"base", "store", "ingest", "search", "service"},
    "cli": {"base", "store", "ingest", "search", "service", "api"},
    "web": {"base", "store", "ingest", "search", "service", "api"},
}

# Single module-to-module imports across the layer rules, each with the reason it must be.
EXCEPTIONS = {
    # A --like or --image query is decoded exactly as an ingested file is (EXIF turn, bomb limits):
    # the decoder is ingest's, and the query needs the same pixels to find the same picture.
    ("imgd.daemon.search.query", "imgd.daemon.ingest.imaging"): "query pictures are decoded as ingest decodes",
    ("imgd.daemon.search.query", "imgd.daemon.ingest.video"): "a query video's frames are sampled as ingest samples",
    # `imgd web` starts the gallery in the CLI's process, and `imgd service install --web` says the URL
    # with the gallery's kept token; the gallery never imports the CLI.
    ("imgd.cli.web", "imgd.web.server"): "the `imgd web` command starts the gallery",
    ("imgd.cli.service", "imgd.web.server"): "the gallery unit's URL carries the gallery's kept token",
    # `imgd run` asks whoever answers on its socket which state folder it serves, before loading the model:
    # with the stdlib-only client every command asks through (the alternative is a second client).
    ("imgd.daemon.service.run", "imgd.daemon.api.client"): "a starting daemon asks who holds its socket",
}

# Import cycles tolerated while a fix is under way, each as its set of modules, with the reason; empty since
# embedders/runtime.py broke the onnx <-> export cycle. An entry whose cycle is gone fails the test.
KNOWN_CYCLES: set[frozenset[str]] = set()

# What the engine must never import: the front ends and their toolkit.
ENGINE_MAY_NOT_IMPORT = ("click", "imgd.cli", "imgd.web")


# -- reading the graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported name, resolved to an absolute dotted name
    where: str  # file:line, for the failure message


def package_dirs(root: Path) -> dict[str, Path]:
    """imgd.daemon, imgd.cli, imgd.web -> their folders, as pyproject.toml maps them for the wheel."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Every module under the packages, by dotted name (a package by its __init__.py)."""
    found = {}
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = path
    return found


def imports_of(name: str, path: Path, root: Path) -> Iterator[Import]:
    """Every import statement in the file, wherever it stands, with relative names made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # `from a import b` imports the module a.b when there is one, else the name b from a.
            for alias in node.names:
                yield Import(name, f"{prefix}.{alias.name}", where)


def owner(target: str, known: dict[str, Path]) -> str | None:
    """The module a dotted name lives in (the name itself, or the nearest package or module above it)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def layer(module: str) -> str:
    prefixes = [p for p in LAYER_OF if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} is in no layer: add it to LAYER_OF in {Path(__file__).name}"
    return LAYER_OF[max(prefixes, key=len)]


@dataclass
class Graph:
    modules: dict[str, Path]
    imports: list[Import]  # every import, of any module, third-party ones included
    edges: dict[str, dict[str, str]]  # module -> imported imgd module -> where (first place)


def read_graph(root: Path) -> Graph:
    known = modules(package_dirs(root))
    every = [imp for name, path in known.items() for imp in imports_of(name, path, root)]
    edges: dict[str, dict[str, str]] = {name: {} for name in known}
    for imp in every:
        target = owner(imp.target, known)
        if target is not None and target != imp.source:
            edges[imp.source].setdefault(target, imp.where)
    return Graph(known, every, edges)


def cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [path_through(group, edges) for group in groups]


def path_through(group: set[str], edges: dict[str, dict[str, str]]) -> list[str]:
    """One cycle inside a strongly connected group, from its first module back to it, for the message."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in group and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {sorted(group)}")  # a strongly connected group always has one


def describe(cycle: list[str], edges: dict[str, dict[str, str]]) -> str:
    return " -> ".join(cycle) + "  (" + ", ".join(edges[a][b] for a, b in pairwise(cycle)) + ")"


# -- the checks -----------------------------------------------------------------------------------


def cycle_problems(graph: Graph) -> list[str]:
    found = cycles(graph.edges)
    new = [describe(c, graph.edges) for c in found if frozenset(c) not in KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in {frozenset(f) for f in found}]
    return [f"import cycle: {c}" for c in new] + [f"KNOWN_CYCLES lists a cycle that is gone: {c}" for c in gone]


def engine_problems(graph: Graph) -> list[str]:
    return [
        f"{imp.where}: the engine imports {imp.target}"
        for imp in graph.imports
        if imp.source.startswith("imgd.daemon")
        and any(imp.target == bad or imp.target.startswith(bad + ".") for bad in ENGINE_MAY_NOT_IMPORT)
    ]


def layer_problems(graph: Graph) -> list[str]:
    problems, used = [], set()
    for source, targets in sorted(graph.edges.items()):
        for target, where in sorted(targets.items()):
            ours, theirs = layer(source), layer(target)
            if theirs == ours or theirs in MAY_IMPORT[ours]:
                continue
            if (source, target) in EXCEPTIONS:
                used.add((source, target))
                continue
            problems.append(f"{where}: {source} ({ours}) imports {target} ({theirs})")
    stale = sorted(set(EXCEPTIONS) - used)
    return problems + [f"EXCEPTIONS lists an import that is gone or now allowed anyway: {s}" for s in stale]


@pytest.fixture(scope="module")
def graph() -> Graph:
    return read_graph(repo_root())


def test_every_package_folder_is_read(graph: Graph) -> None:
    # A walk that missed a folder would pass every check below by seeing nothing.
    for name in ("imgd.daemon.store.catalog", "imgd.daemon.api.facade", "imgd.cli.main", "imgd.web.app"):
        assert name in graph.modules
    assert graph.edges["imgd.daemon.ingest.engine"], "the engine imports the catalog: the walk found no edges"


def test_there_is_no_import_cycle(graph: Graph) -> None:
    problems = cycle_problems(graph)
    assert not problems, "\n".join(problems)


def test_the_engine_never_imports_click_the_cli_or_the_gallery(graph: Graph) -> None:
    problems = engine_problems(graph)
    assert not problems, "\n".join(problems)


def test_imports_flow_down_the_layers(graph: Graph) -> None:
    problems = layer_problems(graph)
    assert not problems, "\n".join(problems)


# -- the checks can fail ---------------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> None:
    (root / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "imgd.daemon" = "daemon" }\n')
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_a_cycle_through_a_relative_import_inside_a_function_is_found(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "daemon/__init__.py": "",
            "daemon/store/__init__.py": "",
            "daemon/store/catalog.py": "from . import migrations\n",
            "daemon/store/migrations.py": "def upgrade():\n    from .catalog import Catalog\n",
        },
    )
    graph = read_graph(tmp_path)
    assert [c.split("  (")[0] for c in cycle_problems(graph) if c.startswith("import cycle")] == [
        "import cycle: imgd.daemon.store.catalog -> imgd.daemon.store.migrations -> imgd.daemon.store.catalog"
    ]


def test_an_upward_import_and_click_in_the_engine_are_found(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "daemon/__init__.py": "",
            "daemon/errors.py": "",
            "daemon/store/__init__.py": "",
            "daemon/store/catalog.py": "from ..errors import *\n\ndef f():\n    from ..ingest import engine\n",
            "daemon/ingest/__init__.py": "",
            "daemon/ingest/engine.py": "import click.testing\nfrom imgd.daemon.store.catalog import x\n",
        },
    )
    graph = read_graph(tmp_path)
    assert layer_problems(graph)[0] == (
        "daemon/store/catalog.py:4: imgd.daemon.store.catalog (store) imports imgd.daemon.ingest.engine (ingest)"
    )
    assert engine_problems(graph) == ["daemon/ingest/engine.py:1: the engine imports click.testing"]
