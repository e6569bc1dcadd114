"""A second, independent 3D Tiles client: loaders.gl (tools/tiles-reader/read.mjs) loads a whole tileset — external
tilesets, every glb, its EXT_mesh_features and EXT_structural_metadata — and the test compares what it decoded with
our own reading of the files and with the store.

One node process per tileset — 1.1–1.8 s and 90 MB for the small city's 13 glbs on a 2-core machine at load 34
(``/usr/bin/time node tools/tiles-reader/read.mjs TILESET``) — so :func:`tests.tiling.checks.check_all` runs it on
every tileset the tests build.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.model import KIND_FIELDS, Kind
from cim.store import AssetQuery, open_store
from cim.tiling.glb import read_glb
from tests.conftest import missing_service

READER = Path(__file__).resolve().parents[2] / "tools" / "tiles-reader"
PLACE_SLACK_M = 50.0  # how far loaders.gl may put a feature from where the store says it is
METRES_PER_DEGREE = 111_320.0


def run_reader(tileset: Path | str, *, features: int = 20) -> tuple[int, dict[str, Any]]:
    """loaders.gl's report on ``tileset`` (a tileset.json path or URL) and the reader's exit status."""
    node = shutil.which("node")
    if node is None or not (READER / "node_modules" / "@loaders.gl" / "3d-tiles").is_dir():
        missing_service(f"loaders.gl is not installed: run `npm ci --prefix {READER}` (needs node)")
    done = subprocess.run(
        [node or "node", str(READER / "read.mjs"), str(tileset), "--features", str(features)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if not done.stdout.strip():
        pytest.fail(f"the loaders.gl reader printed nothing (exit status {done.returncode}): {done.stderr[-2000:]}")
    return done.returncode, json.loads(done.stdout)


def read_with_loaders_gl(
    tileset: Path, store_rows: dict[str, dict[str, Any]] | None = None, *, features: int = 20
) -> dict[str, Any]:
    """Load ``tileset`` (its folder or its tileset.json) in loaders.gl and fail the test unless every tile loads and
    decodes, every glb written below the folder (and found by our own walk, for explicit trees) is among them with the
    same vertex, triangle and feature counts, and — given ``store_rows`` (see :func:`store_rows`) — the first
    ``features`` features of every property table carry the store's values and their vertices lie within 50 m of the
    store's bounds of them (horizontally and in height), inside the root's bounding sphere as loaders.gl computes it.
    Returns loaders.gl's report."""
    from tests.tiling.checks import walk  # checks.check_all calls this module

    folder = tileset if tileset.is_dir() else tileset.parent
    status, report = run_reader(folder / "tileset.json", features=features)
    if report["errors"] or status != 0:
        messages = "\n".join(f"{e['uri']}: {e['error'].splitlines()[0]}" for e in report["errors"])
        pytest.fail(f"loaders.gl failed on {folder} (exit status {status}):\n{messages}")
    decoded = {c["uri"]: c for c in report["contents"]}
    root = folder.resolve()
    written = (p for p in root.rglob("*.glb") if not p.relative_to(root).parts[0].startswith("."))  # not .state
    ours = {p.relative_to(root).as_posix(): p for p in written}
    assert sorted(decoded) == sorted(ours), "loaders.gl did not load every glb we wrote, or loaded others"
    if not any("implicitTiling" in t.read_text() for t in root.glob("*/tileset.json")):  # walk follows explicit trees
        walked = {t["glb"].resolve().relative_to(root).as_posix() for t in walk(folder)}
        assert sorted(walked) == sorted(ours), "loaders.gl and our walk found different glbs"
    for uri, path in ours.items():
        _compare_counts(uri, decoded[uri], path)
    if store_rows is not None:
        _compare_with_store(report, store_rows)
    return report


def _compare_counts(uri: str, content: dict[str, Any], path: Path) -> None:
    """Vertex, triangle and feature counts from the glb's own JSON, against what loaders.gl decoded."""
    doc, _ = read_glb(path.read_bytes())
    accessors = doc["accessors"]
    primitives = [p for mesh in doc.get("meshes", []) for p in mesh["primitives"]]
    vertices = sum(accessors[p["attributes"]["POSITION"]]["count"] for p in primitives)
    triangles = sum(
        (accessors[p["indices"]]["count"] if "indices" in p else accessors[p["attributes"]["POSITION"]]["count"]) // 3
        for p in primitives
    )
    tables = doc.get("extensions", {}).get("EXT_structural_metadata", {}).get("propertyTables", [])
    assert (content["vertices"], content["triangles"]) == (vertices, triangles), f"{uri}: vertex/triangle counts"
    assert content["features"] == sum(t["count"] for t in tables), f"{uri}: feature count"
    for table in content["tables"]:
        assert not table["undecoded"], f"{uri}: loaders.gl did not decode {table['class']}.{table['undecoded']}"
    for primitive, decoded in zip(primitives, content["primitives"], strict=True):
        ours = primitive.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", [])
        assert len(decoded["featureIds"]) == len(ours), f"{uri}: feature id sets"
        for spec, found in zip(ours, decoded["featureIds"], strict=True):
            count = tables[spec["propertyTable"]]["count"]
            assert found["length"] == accessors[primitive["attributes"]["POSITION"]]["count"], f"{uri}: ids per vertex"
            assert found["ids"] == list(range(count)), f"{uri}: the feature ids are not every row of the table"


def _compare_with_store(report: dict[str, Any], store_rows: dict[str, dict[str, Any]]) -> None:
    sphere = report["root"]["sphere"]
    centre, radius = np.asarray(sphere["center"]), float(sphere["radius"])
    checked = 0
    for content in report["contents"]:
        for table in content["tables"]:
            definitions = content["classes"][table["class"]]["properties"]
            for row in table["rows"]:
                asset_id = row["values"]["id"]
                assert asset_id in store_rows, f"{content['uri']}: feature {asset_id!r} is not in the store"
                expected = store_rows[asset_id]
                where = f"{content['uri']} {table['class']} row {row['row']} ({asset_id})"
                for name, value in expected["properties"].items():
                    _compare_value(where, name, definitions.get(name), row["values"], value)
                if row["ecef"] is not None:
                    point = np.asarray(row["ecef"])
                    assert np.linalg.norm(point - centre) <= radius + PLACE_SLACK_M, f"{where}: outside the root"
                    _compare_place(where, row["lonLatHeight"], expected)
                checked += 1
    assert checked, "no feature was compared with the store"


def _compare_value(where: str, name: str, definition: dict[str, Any] | None, values: dict[str, Any], want: Any) -> None:
    """One property as loaders.gl decoded it against the store's value; noData stands for a missing value and a
    property left out of the table (allowed only when it is not required) decodes to nothing."""
    assert definition is not None, f"{where}: the class has no property {name!r}"
    if name not in values:
        assert not definition.get("required", False), f"{where}: required property {name!r} is not in the table"
        assert want is None or want == definition.get("noData"), f"{where}: {name} left out but the store has {want!r}"
        return
    got = values[name]
    if want is None:
        assert "noData" in definition, f"{where}: {name} is {got!r} where the store has nothing, and has no noData"
        assert got == definition["noData"], f"{where}: {name} is {got!r}, not the noData value {definition['noData']!r}"
    elif definition.get("componentType") == "FLOAT32":
        assert got == float(np.float32(want)), f"{where}: {name} is {got!r}, the store has {want!r} (as float32)"
    else:
        assert got == want, f"{where}: {name} is {got!r}, the store has {want!r}"


def _compare_place(where: str, bounds: list[list[float]], expected: dict[str, Any]) -> None:
    """The feature's vertices as loaders.gl placed them (lon, lat, height bounds) against the store's geometry bounds
    and z range: every edge within :data:`PLACE_SLACK_M`."""
    (west, south, low), (east, north, high) = bounds
    want_west, want_south, want_east, want_north = expected["geom"].bounds
    metres_lon = METRES_PER_DEGREE * math.cos(math.radians((south + north) / 2))
    edges = {
        "west": (west - want_west) * metres_lon,
        "east": (east - want_east) * metres_lon,
        "south": (south - want_south) * METRES_PER_DEGREE,
        "north": (north - want_north) * METRES_PER_DEGREE,
    }
    want_low, want_high = expected["heights"]
    if want_low is not None and want_high is not None:
        edges |= {"bottom": low - want_low, "top": high - want_high}
    off = {edge: round(metres) for edge, metres in edges.items() if abs(metres) > PLACE_SLACK_M}
    assert not off, f"{where}: loaders.gl places its edges this many metres from the store's: {off}"


def store_rows(store_url: str | Path) -> dict[str, dict[str, Any]]:
    """Asset id → what the tiles must say of it, read from the store: ``properties`` (id, kind, name, parent_id,
    install_date, status, material, height_m, the kind's own columns and the year of the install date; None where the
    store has nothing), ``geom`` (lon/lat) and ``heights`` (z_min, z_max)."""
    with open_store(str(store_url)) as store:
        assets = store.find_assets(AssetQuery())
    rows: dict[str, dict[str, Any]] = {}
    for asset in assets:
        if asset.geom is None:
            continue
        text = {name: getattr(asset, name) or None for name in ("name", "parent_id", "status", "material")}
        properties: dict[str, Any] = {"id": asset.id, "kind": asset.kind.value, "height_m": asset.height_m, **text}
        properties["install_date"] = asset.install_date.isoformat() if asset.install_date else None
        for name, kinds in KIND_FIELDS.items():
            if asset.kind in kinds:
                properties[name] = getattr(asset, name)
        year = "year_built" if asset.kind is Kind.BUILDING else "install_year"
        properties[year] = asset.install_date.year if asset.install_date else None
        rows[asset.id] = {"properties": properties, "geom": asset.geom, "heights": (asset.z_min, asset.z_max)}
    return rows
