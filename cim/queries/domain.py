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
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry
from typing_extensions import TypedDict

from cim.errors import InvalidInput
from cim.model import Asset, Kind, Reading
from cim.queries.sqlbits import checked_area, checked_text, degrees_for, sql_store, utm_epsg
from cim.store import AssetQuery, BBox, Store

#: How far up from a lift the building is looked for (lift → space → storey → building).
MAX_PARENT_HOPS = 4
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

    A lift's building is its nearest ancestor of kind building within :data:`MAX_PARENT_HOPS` steps (a lift may
    hang under a storey or a space). Lifts with no install date are listed under ``unknown_age`` with their
    building; old lifts under no building are listed under ``without_building``, oldest first: none is silently
    dropped.
    """
    result: OldLiftsOut = json.loads(old_lifts_json(store, years=years, as_of=as_of))
    return result


def old_lifts_json(store: Store, *, years: float = 15, as_of: date | None = None) -> bytes:
    """:func:`old_lifts` as UTF-8 JSON, built by the store (the web API sends it as it is).

    It reads the lift register (:func:`lift_register_sql`), a table the store keeps derived from the assets and
    rebuilds after they change: each lift with its building and the JSON text of both but for the age. Measured
    at 1M buildings / 100k lifts (bench/api_bench.py), joining lifts to a million buildings costs DuckDB ~50 ms
    before a column of the answer is read, and encoding 60k lifts another 100; the register is 100k rows.

    A building's lifts are listed oldest first, so for any cutoff its old lifts are the first ones in the
    register's order: whether a lift opens its building's object (it is the building's first) and whether it
    closes it (the next lift is not old) are read from the register's row, with no window over the answer (which
    cost DuckDB 30 ms of 50). The store returns one JSON fragment per row, in the answer's order; they are joined
    here.
    """
    if not 0 <= years <= 500:
        raise InvalidInput(f"years {years}", "must be between 0 and 500")
    as_of = as_of or date.today()
    db, s = sql_store(store)
    p = s.param
    register = "lift_register"
    stamp = db.refresh_derived(register, lift_register_sql(store))
    cutoff = years_before(as_of, years)
    key = (db, stamp, as_of, cutoff)  # the store itself, not its id: the cache keeps it, so no other takes its id
    cached = _OLD_LIFTS.get(key)
    if cached is not None:
        return cached
    age = f"CAST({s.rounded(f'(CAST({p} AS DATE) - install_date) / {_DAYS_PER_YEAR}', 1)} AS VARCHAR)"
    closes = f"part = {_IN_BUILDING} AND (next_install_date IS NULL OR next_install_date >= {p})"
    fragment = f"head || CASE WHEN part = {_UNKNOWN_AGE} THEN '' ELSE {age} || CASE WHEN {closes} "
    fragment += "THEN '}]}' ELSE '}' END END"
    sql = (
        f"SELECT part, position, {fragment} AS fragment FROM {register} "
        f"WHERE install_date < {p} OR install_date IS NULL"
    )
    if s.postgis:  # psycopg makes a Python string of each row (65k: 90 ms); PostgreSQL joins each list itself
        sql = f"SELECT part, string_agg(fragment, '' ORDER BY position) AS fragment FROM ({sql}) f GROUP BY part"
        sql += " ORDER BY part"
    # DuckDB returns the rows of one table in the order they were written (its documented order preservation):
    # the register's, the answer's. Sorting the 8 MB of fragments again cost a fifth of the time.
    rows = db.select(sql, [as_of, cutoff, cutoff])
    ends = np.searchsorted(rows.column("part").to_numpy(), [_IN_BUILDING, _WITHOUT_BUILDING, _UNKNOWN_AGE], "right")
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


#: The register's ``part``, in the order the answer's lists are read from it.
_IN_BUILDING, _WITHOUT_BUILDING, _UNKNOWN_AGE = 0, 1, 2


def lift_register_sql(store: Store) -> str:
    """Every lift with its building, as one query of ``assets`` with no parameters: ``lift_id``,
    ``install_date``, ``building_id``; ``part``, the list of the answer it may fall in (in a building, without
    one, unknown age); ``position``, its place in the answer (buildings in byte order of their ids, each
    building's lifts oldest first); ``next_install_date``, that of the building's next lift; and ``head``, the
    JSON text of its entry but for the age: a comma, then the building's object up to its lifts array if the
    lift is the building's first, then the lift's object up to its age.

    A lift's building is its nearest ancestor of kind building within :data:`MAX_PARENT_HOPS` steps; its location
    is the centre of its bounding box (plain columns: a million geometries are never read). Most lifts hang
    straight under their building, so each lift's parent is joined once, fetching what the answer needs in the
    same pass; only lifts whose parent is a storey or space climb on, each hop fetching just the ancestors of the
    lifts still climbing (with none left, the engine skips the scan).
    """
    _, s = sql_store(store)
    containers = "('building', 'storey', 'space')"
    hops = [
        f"h2 AS (SELECT id, kind, parent_id FROM assets WHERE id IN (SELECT up FROM walkers) AND kind IN {containers})"
    ]
    hops += [
        f"h{n} AS (SELECT id, kind, parent_id FROM assets WHERE id IN "
        f"(SELECT parent_id FROM h{n - 1} WHERE kind <> 'building') AND kind IN {containers})"
        for n in range(3, MAX_PARENT_HOPS + 1)
    ]
    climb_joins = " ".join(
        f"LEFT JOIN h{n} p{n} ON p{n}.id = {'w.up' if n == 2 else f'p{n - 1}.parent_id'}"
        for n in range(2, MAX_PARENT_HOPS + 1)
    )
    climbed_to = " ".join(f"WHEN p{n}.kind = 'building' THEN p{n}.id" for n in range(2, MAX_PARENT_HOPS + 1))
    lon, lat = (s.rounded(f"((min_{axis}) + (max_{axis})) / 2", 7) for axis in ("x", "y"))
    b_lon, b_lat = (expr.replace("(min_", "(b.min_").replace("(max_", "(b.max_") for expr in (lon, lat))
    building_json = (
        f"""'{{"id":' || {s.json_string("building_id")} || ',"name":' || {s.json_string("name")} || ',"lon":' """
        f"""|| {s.json_number("lon")} || ',"lat":' || {s.json_number("lat")} || ',"lifts":[' """
    )
    lift_json = (
        f"""'{{"id":' || {s.json_string("lift_id")} || ',"install_date":"' || CAST(install_date AS VARCHAR) """
        """|| '","age_years":' """
    )
    unknown_json = (
        f"""'{{"id":' || {s.json_string("lift_id")} || ',"building_id":' || {s.json_string("building_id")} || '}}'"""
    )
    in_building = f"install_date NULLS LAST, {s.bytewise('lift_id')}"  # oldest first
    part = (
        f"CASE WHEN install_date IS NULL THEN {_UNKNOWN_AGE} WHEN building_id IS NULL THEN {_WITHOUT_BUILDING} "
        f"ELSE {_IN_BUILDING} END"
    )
    first = f"row_number() OVER (PARTITION BY building_id ORDER BY {in_building}) = 1"
    head = (
        f"',' || CASE WHEN install_date IS NULL THEN {unknown_json} WHEN building_id IS NULL THEN {lift_json} "
        f"WHEN {first} THEN {building_json} || {lift_json} ELSE {lift_json} END"
    )
    return (
        "WITH lifts AS (SELECT id, parent_id, install_date FROM assets WHERE kind = 'lift'), "
        "hop1 AS (SELECT l.id AS lift_id, l.install_date, p1.id AS parent, p1.kind AS parent_kind, "
        "p1.parent_id AS up, p1.name, p1.min_x, p1.max_x, p1.min_y, p1.max_y FROM lifts l "
        f"LEFT JOIN assets p1 ON p1.id = l.parent_id AND p1.kind IN {containers}), "
        "walkers AS (SELECT lift_id, install_date, up FROM hop1 WHERE parent_kind <> 'building'), "
        f"{', '.join(hops)}, "
        f"climb AS (SELECT w.lift_id, w.install_date, CASE {climbed_to} END AS building_id "
        f"FROM walkers w {climb_joins}), "
        "found AS (SELECT lift_id, install_date, CASE WHEN parent_kind = 'building' THEN parent END AS building_id, "
        f"name, {lon} AS lon, {lat} AS lat FROM hop1 WHERE parent_kind IS NULL OR parent_kind = 'building' "
        f"UNION ALL SELECT c.lift_id, c.install_date, c.building_id, b.name, {b_lon}, {b_lat} FROM climb c "
        "LEFT JOIN assets b ON b.id = c.building_id) "
        f"SELECT lift_id, install_date, building_id, {part} AS part, {head} AS head, "
        f"lead(install_date) OVER (PARTITION BY building_id ORDER BY {in_building}) AS next_install_date, "
        f"row_number() OVER (ORDER BY {s.bytewise('building_id')} NULLS LAST, {in_building}) AS position FROM found "
        "ORDER BY part, position"
    )


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
    db, s = sql_store(store)
    p = s.param
    where = db.dialect.where(
        AssetQuery(
            kinds=(Kind.PIPE,),
            where=None if network is None else {"network": checked_text(network, what="network")},
            polygon=area,
        )
    )
    clauses = [where.sql, "(z_max < 0 OR (z_max IS NULL AND depth_m > 0))"]
    params: list[Any] = [shapely.to_wkb(area), *where.params]
    if older_than is not None:
        clauses.append(f"install_date < {p}")
        params.append(years_before(as_of or date.today(), older_than))
    if deeper_than is not None:
        clauses.append(f"depth_m > {p}")
        params.append(deeper_than)
    length = s.length_m(f"ST_Intersection(geom, {s.geom_param()})")
    sql = (
        f"SELECT id, network, install_date, depth_m, {length} AS length_in_area_m "
        f"FROM assets WHERE {' AND '.join(clauses)} ORDER BY id"
    )
    pipes: list[PipeOut] = [
        {
            "id": row["id"],
            "network": row["network"],
            "install_date": None if row["install_date"] is None else row["install_date"].isoformat(),
            "depth_m": row["depth_m"],
            "length_in_area_m": round(float(row["length_in_area_m"] or 0.0), 2),
        }
        for row in db.select(sql, params).to_pylist()
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
    db, s = sql_store(store)
    p = s.param
    extent = bbox or store.extent(kind=kind)
    if extent is None:
        return _near_out(kind, near_kind, distance_m, beyond, [])
    lon0, lat0 = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    dlon, dlat = degrees_for(distance_m, max(abs(extent[1]), abs(extent[3])))
    near_sql, near_params = s.near("a", "b", dlon, dlat)
    distance = s.distance_m("a.geom", "b.geom", utm_epsg=utm_epsg(lon0, lat0))
    a_where = f"a.kind = {p}"
    a_params: list[Any] = [str(kind)]
    if bbox is not None:
        a_where += f" AND a.max_x >= {p} AND a.min_x <= {p} AND a.max_y >= {p} AND a.min_y <= {p}"
        a_params += [bbox[0], bbox[2], bbox[1], bbox[3]]
    centre = "(a.min_x + a.max_x) / 2 AS lon, (a.min_y + a.max_y) / 2 AS lat"
    if beyond:
        sql = (
            f"SELECT a.id, a.name, {centre}, NULL AS near_id, NULL AS distance_m FROM assets a WHERE {a_where} "
            f"AND a.geom IS NOT NULL AND NOT EXISTS (SELECT 1 FROM assets b WHERE b.kind = {p} AND {near_sql} "
            f"AND {distance} <= {p}) ORDER BY a.id"
        )
        params = [*a_params, str(near_kind), *near_params, distance_m]
    else:
        sql = (
            f"SELECT DISTINCT ON (a.id) a.id, a.name, {centre}, b.id AS near_id, {distance} AS distance_m "
            f"FROM assets a JOIN assets b ON b.kind = {p} AND {near_sql} "
            f"WHERE {a_where} AND {distance} <= {p} ORDER BY a.id, distance_m, b.id"
        )
        params = [str(near_kind), *near_params, *a_params, distance_m]
    assets: list[NearOut] = [
        {
            "id": row["id"],
            "name": row["name"],
            "lon": _rounded(row["lon"]),
            "lat": _rounded(row["lat"]),
            "near_id": row["near_id"],
            "distance_m": None if row["distance_m"] is None else round(float(row["distance_m"]), 2),
        }
        for row in db.select(sql, params).to_pylist()
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
