"""Assets as GeoJSON features: typed columns of the kind as properties, property sets under ``props``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from enum import Enum
from typing import Any

from shapely.geometry import mapping

from cim.model import Asset, fields_of

BASE_PROPERTIES = ("kind", "name", "parent_id", "source", "z_min", "z_max")


def feature(asset: Asset, *, properties: Collection[str] | None = None) -> dict[str, Any]:
    """A GeoJSON Feature of ``asset``; ``properties`` keeps only the named ones (all when None).

    >>> from cim.model import Kind
    >>> feature(Asset(id="h1", kind=Kind.HYDRANT), properties=["kind"])
    {'type': 'Feature', 'id': 'h1', 'geometry': None, 'properties': {'kind': 'hydrant'}}
    """
    values: dict[str, Any] = {}
    for name in (*BASE_PROPERTIES, *fields_of(asset.kind)):
        if properties is None or name in properties:
            value = getattr(asset, name)
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, Enum):
                value = value.value
            values[name] = value
    if properties is None or "props" in properties:
        values["props"] = dict(asset.props)
    return {
        "type": "Feature",
        "id": asset.id,
        "geometry": None if asset.geom is None else mapping(asset.geom),
        "properties": values,
    }
