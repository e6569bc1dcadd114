"""The SQL of the questions city engineers ask (:mod:`cim.queries.domain`), built and run in the store.

The callers check the parameters and shape the answers; this module only writes the statements, in the store's
:class:`~cim.store.sql.Dialect`, and runs them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from cim.geodesy import degrees_for, utm_epsg
from cim.model import Kind
from cim.store.base import AssetQuery, BBox, Store
from cim.store.near_bands import PER_BAND, Band, bands_for, run_bands
from cim.store.sql import Dialect, Where
from cim.store.sqlstore import SqlStore, sql_store

#: How far up from a lift the building is looked for (lift → space → storey → building).
MAX_PARENT_HOPS = 4
#: The lift register's ``part``, in the order the old-lifts answer's lists are read from it.
IN_BUILDING, WITHOUT_BUILDING, UNKNOWN_AGE = 0, 1, 2
#: Whole assets below ground: heights under zero, or no heights but a depth.
BELOW_GROUND = "(z_max < 0 OR (z_max IS NULL AND depth_m > 0))"
_LIFT_REGISTER = "lift_register"


def refresh_lift_register(store: Store) -> str:
    """Rebuild the lift register (:func:`lift_register_sql`) if the assets changed since it was built; the
    version stamp of the data it holds (a key for caching answers read from it)."""
    db = sql_store(store)
    return db.refresh_derived(_LIFT_REGISTER, lift_register_sql(db.dialect, db.assets_table))[0]


def old_lift_fragments(store: Store, *, as_of: date, cutoff: date, days_per_year: float) -> pa.Table:
    """``part`` and ``fragment`` of every lift of the register installed before ``cutoff`` or of unknown age, in
    the answer's order: the JSON text of its entry, its age counted to ``as_of``, closing its building's object
    when the building's next lift is not old. A backend that :attr:`~cim.store.sql.Dialect.joins_text_rows`
    returns one row per part, its fragments joined."""
    db = sql_store(store)
    s, p = db.dialect, db.dialect.param
    age = f"CAST({s.rounded(f'(CAST({p} AS DATE) - install_date) / {days_per_year}', 1)} AS VARCHAR)"
    closes = f"part = {IN_BUILDING} AND (next_install_date IS NULL OR next_install_date >= {p})"
    fragment = f"head || CASE WHEN part = {UNKNOWN_AGE} THEN '' ELSE {age} || CASE WHEN {closes} "
    fragment += "THEN '}]}' ELSE '}' END END"
    sql = (
        f"SELECT part, position, {fragment} AS fragment FROM {db.derived_name(_LIFT_REGISTER)} "
        f"WHERE install_date < {p} OR install_date IS NULL"
    )
    if s.joins_text_rows:
        sql = f"SELECT part, string_agg(fragment, '' ORDER BY position) AS fragment FROM ({sql}) f GROUP BY part"
        sql += " ORDER BY part"
    # DuckDB returns the rows of one table in the order they were written (its documented order preservation):
    # the register's, the answer's. Sorting the 8 MB of fragments again cost a fifth of the time.
    return db.select(sql, [as_of, cutoff, cutoff])


def lift_register_sql(s: Dialect, table: str = "assets") -> str:
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
    containers = "('building', 'storey', 'space')"
    hops = [
        f"h2 AS (SELECT id, kind, parent_id FROM {table} AS assets "
        f"WHERE id IN (SELECT up FROM walkers) AND kind IN {containers})"
    ]
    hops += [
        f"h{n} AS (SELECT id, kind, parent_id FROM {table} AS assets WHERE id IN "
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
        f"CASE WHEN install_date IS NULL THEN {UNKNOWN_AGE} WHEN building_id IS NULL THEN {WITHOUT_BUILDING} "
        f"ELSE {IN_BUILDING} END"
    )
    first = f"row_number() OVER (PARTITION BY building_id ORDER BY {in_building}) = 1"
    head = (
        f"',' || CASE WHEN install_date IS NULL THEN {unknown_json} WHEN building_id IS NULL THEN {lift_json} "
        f"WHEN {first} THEN {building_json} || {lift_json} ELSE {lift_json} END"
    )
    return (
        f"WITH lifts AS (SELECT id, parent_id, install_date FROM {table} AS assets WHERE kind = 'lift'), "
        "hop1 AS (SELECT l.id AS lift_id, l.install_date, p1.id AS parent, p1.kind AS parent_kind, "
        "p1.parent_id AS up, p1.name, p1.min_x, p1.max_x, p1.min_y, p1.max_y FROM lifts l "
        f"LEFT JOIN {table} p1 ON p1.id = l.parent_id AND p1.kind IN {containers}), "
        "walkers AS (SELECT lift_id, install_date, up FROM hop1 WHERE parent_kind <> 'building'), "
        f"{', '.join(hops)}, "
        f"climb AS (SELECT w.lift_id, w.install_date, CASE {climbed_to} END AS building_id "
        f"FROM walkers w {climb_joins}), "
        "found AS (SELECT lift_id, install_date, CASE WHEN parent_kind = 'building' THEN parent END AS building_id, "
        f"name, {lon} AS lon, {lat} AS lat FROM hop1 WHERE parent_kind IS NULL OR parent_kind = 'building' "
        f"UNION ALL SELECT c.lift_id, c.install_date, c.building_id, b.name, {b_lon}, {b_lat} FROM climb c "
        f"LEFT JOIN {table} b ON b.id = c.building_id) "
        f"SELECT lift_id, install_date, building_id, {part} AS part, {head} AS head, "
        f"lead(install_date) OVER (PARTITION BY building_id ORDER BY {in_building}) AS next_install_date, "
        f"row_number() OVER (ORDER BY {s.bytewise('building_id')} NULLS LAST, {in_building}) AS position FROM found "
        "ORDER BY part, position"
    )


def buried_pipe_rows(
    store: Store,
    *,
    area: BaseGeometry,
    network: str | None,
    installed_before: date | None,
    deeper_than: float | None,
) -> list[dict[str, Any]]:
    """``id``, ``network``, ``install_date``, ``depth_m``, ``diameter_mm`` and ``length_in_area_m`` (spheroidal
    metres) of the below-ground pipes of ``network`` (all when None) inside ``area``, by id."""
    db = sql_store(store)
    table = db.assets_table
    s, p = db.dialect, db.dialect.param
    where = s.where(
        AssetQuery(kinds=(Kind.PIPE,), where=None if network is None else {"network": network}, polygon=area)
    )
    clauses = [where.sql, BELOW_GROUND]
    params: list[Any] = [shapely.to_wkb(area), *where.params]
    for bound, value in (("install_date <", installed_before), ("depth_m >", deeper_than)):
        if value is not None:
            clauses.append(f"{bound} {p}")
            params.append(value)
    length = s.length_m(f"ST_Intersection(geom, {s.geom_param()})")
    sql = (
        f"SELECT id, network, install_date, depth_m, diameter_mm, {length} AS length_in_area_m "
        f"FROM {table} AS assets WHERE {' AND '.join(clauses)} ORDER BY id"
    )
    rows: list[dict[str, Any]] = db.select(sql, params).to_pylist()
    return rows


def near_rows(
    store: Store,
    *,
    kind: Kind,
    near_kind: Kind,
    distance_m: float,
    extent: BBox,
    bbox: BBox | None,
    beyond: bool,
    banded: bool | None = None,
    per_band: int = PER_BAND,
) -> list[dict[str, Any]]:
    """``id``, ``name``, ``lon``/``lat`` (bbox centre), ``near_id`` and ``distance_m`` (metres on the ground) of
    each asset of ``kind`` (inside ``bbox`` when given) with its nearest asset of ``near_kind`` within
    ``distance_m``; with ``beyond``, those with none that near (``near_id`` and ``distance_m`` NULL); by id.
    ``extent`` covers the assets asked about (it sets the pruning margin and, for DuckDB, the UTM zone).

    From :data:`~cim.store.near_bands.BANDED_FROM` assets asked about (or with ``banded``) the statement runs by
    bands of them side by side (:mod:`cim.store.near_bands`), answering the same rows."""
    db = sql_store(store)
    p = db.dialect.param
    a_where = f"a.kind = {p}"
    a_params: list[Any] = [str(kind)]
    if bbox is not None:
        a_where += f" AND a.max_x >= {p} AND a.min_x <= {p} AND a.max_y >= {p} AND a.min_y <= {p}"
        a_params += [bbox[0], bbox[2], bbox[1], bbox[3]]
    selected = Where(a_where, a_params)
    bands = bands_for(db, selected, "a", banded=banded, per_band=per_band)

    def band_rows(band: Band) -> list[dict[str, Any]]:
        within = band.where(db.dialect, "a")
        return _near_rows(db, Where(f"{a_where} AND {within.sql}", [*a_params, *within.params]),
                          near_kind=near_kind, distance_m=distance_m, extent=extent, beyond=beyond)  # fmt: skip

    parts = run_bands(bands, band_rows)
    if len(parts) == 1:
        return parts[0]
    # each band comes sorted by id; the stores list ids in byte order (DuckDB; PostgreSQL with the C collation)
    return sorted((row for part in parts for row in part), key=lambda row: row["id"])


def _near_rows(
    db: SqlStore, selected: Where, *, near_kind: Kind, distance_m: float, extent: BBox, beyond: bool
) -> list[dict[str, Any]]:
    """:func:`near_rows` for the assets ``selected`` picks (a condition on the asset table read as ``a``)."""
    table = db.assets_table
    p = db.dialect.param
    near, distance = near_terms(db.dialect, distance_m, extent)
    centre = "(a.min_x + a.max_x) / 2 AS lon, (a.min_y + a.max_y) / 2 AS lat"
    if beyond and db.dialect.near_side_first:
        ids = near_ids(db, selected, near_kind=near_kind, distance_m=distance_m, extent=extent)
        sql = (
            f"SELECT a.id, a.name, {centre}, NULL AS near_id, NULL AS distance_m FROM {table} a WHERE {selected.sql} "
            f"AND a.geom IS NOT NULL AND a.id NOT IN ({ids.sql}) ORDER BY a.id"
        )
        params = [*selected.params, *ids.params]
    elif beyond:
        sql = (
            f"SELECT a.id, a.name, {centre}, NULL AS near_id, NULL AS distance_m FROM {table} a WHERE {selected.sql} "
            f"AND a.geom IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} b WHERE b.kind = {p} AND {near.sql} "
            f"AND {distance} <= {p}) ORDER BY a.id"
        )
        params = [*selected.params, str(near_kind), *near.params, distance_m]
    else:
        sql = (
            f"SELECT DISTINCT ON (a.id) a.id, a.name, {centre}, b.id AS near_id, {distance} AS distance_m "
            f"FROM {table} a JOIN {table} b ON b.kind = {p} AND {near.sql} "
            f"WHERE {selected.sql} AND {distance} <= {p} ORDER BY a.id, distance_m, b.id"
        )
        params = [str(near_kind), *near.params, *selected.params, distance_m]
    rows: list[dict[str, Any]] = db.select(sql, params).to_pylist()
    return rows


def near_ids(db: SqlStore, selected: Where, *, near_kind: Kind, distance_m: float, extent: BBox) -> Where:
    """A query of the ids of the assets ``selected`` picks (a condition on the asset table read as ``a``) with an
    asset of ``near_kind`` within ``distance_m``, driven from those near assets: one index probe each for the
    selected assets around it (:attr:`~cim.store.sql.Dialect.near_side_first`). The same pairs as
    :func:`near_terms`' condition: a margin around one bounding box meets the other either way round."""
    s, p, table = db.dialect, db.dialect.param, db.assets_table
    _, distance = near_terms(s, distance_m, extent)
    around = s.near("b", "a", *_margin(distance_m, extent))
    sql = (
        f"SELECT DISTINCT h.id FROM (SELECT id, geom, min_x, min_y, max_x, max_y FROM {table} AS b "
        f"WHERE b.kind = {p}) b "
        f"CROSS JOIN LATERAL (SELECT a.id FROM {table} a WHERE {around.sql} AND {selected.sql} "
        f"AND {distance} <= {p}) h"
    )
    return Where(sql, [str(near_kind), *around.params, *selected.params, distance_m])


def _margin(distance_m: float, extent: BBox) -> tuple[float, float]:
    return degrees_for(distance_m, max(abs(extent[1]), abs(extent[3])))


def near_terms(s: Dialect, distance_m: float, extent: BBox) -> tuple[Where, str]:
    """For assets ``a`` and ``b`` around ``extent``: the bbox pruning condition that keeps every pair within
    ``distance_m``, and the SQL of their exact distance in metres."""
    lon0, lat0 = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    dlon, dlat = _margin(distance_m, extent)
    return s.near("a", "b", dlon, dlat), s.distance_m("a.geom", "b.geom", utm_epsg=utm_epsg(lon0, lat0))
