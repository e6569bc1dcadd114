"""SQL shared by both backends: table definitions and the translation of an :class:`AssetQuery` into a WHERE clause.

Every value a caller gives travels as a bound parameter, never pasted into the SQL text. Column names come only from
:mod:`cim.store.schema`. The two backends differ in a handful of spellings, gathered in :class:`Dialect`: the one
place the store, its questions (:mod:`cim.store.questions`, :mod:`cim.store.vitals`, :mod:`cim.store.pages`,
:mod:`cim.store.projection`) and the CQL2 filters (:mod:`cim.queries.cql`) learn how a backend writes something.

Metric measures never use degrees: PostGIS measures on the spheroid through ``geography``; DuckDB spatial measures
lengths on the spheroid (``ST_Length_Spheroid``, which reads lat/lon order, hence ``ST_FlipCoordinates``) and
distances in the UTM zone of the query's area (``ST_Transform``), whose scale error stays under 0.1 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from cim.model.schema import ASSET_COLUMNS, COLUMN_NAMES
from cim.store.base import AssetQuery, BBox
from cim.store.schema import BBOX_COLUMNS


@dataclass(frozen=True, slots=True)
class Where:
    sql: str
    params: list[Any]


class Dialect:
    """How one backend spells parameters, geometry, JSON access and metric measures."""

    param = "?"
    #: Whether strings the backend joins itself (``string_agg``) come back faster than one row per string (a
    #: client library that makes a Python string of each row).
    joins_text_rows = False
    #: Whether the asset table read has the backend's spatial index: False in a view of the model as of a date
    #: (:meth:`SqlStore.as_of`), whose versions DuckDB keeps without an R-tree.
    indexed_assets = True
    #: Whether a view of the model as of a date copies the versions valid then into a table of their own (a derived
    #: table, one per date, rebuilt when the assets change) instead of reading them through a subquery. DuckDB: a
    #: join of the subquery with itself (homes within 500 m of a park) ran past the 60 s limit at 1M assets where
    #: the copy took 14.5 s once and the join 11.3 s, as over the current table (bench/versions_bench.py).
    #: PostgreSQL plans the subquery into the versions' own indexes.
    snapshots_as_of = False
    #: Whether a within-distance question runs faster driven from the assets looked for (a few thousand parks, each
    #: one probe of the spatial index for the homes around it) than from the assets asked about (a million homes,
    #: each a probe returning hundreds of candidates of every kind). PostGIS at 1M homes, 500 parks, one band of
    #: 250k homes: 75 s → 8 s (EXPLAIN ANALYZE, bench/spatial_scale_bench.py).
    near_side_first = False

    def column_type(self, name: str) -> str:
        raise NotImplementedError

    def geom_as_wkb(self, column: str) -> str:
        raise NotImplementedError

    def props_text(self) -> str:
        """SQL for one property of ``props`` as text; its key is the one parameter (spelled by :meth:`props_key`)."""
        raise NotImplementedError

    def props_key(self, key: str) -> str:
        return key

    def window(self, bbox: BBox, polygon: BaseGeometry | None) -> Where:
        """Assets whose geometry intersects the window (a bbox, and the exact polygon when there is one)."""
        raise NotImplementedError

    def props_as_text(self) -> str:
        return "props"

    def props_value(self, key: str, *, numeric: bool) -> Where:
        """One property of ``props`` as text, or as a number (NULL when it is not one) when ``numeric``."""
        raise NotImplementedError

    def geom_param(self) -> str:
        """A WKB geometry parameter in lon/lat."""
        raise NotImplementedError

    def length_m(self, expr: str) -> str:
        """The spheroidal length in metres of a lon/lat geometry expression."""
        raise NotImplementedError

    def distance_m(self, a: str, b: str, *, utm_epsg: int) -> str:
        """The distance in metres between two lon/lat geometry expressions."""
        raise NotImplementedError

    def area_m2(self, expr: str) -> str:
        """The spheroidal area in square metres of a lon/lat polygon expression."""
        raise NotImplementedError

    def near(self, a: str, b: str, dlon: float, dlat: float) -> Where:
        """True when the bounding boxes of assets ``a`` and ``b`` come within (dlon, dlat) degrees: the cheap,
        index-friendly pruning step before an exact metric distance."""
        return Where(
            f"{b}.max_x >= {a}.min_x - {self.param} AND {b}.min_x <= {a}.max_x + {self.param} "
            f"AND {b}.max_y >= {a}.min_y - {self.param} AND {b}.min_y <= {a}.max_y + {self.param}",
            [dlon, dlon, dlat, dlat],
        )

    def bytewise(self, expr: str) -> str:
        """A text expression sorted by its bytes, as DuckDB does, so both stores list in one order."""
        return expr

    def row_hash(self, columns: Sequence[str]) -> str | None:
        """An expression hashing ``columns`` of a row, or None when the backend offers no such hash."""
        return None

    def version_hash(self, alias: str) -> str:
        """A text hash of an asset row's columns (``alias`` names the row), the one ``asset_versions.row_hash``
        holds (:mod:`cim.store.migrations.v007_asset_versions` spells it too)."""
        raise NotImplementedError

    def point(self, x: str, y: str) -> str:
        """A lon/lat point geometry from two number expressions."""
        return f"ST_Point({x}, {y})"

    def in_list(self, column: str) -> str:
        """``column`` is one of the strings in one list parameter (any length, one bound value)."""
        raise NotImplementedError

    def key_in(self, column: str, keys: Sequence[str]) -> Where:
        """``column`` is one of ``keys`` (a non-empty list of ids)."""
        return Where(f"{column} IN ({', '.join([self.param] * len(keys))})", list(keys))

    def quantile(self, expr: str, fraction: float) -> str:
        """The aggregate of a group's continuous ``fraction`` quantile of a number expression (0.9: the p90),
        interpolated between the two nearest values; NULLs are left out."""
        raise NotImplementedError

    def point_in_bbox(self, bbox: BBox) -> Where:
        """Rows whose point, held as ``lon``/``lat`` columns and a ``geom`` point (the cases), lies in ``bbox``
        (west, south, east, north), edges included. By the number columns, which a scan prunes by their zone
        maps; a backend with a spatial index on ``geom`` spells it through the index."""
        west, south, east, north = bbox
        p = self.param
        return Where(f"lon BETWEEN {p} AND {p} AND lat BETWEEN {p} AND {p}", [west, east, south, north])

    # --- shared ---
    def rounded(self, expr: str, digits: int) -> str:
        """A number expression rounded to ``digits`` decimals as a double, as Python's ``round`` does (barring a
        product that lands within a rounding error of a half)."""
        scale = 10**digits
        return f"(round(CAST({expr} AS DOUBLE PRECISION) * {scale}) / {scale})"

    def json_string(self, expr: str) -> str:
        """The JSON text of a text expression, ``null`` for NULL (for answers written as text, not structures)."""
        return f"COALESCE(CAST(to_json({expr}) AS VARCHAR), 'null')"

    def json_number(self, expr: str) -> str:
        """The JSON text of a number expression, ``null`` for NULL."""
        return f"COALESCE(CAST({expr} AS VARCHAR), 'null')"

    def select_list(self) -> str:
        spelled = {"geom": self.geom_as_wkb("geom") + " AS geom", "props": self.props_as_text() + " AS props"}
        return ", ".join(spelled.get(name, name) for name in COLUMN_NAMES)

    def create_assets_table(self, table: str = "assets") -> str:
        columns = [f"{c.name} {self.column_type(c.name)}" for c in ASSET_COLUMNS]
        columns += [f"{name} DOUBLE PRECISION" for name in BBOX_COLUMNS]
        return f"CREATE TABLE IF NOT EXISTS {table} (\n  " + ",\n  ".join(columns) + "\n)"

    def where(self, query: AssetQuery) -> Where:
        p = self.param
        clauses: list[str] = []
        params: list[Any] = []
        if query.kinds is not None:
            clauses.append(f"kind IN ({', '.join([p] * len(query.kinds))})" if query.kinds else "FALSE")
            params += [str(k) for k in query.kinds]
        for column, keys in (("id", query.ids), ("parent_id", None if query.parent_id is None else [query.parent_id])):
            if keys is not None:
                matched = self.key_in(column, keys) if keys else Where("FALSE", [])
                clauses.append(matched.sql)
                params += matched.params
        for key, value in (query.where or {}).items():
            if key.startswith("props."):
                clauses.append(f"{self.props_text()} = {p}")
                params += [self.props_key(key.removeprefix("props.")), _json_text(value)]
            else:
                clauses.append(f"{key} = {p}")
                params.append(value)
        if query.z_range is not None:
            low, high = query.z_range
            clauses.append(f"z_max >= {p} AND z_min <= {p}")
            params += [low, high]
        window = _window_of(query)
        if window is not None:
            bbox, polygon = window
            if polygon is not None and polygon.is_empty:
                clauses.append("FALSE")  # the polygon lies wholly outside the bbox
            else:
                where = self.window(bbox, polygon)
                clauses.append(where.sql)
                params += where.params
        return Where(" AND ".join(clauses) if clauses else "TRUE", params)


def _window_of(query: AssetQuery) -> tuple[BBox, BaseGeometry | None] | None:
    """The query's spatial window: the bbox intersected with the polygon's bounds, and the polygon."""
    if query.polygon is None and query.bbox is None:
        return None
    if query.polygon is None:
        assert query.bbox is not None
        return query.bbox, None
    polygon = query.polygon
    if query.bbox is not None:
        polygon = shapely.intersection(polygon, shapely.box(*query.bbox))
    west, south, east, north = polygon.bounds if not polygon.is_empty else (0.0, 0.0, 0.0, 0.0)
    return (west, south, east, north), polygon


def _json_text(value: object) -> str:
    """A scalar as its JSON text as the stores' ``->>`` returns it: strings bare, booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bbox_clause(param: str) -> str:
    """Bounding-box overlap by the derived columns: (west, east, south, north) as four parameters."""
    return f"max_x >= {param} AND min_x <= {param} AND max_y >= {param} AND min_y <= {param}"
