"""The few spellings in which DuckDB and PostGIS differ for the queries here, and the checks on given geometry.

Metric measures never use degrees: PostGIS measures on the spheroid through ``geography``; DuckDB spatial measures
lengths on the spheroid (``ST_Length_Spheroid``, which reads lat/lon order, hence ``ST_FlipCoordinates``) and
distances in the UTM zone of the query's area (``ST_Transform``), whose scale error stays under 0.1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.model import AssetBatch
from cim.model.schema import ASSET_SCHEMA
from cim.store import Store
from cim.store.sqlstore import SqlStore

#: A geometry a client sends may have at most this many vertices (a city district needs a few thousand).
MAX_VERTICES = 100_000
#: Metres per degree of latitude (a safe, slightly small value, so derived degree margins err on the wide side).
METRES_PER_DEGREE = 110_500.0


@dataclass(frozen=True, slots=True)
class Spelling:
    """How one backend writes a parameter, a geometry parameter and metric measures."""

    postgis: bool

    @property
    def param(self) -> str:
        return "%s" if self.postgis else "?"

    def geom_param(self) -> str:
        """A WKB geometry parameter in lon/lat."""
        return "ST_GeomFromWKB(%s, 4326)" if self.postgis else "ST_GeomFromWKB(?)"

    def length_m(self, expr: str) -> str:
        """The spheroidal length in metres of a lon/lat geometry expression."""
        if self.postgis:
            return f"ST_Length(({expr})::geography)"
        return f"ST_Length_Spheroid(ST_FlipCoordinates({expr}))"

    def distance_m(self, a: str, b: str, *, utm_epsg: int) -> str:
        """The distance in metres between two lon/lat geometry expressions."""
        if self.postgis:
            return f"ST_Distance(({a})::geography, ({b})::geography)"
        to_utm = f"'EPSG:4326', 'EPSG:{utm_epsg}', true"
        return f"ST_Distance(ST_Transform({a}, {to_utm}), ST_Transform({b}, {to_utm}))"

    def rounded(self, expr: str, digits: int) -> str:
        """A number expression rounded to ``digits`` decimals as a double, as Python's ``round`` does (barring a
        product that lands within a rounding error of a half)."""
        scale = 10**digits
        return f"(round(CAST({expr} AS DOUBLE PRECISION) * {scale}) / {scale})"

    def bytewise(self, expr: str) -> str:
        """A text expression sorted by its bytes, as DuckDB does: both stores then list in one order, and PostgreSQL
        skips the locale's collation rules (several times slower to compare)."""
        return f'{expr} COLLATE "C"' if self.postgis else expr

    def json_string(self, expr: str) -> str:
        """The JSON text of a text expression, ``null`` for NULL (for answers written as text, not structures)."""
        return f"COALESCE(CAST(to_json({expr}) AS VARCHAR), 'null')"

    def json_number(self, expr: str) -> str:
        """The JSON text of a number expression, ``null`` for NULL."""
        return f"COALESCE(CAST({expr} AS VARCHAR), 'null')"

    def near(self, a: str, b: str, dlon: float, dlat: float) -> tuple[str, list[float]]:
        """SQL true when the bounding boxes of assets ``a`` and ``b`` come within (dlon, dlat) degrees: the cheap,
        index-friendly pruning step before an exact metric distance."""
        if self.postgis:
            return f"{b}.geom && ST_Expand({a}.geom, %s, %s)", [dlon, dlat]
        return (
            f"{b}.max_x >= {a}.min_x - ? AND {b}.min_x <= {a}.max_x + ? "
            f"AND {b}.max_y >= {a}.min_y - ? AND {b}.min_y <= {a}.max_y + ?",
            [dlon, dlon, dlat, dlat],
        )


def as_batch(table: pa.Table) -> AssetBatch:
    """Rows selected with ``dialect.select_list()`` as a batch (the backends return slightly different types)."""
    return AssetBatch(
        pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in ASSET_SCHEMA], schema=ASSET_SCHEMA)
    )


def sql_store(store: Store) -> tuple[SqlStore, Spelling]:
    """The store as a :class:`SqlStore` with its spelling; other stores cannot answer these queries."""
    if not isinstance(store, SqlStore):
        raise InvalidInput(f"store {store.url}", "answers no SQL queries; use a DuckDB or PostGIS store")
    from cim.store.postgis import PostGISStore

    return store, Spelling(postgis=isinstance(store, PostGISStore))


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the WGS84 UTM zone holding (lon, lat).

    >>> utm_epsg(121.47, 31.23)
    32651
    """
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def degrees_for(metres: float, lat: float) -> tuple[float, float]:
    """(Δlon, Δlat) in degrees that surely cover ``metres`` around latitude ``lat``: a bbox margin for pruning."""
    dlat = metres / METRES_PER_DEGREE
    dlon = metres / (METRES_PER_DEGREE * max(math.cos(math.radians(min(abs(lat) + dlat, 89.0))), 0.01))
    return dlon, dlat


def checked_area(geom: BaseGeometry, *, what: str = "area") -> BaseGeometry:
    """``geom`` if it is a usable lon/lat polygon area, else :class:`InvalidInput` saying what is wrong."""
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(what, f"must be a Polygon or MultiPolygon, got {geom.geom_type}")
    checked_geometry(geom, what=what)
    if not geom.is_valid:
        raise InvalidInput(what, f"is not a valid polygon: {shapely.is_valid_reason(geom)}")
    if geom.area == 0:
        raise InvalidInput(what, "has no area")
    return geom


def checked_text(value: str, *, what: str = "asset id") -> str:
    """``value`` if it can be compared with stored text, else :class:`InvalidInput`: none holds a NUL character, and
    PostgreSQL cannot even compare text with one.

    >>> checked_text("b1")
    'b1'
    """
    if "\x00" in value:
        raise InvalidInput(f"{what} {value[:100]!r}", "contains a NUL character, which no stored text holds")
    return value


def checked_geometry(geom: BaseGeometry, *, what: str = "geometry") -> BaseGeometry:
    """``geom`` if it is non-empty, small enough and inside lon/lat bounds, else :class:`InvalidInput`."""
    vertices = int(shapely.get_num_coordinates(geom))
    if vertices > MAX_VERTICES:
        raise InvalidInput(what, f"has {vertices:,} vertices; at most {MAX_VERTICES:,} are accepted")
    if geom.is_empty:
        raise InvalidInput(what, "is empty")
    west, south, east, north = geom.bounds
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InvalidInput(what, "has coordinates that are not finite numbers")
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise InvalidInput(what, f"lies outside lon -180..180 / lat -90..90 (bounds {geom.bounds}); give WGS84 lon/lat")
    return geom
