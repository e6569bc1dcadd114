"""What the assets of one kind really hold, read from the store: the keys of their ``props`` with a JSON type each,
and the geometry types they have; and the counts of feature pages (``numberMatched``).

OGC API clients (GDAL, QGIS) build their layer from a collection's schema and filter on its queryables, so each
kind's property-set keys are published as typed properties (:mod:`cim.api.ogc_features`). Both answers are computed
in SQL over the kind's rows and kept until the assets change: every asset write bumps ``assets_version`` in
``cim_meta`` inside its transaction (:meth:`~cim.store.sqlstore.SqlStore.derived_table` keys its tables on it too),
so a cached answer is keyed on the version read at the start of the request — a write in another process (PostGIS)
is seen at the next request.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cim.model import Kind
from cim.store.base import Store
from cim.store.sqlstore import SqlStore, sql_store

PropertyType = Literal["number", "string", "boolean", "date", "object"]
#: Keys published per kind at most, the most common first (a kind whose every asset has its own keys would
#: otherwise make a schema of thousands of properties).
MAX_KEYS = 200
#: Page counts kept per store (each a few dozen bytes).
MAX_COUNTS = 4_096

#: The JSON types of the stores' JSON functions (DuckDB's json_each, PostgreSQL's jsonb_typeof) in JSON terms.
_JSON_TYPES: Mapping[str, PropertyType | None] = {
    "varchar": "string",
    "string": "string",
    "bigint": "number",
    "ubigint": "number",
    "double": "number",
    "number": "number",
    "boolean": "boolean",
    "object": "object",
    "array": "object",
    "null": None,
}


@dataclass(frozen=True, slots=True)
class KindCatalogue:
    """The property-set keys of one kind's assets with their type (most common first), whether keys were left out
    (more than :data:`MAX_KEYS`), and the geometry types the kind has (``Point``, ``MultiPolygon`` …, by name)."""

    kind: Kind
    keys: Mapping[str, PropertyType]
    truncated: bool
    geometry_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KindGeometry:
    """The geometry types of one kind's assets (by GeoJSON name, sorted), and the first asset (by id) of each type
    when there are several."""

    types: tuple[str, ...]
    first_of_each_type: tuple[str, ...]


class _Caches:
    """One store's cached catalogues and counts, each under the assets version it was computed at."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.catalogues: dict[tuple[str, Kind], KindCatalogue] = {}
        self.geometries: dict[tuple[str, Kind], KindGeometry] = {}
        self.counts: OrderedDict[Hashable, int] = OrderedDict()


_caches: weakref.WeakKeyDictionary[SqlStore, _Caches] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _caches_of(db: SqlStore) -> _Caches:
    with _caches_lock:
        found = _caches.get(db)
        if found is None:
            found = _caches[db] = _Caches()
        return found


def assets_version(store: Store) -> str:
    """The store's ``assets_version``: it changes with every committed asset write (and with the date of a view of
    the model as of a date, so answers cached by it are never those of another date)."""
    db = sql_store(store)
    rows = db.select(f"SELECT value FROM cim_meta WHERE key = {db.dialect.param}", ["assets_version"])
    version = str(rows.column("value")[0].as_py()) if rows.num_rows else "0"
    return version if db.as_of_time is None else f"{version}@{db.as_of_time.isoformat()}"


def kind_catalogue(store: Store, kind: Kind, *, version: str | None = None) -> KindCatalogue:
    """The catalogue of ``kind`` at the store's current ``version`` (read when not given), computed at most once
    per version."""
    db = sql_store(store)
    version = assets_version(db) if version is None else version
    caches = _caches_of(db)
    with caches.lock:
        found = caches.catalogues.get((version, kind))
    if found is not None:
        return found
    geometry = kind_geometry(db, kind, version=version)
    made = KindCatalogue(kind=kind, geometry_types=geometry.types, **_keys(db, kind))
    with caches.lock:
        caches.catalogues = {k: v for k, v in caches.catalogues.items() if k[0] == version}  # older ones are dead
        caches.catalogues[(version, kind)] = made
    return made


def kind_geometry(store: Store, kind: Kind, *, version: str) -> KindGeometry:
    """The geometry types of ``kind`` at the assets ``version``, computed at most once per version."""
    db = sql_store(store)
    caches = _caches_of(db)
    with caches.lock:
        found = caches.geometries.get((version, kind))
    if found is not None:
        return found
    made = _geometry(db, kind)
    with caches.lock:
        caches.geometries = {k: v for k, v in caches.geometries.items() if k[0] == version}
        caches.geometries[(version, kind)] = made
    return made


def count_where(store: Store, where_sql: str, params: Sequence[Any], *, version: str) -> int:
    """``count(*)`` of the assets meeting ``where_sql`` (in the store's dialect, values in ``params``), remembered
    per (query, assets version): a client paging through a collection asks the same count on every page."""
    db = sql_store(store)
    key = (version, where_sql, tuple(params))
    caches = _caches_of(db)
    with caches.lock:
        found = caches.counts.get(key)
        if found is not None:
            caches.counts.move_to_end(key)
            return found
    rows = db.select(f"SELECT count(*) AS n FROM {db.assets_table} AS assets WHERE {where_sql}", list(params))
    counted = int(rows.column("n")[0].as_py())
    with caches.lock:
        caches.counts[key] = counted
        while len(caches.counts) > MAX_COUNTS:
            caches.counts.popitem(last=False)
    return counted


def _is_postgres(db: SqlStore) -> bool:
    # the JSON functions differ between the two stores, and the Dialect has no spelling for a set of keys
    return db.dialect.param == "%s"


def _keys(db: SqlStore, kind: Kind) -> dict[str, Any]:
    p = db.dialect.param
    if _is_postgres(db):
        sql = (
            "SELECT e.key AS key, jsonb_typeof(e.value) AS type, count(*) AS n, "
            "bool_and((e.value #>> '{}') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$') AS dates "
            f"FROM {db.assets_table} AS assets, jsonb_each(assets.props) AS e WHERE kind = {p} GROUP BY 1, 2"
        )
    else:
        sql = (
            "SELECT e.key AS key, lower(e.type) AS type, count(*) AS n, "
            "bool_and(regexp_full_match(json_extract_string(e.value, '$'), '[0-9]{4}-[0-9]{2}-[0-9]{2}')) AS dates "
            f"FROM {db.assets_table} AS assets, json_each(assets.props) AS e WHERE kind = {p} GROUP BY 1, 2"
        )
    seen: dict[str, tuple[int, set[PropertyType], bool]] = {}
    for row in db.select(sql, [str(kind)]).to_pylist():
        count, types, dates = seen.get(row["key"], (0, set(), True))
        json_type = _JSON_TYPES.get(str(row["type"]).lower(), "string")
        if json_type is not None:
            types.add(json_type)
        if json_type == "string":
            dates = dates and bool(row["dates"])
        seen[row["key"]] = (count + int(row["n"]), types, dates)
    ranked = sorted(seen.items(), key=lambda item: (-item[1][0], item[0]))
    keys = {key: _one_type(types, dates) for key, (_, types, dates) in ranked[:MAX_KEYS]}
    return {"keys": keys, "truncated": len(ranked) > MAX_KEYS}


def _one_type(types: set[PropertyType], dates: bool) -> PropertyType:
    """One type for a key: the one its values have; text when they differ (or are all null)."""
    if len(types) != 1:
        return "object" if types == {"object"} else "string"
    (only,) = types
    return "date" if only == "string" and dates else only


def _geometry(db: SqlStore, kind: Kind) -> KindGeometry:
    # DuckDB names the type POINT, PostGIS ST_Point: both become POINT, then GeoJSON's Point
    rows = db.select(
        "SELECT upper(replace(CAST(ST_GeometryType(geom) AS VARCHAR), 'ST_', '')) AS type, min(id) AS first "
        f"FROM {db.assets_table} AS assets WHERE kind = {db.dialect.param} AND geom IS NOT NULL GROUP BY 1",
        [str(kind)],
    ).to_pylist()
    names = {
        "POINT": "Point",
        "MULTIPOINT": "MultiPoint",
        "LINESTRING": "LineString",
        "MULTILINESTRING": "MultiLineString",
        "POLYGON": "Polygon",
        "MULTIPOLYGON": "MultiPolygon",
        "GEOMETRYCOLLECTION": "GeometryCollection",
    }
    types = tuple(sorted({names.get(str(row["type"]), str(row["type"])) for row in rows}))
    firsts = tuple(sorted(str(row["first"]) for row in rows)) if len(rows) > 1 else ()
    return KindGeometry(types=types, first_of_each_type=firsts)
