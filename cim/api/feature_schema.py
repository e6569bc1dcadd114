"""The JSON Schemas of a collection's features: its queryables (OGC API – Features Part 3), its schema (Part 5) and
the schema of one GeoJSON feature (the ``describedBy`` link of Part 1).

Each lists the same typed properties: the base columns, the typed columns of the kind and the property-set keys the
kind's assets really have (:mod:`cim.store.catalogue`), with the geometry type the kind has. GDAL 3.6 makes its
fields from the ``describedBy`` schema — the one of a whole GeoJSON feature, whose ``properties`` it reads — and the
properties it may filter on the server from the ``queryables`` list of the draft Part 3.
"""

from __future__ import annotations

from typing import Any

from cim.api.geojson import column_names, property_name
from cim.model import Kind
from cim.queries.cql import column_type
from cim.store.catalogue import KindCatalogue

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
INTEGER_COLUMNS = frozenset({"storeys"})
_TYPES: dict[str, dict[str, Any]] = {
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "object": {"type": ["object", "array"]},
}
#: Part 5's format of a geometry property, by the geometry types a kind has.
_FORMATS = {
    ("Point",): "geometry-point",
    ("MultiPoint",): "geometry-multipoint",
    ("LineString",): "geometry-linestring",
    ("MultiLineString",): "geometry-multilinestring",
    ("Polygon",): "geometry-polygon",
    ("MultiPolygon",): "geometry-multipolygon",
    ("MultiPoint", "Point"): "geometry-point-or-multipoint",
    ("LineString", "MultiLineString"): "geometry-linestring-or-multilinestring",
    ("MultiPolygon", "Polygon"): "geometry-polygon-or-multipolygon",
}
_GEOJSON_SCHEMAS = "https://geojson.org/schema"


def geometry_format(catalogue: KindCatalogue) -> str:
    """The Part 5 format of the kind's geometry: one type, a type and its multi form, or ``geometry-any``."""
    return _FORMATS.get(catalogue.geometry_types, "geometry-any")


def geometry_schema(catalogue: KindCatalogue) -> dict[str, Any]:
    """The geometry property: its Part 5 format and role, and the GeoJSON schema of its type(s)."""
    types = catalogue.geometry_types
    refs = [{"$ref": f"{_GEOJSON_SCHEMAS}/{t}.json"} for t in types] or [{"$ref": f"{_GEOJSON_SCHEMAS}/Geometry.json"}]
    shape = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"title": "geometry", "format": geometry_format(catalogue), "x-ogc-role": "primary-geometry", **shape}


def typed_properties(kind: Kind, catalogue: KindCatalogue) -> dict[str, dict[str, Any]]:
    """Every property of the kind's features by name, with its JSON type: columns, then property-set keys."""
    found: dict[str, dict[str, Any]] = {}
    for column in column_names(kind):
        typed = "integer" if column in INTEGER_COLUMNS else column_type(column)
        found[column] = {"title": column, **_TYPES[typed]}
    found["kind"]["enum"] = [str(kind)]
    for key, typed in catalogue.keys.items():
        name = property_name(kind, key)
        found[name] = {"title": key, "description": f"property-set value {key}", **_TYPES[typed]}
    return found


def queryables_document(base: str, kind: Kind, catalogue: KindCatalogue) -> dict[str, Any]:
    """``/collections/{kind}/queryables``: what a filter (and sortby) may name."""
    properties = {
        "id": {"title": "id", "type": "string", "x-ogc-role": "id"},
        "geometry": geometry_schema(catalogue),
        **{name: schema for name, schema in typed_properties(kind, catalogue).items() if not _is_object(schema)},
    }
    return {
        "$schema": JSON_SCHEMA,
        "$id": f"{base}/queryables",
        "type": "object",
        "title": str(kind),
        "description": f"The properties of {kind} assets a filter or sortby may name; a property-set key also as "
        "props.<key>",
        "properties": properties,
        "additionalProperties": catalogue.truncated,
        # the draft form GDAL 3.6 reads to decide which properties it may filter on the server
        "queryables": [
            {"id": name, "type": schema.get("format", schema["type"])}
            for name, schema in properties.items()
            if name != "geometry"
        ],
    }


def collection_schema(base: str, kind: Kind, catalogue: KindCatalogue) -> dict[str, Any]:
    """``/collections/{kind}/schema``: the features' properties as OGC API – Features Part 5 describes them."""
    return {
        "$schema": JSON_SCHEMA,
        "$id": f"{base}/schema",
        "type": "object",
        "title": str(kind),
        "description": f"The properties of the features of {kind} assets",
        "properties": {
            "id": {"title": "id", "type": "string", "x-ogc-role": "id"},
            "geometry": geometry_schema(catalogue),
            **typed_properties(kind, catalogue),
        },
        "additionalProperties": catalogue.truncated,
    }


def feature_schema(base: str, kind: Kind, catalogue: KindCatalogue) -> dict[str, Any]:
    """``/collections/{kind}/feature-schema``: the schema of one GeoJSON feature of the collection."""
    return {
        "$schema": JSON_SCHEMA,
        "$id": f"{base}/feature-schema",
        "type": "object",
        "title": str(kind),
        "description": f"A GeoJSON feature of a {kind} asset",
        "required": ["type", "id", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {**geometry_schema(catalogue), "x-ogc-role": "primary-geometry"},
            "properties": {
                "type": "object",
                "properties": typed_properties(kind, catalogue),
                "additionalProperties": catalogue.truncated,
            },
        },
    }


def _is_object(schema: dict[str, Any]) -> bool:
    return isinstance(schema.get("type"), list)
