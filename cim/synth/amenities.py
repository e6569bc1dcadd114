"""What stands on and beside the streets: parks, metro exits, bus stops, smart poles and EV chargers.

Metro stations sit on every fourth crossing of arterials, with two to four exits on the pavements around it; most
stations get a bus stop within 50 m of an exit, the rest of the bus stops stand mid-block (more than 50 m away).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import shapely

from cim.synth.buildings import PLOTS, REFERENCE_YEAR, Typology
from cim.synth.grid import ARTERIAL_EVERY, BLOCK_H, BLOCK_W, PITCH_X, PITCH_Y, STREET_W, Edge, Frame, IntArray
from cim.synth.history import BASELINE_YEAR, Past
from cim.synth.layers import ids, join, pick
from cim.synth.networks import Layer
from cim.synth.places import District
from cim.synth.writer import lonlat_wkb, points_wkb

#: Metro lines serving each district (real line numbers).
LINES = {
    "LJZ": "2;14",
    "NBD": "4;12",
    "HQB": "2;10;17",
    "LGA": "16",
    "JDG": "11",
    "QPU": "17",
    "SJG": "9",
    "FXN": "5",
    "NHU": "16",
}
PAVEMENT = STREET_W / 2 - 3.0  # metres from the centreline
OPERATORS = ("State Grid", "TELD", "Star Charge", "NIO", "Tesla")
POLE_FUNCTIONS = ("lighting;camera;5g", "lighting;5g", "lighting;camera;environment", "lighting")
#: Smart poles and chargers went in from 2016, more each year (a quarter more than the year before).
INSTALLED_FROM = 2016
INSTALL_GROWTH = 1.25


def parks(district: District, frame: Frame, bi: IntArray, bj: IntArray, typology: IntArray) -> Layer:
    park = np.flatnonzero(typology == Typology.PARK)
    u0 = bi[park] * PITCH_X + STREET_W / 2 + 4.0
    v0 = bj[park] * PITCH_Y + STREET_W / 2 + 4.0
    w, h = BLOCK_W - 8.0, BLOCK_H - 8.0
    us = np.column_stack([u0, u0 + w, u0 + w, u0, u0])
    vs = np.column_stack([v0, v0, v0 + h, v0 + h, v0])
    x, y = frame.to_world(us, vs)
    polygons = np.asarray(shapely.polygons(np.stack([x, y], axis=-1)), dtype=object)
    n = len(park)
    columns = {
        "park_id": ids(f"P-{district.code}-", 0, n, width=5),
        "name": join(f"{district.name} Park ", pa.array(np.arange(1, n + 1)).cast(pa.string())),
        "area_m2": np.full(n, w * h),
        "district": np.full(n, district.name),
    }
    return columns, lonlat_wkb(polygons)


def transit(
    district: District, frame: Frame, node_i: IntArray, node_j: IntArray, edges: Edge, rng: np.random.Generator
) -> tuple[Layer, Layer]:
    """Metro exits around stations, and bus stops (some beside an exit, most mid-block)."""
    station = np.flatnonzero((node_i % ARTERIAL_EVERY == 0) & (node_j % ARTERIAL_EVERY == 0))
    s = len(station)
    exits_per = rng.integers(2, 5, s)
    st = np.repeat(np.arange(s), exits_per)
    corner = np.concatenate([rng.permutation(4)[:k] for k in exits_per]) if s else np.zeros(0, int)
    su, sv = np.where(corner % 2 == 0, 1.0, -1.0), np.where(corner < 2, 1.0, -1.0)
    eu = node_i[station][st] * PITCH_X + su * PAVEMENT
    ev = node_j[station][st] * PITCH_Y + sv * (PAVEMENT + 10.0)
    station_name = join(f"{district.name} Station ", pa.array(np.arange(1, s + 1)).cast(pa.string()))
    rank = np.arange(len(st)) - np.repeat(np.cumsum(exits_per) - exits_per, exits_per)
    exits = {
        "exit_id": ids(f"MX-{district.code}-", 0, len(st), width=5),
        "name": join(station_name.take(pa.array(st)), " Exit ", pa.array(rank + 1).cast(pa.string())),
        "station": station_name.take(pa.array(st)),
        "lines": np.full(len(st), LINES.get(district.code, "")),
        "district": np.full(len(st), district.name),
    }
    # a stop 15–40 m along the pavement from the first exit of most stations
    first = np.cumsum(exits_per) - exits_per
    near = first[rng.random(s) < 0.7]
    near_u = eu[near]
    near_v = ev[near] + np.sign(ev[near] - node_j[station][st[near]] * PITCH_Y) * rng.uniform(15, 40, len(near))
    # mid-block stops on a quarter of the streets
    mid = np.flatnonzero(rng.random(len(edges.i)) < 0.25)
    u0, v0, u1, v1 = (a[mid] for a in edges.ends())
    side = np.where(rng.random(len(mid)) < 0.5, 1.0, -1.0) * PAVEMENT
    horizontal = edges.horizontal[mid]
    mu = (u0 + u1) / 2 + np.where(horizontal, 0.0, side)
    mv = (v0 + v1) / 2 + np.where(horizontal, side, 0.0)
    bu, bv = np.concatenate([near_u, mu]), np.concatenate([near_v, mv])
    b = len(bu)
    stops = {
        "stop_id": ids(f"BS-{district.code}-", 0, b, width=5),
        "name": join(f"{district.name} Bus Stop ", pa.array(np.arange(1, b + 1)).cast(pa.string())),
        "routes": rng.integers(1, 7, b),
        "district": np.full(b, district.name),
    }
    return (exits, _points(frame, eu, ev)), (stops, _points(frame, bu, bv))


def poles(district: District, frame: Frame, edges: Edge, rng: np.random.Generator) -> tuple[Layer, Past]:
    """Smart poles every 44 m along both pavements of the arterials, and their past (those put up since the
    baseline were not there)."""
    arterial = np.flatnonzero(edges.arterial)
    per = 5
    e = np.repeat(arterial, per * 2)
    k = np.tile(np.arange(per * 2), len(arterial))
    t = ((k % per) + 0.5) / per
    side = np.where(k < per, 1.0, -1.0) * PAVEMENT
    u0, v0, u1, v1 = (a[e] for a in edges.ends())
    horizontal = edges.horizontal[e]
    u = u0 + t * (u1 - u0) + np.where(horizontal, 0.0, side)
    v = v0 + t * (v1 - v0) + np.where(horizontal, side, 0.0)
    n = len(e)
    years = install_years(n, rng)
    columns = {
        "pole_id": ids(f"SP-{district.code}-", 0, n),
        "functions": pick(POLE_FUNCTIONS, rng.integers(0, len(POLE_FUNCTIONS), n)),
        "height_m": rng.choice([8.0, 10.0, 12.0], n),
        "install_year": years,
        "district": np.full(n, district.name),
    }
    return (columns, _points(frame, u, v)), _installed(years)


def chargers(
    district: District, frame: Frame, bi: IntArray, bj: IntArray, typology: IntArray, rng: np.random.Generator
) -> tuple[Layer, Past]:
    """Rows of 2–8 kerbside chargers along one block in eight, and their past (those installed since the baseline
    were not there)."""
    has = np.flatnonzero((rng.random(len(bi)) < 0.125) & (PLOTS[typology] > 0))
    count = rng.integers(2, 9, len(has))
    block = np.repeat(has, count)
    k = np.arange(len(block)) - np.repeat(np.cumsum(count) - count, count)
    u = bi[block] * PITCH_X + STREET_W / 2 + 12.0 + 6.0 * k
    v = bj[block] * PITCH_Y + PAVEMENT
    n = len(block)
    fast = rng.random(n) < 0.4
    years = install_years(n, rng)
    columns = {
        "charger_id": ids(f"EV-{district.code}-", 0, n, width=6),
        "operator": pick(OPERATORS, rng.integers(0, len(OPERATORS), n)),
        "power_kw": np.where(fast, rng.choice([60.0, 120.0, 180.0], n), 7.0),
        "connector": np.where(fast, "GB/T DC", "GB/T AC"),
        "install_year": years,
        "status": pick(("available", "in_use", "offline"), rng.choice(3, n, p=[0.6, 0.35, 0.05])),
        "district": np.full(n, district.name),
    }
    return (columns, _points(frame, u, v)), _installed(years)


def install_years(n: int, rng: np.random.Generator) -> np.ndarray:
    """Install years from :data:`INSTALLED_FROM` to now, each year :data:`INSTALL_GROWTH` times the one before."""
    years = np.arange(INSTALLED_FROM, REFERENCE_YEAR + 1)
    weights = INSTALL_GROWTH ** (years - INSTALLED_FROM)
    return rng.choice(years, n, p=weights / weights.sum())


def _installed(year: np.ndarray) -> Past:
    return Past(since=np.where(year > BASELINE_YEAR, year, 0))


def _points(frame: Frame, u: np.ndarray, v: np.ndarray) -> pa.Array:
    return points_wkb(*frame.to_world(u, v))
