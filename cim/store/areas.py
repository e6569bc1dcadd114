"""Where things are in the administrative areas (city → district → street/town → grid cell): the SQL, in the store.

Areas are assets of kinds ``city``, ``district``, ``street`` and ``grid_cell`` (the demo's come from
``areas.parquet`` through ``pipelines/mappings/synth-areas.toml``; a city's own grid layer goes in the same way).
Each carries its code in ``props.code`` (its id ``area:<code>`` when there is none) and its parent in ``parent_id``.

- :func:`area_tree` reads the hierarchy;
- :func:`locate` answers, for a batch of points in one query, the grid cell, street and district each lies in;
- :func:`asset_areas` keeps a derived table of every other asset's grid cell, street and district, by the point
  on its surface (``ST_PointOnSurface``) in the grid cells; the table is rebuilt when assets changed since it was
  built (:meth:`~cim.store.sqlstore.SqlStore.derived_table`), so a moved asset has its new areas at the next read.
  :func:`areas_of_assets` reads it.

A point on the edge two grid cells share lies in both (``ST_Intersects``): the cell whose id sorts first (byte
order) wins — the lower code, for ids ``area:<code>`` — so the answer is the same on both stores and every time. A
point in no grid cell still gets the street and district whose polygons hold it; its street and district otherwise
come from its grid cell's parents, so the three always agree with the hierarchy. A point outside every area gets
``None`` for each (an asset's own point: :func:`locate` of its point and :func:`areas_of_assets` agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import shapely

from cim.model import Kind
from cim.store.base import Store
from cim.store.sql import Dialect
from cim.store.sqlstore import SqlStore, sql_store

#: The kinds of area assets, largest first.
AREA_LEVELS: tuple[Kind, ...] = (Kind.CITY, Kind.DISTRICT, Kind.STREET, Kind.GRID_CELL)
_LOCATED = (Kind.GRID_CELL, Kind.STREET, Kind.DISTRICT)  # what a point is located in
_ASSET_AREAS = "asset_areas"
#: Points (or ids) per query of :func:`locate` (:func:`areas_of_assets`): each is a parameter, and PostgreSQL
#: takes 65,535 at most.
LOCATE_BATCH = 2_000
_KINDS_SQL = ", ".join(f"'{k}'" for k in AREA_LEVELS)


@dataclass(frozen=True, slots=True)
class AreaNode:
    code: str
    name: str | None
    name_en: str | None
    level: Kind
    parent: str | None  # the parent's code; None for the top


@dataclass(frozen=True, slots=True)
class AreaCodes:
    grid_cell: str | None = None
    street: str | None = None
    district: str | None = None


NOWHERE = AreaCodes()


def area_tree(store: Store) -> dict[str, AreaNode]:
    """Every area by code, with its parent's code (None when its parent is no area in the store)."""
    db = sql_store(store)
    s, table = db.dialect, db.assets_table
    rows = db.select(
        f"SELECT id, kind, name, parent_id, {area_code(s)} AS code, {props_literal(s, 'name_en')} AS name_en "
        f"FROM {table} AS assets WHERE kind IN ({_KINDS_SQL}) ORDER BY id"
    ).to_pylist()
    code_of = {row["id"]: row["code"] for row in rows}
    return {
        row["code"]: AreaNode(
            code=row["code"],
            name=row["name"],
            name_en=row["name_en"],
            level=Kind(row["kind"]),
            parent=code_of.get(row["parent_id"]),
        )
        for row in rows
    }


def locate(store: Store, points: Sequence[tuple[float, float]]) -> list[AreaCodes]:
    """The grid cell, street and district of each (lon, lat) point: one query per :data:`LOCATE_BATCH` points."""
    found: list[AreaCodes] = []
    for start in range(0, len(points), LOCATE_BATCH):
        found += _locate(sql_store(store), points[start : start + LOCATE_BATCH])
    return found


def _locate(db: SqlStore, points: Sequence[tuple[float, float]]) -> list[AreaCodes]:
    s, p, table = db.dialect, db.dialect.param, db.assets_table
    values = ", ".join(f"({i}, {s.geom_param()})" for i in range(len(points)))
    params: list[Any] = [shapely.to_wkb(shapely.Point(float(x), float(y))) for x, y in points]
    kinds = ", ".join([p] * len(_LOCATED))
    rows = db.select(
        f"WITH pts (i, pt) AS (VALUES {values}), hit AS (SELECT pts.i, a.id FROM pts JOIN {table} a "
        f"ON a.kind IN ({kinds}) AND ST_Intersects(a.geom, pts.pt)), {_tree_sql(s, table)} "
        f"SELECT hit.i, t.kind, t.code, t.parent_code, t.grandparent_code FROM hit JOIN tree t ON t.id = hit.id "
        f"ORDER BY hit.i, {s.bytewise('t.id')}",
        [*params, *(str(k) for k in _LOCATED)],
    ).to_pylist()
    hits: list[dict[str, dict[str, Any]]] = [{} for _ in points]
    for row in rows:
        hits[row["i"]].setdefault(row["kind"], row)  # the id that sorts first
    return [_codes(h) for h in hits]


def asset_areas(store: Store) -> str:
    """The name of the derived table mapping every asset that is no area (``id``) to its ``grid_cell``,
    ``street`` and ``district`` codes (NULL where none holds it), rebuilt first when assets changed."""
    db = sql_store(store)
    return db.derived_table(_ASSET_AREAS, asset_areas_sql(db.dialect, db.assets_table))


def areas_of_assets(store: Store, ids: Iterable[str]) -> dict[str, AreaCodes]:
    """The areas of the given assets (ids of areas, or of no asset, are left out)."""
    keys = sorted(set(ids))
    if not keys:
        return {}
    db = sql_store(store)
    table = asset_areas(store)
    found: dict[str, AreaCodes] = {}
    for start in range(0, len(keys), LOCATE_BATCH):
        where = db.dialect.key_in("id", keys[start : start + LOCATE_BATCH])
        rows = db.select(f"SELECT id, grid_cell, street, district FROM {table} WHERE {where.sql}", where.params)
        found.update((r["id"], AreaCodes(r["grid_cell"], r["street"], r["district"])) for r in rows.to_pylist())
    return found


def asset_areas_sql(s: Dialect, table: str = "assets") -> str:
    """The query of :func:`asset_areas`'s table (no parameters). Each grid cell is joined with the assets whose
    bounding box meets its own (``&&``, which both stores answer from their spatial index), keeping those whose
    point on the surface lies in it; only assets in no grid cell are tried against the streets, then the
    districts."""
    return (
        f"WITH {_tree_sql(s, table)}, "
        f"cell AS ({_first_hit(s, table, 'grid_cell')}), "
        f"street AS ({_first_hit(s, table, 'street', 'cell')}), "
        f"district AS ({_first_hit(s, table, 'district', 'cell', 'street')}), "
        "hit AS (SELECT id, area_id FROM cell UNION ALL SELECT id, area_id FROM street "
        "UNION ALL SELECT id, area_id FROM district) "
        "SELECT x.id, "
        "CASE WHEN t.kind = 'grid_cell' THEN t.code END AS grid_cell, "
        "CASE WHEN t.kind = 'grid_cell' THEN t.parent_code WHEN t.kind = 'street' THEN t.code END AS street, "
        "CASE WHEN t.kind = 'grid_cell' THEN t.grandparent_code WHEN t.kind = 'street' THEN t.parent_code "
        "WHEN t.kind = 'district' THEN t.code END AS district "
        f"FROM {table} x LEFT JOIN hit ON hit.id = x.id LEFT JOIN tree t ON t.id = hit.area_id "
        f"WHERE x.kind NOT IN ({_KINDS_SQL})"
    )


def _first_hit(s: Dialect, table: str, kind: str, *misses: str) -> str:
    """Each asset's area of ``kind`` holding its point on the surface (the one whose id sorts first), for the
    assets in none of ``misses``. The areas drive the join: 5,000 probes of the spatial index with a cell, each
    testing its few assets against one polygon (which PostGIS prepares once), not 100,000 probes with a point
    (0.1 ms each in PostGIS: 12 s for the demo city)."""
    unhit = "".join(f" AND x.id NOT IN (SELECT id FROM {m})" for m in misses)
    return (
        f"SELECT x.id, min({s.bytewise('a.id')}) AS area_id FROM {table} a JOIN {table} x ON x.geom && a.geom "
        f"AND ST_Intersects(a.geom, ST_PointOnSurface(x.geom)) "
        f"WHERE a.kind = '{kind}' AND x.kind NOT IN ({_KINDS_SQL}){unhit} GROUP BY x.id"
    )


def _tree_sql(s: Dialect, table: str = "assets") -> str:
    """``tree``: the areas' ids, kinds and codes, and their parents' and grandparents' codes."""
    return (
        f"own AS (SELECT id, kind, parent_id, {area_code(s)} AS code "
        f"FROM {table} AS assets WHERE kind IN ({_KINDS_SQL})), "
        "tree AS (SELECT own.id, own.kind, own.code, up.code AS parent_code, up2.code AS grandparent_code "
        "FROM own LEFT JOIN own up ON up.id = own.parent_id LEFT JOIN own up2 ON up2.id = up.parent_id)"
    )


def _codes(hits: dict[str, dict[str, Any]]) -> AreaCodes:
    cell, street, district = (hits.get(str(k)) for k in _LOCATED)
    if cell is not None:
        return AreaCodes(cell["code"], cell["parent_code"], cell["grandparent_code"])
    if street is not None:
        return AreaCodes(None, street["code"], street["parent_code"])
    if district is not None:
        return AreaCodes(None, None, district["code"])
    return NOWHERE


def area_code(s: Dialect) -> str:
    """An area's code: ``props.code``, else its id without the ``area:`` prefix."""
    return f"COALESCE({props_literal(s, 'code')}, CASE WHEN substr(id, 1, 5) = 'area:' THEN substr(id, 6) ELSE id END)"


def props_literal(s: Dialect, key: str) -> str:
    """One property of ``props`` as text, its key written into the SQL (keys are this module's constants; the
    derived table's query may hold no parameter)."""
    assert key.isidentifier(), key
    return s.props_text().replace(s.param, "'" + s.props_key(key) + "'")
