"""What a command loads before it does its work: a small ``cim build`` must not pay for the modules of other commands.

Measured (2 cores shared with other work, medians of 7 alternating runs):
``cim build`` of a one-IFC-file store took 1.27-1.32 s, of which ~1.1 s were imports — every command's modules,
geopandas, pyogrio, pyproj, fastapi — and 0.13-0.23 s loading DuckDB's spatial extension, which a build
(bounding-box columns, no geometry, no asset written) does not use; now 0.72-0.78 s, over a floor of 0.58 s
(interpreter, cim.cli, typer + pydantic, numpy, pyarrow, pandas, duckdb, shapely). These tests catch a module-level
import that brings the rest back, without timing anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cim.cli import COMMANDS, main
from cim.store import open_store
from tests.tiling.conftest import small_city, write_city

ROOT = Path(__file__).resolve().parent.parent.parent

#: What no command's help needs: the data stack, GIS, IFC, web, rendering, settings.
HEAVY = (
    "numpy",
    "pyarrow",
    "pandas",
    "duckdb",
    "shapely",
    "geopandas",
    "pyogrio",
    "pyproj",
    "ifcopenshell",
    "fastapi",
    "starlette",
    "uvicorn",
    "pyvista",
    "vtk",
    "pydantic_settings",
)
#: What a build of a DuckDB store never needs: GIS readers, IFC, web, rendering.
NOT_FOR_A_BUILD = (
    "geopandas",
    "pyogrio",
    "pyproj",
    "ifcopenshell",
    "fastapi",
    "starlette",
    "uvicorn",
    "pyvista",
    "vtk",
)


def _loaded_after(argv: list[str], watched: tuple[str, ...], *, spy_spatial: bool = False) -> dict[str, object]:
    """Run ``cim <argv>`` in a fresh interpreter; which of ``watched`` it imported, and (``spy_spatial``, which
    imports the DuckDB backend first) how often it loaded DuckDB's spatial extension."""
    spy = (
        "import cim.store.duckdb as backend\n"
        "load = backend.load_spatial\n"
        "backend.load_spatial = lambda con: (loads.append(1), load(con))[1]\n"
    )
    script = f"""
import json, sys
loads = []
{spy if spy_spatial else ""}
from cim.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "loaded": sorted(m for m in {watched!r} if m in sys.modules), "spatial": len(loads)}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_help_of_a_command_loads_no_heavy_module() -> None:
    # (``cim --help`` reads every command's help, so it imports every command's module)
    for argv in (["build", "--help"], ["ingest", "--help"], ["info", "--help"]):
        assert _loaded_after(argv, HEAVY) == {"code": 0, "loaded": [], "spatial": 0}, argv


def test_importing_the_cli_loads_no_heavy_module() -> None:
    script = f"import sys, json; import cim.cli; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_a_small_build_loads_no_gis_ifc_or_web_module_and_not_the_spatial_extension(tmp_path: Path) -> None:
    store = tmp_path / "city.duckdb"
    write_city(store, *small_city(5))
    argv = ["build", "--out", str(tmp_path / "tiles"), "--store", str(store), "--json"]
    result = _loaded_after(argv, NOT_FOR_A_BUILD, spy_spatial=True)
    assert result == {"code": 0, "loaded": [], "spatial": 0}
    assert (tmp_path / "tiles" / "tileset.json").is_file()


def test_a_store_opened_without_spatial_still_gets_its_schema_and_reads(tmp_path: Path) -> None:
    """A new (or older) store needs its migrations, which create R-tree indexes: the extension is loaded for them."""
    path = tmp_path / "new.duckdb"
    with open_store(str(path), spatial=False) as store:
        assert store.count_by_kind() == {}
    write_city(path, *small_city(3))
    with open_store(str(path)) as store:
        counts = store.count_by_kind()
    with open_store(str(path), spatial=False) as store:
        assert store.count_by_kind() == counts and counts["building"] == 3


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_found_by_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main([name, "--help"])
    assert ended.value.code == 0
    assert "Usage:" in capsys.readouterr().out
