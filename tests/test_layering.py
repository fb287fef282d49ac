"""The house's parts import downwards only, and no file imports itself back through others.

Parts, from the doors down (``docs/DESIGN.md`` draws the same map):

    _napari, _cli  ->  audit  ->  study  ->  engine  ->  calf  ->  io  ->  ground
                                             phantom ->  io  ->  ground

A file may import files of its own part and of parts below it, never of a part above it
or beside it (``phantom`` and ``engine`` do not know each other). Imports inside functions
count too: a lazy import still couples the parts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_calf

PACKAGE_ROOT = Path(napari_calf.__file__).parent

#: Rank of each part: a file may import parts of a lower rank and its own part.
RANKS: dict[str, int] = {
    "ground": 0,
    "io": 1,
    "calf": 2,
    "phantom": 3,
    "engine": 3,
    "study": 4,
    "audit": 5,
    "_cli": 6,
    "_napari": 6,
}


def part_of(module: str) -> str:
    """``napari_calf.engine.models`` -> ``engine``; top-level files are the ground."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in RANKS:
        return parts[1]
    return "ground"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every ``napari_calf`` module the file imports (resolving relative imports)."""
    me = module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("napari_calf"):
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("napari_calf"))
    found.discard(me)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE_ROOT / rel).with_suffix(".py").is_file() or (PACKAGE_ROOT / rel).is_dir()


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE_ROOT.rglob("*.py") if p.name != "__main__.py")


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        mine = part_of(module)
        for target in targets:
            theirs = part_of(target)
            if theirs == mine or target == "napari_calf":
                continue
            if RANKS[theirs] >= RANKS[mine]:
                bad.append(f"{module} ({mine}) imports {target} ({theirs})")
    return sorted(bad)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _graph() -> dict[str, set[str]]:
    # Package faces (``__init__``) only name their files lazily; the edges that couple
    # files are the files' own imports.
    return {module_name(p): imported_modules(p) for p in _sources()}


def test_every_part_is_a_known_room() -> None:
    folders = {p.name for p in PACKAGE_ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(RANKS), f"a new subpackage needs a rank here: {folders - set(RANKS)}"
    assert {"io", "calf", "engine", "study", "phantom", "_cli", "_napari"} <= folders


def test_parts_import_only_downwards() -> None:
    assert layering_violations(_graph()) == []


def test_no_import_cycles_anywhere() -> None:
    assert import_cycles(_graph()) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("calf/rules.py", "from ..engine import models\n", "engine"),
        ("io/files.py", "from ..calf.stats import imbalance_stats\n", "calf"),
        ("engine/models.py", "def f():\n    from ..study import report\n", "study"),
        ("phantom/dataset.py", "from ..engine.models import build_model\n", "engine"),
    ],
)
def test_checker_catches_an_upward_import(module: str, source: str, expected: str) -> None:
    """The checks above would fail on a real violation (lazy imports included)."""
    path = PACKAGE_ROOT / module
    graph = _graph()
    graph[module_name(path)] = imported_modules(path, source)
    assert any(f"({expected})" in v for v in layering_violations(graph))


def test_checker_catches_a_cycle() -> None:
    graph = _graph()
    graph["napari_calf.calf.stats"] = graph["napari_calf.calf.stats"] | {"napari_calf.calf.losses"}
    graph["napari_calf.calf.losses"] = graph["napari_calf.calf.losses"] | {"napari_calf.calf.stats"}
    cycles = import_cycles(graph)
    assert any({"napari_calf.calf.losses", "napari_calf.calf.stats"} <= set(c) for c in cycles)
