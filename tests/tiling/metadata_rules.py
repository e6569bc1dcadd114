"""EXT_structural_metadata property tables and EXT_mesh_features feature ids, checked rule by rule from the specs.

Neither gltf-validator nor the 3D Tiles JSON schemas look inside property tables, so this module does, from the
text of the EXT_structural_metadata README, the 3D Metadata Specification (binary table format), the JSON schemas of
class, class property, enum and property table (``../shared/schemas/3d-tiles-1.1/Schema`` and ``PropertyTable``, the
shapes EXT_structural_metadata reuses), the EXT_mesh_features README and featureId schema, and glTF 2.0 core where
those defer to it (buffer views, accessors). Every failure is an ``AssertionError`` naming the file, the place (table,
property, primitive), a rule id in brackets and what the spec asks.

Buffer views are read through :func:`read_view`; a view compressed with ``EXT_meshopt_compression`` is handed to
:data:`meshopt_decoder` — by default :func:`decode_meshopt_view`, which reads the extension's fields itself and
decodes with meshoptimizer (PyPI ``meshopt``), not through the writer's own inverse in :mod:`cim.tiling.compress`.
Set it to None and such a view fails loudly; it is never skipped.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ViewReader = Callable[[dict[str, Any], bytes, int], bytes]


def decode_meshopt_view(doc: dict[str, Any], binary: bytes, index: int) -> bytes:
    """The plain bytes of buffer view ``index``, whose ``EXT_meshopt_compression`` data lies in the BIN chunk."""
    import meshopt  # only when a tile is compressed

    view = doc["bufferViews"][index]
    ext = view["extensions"]["EXT_meshopt_compression"]
    if ext.get("buffer", 0) != 0 or ext.get("byteOffset", 0) + ext["byteLength"] > len(binary):
        raise AssertionError(f"buffer view {index}: its compressed bytes lie outside the BIN chunk")
    if ext["byteStride"] * ext["count"] != view["byteLength"]:
        raise AssertionError(f"buffer view {index}: byteStride × count is not the view's byteLength")
    data = binary[ext.get("byteOffset", 0) : ext.get("byteOffset", 0) + ext["byteLength"]]
    rows = meshopt.decode_gltf_buffer(data, ext["count"], ext["byteStride"], ext["mode"], ext.get("filter", "NONE"))
    return np.ascontiguousarray(rows).tobytes()


#: Decodes a buffer view carrying ``EXT_meshopt_compression`` into its plain bytes.
meshopt_decoder: ViewReader | None = decode_meshopt_view

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas" / "3d-tiles-1.1"
IDENTIFIER = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
COMPONENTS: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "INT8": "<i1",
        "UINT8": "<u1",
        "INT16": "<i2",
        "UINT16": "<u2",
        "INT32": "<i4",
        "UINT32": "<u4",
        "INT64": "<i8",
        "UINT64": "<u8",
        "FLOAT32": "<f4",
        "FLOAT64": "<f8",
    }.items()
}
INTEGERS = {k: v for k, v in COMPONENTS.items() if v.kind in "iu"}
OFFSET_TYPES = {k: COMPONENTS[k] for k in ("UINT8", "UINT16", "UINT32", "UINT64")}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
#: Accessor component types a vertex attribute may use (glTF 2.0 core: UNSIGNED_INT 5125 is for indices only).
ATTRIBUTE_COMPONENTS = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5126: "<f4"}
ACCESSOR_COMPONENTS = {**ATTRIBUTE_COMPONENTS, 5125: "<u4"}
#: Our writer's policy (the spec's implementation note): every property-table view starts on 8 bytes, which also
#: meets the spec's rule (a multiple of the component / offset type size, at most 8).
TABLE_VIEW_ALIGNMENT = 8


def fail(where: str, place: str, rule: str, text: str) -> None:
    raise AssertionError(f"{where}: {place}: [{rule}] {text}")


def read_view(doc: dict[str, Any], binary: bytes, index: int) -> bytes:
    """The bytes of buffer view ``index`` of a glb whose only buffer is its BIN chunk (decoded if meshopt)."""
    view = doc["bufferViews"][index]
    if "EXT_meshopt_compression" in view.get("extensions", {}):
        if meshopt_decoder is None:
            raise AssertionError(f"buffer view {index} is EXT_meshopt_compression-compressed and no decoder is set")
        return meshopt_decoder(doc, binary, index)
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


def check_glb(data: bytes, where: str, read: ViewReader = read_view) -> None:
    """Every rule of this module on one glb file's bytes."""
    check_glb_layout(data, where)
    json_length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + json_length])
    rest = 20 + json_length
    binary = data[rest + 8 :] if rest < len(data) else b""
    check_property_tables(doc, binary, where, read)


def check_glb_layout(data: bytes, where: str) -> None:
    """EXT_structural_metadata "Binary Data Storage": the JSON chunk padded with spaces and the BIN chunk with zeros
    to 8-byte boundaries (the BIN chunk at most 7 bytes longer than the buffer's byteLength)."""
    magic, _, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67 or length != len(data):
        fail(where, "glb", "glb-header", "not a glb whose header length is the file's")
    json_length = struct.unpack_from("<I", data, 12)[0]
    if json_length % 8:
        fail(where, "JSON chunk", "chunk-8-byte", f"length {json_length} is not padded to 8 bytes")
    rest = 20 + json_length
    if rest < len(data):
        bin_length = struct.unpack_from("<I", data, rest)[0]
        if bin_length % 8:
            fail(where, "BIN chunk", "chunk-8-byte", f"length {bin_length} is not padded to 8 bytes")
        doc = json.loads(data[20:rest])
        declared = doc.get("buffers", [{}])[0].get("byteLength", 0)
        if not 0 <= bin_length - declared <= 7:
            fail(where, "BIN chunk", "chunk-8-byte", f"{bin_length} bytes for a buffer of {declared}")


def check_property_tables(doc: dict[str, Any], binary: bytes, where: str, read: ViewReader = read_view) -> None:
    """Raise ``AssertionError`` at the first rule of EXT_structural_metadata / EXT_mesh_features the glb breaks."""
    _check_buffer_views(doc, binary, where)
    metadata = doc.get("extensions", {}).get("EXT_structural_metadata")
    tables: list[dict[str, Any]] = []
    if metadata is not None:
        _used(doc, "EXT_structural_metadata", where)
        if "schema" not in metadata:
            fail(where, "EXT_structural_metadata", "schema-embedded", "no embedded schema (schemaUri is not checked)")
        schema = metadata["schema"]
        _json_schema(schema, "Schema/schema.schema.json", where, "schema")
        _check_schema(schema, where)
        tables = metadata.get("propertyTables", [])
        for index, table in enumerate(tables):
            place = f"property table {index} ({table.get('class')})"
            _json_schema(table, "PropertyTable/propertyTable.schema.json", where, place)
            _check_table(doc, binary, schema, table, where, place, read)
    _check_mesh_features(doc, binary, tables, where, read)


def _used(doc: dict[str, Any], name: str, where: str) -> None:
    if name not in doc.get("extensionsUsed", []):
        fail(where, "extensionsUsed", "extension-used", f"{name} is used but not listed")


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    def retrieve(uri: str) -> Resource[Any]:
        path = Path(uri.removeprefix("file://"))
        return Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT202012)

    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return jsonschema.Draft202012Validator({"$ref": f"file://{SCHEMAS / name}"}, registry=registry)


def _json_schema(value: Any, name: str, where: str, place: str) -> None:
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(value))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path)
        fail(where, f"{place} /{path}", "json-schema", f"{error.message} ({name})")


def _check_buffer_views(doc: dict[str, Any], binary: bytes, where: str) -> None:
    buffers = doc.get("buffers", [])
    for index, view in enumerate(doc.get("bufferViews", [])):
        place = f"buffer view {index}"
        if view.get("byteLength", 0) < 1:
            fail(where, place, "view-not-empty", "glTF requires byteLength >= 1")
        if not 0 <= view.get("buffer", -1) < len(buffers):
            fail(where, place, "view-in-buffer", f"buffer {view.get('buffer')} does not exist")
        end = view.get("byteOffset", 0) + view["byteLength"]
        if end > buffers[view["buffer"]].get("byteLength", 0):
            fail(where, place, "view-in-buffer", f"ends at {end}, past its buffer")
        compressed = "EXT_meshopt_compression" in view.get("extensions", {})
        if view["buffer"] == 0 and not compressed and end > len(binary):
            fail(where, place, "view-in-buffer", f"ends at {end}, past the BIN chunk ({len(binary)} bytes)")


def _check_schema(schema: dict[str, Any], where: str) -> None:
    ids = [*schema.get("enums", {}), *schema.get("classes", {})]
    ids += [p for c in schema.get("classes", {}).values() for p in c.get("properties", {})]
    for name in ids:
        if not IDENTIFIER.match(name):
            fail(where, "schema", "identifier", f"{name!r} does not match ^[a-zA-Z_][a-zA-Z0-9_]*$")
    for enum_id, enum in schema.get("enums", {}).items():
        place = f"enum {enum_id}"
        value_type = enum.get("valueType", "UINT16")
        if value_type not in INTEGERS:
            fail(where, place, "enum-value-type", f"valueType {value_type} is not an integer type")
        names = [v["name"] for v in enum["values"]]
        values = [v["value"] for v in enum["values"]]
        if len(set(names)) != len(names) or len(set(values)) != len(values):
            fail(where, place, "enum-unique", "duplicate names or values")
        info = np.iinfo(INTEGERS[value_type])
        if not all(info.min <= v <= info.max for v in values):
            fail(where, place, "enum-value-range", f"a value does not fit {value_type}")
    for class_id, cls in schema.get("classes", {}).items():
        semantics = [p["semantic"] for p in cls.get("properties", {}).values() if "semantic" in p]
        if len(set(semantics)) != len(semantics):
            fail(where, f"class {class_id}", "semantic-unique", "a semantic is used by two properties")
        for prop_id, prop in cls.get("properties", {}).items():
            _check_class_property(schema, prop, where, f"class {class_id} property {prop_id}")


def _check_class_property(schema: dict[str, Any], prop: dict[str, Any], where: str, place: str) -> None:
    kind = prop["type"]
    if kind not in (*WIDTH, "STRING", "BOOLEAN", "ENUM"):
        fail(where, place, "property-type", f"unknown type {kind}")
    numeric = kind in WIDTH
    if numeric != ("componentType" in prop):
        fail(where, place, "component-type", "componentType is required for numeric types and disallowed otherwise")
    if numeric and prop["componentType"] not in COMPONENTS:
        fail(where, place, "component-type", f"unknown componentType {prop['componentType']}")
    if (kind == "ENUM") != ("enumType" in prop) or (kind == "ENUM" and prop["enumType"] not in schema.get("enums", {})):
        fail(where, place, "enum-type", "enumType must name a schema enum exactly when type is ENUM")
    if "count" in prop and not prop.get("array"):
        fail(where, place, "array-count", "count may only be given for arrays")
    integer = numeric and prop["componentType"] in INTEGERS
    if prop.get("normalized") and not integer:
        fail(where, place, "normalized", "normalized applies to integer component types only")
    transformable = numeric and (not integer or prop.get("normalized")) and not _variable(prop)
    for key in ("offset", "scale"):
        if key in prop and not transformable:
            fail(where, place, "offset-scale", f"{key} applies to float or normalized numeric types only")
    for key in ("min", "max"):
        if key in prop and (not numeric or _variable(prop)):
            fail(where, place, "min-max", f"{key} applies to numeric types that are not variable-length arrays")
        if key in prop:
            _check_value(schema, prop, prop[key], where, place, key, final=True)
    if prop.get("required") and ("noData" in prop or "default" in prop):
        fail(where, place, "required-no-default", "a required property may give neither noData nor default")
    if "noData" in prop:
        if kind == "BOOLEAN":
            fail(where, place, "no-data-type", "BOOLEAN properties may not give noData")
        _check_value(schema, prop, prop["noData"], where, place, "noData", final=False)
    if "default" in prop:
        _check_value(schema, prop, prop["default"], where, place, "default", final=True)


def _variable(prop: dict[str, Any]) -> bool:
    return bool(prop.get("array")) and "count" not in prop


def _check_value(
    schema: dict[str, Any], prop: dict[str, Any], value: Any, where: str, place: str, key: str, *, final: bool
) -> None:
    """``value`` has the property's value structure; raw values (noData) fit the component type, final ones
    (default, and min/max of normalized properties) may be any finite number."""
    rule = {"noData": "no-data-type", "default": "default-type"}.get(key, "min-max")
    kind = prop["type"]
    items = value if prop.get("array") else [value]
    if not isinstance(items, list) or ("count" in prop and len(items) != prop["count"]):
        fail(where, place, rule, f"{key} {value!r} does not have the array's structure")
    for item in items:
        if kind == "STRING" and not isinstance(item, str):
            fail(where, place, rule, f"{key} {item!r} is not a string")
        if kind == "BOOLEAN" and not isinstance(item, bool):
            fail(where, place, rule, f"{key} {item!r} is not a boolean")
        if kind == "ENUM":
            names = {v["name"] for v in schema["enums"][prop["enumType"]]["values"]}
            if item not in names:
                fail(where, place, rule, f"{key} {item!r} is not the name of a value of {prop['enumType']}")
        if kind in WIDTH:
            width = WIDTH[kind]
            parts = [item] if width == 1 else item
            if not isinstance(parts, list) or len(parts) != width:
                fail(where, place, rule, f"{key} {item!r} does not have {width} components")
            for part in parts:
                _check_number(prop, part, where, place, key, rule, final=final and bool(prop.get("normalized")))


def _check_number(prop: dict[str, Any], part: Any, where: str, place: str, key: str, rule: str, *, final: bool) -> None:
    if isinstance(part, bool) or not isinstance(part, int | float) or not math.isfinite(part):
        fail(where, place, rule, f"{key} {part!r} is not a finite number")
    component = prop["componentType"]
    if component in INTEGERS and not final:
        info = np.iinfo(INTEGERS[component])
        if part != int(part) or not info.min <= part <= info.max:
            fail(where, place, rule, f"{key} {part!r} is not a {component}")


def _check_table(
    doc: dict[str, Any],
    binary: bytes,
    schema: dict[str, Any],
    table: dict[str, Any],
    where: str,
    place: str,
    read: ViewReader,
) -> None:
    cls = schema.get("classes", {}).get(table["class"])
    if cls is None:
        fail(where, place, "class-exists", f"class {table['class']!r} is not in the schema")
    if table["count"] < 1:
        fail(where, place, "count", "count must be >= 1")
    defined = cls.get("properties", {})
    given = table.get("properties", {})
    for prop_id in given:
        if prop_id not in defined:
            fail(where, f"{place} property {prop_id}", "property-in-class", "the class does not define it")
    for prop_id, prop in defined.items():
        if prop.get("required") and prop_id not in given:
            fail(where, f"{place} property {prop_id}", "required-present", "a required property is missing")
    for prop_id, column in given.items():
        _check_column(
            doc, binary, schema, defined[prop_id], column, table["count"], where, f"{place} property {prop_id}", read
        )


def _view(
    doc: dict[str, Any], binary: bytes, column: dict[str, Any], key: str, where: str, place: str, read: ViewReader
) -> bytes:
    index = column.get(key)
    views = doc.get("bufferViews", [])
    if not isinstance(index, int) or not 0 <= index < len(views):
        fail(where, place, "view-index", f"{key} {index!r} is not a buffer view")
    if views[index].get("byteOffset", 0) % TABLE_VIEW_ALIGNMENT:
        fail(where, place, "view-alignment", f"{key} view {index} does not start on {TABLE_VIEW_ALIGNMENT} bytes")
    return read(doc, binary, index)


def _offsets(raw: bytes, type_name: str, count: int, target: int, where: str, place: str, what: str) -> np.ndarray:
    """``count`` + 1 offsets of ``type_name``: first 0, never decreasing, last = ``target``."""
    if type_name not in OFFSET_TYPES:
        fail(where, place, f"{what}-offset-type", f"{type_name!r} is not UINT8, UINT16, UINT32 or UINT64")
    dtype = OFFSET_TYPES[type_name]
    if len(raw) != (count + 1) * dtype.itemsize:
        fail(where, place, f"{what}-offset-count", f"{len(raw)} bytes are not {count} + 1 {type_name} offsets")
    offsets = np.frombuffer(raw, dtype).astype(np.int64)
    if offsets[0] != 0:
        fail(where, place, f"{what}-offset-first", f"the first offset is {offsets[0]}, not 0")
    if np.any(np.diff(offsets) < 0):
        fail(where, place, f"{what}-offset-monotonic", "offsets decrease")
    if target >= 0 and offsets[-1] != target:
        fail(where, place, f"{what}-offset-last", f"the last offset is {offsets[-1]}, the data holds {target}")
    return offsets


def _check_column(
    doc: dict[str, Any],
    binary: bytes,
    schema: dict[str, Any],
    prop: dict[str, Any],
    column: dict[str, Any],
    count: int,
    where: str,
    place: str,
    read: ViewReader,
) -> None:
    kind = prop["type"]
    values = _view(doc, binary, column, "values", where, place, read)
    if _variable(prop):
        if "arrayOffsets" not in column:
            fail(where, place, "array-offsets-required", "a variable-length array needs arrayOffsets")
        raw = _view(doc, binary, column, "arrayOffsets", where, place, read)
        array_offsets = _offsets(raw, column.get("arrayOffsetType", "UINT32"), count, -1, where, place, "array")
        elements = int(array_offsets[-1])
    else:
        elements = count * prop.get("count", 1)
    if kind == "STRING":
        if "stringOffsets" not in column:
            fail(where, place, "string-offsets-required", "a STRING property needs stringOffsets")
        raw = _view(doc, binary, column, "stringOffsets", where, place, read)
        offsets = _offsets(raw, column.get("stringOffsetType", "UINT32"), elements, len(values), where, place, "string")
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            try:
                values[a:b].decode("utf-8")
            except UnicodeDecodeError:
                fail(where, place, "utf8", f"bytes {a}..{b} are not valid UTF-8")
        return
    if kind == "BOOLEAN":
        if len(values) != math.ceil(elements / 8):
            fail(where, place, "values-length", f"{len(values)} bytes for {elements} booleans")
        if elements % 8 and values[-1] >> (elements % 8):
            fail(where, place, "boolean-padding", "unused bits of the last byte are not 0")
        return
    if kind == "ENUM":
        enum = schema["enums"][prop["enumType"]]
        dtype = INTEGERS[enum.get("valueType", "UINT16")]
        _length(values, elements * dtype.itemsize, where, place, f"{elements} {enum.get('valueType', 'UINT16')}")
        allowed = np.asarray([v["value"] for v in enum["values"]])
        if not np.isin(np.frombuffer(values, dtype), allowed).all():
            fail(where, place, "enum-values", f"a value is not among the values of enum {prop['enumType']}")
        return
    dtype = COMPONENTS[prop["componentType"]]
    width = WIDTH[kind]
    _length(values, elements * width * dtype.itemsize, where, place, f"{elements} × {kind} {prop['componentType']}")
    array = np.frombuffer(values, dtype)
    if dtype.kind == "f" and not np.isfinite(array).all():
        fail(where, place, "finite", "NaN and ±Infinity are never allowed")
    if not _variable(prop):
        _check_bounds(prop, column, array.reshape(count, -1), where, place)


def _length(values: bytes, expected: int, where: str, place: str, what: str) -> None:
    if len(values) != expected:
        fail(where, place, "values-length", f"{len(values)} bytes where {what} take {expected}")


def _check_bounds(prop: dict[str, Any], column: dict[str, Any], rows: np.ndarray, where: str, place: str) -> None:
    """Class ``min``/``max`` (allowed) and table ``min``/``max`` (present) hold for every value that is not noData,
    after normalization, offset and scale (the table's offset/scale override the class's)."""
    bounds = {
        f"{source} {key}": owner[key]
        for source, owner in (("class", prop), ("table", column))
        for key in ("min", "max")
        if key in owner
    }
    if not bounds:
        return
    keep = np.ones(len(rows), bool)
    if "noData" in prop:
        keep = ~np.all(rows == np.ravel(np.asarray(prop["noData"], np.float64)), axis=1)
    values = rows[keep].astype(np.float64)
    integer = prop["componentType"] in INTEGERS
    if prop.get("normalized"):
        info = np.iinfo(INTEGERS[prop["componentType"]])
        values = np.maximum(values / info.max, -1.0) if info.min < 0 else values / info.max
    if not integer or prop.get("normalized"):
        offset = column.get("offset", prop.get("offset", 0.0))
        scale = column.get("scale", prop.get("scale", 1.0))
        values = np.ravel(np.asarray(offset, np.float64)) + np.ravel(np.asarray(scale, np.float64)) * values
    for name, bound in bounds.items():
        limit = np.ravel(np.asarray(bound, np.float64))
        broken = values < limit if name.endswith("min") else values > limit
        if broken.any():
            fail(where, place, "min-max", f"a value lies outside the {name} {bound}")


def _check_attribute_alignment(doc: dict[str, Any], accessor: dict[str, Any], where: str, place: str) -> None:
    """EXT_mesh_features: "as with other vertex attributes, each element of a feature ID accessor must align to
    4-byte boundaries" — its start and its stride (byteStride, or the element size when packed) multiples of 4."""
    view = doc["bufferViews"][accessor.get("bufferView", 0)]
    stride = view.get("byteStride", np.dtype(ATTRIBUTE_COMPONENTS[accessor["componentType"]]).itemsize)
    if (view.get("byteOffset", 0) + accessor.get("byteOffset", 0)) % 4 or stride % 4:
        fail(where, place, "feature-id-alignment", f"elements start every {stride} bytes, not on 4-byte boundaries")


def _accessor(doc: dict[str, Any], binary: bytes, index: int, read: ViewReader) -> np.ndarray:
    """The raw values of a SCALAR accessor (sparse accessors are not written here and fail)."""
    acc = doc["accessors"][index]
    if "sparse" in acc or "bufferView" not in acc:
        raise AssertionError(f"accessor {index}: sparse or view-less accessors are not checked")
    dtype = np.dtype(ACCESSOR_COMPONENTS[acc["componentType"]])
    view = doc["bufferViews"][acc["bufferView"]]
    data = read(doc, binary, acc["bufferView"])
    stride = view.get("byteStride", dtype.itemsize)
    start = acc.get("byteOffset", 0)
    raw = np.frombuffer(data, np.uint8, count=stride * (acc["count"] - 1) + dtype.itemsize, offset=start)
    padded = np.concatenate([raw, np.zeros(stride - dtype.itemsize, np.uint8)])
    return padded.reshape(acc["count"], stride)[:, : dtype.itemsize].copy().view(dtype).ravel()


def _check_mesh_features(
    doc: dict[str, Any], binary: bytes, tables: list[dict[str, Any]], where: str, read: ViewReader
) -> None:
    for m, mesh in enumerate(doc.get("meshes", [])):
        for p, primitive in enumerate(mesh["primitives"]):
            features = primitive.get("extensions", {}).get("EXT_mesh_features")
            if features is None:
                continue
            _used(doc, "EXT_mesh_features", where)
            ids = features.get("featureIds", [])
            if not ids:
                fail(where, f"mesh {m} primitive {p}", "feature-ids", "featureIds must hold at least one entry")
            pairs = [json.dumps(f, sort_keys=True) for f in ids]
            if len(set(pairs)) != len(pairs):
                fail(where, f"mesh {m} primitive {p}", "feature-ids-unique", "a feature id set is repeated")
            for k, feature in enumerate(ids):
                _check_feature_ids(
                    doc, binary, tables, primitive, feature, where, f"mesh {m} primitive {p} featureIds[{k}]", read
                )


def _check_feature_ids(
    doc: dict[str, Any],
    binary: bytes,
    tables: list[dict[str, Any]],
    primitive: dict[str, Any],
    feature: dict[str, Any],
    where: str,
    place: str,
    read: ViewReader,
) -> None:
    count = feature.get("featureCount")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        fail(where, place, "feature-count", f"featureCount {count!r} must be an integer >= 1")
    null = feature.get("nullFeatureId")
    if null is not None and (not isinstance(null, int) or null < 0):
        fail(where, place, "null-feature-id", f"nullFeatureId {null!r} must be an integer >= 0")
    if "label" in feature and not IDENTIFIER.match(str(feature["label"])):
        fail(where, place, "label", f"label {feature['label']!r} is not an identifier")
    if "texture" in feature:
        fail(where, place, "feature-id-texture", "feature id textures are not checked here")
    if "attribute" in feature:
        name = f"_FEATURE_ID_{feature['attribute']}"
        if name not in primitive["attributes"]:
            fail(where, place, "feature-id-attribute", f"the primitive has no {name} attribute")
        accessor = doc["accessors"][primitive["attributes"][name]]
        if accessor["type"] != "SCALAR" or accessor.get("normalized", False):
            fail(where, place, "feature-id-accessor", f"{name} must be a SCALAR accessor, not normalized")
        if accessor["componentType"] not in ATTRIBUTE_COMPONENTS:
            fail(
                where,
                place,
                "feature-id-accessor",
                f"componentType {accessor['componentType']} is not a vertex attribute type",
            )
        _check_attribute_alignment(doc, accessor, where, place)
        values = _accessor(doc, binary, primitive["attributes"][name], read).astype(np.float64)
    else:  # implicit: ids by vertex index
        vertices = doc["accessors"][primitive["attributes"]["POSITION"]]["count"]
        values = np.arange(vertices, dtype=np.float64)
    if not np.all(values == np.round(values)):
        fail(where, place, "feature-id-integer", "a feature id is not an integer")
    real = values if null is None else values[values != null]
    if len(real) and (real.min() < 0 or real.max() >= count):
        fail(where, place, "feature-id-range", f"ids span {real.min():.0f}..{real.max():.0f}, featureCount is {count}")
    if len(np.unique(real)) != count:
        fail(where, place, "feature-count", f"{len(np.unique(real))} distinct ids, featureCount says {count}")
    if "propertyTable" in feature:
        index = feature["propertyTable"]
        if not isinstance(index, int) or not 0 <= index < len(tables):
            fail(where, place, "property-table-index", f"property table {index!r} does not exist")
        if count > tables[index]["count"]:
            fail(
                where,
                place,
                "feature-count-table",
                f"featureCount {count} > the table's count {tables[index]['count']}",
            )
