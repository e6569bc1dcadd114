"""GeoJSON features a client sends (OGC API – Features Part 4) read back into assets, checked whole first.

The shape is the one the feature routes send (:func:`cim.api.geojson.feature`): ``properties`` holds the base
columns, the typed columns of the kind and each key of ``props`` (a key that clashes with a column as
``props.<key>``). Read back: a column name goes to its column, anything else to ``props`` (a ``props.`` prefix
stripped); a ``props`` object is merged in too. ``source`` is the server's (an edit is stored as :data:`EDIT_SOURCE`,
a PATCH keeps the asset's), so a feature read and sent back as it is goes through.

Every problem raises :class:`~cim.errors.InvalidInput` naming the member of the body it is about
(``properties.height_m``, ``geometry``, ``id``), before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

import shapely
from shapely.errors import GEOSException
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.gis.quality import AREA_KINDS
from cim.model import KIND_FIELDS, Asset, Kind, fields_of
from cim.queries.checks import checked_geometry

#: The ``source`` of assets created or replaced through the API: a re-ingest of a file (``replace_source``) leaves
#: them alone unless the file holds the same id.
EDIT_SOURCE = "api"
#: Kinds whose assets need no geometry: BIM parts placed by their parent, and sensors inside an asset.
GEOMETRY_OPTIONAL = frozenset({Kind.SITE, Kind.STOREY, Kind.SPACE, Kind.ELEMENT, Kind.LIFT, Kind.SENSOR})
#: Kinds whose geometry is a line (drawn as tubes).
LINE_KINDS = frozenset({Kind.PIPE})
#: Kinds whose vertical extent comes from their depth below ground, not a height.
DEPTH_KINDS = frozenset({Kind.PIPE, Kind.NODE})
_GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
_TEXT = ("name", "parent_id", "status", "material", "network")
_NUMBER = ("z_min", "z_max", "height_m", "diameter_mm", "depth_m")
#: Properties the server sets: a value sent for them is ignored.
_SERVER_SET = frozenset({"source"})
MAX_ID_LENGTH = 200
_ID = re.compile(r"[^\x00-\x1f/\\?#%\x7f]+")  # a path segment of /items/{id}, as sent and as read back
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?")  # a date, or a date-time's date
MAX_PROPS = 1_000  # property-set keys one feature may carry


def new_asset(body: Any, *, kind: Kind, asset_id: str) -> Asset:
    """The asset a POST or PUT body describes, as ``asset_id`` of ``kind`` (the body's own ``id`` is the caller's
    business: POST takes it, PUT ignores it)."""
    feature = _feature(body)
    values, props = _properties(feature.get("properties"), kind=kind, patch=False)
    geom = _geometry(feature.get("geometry"), kind=kind) if "geometry" in feature else None
    if geom is None and kind not in GEOMETRY_OPTIONAL:
        raise InvalidInput("geometry", f"is required for a {kind}")
    values.update(_z_range(kind, values, z_min=values.get("z_min"), given_top="z_max" in values))
    return _asset(id=asset_id, kind=kind, geom=geom, source=EDIT_SOURCE, **values, props=props)


def patched_asset(current: Asset, body: Any) -> Asset:
    """``current`` with a JSON merge patch (RFC 7396) of its feature applied: a member given replaces the stored
    value, ``null`` unsets it (a property-set key is removed), members not given stay."""
    feature = _feature(body, patch=True)
    if feature.get("id") is not None and str(feature["id"]) != current.id:
        raise InvalidInput("id", f"cannot be changed (the feature is {current.id!r}); create a new feature instead")
    values, props = _properties(feature.get("properties", {}), kind=current.kind, patch=True)
    merged = dict(current.props)
    for key, value in props.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    changes: dict[str, Any] = {**values, "props": merged}
    if "height_m" in values:
        base = values.get("z_min", current.z_min)
        changes.update(_z_range(current.kind, values, z_min=base, given_top="z_max" in values))
    if "geometry" in feature:
        geom = _geometry(feature["geometry"], kind=current.kind)
        if geom is None and current.kind not in GEOMETRY_OPTIONAL:
            raise InvalidInput("geometry", f"cannot be removed: a {current.kind} needs one")
        changes["geom"] = geom
    try:
        return replace(current, **changes)
    except InvalidInput as exc:
        raise InvalidInput(_field_of(exc), exc.why) from None


def _z_range(kind: Kind, values: dict[str, Any], *, z_min: float | None, given_top: bool) -> dict[str, Any]:
    """The vertical extent a new ``height_m`` gives when the client did not send ``z_max`` (as an ingest derives
    it: from the base, ground level when unknown), so the asset's block in the tiles has the new height. Pipes and
    nodes take theirs from their depth: left alone."""
    height = values.get("height_m")
    if given_top or height is None or kind in DEPTH_KINDS:
        return {}
    base = 0.0 if z_min is None else z_min
    return {"z_min": base, "z_max": base + height}


def checked_id(value: Any, *, what: str = "id") -> str:
    """A feature id a client gives: text (a number is taken as its digits) that fits a URL path segment."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(what, f"must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not 0 < len(text) <= MAX_ID_LENGTH or not _ID.fullmatch(text):
        raise InvalidInput(
            f"{what} {text[:80]!r}",
            f"must be 1 to {MAX_ID_LENGTH} characters without control characters, '/', '\\', '?', '#' or '%'",
        )
    return text


def _feature(body: Any, *, patch: bool = False) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("request body", "must be a GeoJSON Feature object")
    if body.get("type") != "Feature" and not (patch and body.get("type") is None):
        raise InvalidInput("type", f'must be "Feature", got {str(body.get("type"))[:40]!r}')
    if not patch and "geometry" not in body:
        raise InvalidInput("geometry", "is missing; a GeoJSON Feature has a geometry member (null when it has none)")
    properties = body.get("properties")
    if (properties is not None or (patch and "properties" in body)) and not isinstance(properties, dict):
        raise InvalidInput("properties", "must be an object")
    if "id" in body and (isinstance(body["id"], bool) or not isinstance(body["id"], str | int)):
        raise InvalidInput("id", f"must be a string or an integer, got {type(body['id']).__name__}")
    return body


def _properties(given: Any, *, kind: Kind, patch: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed column values, property-set values) of a feature's ``properties``. Without ``patch``, a ``null``
    value is left out; with it, ``null`` stays (it unsets)."""
    if given is None:
        return {}, {}
    columns = {"kind", "name", "parent_id", "z_min", "z_max", *fields_of(kind)}
    values: dict[str, Any] = {}
    props: dict[str, Any] = {}
    for key, value in given.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput("properties", "has an empty key")
        where = f"properties.{key}"[:120]
        if key == "props":
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidInput(where, "must be an object of property-set values")
            for inner, inner_value in value.items():
                props[inner] = inner_value
        elif key.startswith("props."):
            props[key.removeprefix("props.")] = value
        elif key in _SERVER_SET:
            continue
        elif key == "kind":
            if value is None and not patch:
                continue
            if value != str(kind):
                raise InvalidInput(where, f"is {str(value)[:40]!r}, but the feature is in collection {kind}")
        elif key in columns:
            values[key] = _column_value(key, value, where)
        elif key in KIND_FIELDS:
            if value is not None:
                allowed = ", ".join(sorted(str(k) for k in KIND_FIELDS[key]))
                raise InvalidInput(where, f"does not apply to a {kind}; it applies to: {allowed}")
        else:
            props[key] = value
    if not patch:
        props = {k: v for k, v in props.items() if v is not None}
    if len(props) > MAX_PROPS:
        raise InvalidInput("properties", f"has {len(props):,} property-set values; at most {MAX_PROPS:,} are kept")
    for key, value in props.items():
        _check_json(value, f"properties.{key}"[:120])
    return values, props


def _column_value(name: str, value: Any, where: str) -> Any:
    """A typed column's value from JSON, or :class:`InvalidInput` naming the property."""
    if value is None:
        return None
    if name in _TEXT:
        if not isinstance(value, str):
            raise InvalidInput(where, f"must be text, got {type(value).__name__}")
        if "\x00" in value:
            raise InvalidInput(where, "contains a NUL character")
        return value
    if name == "install_date":
        if isinstance(value, str) and _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                pass
        raise InvalidInput(where, f"must be a date as YYYY-MM-DD, got {str(value)[:40]!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(where, f"must be a number, got {str(value)[:40]!r}")
    if name == "storeys":
        if value != int(value) or not 0 <= value <= 2**31 - 1:
            raise InvalidInput(where, f"must be a whole number of storeys ≥ 0, got {value!r}")
        return int(value)
    if name in ("height_m", "diameter_mm", "depth_m") and value < 0:
        raise InvalidInput(where, f"must be ≥ 0, got {value!r}")
    return float(value)


def _geometry(given: Any, *, kind: Kind) -> BaseGeometry | None:
    """A GeoJSON geometry (lon/lat) checked for the kind: an area kind needs a polygon, a pipe a line."""
    if given is None:
        return None
    if not isinstance(given, dict) or given.get("type") not in _GEOMETRY_TYPES:
        shown = given.get("type") if isinstance(given, dict) else type(given).__name__
        raise InvalidInput("geometry", f"must be a GeoJSON {', '.join(_GEOMETRY_TYPES)} or null, got {shown!s:.40}")
    try:
        geom = shape(given)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, GEOSException) as exc:
        raise InvalidInput("geometry", f"is not a readable GeoJSON {given['type']}: {str(exc)[:120]}") from None
    checked_geometry(geom)
    if shapely.has_z(geom):
        raise InvalidInput("geometry", "has z coordinates; give lon/lat only (heights go to z_min/z_max)")
    if kind in AREA_KINDS and geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidInput("geometry", f"must be a Polygon or MultiPolygon for a {kind}, got {geom.geom_type}")
    if kind in LINE_KINDS and geom.geom_type not in ("LineString", "MultiLineString"):
        raise InvalidInput("geometry", f"must be a LineString or MultiLineString for a {kind}, got {geom.geom_type}")
    if not geom.is_valid:
        raise InvalidInput("geometry", f"is not valid: {shapely.is_valid_reason(geom)}")
    return geom


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """A property-set value must be JSON the store keeps as it is: finite numbers, not nested too deep."""
    if depth > 32:
        raise InvalidInput(where, "is nested more than 32 levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(where, "must be a finite number")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput(where, "contains a NUL character")
    if isinstance(value, list):
        for item in value:
            _check_json(item, where, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_json(item, where, depth + 1)


def _asset(**fields: Any) -> Asset:
    try:
        return Asset(**fields)
    except InvalidInput as exc:
        raise InvalidInput(_field_of(exc), exc.why) from None


def _field_of(exc: InvalidInput) -> str:
    """``properties.<name>`` for an error :class:`Asset` raised about one of its fields."""
    match = re.search(r"field (\w+)$", exc.what)
    return f"properties.{match.group(1)}" if match else exc.what
