"""The house's plan, checked: data moves one way (docs/architecture.md), and no module grows past 500 lines.

Every ``import`` in ``cim/`` is read with :mod:`ast` — including imports inside functions and under
``TYPE_CHECKING``, which are dependencies all the same — and each must run from a higher layer to a lower one, or stay
inside its own package. A new package must be placed in :data:`LAYERS` before it can be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

CIM = Path(__file__).resolve().parent.parent / "cim"

#: Lowest first. A module may import from its own package and from any lower layer, never from its own layer's other
#: packages or from above.
LAYERS: list[set[str]] = [
    {"cim", "cim.errors", "cim.settings", "cim.geodesy", "cim.progress"},  # foundation: no cim imports but these
    {"cim.model"},  # value types: assets, meshes, batches, alerts, shapes
    {"cim.bim", "cim.gis", "cim.synth"},  # sources: files in, batches out
    {"cim.store"},  # DuckDB and PostGIS stores, their SQL and migrations
    {"cim.queries", "cim.tiling", "cim.export", "cim.iot", "cim.render", "cim.cases"},  # readers: questions, tiles,
    # exports, live state, cases
    {"cim.pipeline", "cim.report"},  # orchestration: sources → store → tiling; reports over the readers
    {"cim.api"},  # the web layer
    {"cim.cli"},  # the command line
    {"cim.__main__"},  # python -m cim
]
MAX_LINES = 500


def _unit(module: str) -> str:
    """The layer unit a module belongs to: its top package below ``cim`` (``cim.store.sql`` → ``cim.store``)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _layer(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} is in no layer of tests/test_layers.py LAYERS: place it there")


def _module_name(path: Path) -> str:
    relative = path.relative_to(CIM.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for each cim module ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "cim"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] == "cim":
                found.append((node.lineno, module))
    return found


def _sources() -> list[Path]:
    return sorted(CIM.rglob("*.py"))


def test_imports_run_downward() -> None:
    wrong: list[str] = []
    for path in _sources():
        unit = _unit(_module_name(path))
        here = _layer(unit)
        for line, module in _imports(path):
            target = _unit(module)
            if target == unit or target == "cim":
                continue
            there = _layer(target)
            if there >= here:
                where = f"{path.relative_to(CIM.parent)}:{line}"
                wrong.append(f"{where} imports {module} ({'same layer' if there == here else 'a higher layer'})")
    assert not wrong, "imports against the one-way flow:\n" + "\n".join(wrong)


def test_modules_stay_small() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in _sources()}
    large = [f"{path.relative_to(CIM.parent)}: {n} lines" for path, n in sizes.items() if n > MAX_LINES]
    assert not large, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(large)
