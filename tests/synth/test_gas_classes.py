"""The demo city's gas mains in GB 50028 pressure classes, and their pressure sensors' thresholds, units and
nominals by class."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cim.synth.generate import generate_city
from cim.synth.networks import GAS_CLASSES, GAS_MIN_DURATION_S, TRUNK_MM

KPA = {"kPa": 1.0, "MPa": 1000.0}
#: GB 50028's range for each class, kPa (low ≤ 0.01 MPa, medium B 0.01–0.2, medium A 0.2–0.4, sub-high 0.4–1.6)
GB_50028 = {"low": (0.0, 10.0), "medium_b": (10.0, 200.0), "medium_a": (200.0, 400.0), "sub_high": (400.0, 1600.0)}


@pytest.mark.parametrize("name", sorted(GAS_CLASSES))
def test_each_class_operates_and_alarms_inside_its_gb_50028_range(name: str) -> None:
    c = GAS_CLASSES[name]
    low, high = GB_50028[name]
    scale = KPA[c.unit]
    assert low <= c.below * scale < c.nominal * scale < c.above * scale <= high
    assert c.unit == ("MPa" if name == "sub_high" else "kPa")
    assert c.deadband == pytest.approx(0.05 * (c.above - c.below))


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A city big enough for every district to reach its trunk mains."""
    out = tmp_path_factory.mktemp("town")
    generate_city(out=out, buildings=6000, seed=7, towers=0)
    return out


def test_local_streets_carry_low_arterials_medium_and_a_few_trunk_mains_sub_high(town: Path) -> None:
    pipes = pq.read_table(town / "pipes.parquet").to_pylist()
    roads = {r["road_id"][1:]: r["road_class"] for r in pq.read_table(town / "roads.parquet").to_pylist()}
    names = {r["road_id"][1:]: r["name"] for r in pq.read_table(town / "roads.parquet").to_pylist()}
    gas = [p for p in pipes if p["network"] == "gas"]
    classes = Counter(p["pressure_class"] for p in gas)
    assert set(classes) == set(GAS_CLASSES)
    assert classes["low"] > classes["medium_a"] + classes["medium_b"] > classes["sub_high"] > 0
    assert {p["district"] for p in gas if p["pressure_class"] == "sub_high"} == {p["district"] for p in gas}
    for p in gas:
        road = roads[p["pipe_id"].removeprefix("GAS")]  # a street's mains share its segment number
        assert p["name"] == f"{names[p['pipe_id'].removeprefix('GAS')]} gas main"  # an alert names the main
        assert (p["pressure_class"] == "low") == (road == "local"), p
        if p["pressure_class"] == "sub_high":
            assert p["diameter_mm"] in TRUNK_MM
    assert all(p["pressure_class"] is None for p in pipes if p["network"] != "gas")


def test_gas_sensors_take_the_thresholds_unit_and_nominal_of_their_mains_class(town: Path) -> None:
    pipes = {f"pipes:{p['pipe_id']}": p for p in pq.read_table(town / "pipes.parquet").to_pylist()}
    sensors = [s for s in pq.read_table(town / "sensors.parquet").to_pylist() if s["quantity"] == "gas_pressure"]
    assert sensors
    units: Counter[str] = Counter()
    for s in sensors:
        c = GAS_CLASSES[pipes[s["parent_id"]]["pressure_class"]]
        t = s["thresholds"]
        assert (s["unit"], s["nominal"], t["below"], t["above"]) == (c.unit, c.nominal, c.below, c.above)
        assert t["unit"] == c.unit and t["deadband"] == c.deadband and t["min_duration_s"] == GAS_MIN_DURATION_S
        units[s["unit"]] += 1
    assert units["kPa"] > units["MPa"] > 0


def test_valves_and_chambers_are_named_after_the_crossing_of_two_of_the_towns_streets(town: Path) -> None:
    # an alert names the chamber that floods by its place, not by an id
    streets = {r["name"] for r in pq.read_table(town / "roads.parquet").to_pylist()}
    nodes = pq.read_table(town / "nodes.parquet").to_pylist()
    assert nodes
    for node in nodes:
        crossing, _, what = node["name"].rpartition(f" {node['network']} ")
        assert what == ("chamber" if node["network"] == "drainage" else "valve"), node
        district, _, roads = crossing.partition(" Road ")
        road, _, avenue = roads.partition(" × ")
        assert f"{district} Road {road}" in streets and f"{district} {avenue}" in streets, node
