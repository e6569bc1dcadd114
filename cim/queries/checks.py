"""Checks on the geometry and text a client gives, before any of it reaches a query."""

from __future__ import annotations

import math

import shapely
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput

#: A geometry a client sends may have at most this many vertices (a city district needs a few thousand).
MAX_VERTICES = 100_000


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
