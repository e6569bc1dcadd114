"""Property tables and feature ids follow EXT_structural_metadata / EXT_mesh_features (tests/tiling/metadata_rules.py):
tiles from :func:`cim.tiling.glb.encode_tile` pass, and a hand-made glb using every property shape passes while each
rule, broken on purpose, is caught — so the checker cannot pass silently."""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from cim.model import MeshBatch
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling import properties
from cim.tiling.build import build_tiles
from cim.tiling.compress import compress_glb
from cim.tiling.glb import accessor_array, encode_tile, read_glb
from tests.tiling import metadata_rules
from tests.tiling.checks import check_all, scalar_property, string_property
from tests.tiling.conftest import LAT, LON, box_mesh
from tests.tiling.metadata_rules import check_glb, check_glb_layout, check_property_tables

Doc = dict[str, Any]


def city_tile() -> bytes:
    """A tile of three buildings and two pipes: ``material``, ``status`` and ``parent_id`` are empty for every
    building, ``name`` for every pipe; one building has no height (noData)."""
    meshes = [box_mesh(f"b{i}", LON + i * 1e-4, LAT, 4.0, 10, 10, 20) for i in range(3)]
    meshes += [box_mesh(f"p{i}", LON + i * 1e-4, LAT - 1e-4, -2.0, 10, 0.3, 0.3) for i in range(2)]
    buildings = pa.table(
        {
            "id": ["b0", "b1", "b2"],
            "kind": ["building"] * 3,
            "name": ["One", "Two", None],
            "height_m": [20.0, None, 12.5],
            "storeys": [6, 4, 3],
            "install_date": ["1990-01-01", "", "2001-05-05"],
            "year_built": [1990, None, 2001],
            "lift_count": [1, 0, 2],
        }
    )
    pipes = pa.table(
        {
            "id": ["p0", "p1"],
            "kind": ["pipe"] * 2,
            "network": ["water", "gas"],
            "material": ["cast iron", "PE"],
            "diameter_mm": [300.0, 110.0],
        }
    )
    tile = encode_tile((LON, LAT, 0.0), MeshBatch.from_meshes(meshes), {"building": buildings, "pipe": pipes})
    return tile.glb


def test_a_tile_whose_string_columns_are_all_empty_follows_every_rule() -> None:
    check_glb(city_tile(), "city.glb")


def test_all_missing_optional_columns_are_left_out_and_read_back_missing_through_default() -> None:
    doc, binary = read_glb(city_tile())
    metadata = doc["extensions"]["EXT_structural_metadata"]
    (table,) = metadata["propertyTables"]  # one table for the tile, whatever kinds it holds
    classes = metadata["schema"]["classes"]
    assert table["class"] == "building_pipe" and set(classes) == {"building_pipe"}
    assert {"status", "parent_id"}.isdisjoint(table["properties"])  # empty for every feature of the tile
    assert {"name", "height_m", "install_date", "year_built", "material", "network"} <= set(table["properties"])
    assert string_property(doc, binary, table, "name") == ["One", "Two", "", "", ""]
    assert string_property(doc, binary, table, "material") == ["", "", "", "cast iron", "PE"]
    storeys = scalar_property(doc, binary, table, "storeys", np.uint16).tolist()
    assert storeys == [6, 4, 3, 65535, 65535]  # pipes have none: the class's noData
    lifts = classes["building_pipe"]["properties"]["lift_count"]
    assert lifts["noData"] == 65535 and not lifts.get("required")  # required of buildings, missing for pipes
    for cls in classes.values():
        for prop in cls["properties"].values():
            # a client reads an omitted column as `default`: the noData value, i.e. "missing" as in a present column
            assert prop.get("default") == prop.get("noData")
            assert prop.get("required", False) == ("noData" not in prop)


def test_every_primitive_of_a_mixed_tile_points_at_its_own_kinds_rows() -> None:
    """CesiumJS reads one property table per model (the first primitive's): each kind's feature ids must index rows
    of that kind in the one table, or a pipe is picked and styled with a valve's row."""
    doc, binary = read_glb(city_tile())
    (table,) = doc["extensions"]["EXT_structural_metadata"]["propertyTables"]
    ids = string_property(doc, binary, table, "id")
    seen: dict[str, set[str]] = {}
    for mesh in doc["meshes"]:
        for primitive in mesh["primitives"]:
            spec = primitive["extensions"]["EXT_mesh_features"]["featureIds"][0]
            assert spec["propertyTable"] == 0 and spec["featureCount"] == table["count"]
            rows = accessor_array(doc, binary, primitive["attributes"]["_FEATURE_ID_0"]).ravel().astype(int)
            seen.setdefault(mesh["name"], set()).update(ids[r] for r in rows)
    assert seen == {"building": {"b0", "b1", "b2"}, "pipe": {"p0", "p1"}}


def test_every_property_table_column_is_an_optional_or_required_property_of_its_class() -> None:
    for kind in ("building", "pipe", "hydrant", "lift"):
        definitions = properties.schema_for([kind])["classes"][kind]["properties"]
        assert definitions["id"]["required"] and definitions["kind"]["required"]
        assert all(p.get("description") for p in definitions.values())


# --- a hand-made glb with every property shape the rules speak of -------------------------------------------------


class Glb:
    """A glb under construction: views appended 8-byte aligned, named for the mutations."""

    def __init__(self) -> None:
        self.binary = bytearray()
        self.views: list[dict[str, Any]] = []
        self.names: dict[str, int] = {}

    def view(self, name: str, data: bytes) -> int:
        self.binary += b"\x00" * ((-len(self.binary)) % 8)
        self.views.append({"buffer": 0, "byteOffset": len(self.binary), "byteLength": len(data)})
        self.binary += data
        self.names[name] = len(self.views) - 1
        return self.names[name]


def strings(values: list[str], offset_type: str = "UINT32") -> tuple[bytes, bytes]:
    data = [v.encode() for v in values]
    offsets = np.cumsum([0, *map(len, data)]).astype(metadata_rules.OFFSET_TYPES[offset_type])
    return b"".join(data), offsets.tobytes()


def rich() -> tuple[Doc, bytearray, dict[str, int]]:
    """Three ``thing`` entities with STRING (UINT16 offsets), ENUM, SCALAR with min/max/noData, normalized with
    offset/scale, VEC3, BOOLEAN, a variable-length UINT16 array (UINT8 offsets), a fixed-length INT16 array and a
    variable-length string array; four points with UNSIGNED_BYTE feature ids, the last one null (255)."""
    g = Glb()
    ids, id_offsets = strings(["a", "b", "c"])
    labels, label_offsets = strings(["ünï", "", "x"], "UINT16")
    tags, tag_offsets = strings(["t1", "t2", "t3"])
    table = {
        "id": {"values": g.view("id.values", ids), "stringOffsets": g.view("id.offsets", id_offsets)},
        "label": {
            "values": g.view("label.values", labels),
            "stringOffsets": g.view("label.offsets", label_offsets),
            "stringOffsetType": "UINT16",
        },
        "colour": {"values": g.view("colour.values", bytes([0, 2, 1]))},
        "size": {"values": g.view("size.values", np.array([1.5, -1, 99], "<f4").tobytes()), "max": 99},
        "level": {"values": g.view("level.values", bytes([0, 128, 255]))},
        "pos": {"values": g.view("pos.values", np.arange(9, dtype="<f4").tobytes())},
        "flags": {"values": g.view("flags.values", bytes([0b101]))},
        "samples": {
            "values": g.view("samples.values", np.array([1, 2, 3], "<u2").tobytes()),
            "arrayOffsets": g.view("samples.offsets", bytes([0, 2, 2, 3])),
            "arrayOffsetType": "UINT8",
        },
        "pair": {"values": g.view("pair.values", np.array([1, -1, 2, -2, 3, -3], "<i2").tobytes())},
        "tags": {
            "values": g.view("tags.values", tags),
            "arrayOffsets": g.view("tags.array", np.array([0, 1, 1, 3], "<u4").tobytes()),
            "stringOffsets": g.view("tags.offsets", tag_offsets),
        },
    }
    classes = {
        "thing": {
            "properties": {
                "id": {"type": "STRING", "required": True},
                "label": {"type": "STRING", "noData": "", "default": ""},
                "colour": {"type": "ENUM", "enumType": "Colour", "noData": "red", "default": "red"},
                "size": {"type": "SCALAR", "componentType": "FLOAT32", "min": 0, "max": 100, "noData": -1},
                "level": {
                    "type": "SCALAR",
                    "componentType": "UINT8",
                    "normalized": True,
                    "offset": 10,
                    "scale": 2,
                    "max": 12,
                },
                "pos": {"type": "VEC3", "componentType": "FLOAT32", "min": [0, 1, 2]},
                "flags": {"type": "BOOLEAN"},
                "samples": {"type": "SCALAR", "componentType": "UINT16", "array": True},
                "pair": {"type": "SCALAR", "componentType": "INT16", "array": True, "count": 2, "noData": [0, 0]},
                "tags": {"type": "STRING", "array": True},
                "unused": {"type": "SCALAR", "componentType": "UINT32", "noData": 0, "default": 0},
            }
        }
    }
    enums = {
        "Colour": {
            "valueType": "UINT8",
            "values": [{"name": n, "value": i} for i, n in enumerate(["red", "green", "blue"])],
        }
    }
    positions = g.view("positions", np.arange(12, dtype="<f4").tobytes())
    feature_ids = g.view("feature_ids", u8x4(0, 1, 2, 255))
    g.views[feature_ids]["byteStride"] = 4
    g.binary += b"\x00" * ((-len(g.binary)) % 8)
    doc: Doc = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "buffers": [{"byteLength": len(g.binary)}],
        "bufferViews": g.views,
        "accessors": [
            {"bufferView": positions, "componentType": 5126, "count": 4, "type": "VEC3"},
            {"bufferView": feature_ids, "componentType": 5121, "count": 4, "type": "SCALAR"},
        ],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": {"POSITION": 0, "_FEATURE_ID_0": 1},
                        "mode": 0,
                        "extensions": {
                            "EXT_mesh_features": {
                                "featureIds": [
                                    {"featureCount": 3, "attribute": 0, "nullFeatureId": 255, "propertyTable": 0}
                                ]
                            }
                        },
                    }
                ]
            }
        ],
        "extensions": {
            "EXT_structural_metadata": {
                "schema": {"id": "test", "enums": enums, "classes": classes},
                "propertyTables": [{"class": "thing", "count": 3, "properties": table}],
            }
        },
    }
    return doc, g.binary, g.names


def put(doc: Doc, binary: bytearray, view: int, data: bytes, misalign: int = 0) -> None:
    """Point buffer view ``view`` at ``data``, appended to the binary (8-byte aligned, plus ``misalign``)."""
    binary += b"\x00" * ((-len(binary)) % 8 + misalign)
    doc["bufferViews"][view].update(byteOffset=len(binary), byteLength=len(data))
    binary += data + b"\x00" * ((-len(data)) % 8)
    doc["buffers"][0]["byteLength"] = len(binary)


def props(doc: Doc) -> dict[str, Any]:
    return doc["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]  # type: ignore[no-any-return]


def cls(doc: Doc) -> dict[str, Any]:
    return doc["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["thing"]["properties"]  # type: ignore[no-any-return]


def feature(doc: Doc) -> dict[str, Any]:
    return doc["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]  # type: ignore[no-any-return]


Mutation = Callable[[Doc, bytearray, dict[str, int]], None]


def f4(*values: float) -> bytes:
    return np.array(values, "<f4").tobytes()


def u2(*values: int) -> bytes:
    return np.array(values, "<u2").tobytes()


def u4(*values: int) -> bytes:
    return np.array(values, "<u4").tobytes()


def u8x4(*values: int) -> bytes:
    """UNSIGNED_BYTE feature ids, one per 4 bytes (byteStride 4: vertex attribute elements start on 4 bytes)."""
    return np.array(values, "<u4").tobytes()


BROKEN: dict[str, tuple[Mutation, str]] = {
    "class missing": (
        lambda d, b, n: d["extensions"]["EXT_structural_metadata"]["propertyTables"][0].update({"class": "nope"}),
        r"\[class-exists\]",
    ),
    "property not in class": (
        lambda d, b, n: props(d).update(extra={"values": 0}),
        r"property extra: \[property-in-class\]",
    ),
    "required omitted": (lambda d, b, n: props(d).pop("id"), r"property id: \[required-present\]"),
    "count 0": (
        lambda d, b, n: d["extensions"]["EXT_structural_metadata"]["propertyTables"][0].update(count=0),
        r"\[json-schema\] 0 is less than the minimum",
    ),
    "empty string column with a 1-byte values view (the bug)": (
        lambda d, b, n: (put(d, b, n["label.values"], b"\x00"), put(d, b, n["label.offsets"], u2(0, 0, 0, 0))),
        r"property label: \[string-offset-last\]",
    ),
    "string values longer than the offsets say": (
        lambda d, b, n: put(d, b, n["id.values"], b"abcd"),
        r"property id: \[string-offset-last\]",
    ),
    "string offsets one short": (lambda d, b, n: put(d, b, n["id.offsets"], u4(0, 1, 3)), r"\[string-offset-count\]"),
    "string offsets decreasing": (
        lambda d, b, n: put(d, b, n["id.offsets"], u4(0, 2, 1, 3)),
        r"\[string-offset-monotonic\]",
    ),
    "string offsets not starting at 0": (
        lambda d, b, n: put(d, b, n["id.offsets"], u4(1, 1, 2, 3)),
        r"\[string-offset-first\]",
    ),
    "unknown stringOffsetType": (
        lambda d, b, n: props(d)["label"].update(stringOffsetType="UINT24"),
        r"\[string-offset-type\]",
    ),
    "stringOffsetType default UINT32 honoured": (
        lambda d, b, n: props(d)["label"].pop("stringOffsetType"),
        r"property label: \[string-offset-count\]",
    ),
    "invalid UTF-8": (lambda d, b, n: put(d, b, n["id.values"], b"a\xffc"), r"property id: \[utf8\]"),
    "string without stringOffsets": (
        lambda d, b, n: props(d)["id"].pop("stringOffsets"),
        r"\[string-offsets-required\]",
    ),
    "array offsets decreasing": (
        lambda d, b, n: put(d, b, n["samples.offsets"], bytes([0, 2, 1, 3])),
        r"\[array-offset-monotonic\]",
    ),
    "array offsets past the values": (
        lambda d, b, n: put(d, b, n["samples.offsets"], bytes([0, 2, 2, 4])),
        r"property samples: \[values-length\]",
    ),
    "arrayOffsetType honoured": (lambda d, b, n: props(d)["samples"].pop("arrayOffsetType"), r"\[array-offset-count\]"),
    "variable array without arrayOffsets": (
        lambda d, b, n: props(d)["samples"].pop("arrayOffsets"),
        r"\[array-offsets-required\]",
    ),
    "string array offsets past the string offsets": (
        lambda d, b, n: put(d, b, n["tags.array"], u4(0, 1, 1, 4)),
        r"property tags: \[string-offset-count\]",
    ),
    "scalar values short": (
        lambda d, b, n: put(d, b, n["size.values"], f4(1.5, -1)),
        r"property size: \[values-length\]",
    ),
    "VEC3 values short": (
        lambda d, b, n: put(d, b, n["pos.values"], f4(*range(8))),
        r"property pos: \[values-length\]",
    ),
    "fixed-length array values short": (
        lambda d, b, n: put(d, b, n["pair.values"], np.array([1, 2, 3, 4, 5], "<i2").tobytes()),
        r"property pair: \[values-length\]",
    ),
    "enum values of the wrong width": (
        lambda d, b, n: put(d, b, n["colour.values"], u2(0, 1, 2)),
        r"property colour: \[values-length\]",
    ),
    "boolean bitstream too long": (
        lambda d, b, n: put(d, b, n["flags.values"], bytes([1, 0])),
        r"property flags: \[values-length\]",
    ),
    "boolean unused bits set": (lambda d, b, n: put(d, b, n["flags.values"], bytes([0b1101])), r"\[boolean-padding\]"),
    "enum value not in the enum": (
        lambda d, b, n: put(d, b, n["colour.values"], bytes([0, 7, 1])),
        r"property colour: \[enum-values\]",
    ),
    "NaN": (lambda d, b, n: put(d, b, n["pos.values"], f4(*range(8), np.nan)), r"property pos: \[finite\]"),
    "value above the class max": (
        lambda d, b, n: put(d, b, n["size.values"], f4(1.5, -1, 101)),
        r"property size: \[min-max\] .*class max",
    ),
    "value above the table max": (
        lambda d, b, n: props(d)["size"].update(max=50),
        r"property size: \[min-max\] .*table max",
    ),
    "VEC3 component below the class min": (
        lambda d, b, n: cls(d)["pos"].update(min=[0, 1, 3]),
        r"property pos: \[min-max\]",
    ),
    "max after normalization, offset and scale": (
        lambda d, b, n: cls(d)["level"].update(max=11.9),
        r"property level: \[min-max\]",
    ),
    "table offset overrides the class offset": (
        lambda d, b, n: props(d)["level"].update(offset=11),
        r"property level: \[min-max\]",
    ),
    "noData of the wrong type": (
        lambda d, b, n: cls(d)["size"].update(noData="none"),
        r"property size: \[no-data-type\]",
    ),
    "noData out of the component range": (
        lambda d, b, n: cls(d)["unused"].update(noData=-1),
        r"property unused: \[no-data-type\]",
    ),
    "enum noData not a value name": (
        lambda d, b, n: cls(d)["colour"].update(noData=0),
        r"property colour: \[no-data-type\]",
    ),
    "fixed array noData of the wrong length": (
        lambda d, b, n: cls(d)["pair"].update(noData=[0]),
        r"property pair: \[no-data-type\]",
    ),
    "BOOLEAN with noData": (lambda d, b, n: cls(d)["flags"].update(noData=False), r"\[json-schema\]|\[no-data-type\]"),
    "default of the wrong type": (
        lambda d, b, n: cls(d)["label"].update(default=3),
        r"property label: \[default-type\]",
    ),
    "required with noData": (lambda d, b, n: cls(d)["id"].update(noData=""), r"property id: \[required-no-default\]"),
    "offset on an integer": (lambda d, b, n: cls(d)["pair"].update(offset=[1, 1]), r"property pair: \[offset-scale\]"),
    "empty description": (lambda d, b, n: cls(d)["id"].update(description=""), r"\[json-schema\]"),
    "duplicate enum value": (
        lambda d, b, n: d["extensions"]["EXT_structural_metadata"]["schema"]["enums"]["Colour"]["values"][1].update(
            value=0
        ),
        r"\[enum-unique\]",
    ),
    "property id not an identifier": (
        lambda d, b, n: cls(d).update({"2bad": {"type": "STRING"}}),
        r"\[identifier\] '2bad'",
    ),
    "a semantic used twice": (
        lambda d, b, n: (cls(d)["id"].update(semantic="NAME"), cls(d)["label"].update(semantic="NAME")),
        r"class thing: \[semantic-unique\]",
    ),
    "zero-length buffer view": (
        lambda d, b, n: d["bufferViews"][n["tags.values"]].update(byteLength=0),
        r"buffer view \d+: \[view-not-empty\]",
    ),
    "buffer view past its buffer": (
        lambda d, b, n: d["bufferViews"][n["size.values"]].update(byteOffset=len(b)),
        r"\[view-in-buffer\]",
    ),
    "property view not 8-byte aligned": (
        lambda d, b, n: put(d, b, n["size.values"], f4(1.5, -1, 99), misalign=4),
        r"property size: \[view-alignment\]",
    ),
    "metadata not in extensionsUsed": (
        lambda d, b, n: d["extensionsUsed"].remove("EXT_structural_metadata"),
        r"\[extension-used\]",
    ),
    "featureCount 0": (lambda d, b, n: feature(d).update(featureCount=0), r"\[feature-count\]"),
    "featureCount larger than the ids": (
        lambda d, b, n: feature(d).update(featureCount=4),
        r"\[feature-count\] 3 distinct",
    ),
    "no _FEATURE_ID_1 attribute": (lambda d, b, n: feature(d).update(attribute=1), r"\[feature-id-attribute\]"),
    "feature id accessor not SCALAR": (
        lambda d, b, n: d["accessors"][1].update(type="VEC2", count=2),
        r"\[feature-id-accessor\]",
    ),
    "feature id accessor normalized": (
        lambda d, b, n: d["accessors"][1].update(normalized=True),
        r"\[feature-id-accessor\]",
    ),
    "feature id accessor UNSIGNED_INT": (
        lambda d, b, n: d["accessors"][1].update(componentType=5125, count=1),
        r"\[feature-id-accessor\]",
    ),
    "feature ids packed 1 byte apart": (
        lambda d, b, n: d["bufferViews"][n["feature_ids"]].pop("byteStride"),
        r"\[feature-id-alignment\]",
    ),
    "feature ids starting off a 4-byte boundary": (
        lambda d, b, n: d["accessors"][1].update(byteOffset=2, count=3),
        r"\[feature-id-alignment\]",
    ),
    "feature id out of range": (
        lambda d, b, n: put(d, b, n["feature_ids"], u8x4(0, 1, 3, 255)),
        r"\[feature-id-range\]",
    ),
    "null id without nullFeatureId": (lambda d, b, n: feature(d).pop("nullFeatureId"), r"\[feature-id-range\]"),
    "fractional float feature id": (
        lambda d, b, n: (
            put(d, b, n["feature_ids"], f4(0, 1, 1.5, 2)),
            d["accessors"][1].update(componentType=5126),
            feature(d).pop("nullFeatureId"),
        ),
        r"\[feature-id-integer\]",
    ),
    "property table index past the tables": (
        lambda d, b, n: feature(d).update(propertyTable=1),
        r"\[property-table-index\]",
    ),
    "featureCount above the table's count": (
        lambda d, b, n: (
            put(d, b, n["feature_ids"], u8x4(0, 1, 2, 3)),
            feature(d).update(featureCount=4),
            feature(d).pop("nullFeatureId"),
        ),
        r"\[feature-count-table\]",
    ),
    "feature ids not in extensionsUsed": (
        lambda d, b, n: d["extensionsUsed"].remove("EXT_mesh_features"),
        r"\[extension-used\]",
    ),
}


def test_the_hand_made_glb_passes() -> None:
    doc, binary, _ = rich()
    check_property_tables(doc, bytes(binary), "rich.glb")


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_rule_is_caught(name: str) -> None:
    doc, binary, names = rich()
    doc = copy.deepcopy(doc)
    mutate, message = BROKEN[name]
    mutate(doc, binary, names)
    with pytest.raises(AssertionError, match=message) as raised:
        check_property_tables(doc, bytes(binary), "rich.glb")
    assert str(raised.value).startswith("rich.glb: ")


def pack(doc: Doc, binary: bytes, align: int) -> bytes:
    text = json.dumps(doc).encode()
    text += b" " * ((-len(text)) % align)
    binary += b"\x00" * ((-len(binary)) % align)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def test_glb_chunks_are_padded_to_8_bytes() -> None:
    doc, binary, _ = rich()
    check_glb(pack(doc, bytes(binary), 8), "rich.glb")
    for k in range(8):  # a JSON chunk of 4 mod 8 bytes once padded to 4
        doc["asset"]["generator"] = "x" * k
        if -(-len(json.dumps(doc)) // 4) % 2:
            break
    with pytest.raises(AssertionError, match=r"JSON chunk: \[chunk-8-byte\]"):
        check_glb_layout(pack(doc, bytes(binary), 4), "rich.glb")


def test_a_meshopt_view_is_read_through_the_decoder_never_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    doc, binary, names = rich()
    doc["bufferViews"][names["size.values"]]["extensions"] = {"EXT_meshopt_compression": {"buffer": 0}}
    monkeypatch.setattr(metadata_rules, "meshopt_decoder", None)
    with pytest.raises(AssertionError, match="no decoder"):
        check_property_tables(doc, bytes(binary), "rich.glb")
    monkeypatch.setattr(metadata_rules, "meshopt_decoder", lambda d, b, i: f4(1.5, -1, 120))
    with pytest.raises(AssertionError, match=r"property size: \[min-max\]"):
        check_property_tables(doc, bytes(binary), "rich.glb")


def test_check_all_runs_these_rules_on_every_glb_it_walks(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    with open_store(str(city)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        build_tiles(store, meshes, out, workers=1)
    path = next((out / "points").glob("**/*.glb"))
    doc, binary = read_glb(path.read_bytes())
    doc["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]["nope"] = {"values": 0}
    path.write_bytes(pack(doc, binary, 8))  # still valid glTF: gltf-validator does not look inside the table
    with pytest.raises(AssertionError, match=r"points.*property nope: \[property-in-class\]"):
        check_all(out)


def test_a_meshopt_compressed_tile_follows_every_rule_read_through_its_own_decoder() -> None:
    compressed = compress_glb(city_tile())
    doc, _ = read_glb(compressed)
    ids = doc["meshes"][0]["primitives"][0]["attributes"]["_FEATURE_ID_0"]
    assert "EXT_meshopt_compression" in doc["bufferViews"][doc["accessors"][ids]["bufferView"]].get("extensions", {})
    check_glb(compressed, "compressed.glb")
