"""Parsing of the query parameters that the HTTP routers and the command line share (bbox, dates, GeoJSON areas)."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.queries.checks import MAX_VERTICES, checked_area
from cim.store import BBox, Store
from cim.store.sqlstore import sql_store

_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
#: What a ``bbox`` parameter looks like (its OpenAPI ``pattern``): four numbers, or six for the 3D form.
BBOX_PATTERN = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}(,{_NUMBER},{_NUMBER})?$"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def parse_bbox(text: str) -> BBox:
    """``west,south,east,north`` (or the 6-number 3D form) in lon/lat.

    >>> parse_bbox("121.4,31.1,121.5,31.2")
    (121.4, 31.1, 121.5, 31.2)
    """
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InvalidInput(f"bbox {text[:100]!r}", "must be four numbers: west,south,east,north") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise InvalidInput(f"bbox {text[:100]!r}", "must be four finite numbers: west,south,east,north")
    west, south, east, north = numbers
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidInput(
            f"bbox {text[:100]!r}", "must be lon/lat with west ≤ east and south ≤ north (no antimeridian crossing)"
        )
    return west, south, east, north


def parse_date(text: str, *, what: str) -> date:
    """A date written YYYY-MM-DD (what OpenAPI's ``format: date`` means), nothing looser.

    >>> parse_date("2026-05-01", what="as_of")
    datetime.date(2026, 5, 1)
    """
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} {text[:40]!r}", "is not a date (YYYY-MM-DD)") from None


def end_of_day(day: date) -> datetime:
    """The model "as of" a day is the model at the end of it (UTC): every change dated that day is in it. Today's
    end has not come yet: it is now.

    >>> end_of_day(date(2023, 6, 30)).isoformat()
    '2023-06-30T23:59:59.999999+00:00'
    """
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) - timedelta(microseconds=1)
    return min(end, datetime.now(UTC)) if day <= datetime.now(UTC).date() else end


def model_as_of(store: Store, day: date | None) -> Store:
    """``store`` as the model stood at the end of ``day`` (:meth:`~cim.store.sqlstore.SqlStore.as_of`; a day in
    the future or before the history begins is :class:`InvalidInput` naming ``as_of``), or ``store`` itself when
    no day is given.

    Today's end is now, and the model now is the store itself: it is checked like any day but answered by the
    store, so "today" shares the current model's derived tables and cached answers (a view at ``now`` would be
    a new date, and a rebuilt table, at every request)."""
    if day is None:
        return store
    view = sql_store(store).as_of(end_of_day(day))
    return store if day >= datetime.now(UTC).date() else view


def store_as_of(store: Store, as_of: str | None) -> tuple[Store, date | None]:
    """An ``as_of`` parameter (YYYY-MM-DD, or None) read: the model as of that day (:func:`model_as_of`) and the
    day, which ages are counted to (None: the store itself, ages counted to today)."""
    day = parse_date(as_of, what="as_of") if as_of is not None else None
    return model_as_of(store, day), day


def parse_area(value: Any) -> BaseGeometry:
    """A GeoJSON Polygon/MultiPolygon (a geometry, Feature or one-feature FeatureCollection) as a checked area."""
    if isinstance(value, dict) and value.get("type") == "FeatureCollection":
        features = value.get("features")
        if not isinstance(features, list) or len(features) != 1:
            raise InvalidInput("area", "a FeatureCollection must hold exactly one polygon feature")
        value = features[0]
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict) or value.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidInput("area", "must be a GeoJSON Polygon or MultiPolygon (geometry, Feature or collection)")
    vertices = _count_vertices(value.get("coordinates"))
    if vertices > MAX_VERTICES:
        raise InvalidInput("area", f"has {vertices:,} vertices; at most {MAX_VERTICES:,} are accepted")
    try:
        geom = shapely.geometry.shape(value)
    except Exception as exc:  # shapely raises several kinds on malformed coordinates
        raise InvalidInput("area", f"is not valid GeoJSON: {str(exc)[:200] or type(exc).__name__}") from None
    return checked_area(geom)


def bbox_area(bbox: BBox) -> BaseGeometry:
    return checked_area(shapely.box(*bbox), what="bbox")


def _count_vertices(coordinates: Any, depth: int = 0) -> int:
    """Positions in nested GeoJSON coordinates, counted before any geometry is built (0 when malformed)."""
    if not isinstance(coordinates, list) or depth > 3:
        return 0
    if coordinates and isinstance(coordinates[0], list) and coordinates[0] and not isinstance(coordinates[0][0], list):
        return len(coordinates)
    return sum(_count_vertices(part, depth + 1) for part in coordinates)
