"""Assets as GeoJSON features: the base columns, the typed columns of the kind, then each key of ``props`` as a
property of its own (flattened; a key that clashes with a column's name is given as ``props.<key>``).

GIS clients (GDAL, QGIS) make one field of each property, so a property set kept as one ``props`` object arrived as
one JSON string nobody could filter or style by.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from enum import Enum
from functools import cache
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import mapping

from cim.model import Asset, Kind, fields_of

BASE_PROPERTIES = ("kind", "name", "parent_id", "source", "z_min", "z_max")
PROPS_PREFIX = "props."


@cache
def column_names(kind: Kind) -> tuple[str, ...]:
    """The properties of ``kind`` that are columns: the base ones, then the kind's typed columns."""
    return (*BASE_PROPERTIES, *fields_of(kind))


@cache
def reserved_names(kind: Kind) -> frozenset[str]:
    """Names a property-set key cannot take as it is: the columns, ``id``, ``geometry`` and ``props``."""
    return frozenset({*column_names(kind), "id", "geometry", "geom", "props"})


def property_name(kind: Kind, key: str) -> str:
    """The feature property a ``props`` key of a ``kind`` asset is published as.

    >>> property_name(Kind.BUILDING, "floors"), property_name(Kind.BUILDING, "height_m")
    ('floors', 'props.height_m')
    """
    return PROPS_PREFIX + key if key in reserved_names(kind) or key.startswith(PROPS_PREFIX) else key


def geometry_fragments(assets: Sequence[Asset]) -> list[orjson.Fragment | None]:
    """The assets' geometries as GeoJSON text, for orjson to put into an answer as they are: GEOS writes them for
    the whole page at once, 5× faster than ``mapping`` builds a dict of each (and exact to the last digit)."""
    geoms = np.array([asset.geom for asset in assets], dtype=object)
    texts = shapely.to_geojson(geoms) if len(geoms) else []
    return [None if text is None else orjson.Fragment(text) for text in texts]


def feature(asset: Asset, *, properties: Collection[str] | None = None, geometry: bool = True) -> dict[str, Any]:
    """A GeoJSON Feature of ``asset``; ``properties`` keeps only the named ones (all when None; ``props`` names
    every property-set key); ``geometry=False`` leaves the geometry None, for the caller to fill in.

    >>> from cim.model import Kind
    >>> feature(Asset(id="h1", kind=Kind.HYDRANT, props={"code": "A"}), properties=["kind", "code"])
    {'type': 'Feature', 'id': 'h1', 'geometry': None, 'properties': {'kind': 'hydrant', 'code': 'A'}}
    """
    values: dict[str, Any] = {}
    for name in column_names(asset.kind):
        if properties is None or name in properties:
            value = getattr(asset, name)
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, Enum):
                value = value.value
            values[name] = value
    every_key = properties is None or "props" in properties
    reserved = reserved_names(asset.kind)
    for key, value in asset.props.items():
        name = PROPS_PREFIX + key if key in reserved or key.startswith(PROPS_PREFIX) else key
        if every_key or name in properties:  # type: ignore[operator]
            values[name] = value
    return {
        "type": "Feature",
        "id": asset.id,
        "geometry": None if asset.geom is None or not geometry else mapping(asset.geom),
        "properties": values,
    }
