"""The lean glb layout (cim.tiling.glb + cim.tiling.mesh_prep), checked on meshes made here: shared vertices, smooth
groups, int8 normals, a material per colour, int16 positions at any tile width, feature id types, and the glTF rules
on vertex attribute alignment (accessor.byteOffset and bufferView.byteStride multiples of 4) and index views."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from cim.geodesy import enu_rotation, lonlat_to_ecef
from cim.model import Mesh, MeshBatch
from cim.tiling import glb
from cim.tiling.glb import TileContent, accessor_array, encode_tile, feature_id_type, read_glb
from cim.tiling.mesh_prep import POSITION_STEP_M, tile_frame
from tests.tiling.checks import gltf_validate, string_property
from tests.tiling.conftest import LAT, LON, M_LAT, M_LON, box_mesh
from tests.tiling.metadata_rules import check_glb

_BYTE, _UBYTE, _SHORT, _USHORT, _FLOAT = 5120, 5121, 5122, 5123, 5126
ORIGIN = (LON, LAT, 0.0)


def encode(meshes: list[Mesh], kind: str = "building", origin: tuple[float, float, float] = ORIGIN) -> TileContent:
    batch = MeshBatch.from_meshes(meshes)
    table = pa.table({"id": [m.asset_id for m in meshes], "kind": [kind] * len(meshes)})
    return encode_tile(origin, batch, {kind: table})


def primitives(doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(node, primitive) pairs."""
    return [(node, p) for node in doc["nodes"] for p in doc["meshes"][node["mesh"]]["primitives"]]


def vertex_count(content: TileContent) -> int:
    doc, _ = read_glb(content.glb)
    return sum(doc["accessors"][p["attributes"]["POSITION"]]["count"] for _, p in primitives(doc))


def enu_vertices(content: TileContent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every vertex dequantised by its node matrix, in ENU (z up); its int8 normal (ENU); its asset (the ``id``
    of its feature in its primitive's property table)."""
    doc, binary = read_glb(content.glb)
    tables = doc["extensions"]["EXT_structural_metadata"]["propertyTables"]
    points, normals, ids = [], [], []
    for node, p in primitives(doc):
        matrix = np.asarray(node["matrix"], np.float64).reshape(4, 4).T
        q = accessor_array(doc, binary, p["attributes"]["POSITION"]).astype(np.float64)
        gl = (np.column_stack([q, np.ones(len(q))]) @ matrix.T)[:, :3]
        points.append(np.column_stack([gl[:, 0], -gl[:, 2], gl[:, 1]]))
        n = accessor_array(doc, binary, p["attributes"]["NORMAL"]).astype(np.int64)
        normals.append(np.column_stack([n[:, 0], -n[:, 2], n[:, 1]]))
        local = accessor_array(doc, binary, p["attributes"]["_FEATURE_ID_0"]).ravel().astype(np.int64)
        table = tables[p["extensions"]["EXT_mesh_features"]["featureIds"][0]["propertyTable"]]
        ids.append(np.asarray(string_property(doc, binary, table, "id"), dtype=object)[local])
    return np.concatenate(points), np.concatenate(normals), np.concatenate(ids)


def per_face(mesh: Mesh) -> Mesh:
    """The mesh with 3 vertices of its own per triangle, as IFC tessellations often come."""
    vertices = mesh.vertices[mesh.triangles.ravel()]
    triangles = np.arange(len(vertices), dtype=np.uint32).reshape(-1, 3)
    return Mesh(asset_id=mesh.asset_id, origin=mesh.origin, vertices=vertices, triangles=triangles, color=mesh.color)


def cylinder(asset_id: str, sides: int = 32, radius: float = 0.3, height: float = 3.0) -> Mesh:
    """A closed column: two rings of ``sides`` vertices shared by side quads and fan caps."""
    angle = 2 * np.pi * np.arange(sides) / sides
    ring = np.column_stack([radius * np.cos(angle), radius * np.sin(angle), np.zeros(sides)])
    vertices = np.concatenate([ring, ring + np.array([0, 0, height])]).astype(np.float32)
    j, k = np.arange(sides), (np.arange(sides) + 1) % sides
    side = np.concatenate([np.stack([j, k, sides + k], 1), np.stack([j, sides + k, sides + j], 1)])
    fan = np.arange(1, sides - 1)
    bottom = np.stack([np.zeros_like(fan), fan + 1, fan], 1)
    top = np.stack([np.full_like(fan, sides), sides + fan, sides + fan + 1], 1)
    triangles = np.concatenate([side, bottom, top]).astype(np.uint32)
    return Mesh(asset_id=asset_id, origin=ORIGIN, vertices=vertices, triangles=triangles)


def test_a_box_becomes_24_vertices_whether_its_corners_are_shared_or_repeated_per_face() -> None:
    shared = box_mesh("a", LON, LAT, 0.0, 10, 6, 4)
    assert vertex_count(encode([shared])) == 24
    assert vertex_count(encode([per_face(shared)])) == 24  # 36 in, welded
    assert vertex_count(encode([shared, box_mesh("b", LON, LAT, 0.0, 10, 6, 4)])) == 48  # assets never weld


def test_a_many_sided_column_shares_its_side_vertices_with_smooth_normals() -> None:
    sides = 32
    content = encode([per_face(cylinder("c", sides))])
    # sides: one vertex per ring corner (smooth); caps: one per corner each (flat, 90° from the sides)
    assert vertex_count(content) == 4 * sides
    points, normals, _ = enu_vertices(content)
    unit = normals / 127.0
    on_side = np.abs(unit[:, 2]) < 0.5
    assert on_side.sum() == 2 * sides
    radial = points[on_side, :2] / np.linalg.norm(points[on_side, :2], axis=1)[:, None]
    assert np.all(np.einsum("ij,ij->i", unit[on_side, :2], radial) > 0.99)  # the surface's normal, not a face's
    assert np.all(np.abs(np.abs(unit[~on_side, 2]) - 1) < 1e-9)  # caps stay flat


def test_normals_of_flat_faces_are_exact_to_int8() -> None:
    roof = Mesh(
        asset_id="r",
        origin=ORIGIN,
        vertices=np.array([[0, 0, 0], [4, 0, 0], [4, 3, 2], [0, 3, 2]], np.float32),  # a plane tilted about x
        triangles=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
    )
    _, normals, _ = enu_vertices(encode([roof, box_mesh("b", LON, LAT, 0.0, 10, 6, 4)]))
    tilted = np.array([0.0, -2.0, 3.0]) / np.sqrt(13.0)
    expected = {tuple(np.round(tilted * 127).astype(int))} | {
        tuple(v) for v in (127 * np.vstack([np.eye(3), -np.eye(3)])).astype(int)
    }
    assert {tuple(n) for n in normals.tolist()} == expected


def test_a_mesh_with_two_colours_makes_two_materials_and_no_colour_attribute() -> None:
    red, blue = (1.0, 0.0, 0.0, 1.0), (0.0, 0.0, 1.0, 0.5)
    meshes = [
        dataclasses.replace(box_mesh(f"b{i}", LON + i * 1e-4, LAT, 0.0, 5, 5, 5), color=color)
        for i, color in enumerate([red, blue, red, None])
    ]
    doc, binary = read_glb(encode(meshes).glb)
    colours = {tuple(m["pbrMetallicRoughness"]["baseColorFactor"]): m for m in doc["materials"]}
    assert set(colours) == {red, blue, (0.8, 0.78, 0.74, 1.0)}  # the kind's colour for the mesh without one
    assert colours[blue]["alphaMode"] == "BLEND" and "alphaMode" not in colours[red]
    prims = [p for _, p in primitives(doc)]
    assert len(prims) == 3 and len({p["material"] for p in prims}) == 3
    assert all("COLOR_0" not in p["attributes"] for p in prims)
    # one property table for the kind, every primitive pointing at it (loaders.gl decodes one table per class)
    (table,) = doc["extensions"]["EXT_structural_metadata"]["propertyTables"]
    specs = [p["extensions"]["EXT_mesh_features"]["featureIds"][0] for p in prims]
    assert all(s == {"featureCount": 4, "attribute": 0, "propertyTable": 0} for s in specs)
    assert string_property(doc, binary, table, "id") == ["b0", "b1", "b2", "b3"]
    found = [set(accessor_array(doc, binary, p["attributes"]["_FEATURE_ID_0"]).ravel().tolist()) for p in prims]
    assert sorted(map(sorted, found)) == [[0.0, 2.0], [1.0], [3.0]]  # red, blue, the kind's colour


def test_a_wide_tile_is_int16_everywhere_and_every_vertex_within_3_cm(tmp_path: Path) -> None:
    # assets up to 20 km apart and a wall of one 1.9 km quad: wider than 65,534 steps of 3 cm
    meshes = [box_mesh(f"b{i}", LON + dx / M_LON, LAT + dy / M_LAT, 5.0, 12, 8, 30) for i, (dx, dy) in
              enumerate([(-10_000, 0), (10_000, 0), (0, 9_000), (30, -40), (1_500, 1_500)])]  # fmt: skip
    long_wall = Mesh(
        asset_id="wall",
        origin=ORIGIN,
        vertices=np.array([[-950, 0, 0], [950, 0, 0], [950, 0, 3], [-950, 0, 3]], np.float32),
        triangles=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
    )
    meshes.append(long_wall)
    content = encode(meshes)
    doc, _ = read_glb(content.glb)
    assert "KHR_mesh_quantization" in doc["extensionsRequired"]
    assert len(doc["nodes"]) > 1  # clusters, each dequantised by its own node
    for node, p in primitives(doc):
        assert doc["accessors"][p["attributes"]["POSITION"]]["componentType"] == _SHORT
        assert node["matrix"][0] <= POSITION_STEP_M
    points, _, ids = enu_vertices(content)
    batch = MeshBatch.from_meshes(meshes)
    truth, _, asset = tile_frame(batch, enu_rotation(LON, LAT), lonlat_to_ecef(*ORIGIN))
    for feature, mesh in enumerate(meshes):
        got = points[ids == mesh.asset_id]
        want = truth[asset == feature]
        distance = np.linalg.norm(got[:, None, :] - want[None, :, :], axis=2).min(axis=1)
        assert distance.max() <= POSITION_STEP_M, f"feature {feature}: {distance.max():.4f} m off"
    assert np.all(points >= np.asarray(content.box_min)) and np.all(points <= np.asarray(content.box_max))
    path = tmp_path / "wide.glb"
    path.write_bytes(content.glb)
    report = gltf_validate([path])[str(path)]
    assert not report["errors"], report


@pytest.mark.parametrize(
    ("count", "component"), [(1, _UBYTE), (256, _UBYTE), (257, _USHORT), (65536, _USHORT), (65537, _FLOAT)]
)
def test_feature_ids_use_the_smallest_type_that_holds_them(count: int, component: int) -> None:
    assert feature_id_type(count)[0] == component


def test_feature_ids_are_floats_by_default_and_by_count_with_small_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    meshes = [box_mesh(f"b{i:03d}", LON + (i % 20) * 2e-4, LAT + (i // 20) * 2e-4, 0.0, 8, 8, 9) for i in range(3)]
    doc, _ = read_glb(encode(meshes).glb)
    accessor = doc["accessors"][primitives(doc)[0][1]["attributes"]["_FEATURE_ID_0"]]
    assert accessor["componentType"] == _FLOAT and doc["bufferViews"][accessor["bufferView"]]["byteStride"] == 4
    monkeypatch.setattr(glb, "SMALL_FEATURE_IDS", True)
    doc, _ = read_glb(encode(meshes).glb)
    assert doc["accessors"][primitives(doc)[0][1]["attributes"]["_FEATURE_ID_0"]]["componentType"] == _UBYTE


def test_feature_ids_of_300_buildings_are_unsigned_shorts_aligned_to_4_bytes_in_table_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(glb, "SMALL_FEATURE_IDS", True)
    meshes = [box_mesh(f"b{i:03d}", LON + (i % 20) * 2e-4, LAT + (i // 20) * 2e-4, 0.0, 8, 8, 9) for i in range(300)]
    content = encode(meshes)
    doc, binary = read_glb(content.glb)
    (_, p), *more = primitives(doc)
    assert not more
    accessor = doc["accessors"][p["attributes"]["_FEATURE_ID_0"]]
    assert accessor["componentType"] == _USHORT and accessor["type"] == "SCALAR" and not accessor.get("normalized")
    ids = accessor_array(doc, binary, p["attributes"]["_FEATURE_ID_0"]).ravel()
    assert np.array_equal(ids, np.repeat(np.arange(300), 24))
    _, _, assets = enu_vertices(content)
    assert assets.tolist() == [m.asset_id for m in meshes for _ in range(24)]  # in table order


def test_views_follow_the_gltf_alignment_rules_and_large_kinds_split_into_uint16_primitives() -> None:
    # 2,800 boxes × 24 vertices = 67,200 vertices: more than uint16 indices address in one primitive
    meshes = [box_mesh(f"b{i}", LON + (i % 60) * 1e-4, LAT + (i // 60) * 1e-4, 0.0, 5, 5, 5) for i in range(2800)]
    doc, binary = read_glb(encode(meshes).glb)
    prims = [p for _, p in primitives(doc)]
    assert len(prims) == 2
    for p in prims:
        for name in ("POSITION", "NORMAL", "_FEATURE_ID_0"):
            accessor = doc["accessors"][p["attributes"][name]]
            view = doc["bufferViews"][accessor["bufferView"]]
            assert view["target"] == 34962 and view["byteStride"] % 4 == 0 and accessor.get("byteOffset", 0) % 4 == 0
        indices = doc["accessors"][p["indices"]]
        assert indices["componentType"] == _USHORT and doc["bufferViews"][indices["bufferView"]]["target"] == 34963
        count = doc["accessors"][p["attributes"]["POSITION"]]["count"]
        assert accessor_array(doc, binary, p["indices"]).max() < count <= 65535
        assert p["extensions"]["EXT_mesh_features"]["featureIds"][0] == {
            "featureCount": 2800,
            "attribute": 0,
            "propertyTable": 0,
        }
    normal = doc["accessors"][prims[0]["attributes"]["NORMAL"]]
    assert normal["componentType"] == _BYTE and normal["normalized"] is True


def test_primitives_sharing_a_table_hold_its_features_between_them() -> None:
    meshes = [
        dataclasses.replace(box_mesh(f"b{i}", LON + i * 1e-4, LAT, 0.0, 5, 5, 5), color=color)
        for i, color in enumerate([(1.0, 0.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0), None])
    ]
    data = encode(meshes).glb
    check_glb(data, "three colours")  # EXT_mesh_features / EXT_structural_metadata rules, featureCount over all
    doc, binary = read_glb(data)
    doc["meshes"][0]["primitives"].pop()  # a feature of the table left without geometry
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    with pytest.raises(AssertionError, match=r"\[feature-count\] 2 distinct ids over its primitives"):
        check_glb(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body, "one primitive dropped")
