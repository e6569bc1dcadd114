"""The questions city engineers ask, each one SQL statement in the store (nothing loaded into Python to filter).

- :func:`old_lifts` — buildings with lifts older than N years, lifts of unknown age listed apart
- :func:`buried_pipes` — below-ground pipes of a network inside an area, with their length inside it
- :func:`within_distance` — assets of one kind within (or beyond) D metres of assets of another, measured in metres
- :func:`asset_detail` — an asset with its parent chain, children and its sensors' latest state
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
from shapely.geometry.base import BaseGeometry
from typing_extensions import TypedDict

from cim.errors import InvalidInput
from cim.model import Asset, Kind, Reading
from cim.queries.checks import checked_area, checked_text
from cim.store import AssetQuery, BBox, Store
from cim.store.questions import (
    IN_BUILDING,
    UNKNOWN_AGE,
    WITHOUT_BUILDING,
    buried_pipe_rows,
    near_rows,
    old_lift_fragments,
    refresh_lift_register,
)
from cim.store.sqlstore import sql_store

#: How many children an asset detail lists (a building may hold tens of thousands of elements).
MAX_CHILDREN = 1_000
MAX_DISTANCE_M = 50_000.0
_DAYS_PER_YEAR = 365.2425


class LiftOut(TypedDict):
    id: str
    install_date: str
    age_years: float


class LiftBuildingOut(TypedDict):
    id: str
    name: str | None
    lon: float | None
    lat: float | None
    lifts: list[LiftOut]


class UnknownAgeOut(TypedDict):
    id: str
    building_id: str | None


class OldLiftsOut(TypedDict):
    buildings: list[LiftBuildingOut]
    unknown_age: list[UnknownAgeOut]
    without_building: list[LiftOut]


class PipeOut(TypedDict):
    id: str
    network: str | None
    install_date: str | None
    depth_m: float | None
    diameter_mm: float | None
    length_in_area_m: float


class BuriedPipesOut(TypedDict):
    pipes: list[PipeOut]
    total_length_m: float


class NearOut(TypedDict):
    id: str
    name: str | None
    lon: float | None
    lat: float | None
    near_id: str | None
    distance_m: float | None


class WithinDistanceOut(TypedDict):
    kind: str
    near_kind: str
    distance_m: float
    beyond: bool
    assets: list[NearOut]


def years_before(day: date, years: float) -> date:
    """The date ``years`` (whole or fractional) before ``day``; 29 February falls back to the 28th.

    Before the first day of the calendar it is that first day (nothing is older):

    >>> years_before(date(2024, 2, 29), 15), years_before(date(2026, 1, 1), 0.5)
    (datetime.date(2009, 2, 28), datetime.date(2025, 7, 2))
    >>> years_before(date(379, 3, 7), 416.5)
    datetime.date(1, 1, 1)
    """
    whole = int(years)
    if day.year - whole < date.min.year:
        return date.min
    try:
        shifted = day.replace(year=day.year - whole)
    except ValueError:
        shifted = day.replace(year=day.year - whole, day=28)
    return date.fromordinal(max(shifted.toordinal() - round((years - whole) * _DAYS_PER_YEAR), 1))


def age_in_years(installed: date, as_of: date) -> float:
    return round((as_of - installed).days / _DAYS_PER_YEAR, 1)


def old_lifts(store: Store, *, years: float = 15, as_of: date | None = None) -> OldLiftsOut:
    """Buildings whose lifts were installed more than ``years`` before ``as_of`` (default today): buildings in
    id order, each with its old lifts, oldest first.

    A lift's building is its nearest ancestor of kind building within
    :data:`~cim.store.questions.MAX_PARENT_HOPS` steps (a lift may
    hang under a storey or a space). Lifts with no install date are listed under ``unknown_age`` with their
    building; old lifts under no building are listed under ``without_building``, oldest first: none is silently
    dropped.
    """
    result: OldLiftsOut = json.loads(old_lifts_json(store, years=years, as_of=as_of))
    return result


def old_lifts_json(store: Store, *, years: float = 15, as_of: date | None = None) -> bytes:
    """:func:`old_lifts` as UTF-8 JSON, built by the store (the web API sends it as it is).

    It reads the lift register (:func:`cim.store.questions.lift_register_sql`), a table the store keeps derived
    from the assets and rebuilds after they change: each lift with its building and the JSON text of both but for
    the age. Measured at 1M buildings / 100k lifts (bench/api_bench.py), joining lifts to a million buildings costs
    DuckDB ~50 ms before a column of the answer is read, and encoding 60k lifts another 100; the register is 100k
    rows.

    A building's lifts are listed oldest first, so for any cutoff its old lifts are the first ones in the
    register's order: whether a lift opens its building's object (it is the building's first) and whether it
    closes it (the next lift is not old) are read from the register's row, with no window over the answer (which
    cost DuckDB 30 ms of 50). The store returns one JSON fragment per row, in the answer's order; they are joined
    here.
    """
    if not 0 <= years <= 500:
        raise InvalidInput(f"years {years}", "must be between 0 and 500")
    as_of = as_of or date.today()
    stamp = refresh_lift_register(store)
    cutoff = years_before(as_of, years)
    # the store itself, not its id: the cache keeps it, so no other takes its id; a view as of a date is a new
    # object at every request: its store, with the stamp of its own register (which holds the date)
    db = sql_store(store)
    key = (db.view_of or db, stamp, as_of, cutoff)
    cached = _OLD_LIFTS.get(key)
    if cached is not None:
        return cached
    rows = old_lift_fragments(store, as_of=as_of, cutoff=cutoff, days_per_year=_DAYS_PER_YEAR)
    ends = np.searchsorted(rows.column("part").to_numpy(), [IN_BUILDING, WITHOUT_BUILDING, UNKNOWN_AGE], "right")
    fragments = rows.column("fragment")
    # every fragment starts with a comma; each list drops its first
    buildings, without, unknown = (
        joined_text(fragments, start, end)[1:] for start, end in zip([0, *ends[:-1]], ends, strict=True)
    )
    answer = b"".join(
        (b'{"buildings":[', buildings, b'],"unknown_age":[', unknown, b'],"without_building":[', without, b"]}")
    )
    _OLD_LIFTS.put(key, answer)
    return answer


class _AnswerCache:
    """Recent answers by key, up to ``max_bytes`` in all, least recently used dropped first; safe across threads.

    For :func:`old_lifts_json`: a command centre's panels and dashboards ask the same question again and again,
    and the answer only changes when the lift register is rebuilt (its stamp is in the key). On the demo city an
    answer is 1.1 MB and costs 14 ms (DuckDB) / 36 ms (PostGIS); from here, a dict look-up."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
            return found

    def put(self, key: Hashable, answer: bytes) -> None:
        if len(answer) > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._answers:
                return
            self._answers[key] = answer
            self._bytes += len(answer)
            while self._bytes > self.max_bytes:
                _, dropped = self._answers.popitem(last=False)
                self._bytes -= len(dropped)


_OLD_LIFTS = _AnswerCache(max_bytes=64 * 1024 * 1024)


def joined_text(texts: pa.ChunkedArray, start: int, end: int) -> bytes:
    """The UTF-8 bytes of the strings ``texts[start:end]`` joined, copied straight from Arrow's buffers: the
    strings of a chunk lie end to end in its data buffer. Making 60k Python strings to join them cost 11 ms."""
    pieces, chunk_start = [], 0
    for chunk in texts.cast(pa.string()).chunks:
        low, high = max(start - chunk_start, 0), min(end - chunk_start, len(chunk))
        if low < high:
            offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
            pieces.append(memoryview(chunk.buffers()[2])[offsets[low] : offsets[high]])
        chunk_start += len(chunk)
    return b"".join(pieces)


def buried_pipes(
    store: Store,
    *,
    area: BaseGeometry,
    network: str | None = None,
    older_than: float | None = None,
    deeper_than: float | None = None,
    as_of: date | None = None,
) -> BuriedPipesOut:
    """Below-ground pipes (``z_max`` < 0, or no heights but a depth) of ``network`` (all when None) that run
    inside ``area`` (a lon/lat polygon), optionally installed more than ``older_than`` years before ``as_of`` or
    lying deeper than ``deeper_than`` metres, each with its spheroidal length inside the area."""
    area = checked_area(area)
    if older_than is not None and not 0 <= older_than <= 500:
        raise InvalidInput(f"older_than {older_than}", "must be between 0 and 500 years")
    if deeper_than is not None and not 0 <= deeper_than <= 1000:
        raise InvalidInput(f"deeper_than {deeper_than}", "must be between 0 and 1000 m")
    rows = buried_pipe_rows(
        store,
        area=area,
        network=None if network is None else checked_text(network, what="network"),
        installed_before=None if older_than is None else years_before(as_of or date.today(), older_than),
        deeper_than=deeper_than,
    )
    pipes: list[PipeOut] = [
        {
            "id": row["id"],
            "network": row["network"],
            "install_date": None if row["install_date"] is None else row["install_date"].isoformat(),
            "depth_m": row["depth_m"],
            "diameter_mm": row["diameter_mm"],
            "length_in_area_m": round(float(row["length_in_area_m"] or 0.0), 2),
        }
        for row in rows
    ]
    return {"pipes": pipes, "total_length_m": round(sum(p["length_in_area_m"] for p in pipes), 2)}


def within_distance(
    store: Store,
    *,
    kind: Kind,
    near_kind: Kind,
    distance_m: float,
    bbox: BBox | None = None,
    beyond: bool = False,
) -> WithinDistanceOut:
    """Assets of ``kind`` (inside ``bbox`` when given) with an asset of ``near_kind`` within ``distance_m`` metres,
    each with the nearest one; with ``beyond``, those with none that near. Distances are metres on the ground
    (PostGIS geography; DuckDB in the area's UTM zone), never degrees."""
    if not 0 <= distance_m <= MAX_DISTANCE_M:
        raise InvalidInput(f"distance {distance_m} m", f"must be between 0 and {MAX_DISTANCE_M:,.0f} m")
    extent = bbox or store.extent(kind=kind)
    if extent is None:
        return _near_out(kind, near_kind, distance_m, beyond, [])
    rows = near_rows(
        store, kind=kind, near_kind=near_kind, distance_m=distance_m, extent=extent, bbox=bbox, beyond=beyond
    )
    assets: list[NearOut] = [
        {
            "id": row["id"],
            "name": row["name"],
            "lon": _rounded(row["lon"]),
            "lat": _rounded(row["lat"]),
            "near_id": row["near_id"],
            "distance_m": None if row["distance_m"] is None else round(float(row["distance_m"]), 2),
        }
        for row in rows
    ]
    return _near_out(kind, near_kind, distance_m, beyond, assets)


def _near_out(kind: Kind, near_kind: Kind, distance_m: float, beyond: bool, assets: list[NearOut]) -> WithinDistanceOut:
    return {
        "kind": str(kind),
        "near_kind": str(near_kind),
        "distance_m": distance_m,
        "beyond": beyond,
        "assets": assets,
    }


@dataclass(frozen=True, slots=True)
class AssetDetail:
    """An asset, its ancestors (nearest first), its children (at most :data:`MAX_CHILDREN`) and the latest state
    of each sensor bound to it (or of itself, when it is a sensor)."""

    asset: Asset
    parents: list[Asset]
    children: list[Asset]
    children_truncated: bool
    latest_state: dict[str, Reading] = field(default_factory=dict)


def asset_detail(store: Store, asset_id: str) -> AssetDetail:
    """The asset ``asset_id`` with its surroundings in the model, or :class:`~cim.errors.NotFound`."""
    asset = store.get_asset(checked_text(asset_id))
    parents: list[Asset] = []
    seen = {asset.id}
    parent_id = asset.parent_id
    while parent_id is not None and parent_id not in seen and len(parents) < 32:
        found = store.find_assets(AssetQuery(ids=[parent_id]))
        if not found:
            break
        parents.append(found[0])
        seen.add(parent_id)
        parent_id = found[0].parent_id
    children = store.find_assets(AssetQuery(parent_id=asset.id, limit=MAX_CHILDREN + 1))
    if len(children) <= MAX_CHILDREN:  # all children are here, sensors among them: no second query (-2 ms)
        sensors = [a.id for a in children if a.kind is Kind.SENSOR]
    else:
        sensors = [a.id for a in store.find_assets(AssetQuery(parent_id=asset.id, kinds=(Kind.SENSOR,)))]
    if asset.kind is Kind.SENSOR:
        sensors.append(asset.id)
    return AssetDetail(
        asset=asset,
        parents=parents,
        children=children[:MAX_CHILDREN],
        children_truncated=len(children) > MAX_CHILDREN,
        latest_state=store.latest_states(sensors),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 7)
