"""The demo city generator at a small size: determinism, counts, ranges and geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from cim.errors import InvalidInput
from cim.synth.buildings import REFERENCE_YEAR
from cim.synth.generate import SynthSummary, generate_city
from cim.synth.layers import LAYERS
from cim.synth.places import DISTRICTS, to_metres
from tests.synth.conftest import BUILDINGS, SEED


def read(out: Path, layer: str) -> dict[str, list]:
    return pq.read_table(out / f"{layer}.parquet").to_pydict()


def test_the_same_seed_writes_the_same_files(city: tuple[Path, SynthSummary], tmp_path: Path) -> None:
    out, _ = city
    generate_city(out=tmp_path, buildings=BUILDINGS, seed=SEED, towers=1)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())  # history/<date>/ too
    assert files == sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    for name in files:
        if name.endswith(".ifc"):  # entity numbering varies run to run; GlobalIds, classes and names do not
            assert _guids(out / name) == _guids(tmp_path / name)
        else:
            assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name


def _guids(path: Path) -> list[tuple[str, str, str]]:
    import ifcopenshell

    model = ifcopenshell.open(str(path))
    return sorted((e.GlobalId, e.is_a(), e.Name or "") for e in model.by_type("IfcRoot"))


def test_another_seed_writes_another_city(city: tuple[Path, SynthSummary], tmp_path: Path) -> None:
    out, _ = city
    generate_city(out=tmp_path, buildings=BUILDINGS, seed=SEED + 1, towers=0)
    assert read(out, "buildings")["height_m"] != read(tmp_path, "buildings")["height_m"]


def test_every_layer_is_written_with_its_manifest(city: tuple[Path, SynthSummary]) -> None:
    out, summary = city
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["layers"]) == set(LAYERS) | {"tower_plots"}  # the fixture asks for a tower
    assert summary.layers["tower_plots"] == len(summary.towers) - 1  # tower-0 is written in IFC2X3 as well
    for layer, entry in manifest["layers"].items():
        assert pq.read_metadata(out / entry["file"]).num_rows == entry["rows"] == summary.layers[layer]
        assert Path(entry["mapping"]).name == f"synth-{layer.replace('_', '-')}.toml"
        geo = json.loads(pq.read_schema(out / entry["file"]).metadata[b"geo"])
        assert geo["columns"]["geometry"]["encoding"] == "WKB"
    assert summary.layers["buildings"] == BUILDINGS
    assert all(summary.layers[layer] > 0 for layer in LAYERS), summary.layers


def test_buildings_follow_their_district(city: tuple[Path, SynthSummary]) -> None:
    b = read(city[0], "buildings")
    assert set(b["district"]) == {d.name for d in DISTRICTS}
    storeys = np.array(b["storeys"])
    district = np.array(b["district"])
    towers = storeys >= 20
    assert towers[district == "Lujiazui"].mean() > 2 * towers[np.char.endswith(district.astype(str), "New Town")].mean()
    assert np.median(storeys[district == "Songjiang New Town"]) == 6  # 1990s six-storey estates
    years = np.array(b["year_built"])
    assert years.min() >= 1900 and years.max() <= REFERENCE_YEAR
    assert {"rectangle", "l_shape", "courtyard"} <= set(b["shape"])
    assert len(set(b["bid"])) == BUILDINGS


def test_footprints_are_valid_and_do_not_overlap(city: tuple[Path, SynthSummary]) -> None:
    b = read(city[0], "buildings")
    shapes = shapely.from_wkb(b["geometry"])
    assert shapely.is_valid(shapes).all()
    courtyards = shapes[np.array(b["shape"]) == "courtyard"]
    assert (shapely.get_num_interior_rings(courtyards) == 1).all()
    metric = shapely.transform(shapes, lambda xy: np.column_stack(to_metres(xy[:, 0], xy[:, 1])))
    left, right = shapely.STRtree(metric).query(metric, predicate="intersects")
    assert (left == right).all(), "two footprints intersect"
    area = shapely.area(metric)
    assert area.min() > 100 and area.max() < 20_000
    lon, lat = shapely.get_coordinates(shapes).T
    assert lon.min() > 120.8 and lon.max() < 122.2 and lat.min() > 30.6 and lat.max() < 31.6  # Shanghai


def test_mains_lie_below_ground_at_their_networks_depths(city: tuple[Path, SynthSummary]) -> None:
    p = read(city[0], "pipes")
    depth, network = np.array(p["depth_m"]), np.array(p["network"])
    for name, (shallowest, deepest) in {"gas": (0.8, 1.5), "water": (1.0, 2.0), "drainage": (2.0, 5.0)}.items():
        d = depth[network == name]
        assert len(d) and shallowest <= d.min() and d.max() <= deepest, name
    assert min(p["install_year"]) < 1996 and max(p["install_year"]) <= REFERENCE_YEAR  # some old mains
    assert set(p["material"]) >= {"PE", "steel", "ductile_iron"}


def test_lifts_have_install_years_old_new_and_unknown(city: tuple[Path, SynthSummary]) -> None:
    _, summary = city
    lifts = read(city[0], "lifts")
    years = [y for y in lifts["install_year"] if y is not None]
    assert len(years) < len(lifts["install_year"])  # some unknown
    assert min(years) <= 2010 and max(years) >= 2015
    assert summary.lifts_older_than_15_years == sum(1 for y in years if REFERENCE_YEAR - y > 15)
    buildings = set(read(city[0], "buildings")["bid"])
    assert {parent.removeprefix("buildings:") for parent in lifts["building_id"]} <= buildings


def test_sensors_watch_lifts_gas_mains_and_low_points(city: tuple[Path, SynthSummary]) -> None:
    s = read(city[0], "sensors")
    by_quantity = dict(zip(s["quantity"], zip(s["unit"], s["thresholds"], s["parent_id"], strict=True), strict=False))
    assert set(by_quantity) == {"lift_status", "gas_pressure", "water_level"}
    assert by_quantity["gas_pressure"][0] in ("kPa", "MPa") and by_quantity["gas_pressure"][2].startswith("pipes:GAS-")
    assert by_quantity["water_level"][1]["above"] > 0 and by_quantity["water_level"][2].startswith("nodes:ND-")
    assert by_quantity["lift_status"][1]["status"] == ["fault"]
    nodes = read(city[0], "nodes")
    low = {n for n, is_low in zip(nodes["node_id"], nodes["low_point"], strict=True) if is_low}
    levels = {
        p.removeprefix("nodes:") for p, q in zip(s["parent_id"], s["quantity"], strict=True) if q == "water_level"
    }
    assert levels == low


def test_some_bus_stops_are_within_50_m_of_a_metro_exit(city: tuple[Path, SynthSummary]) -> None:
    def metres(layer: str) -> np.ndarray:
        xy = shapely.get_coordinates(shapely.from_wkb(read(city[0], layer)["geometry"]))
        return np.column_stack(to_metres(xy[:, 0], xy[:, 1]))

    stops, exits = metres("bus_stops"), metres("metro_exits")
    nearest = np.linalg.norm(stops[:, None, :] - exits[None, :, :], axis=-1).min(axis=1)
    assert 0 < (nearest <= 50).sum() < len(stops)


def test_sizes_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--buildings 0"):
        generate_city(out=tmp_path, buildings=0)
    with pytest.raises(InvalidInput, match="--towers"):
        generate_city(out=tmp_path, buildings=10, towers=99)
