"""Streets and the buried mains under them: roads, gas / water / drainage pipes, their valves and chambers, and
the sensors on gas mains (pressure) and at drainage low points (water level).

Every street segment carries three mains, each on its own line under the carriageway (gas 7 m to one side, water
7 m to the other, drainage on the centreline), so each network is a connected grid with a node at every crossing.

Gas mains come in the pressure classes of GB 50028 (the pipe's ``pressure_class``): local streets carry low-pressure
distribution mains (≤ 0.01 MPa, run at about 2.5 kPa), arterials medium-pressure ones (B: 0.01–0.2 MPa for 300 mm,
A: 0.2–0.4 MPa for the larger), and two arterials of each district (one each way, crossing near its centre)
sub-high-pressure trunk mains (0.4–1.6 MPa, the largest diameters) — Shanghai's network has all of them. A pressure
sensor reads in the unit its class is read in (kPa, or MPa on trunk mains) and its thresholds, deadband and nominal
come from :data:`GAS_CLASSES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from cim.synth.buildings import REFERENCE_YEAR
from cim.synth.grid import ARTERIAL_EVERY, PITCH_X, PITCH_Y, STREET_W, Edge, Frame, IntArray
from cim.synth.history import (
    BASELINE_YEAR,
    DRAINAGE_INSPECTED_A_YEAR,
    GAS_RENEWED_A_YEAR,
    WATER_RENEWED_A_YEAR,
    Past,
    change_schedule,
)
from cim.synth.layers import LAYERS, ids, join, pick
from cim.synth.places import District, FloatArray, Profile
from cim.synth.writer import lonlat_wkb, points_wkb

Layer = tuple[dict[str, Any], pa.Array]  # columns, WKB geometry


@dataclass(frozen=True, slots=True)
class Main:
    network: str
    offset: float  # metres off the street centreline (grid u and v)
    depth: tuple[float, float]  # top of pipe below ground, local / arterial
    deep: tuple[float, float]
    local_mm: tuple[int, ...]
    arterial_mm: tuple[int, ...]
    node_type: str


MAINS = (
    Main("gas", 7.0, (0.8, 1.2), (1.0, 1.5), (100, 150, 200), (300, 400, 500), "valve"),
    Main("water", -7.0, (1.0, 1.5), (1.3, 2.0), (150, 200, 300), (500, 800, 1000), "valve"),
    Main("drainage", 0.0, (2.0, 3.5), (3.0, 5.0), (300, 400, 600, 800), (1000, 1200, 1500, 1800), "chamber"),
)
#: Years the mains of a district were laid (uniform, up to the history's baseline: later years are renewals), by
#: profile.
LAID: dict[Profile, tuple[int, int]] = {
    Profile.CBD: (1990, 2023),
    Profile.RIVERSIDE: (1955, 2024),
    Profile.HUB: (2005, 2024),
    Profile.NEW_CITY: (2005, 2024),
    Profile.NEW_TOWN: (1975, 2024),
}


@dataclass(frozen=True, slots=True)
class GasClass:
    """A gas main's pressure class: its operating (nominal) pressure and alarm limits, in the unit it is read in."""

    nominal: float
    below: float
    above: float
    unit: str

    @property
    def deadband(self) -> float:
        """5 % of the band between the limits: a reading must come back that far inside to close an alert."""
        return round(0.05 * (self.above - self.below), 4)


#: GB 50028 pressure classes, by the ``pressure_class`` a gas pipe carries.
GAS_CLASSES: dict[str, GasClass] = {
    "low": GasClass(2.5, 1.6, 3.5, "kPa"),  # ≤ 10 kPa; appliances want 2 kPa ± 50 %
    "medium_b": GasClass(150.0, 100.0, 190.0, "kPa"),  # 10–200 kPa
    "medium_a": GasClass(300.0, 220.0, 380.0, "kPa"),  # 200–400 kPa
    "sub_high": GasClass(0.8, 0.55, 1.05, "MPa"),  # 0.4–1.6 MPa (次高压)
}
TRUNK_MM = (500, 600, 700)
GAS_MIN_DURATION_S = 30.0  # a reading out of range for less than this is a blip, not an alert
WATER_DEADBAND_M = 0.05
WATER_MIN_DURATION_S = 60.0


def gas_pressure_class(diameter_mm: np.ndarray, trunk: np.ndarray) -> np.ndarray:
    """The pressure class of gas mains by diameter, trunk mains being sub-high.

    >>> gas_pressure_class(np.array([150, 300, 500, 600]), np.array([False, False, False, True])).tolist()
    ['low', 'medium_b', 'medium_a', 'sub_high']
    """
    return np.select([trunk, diameter_mm >= 400, diameter_mm >= 300], ["sub_high", "medium_a", "medium_b"], "low")


def road_names(district: District, edges: Edge) -> pa.Array:
    """The name of the street along each edge: "Lujiazui Road N12" (a main under it is named after it)."""
    line = np.where(edges.horizontal, edges.j, edges.i)
    side = np.where(edges.horizontal, np.where(line >= 0, 0, 1), np.where(line >= 0, 2, 3))
    return join(
        f"{district.name} ",
        pick(("Road N", "Road S", "Avenue E", "Avenue W"), side),
        pa.array(np.abs(line)).cast(pa.string()),
    )


def crossing_names(district: District, node_i: IntArray, node_j: IntArray) -> pa.Array:
    """The name of each crossing, after its two streets (as :func:`road_names` names them): "Lujiazui Road N3 ×
    Avenue E5" (a valve or chamber there is named after it)."""
    return join(
        f"{district.name} ",
        pick(("Road N", "Road S"), (node_j < 0).astype(int)),
        pa.array(np.abs(node_j)).cast(pa.string()),
        " × ",
        pick(("Avenue E", "Avenue W"), (node_i < 0).astype(int)),
        pa.array(np.abs(node_i)).cast(pa.string()),
    )


def roads(district: District, frame: Frame, edges: Edge, rng: np.random.Generator) -> Layer:
    n = len(edges.i)
    u0, v0, u1, v1 = edges.ends()
    arterial = edges.arterial
    columns = {
        "road_id": ids(f"R-{district.code}-", 0, n),
        "name": road_names(district, edges),
        "road_class": pick(("local", "arterial"), arterial.astype(int)),
        "width_m": np.where(arterial, STREET_W, STREET_W - 6.0),
        "district": np.full(n, district.name),
    }
    return columns, lonlat_wkb(_lines(frame, u0, v0, u1, v1, 0.0))


def pipes(district: District, frame: Frame, edges: Edge, rng: np.random.Generator) -> tuple[Layer, Layer, Past]:
    """All three mains under every street, the gas pressure sensors on one main in ten, and the mains' past: old gas
    and water mains renewed (oldest first), drainage mains inspected (``inspected_on``), a share of each a year."""
    u0, v0, u1, v1 = edges.ends()
    arterial = edges.arterial
    n = len(u0)
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "pipe_id",
            "name",
            "network",
            "diameter_mm",
            "material",
            "install_year",
            "depth_m",
            "status",
            "pressure_class",
            "length_m",
            "district",
            "inspected_on",
        )
    }
    changed: list[np.ndarray] = []
    before: dict[str, list[Any]] = {"install_year": [], "material": [], "inspected_on": []}
    geometry = []
    lo, hi = LAID[district.profile]
    line = np.where(edges.horizontal, edges.j, edges.i)
    trunk = arterial & (line == ARTERIAL_EVERY)  # two trunk mains a district, crossing near its centre
    streets = road_names(district, edges)
    for main in MAINS:
        diameter = np.where(arterial, rng.choice(main.arterial_mm, n), rng.choice(main.local_mm, n))
        if main.network == "gas":
            diameter = np.where(trunk, rng.choice(TRUNK_MM, n), diameter)
        depth = np.round(np.where(arterial, rng.uniform(*main.deep, n), rng.uniform(*main.depth, n)), 2)
        laid = rng.integers(lo, min(hi, BASELINE_YEAR + 1), n)
        material = _material(main.network, laid, diameter)
        last_inspected = np.full(n, None, dtype=object)
        if main.network == "drainage":
            # the plan: the mains older than ten years inspected; three in ten were before the baseline
            changed_years = change_schedule(laid <= REFERENCE_YEAR - 10, DRAINAGE_INSPECTED_A_YEAR, n, rng)
            earlier = rng.random(n) < 0.3
            last_inspected[earlier] = _dates(rng.integers(BASELINE_YEAR - 9, BASELINE_YEAR + 1, earlier.sum()), rng)
            inspected = last_inspected.copy()
            now = changed_years > 0
            inspected[now] = _dates(changed_years[now], rng)
            year, renewed_material = laid, material
        else:
            share = GAS_RENEWED_A_YEAR if main.network == "gas" else WATER_RENEWED_A_YEAR
            changed_years = change_schedule(laid < 2005, share, n, rng, oldest=laid)
            year = np.where(changed_years > 0, changed_years, laid)
            renewed_material = _material(main.network, year, diameter)
            inspected = last_inspected
        changed.append(changed_years)
        before["install_year"].append(laid)
        before["material"].append(material)
        before["inspected_on"].append(last_inspected)
        columns["inspected_on"].append(inspected)
        columns["pipe_id"].append(ids(f"{main.network.upper()}-{district.code}-", 0, n))
        columns["name"].append(join(streets, f" {main.network} main"))
        columns["network"].append(np.full(n, main.network))
        columns["diameter_mm"].append(diameter)
        columns["material"].append(renewed_material)
        columns["install_year"].append(year)
        columns["depth_m"].append(depth)
        columns["status"].append(np.full(n, "in_service"))
        pressure = gas_pressure_class(diameter, trunk) if main.network == "gas" else np.full(n, None)
        columns["pressure_class"].append(pressure)
        columns["length_m"].append(np.where(edges.horizontal, PITCH_X, PITCH_Y))
        columns["district"].append(np.full(n, district.name))
        geometry.append(_lines(frame, u0, v0, u1, v1, main.offset))
    layer = _concat(columns, "pipes")
    past = Past(changed=np.concatenate(changed), before=_concat(before, "pipes"))
    lines = np.concatenate(geometry)
    # gas pressure sensors, one main in ten
    gas = np.flatnonzero(rng.random(n) < 0.1)
    classes = [GAS_CLASSES[c] for c in np.asarray(columns["pressure_class"][0])[gas]]
    parent = pa.array(np.asarray(columns["pipe_id"][0].to_pylist(), dtype=object)[gas])
    m = len(gas)
    sensors = {
        "sensor_id": ids(f"S-GP-{district.code}-", 0, m),
        "parent_id": join("pipes:", parent),
        "name": join("Gas pressure ", parent),
        "quantity": np.full(m, "gas_pressure"),
        "unit": [c.unit for c in classes],
        "network": np.full(m, "gas"),
        "nominal": [c.nominal for c in classes],
        "thresholds": [
            {
                "above": c.above,
                "below": c.below,
                "status": None,
                "stale_s": 900.0,
                "severity": "critical",
                "unit": c.unit,
                "deadband": c.deadband,
                "min_duration_s": GAS_MIN_DURATION_S,
            }
            for c in classes
        ],
        "district": np.full(m, district.name),
    }
    midpoints = shapely.line_interpolate_point(lines[gas], 0.5, normalized=True)
    return (layer, lonlat_wkb(lines)), (sensors, lonlat_wkb(np.asarray(midpoints, dtype=object))), past


def nodes(
    district: District, frame: Frame, node_i: IntArray, node_j: IntArray, rng: np.random.Generator
) -> tuple[Layer, Layer]:
    """Valves and chambers at every crossing, and a water level sensor in every drainage low point."""
    n = len(node_i)
    u, v = node_i * PITCH_X, node_j * PITCH_Y
    x, y = frame.to_world(u, v)
    ground = np.round(4.0 + 0.8 * np.sin(x / 900.0) * np.cos(y / 700.0) + rng.normal(0, 0.25, n), 2)
    low = _local_minima(node_i, node_j, ground)
    lo, hi = LAID[district.profile]
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "node_id",
            "name",
            "network",
            "node_type",
            "depth_m",
            "ground_m",
            "low_point",
            "install_year",
            "district",
        )
    }
    points = []
    crossings = crossing_names(district, node_i, node_j)
    for main in MAINS:
        columns["node_id"].append(ids(f"N{main.network[0].upper()}-{district.code}-", 0, n))
        columns["name"].append(join(crossings, f" {main.network} {main.node_type}"))
        columns["network"].append(np.full(n, main.network))
        columns["node_type"].append(np.full(n, main.node_type))
        columns["depth_m"].append(np.round(rng.uniform(main.depth[0], main.deep[1], n), 2))
        columns["ground_m"].append(ground)
        columns["low_point"].append(low if main.network == "drainage" else np.zeros(n, bool))
        columns["install_year"].append(rng.integers(lo, min(hi, BASELINE_YEAR + 1), n))
        columns["district"].append(np.full(n, district.name))
        points.append(frame.to_world(u + main.offset, v + main.offset))
    layer = _concat(columns, "nodes")
    drain_x, drain_y = points[-1]
    chamber_ids = np.asarray(columns["node_id"][-1].to_pylist(), dtype=object)[low]
    depth = np.asarray(columns["depth_m"][-1])[low]
    m = int(low.sum())
    sensors = {
        "sensor_id": ids(f"S-WL-{district.code}-", 0, m),
        "parent_id": join("nodes:", pa.array(chamber_ids, pa.string())),
        "name": join("Water level ", pa.array(chamber_ids, pa.string())),
        "quantity": np.full(m, "water_level"),
        "unit": np.full(m, "m"),
        "network": np.full(m, "drainage"),
        "nominal": np.full(m, 0.3),
        "thresholds": [  # water within half a metre of the street: flooding
            {
                "above": round(d - 0.5, 2),
                "below": None,
                "status": None,
                "stale_s": 900.0,
                "severity": "critical",
                "deadband": WATER_DEADBAND_M,
                "min_duration_s": WATER_MIN_DURATION_S,
            }
            for d in depth.tolist()
        ],
        "district": np.full(m, district.name),
    }
    xs, ys = np.concatenate([p[0] for p in points]), np.concatenate([p[1] for p in points])
    return (layer, points_wkb(xs, ys)), (sensors, points_wkb(drain_x[low], drain_y[low]))


def _concat(columns: dict[str, list[Any]], layer: str) -> dict[str, Any]:
    schema = LAYERS[layer][0]
    return {
        name: pa.concat_arrays([pa.array(part, type=schema.field(name).type, from_pandas=True) for part in parts])
        for name, parts in columns.items()
    }


def _dates(years: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A day in each of ``years`` as ISO text, in its first 300 days (a date in the current year stays past)."""
    first_days = np.asarray((years - 1970).astype("datetime64[Y]"), dtype="datetime64[D]")
    days = first_days + rng.integers(0, 300, len(years)).astype("timedelta64[D]")
    return np.datetime_as_string(days, unit="D").astype(object)


def _lines(frame: Frame, u0: FloatArray, v0: FloatArray, u1: FloatArray, v1: FloatArray, offset: float) -> Any:
    x0, y0 = frame.to_world(u0 + offset, v0 + offset)
    x1, y1 = frame.to_world(u1 + offset, v1 + offset)
    coords = np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1)
    return np.asarray(shapely.linestrings(coords), dtype=object)


def _material(network: str, year: np.ndarray, diameter: np.ndarray) -> np.ndarray:
    if network == "gas":
        return np.select([year < 1990, year < 2005, diameter <= 200], ["cast_iron", "steel", "PE"], "steel")
    if network == "water":
        return np.select([year < 1985, year < 2005, diameter <= 300], ["grey_cast_iron", "steel", "PE"], "ductile_iron")
    return np.select([year < 1980, diameter >= 1000, year < 2005], ["brick", "reinforced_concrete", "concrete"], "HDPE")


def _local_minima(i: IntArray, j: IntArray, ground: FloatArray) -> np.ndarray:
    """Crossings lower than every neighbouring crossing (at least two neighbours): where storm water gathers."""
    if len(i) == 0:
        return np.zeros(0, bool)
    gi, gj = i - i.min() + 1, j - j.min() + 1
    grid = np.full((gi.max() + 2, gj.max() + 2), np.inf)
    grid[gi, gj] = ground
    neighbours = np.stack([grid[gi - 1, gj], grid[gi + 1, gj], grid[gi, gj - 1], grid[gi, gj + 1]])
    return np.asarray((ground < neighbours.min(axis=0)) & (np.isfinite(neighbours).sum(axis=0) >= 2))
