"""One tile's content as a glb: lean meshes in the tile's ENU frame, with feature ids and metadata.

Written straight with numpy (JSON chunk + one binary buffer): a tile is a handful of large arrays, and the writer
lays out ``KHR_mesh_quantization`` strides and metadata buffer views by hand anyway (packing a glb: 0.48 ms here,
2.63 ms through pygltflib's objects, ``bench/tiles_bench.py``'s side by side on 80 tiles of 494 KB).

Layout, per asset kind in the tile (the geometry is made lean by :mod:`cim.tiling.mesh_prep`: welded, smooth groups,
one vertex per position and normal, clusters):

- three vertex buffer views (``ARRAY_BUFFER``, each ``byteStride`` a multiple of 4 as glTF requires of vertex
  attributes): ``POSITION`` int16 VEC3 padded to 8 bytes (``KHR_mesh_quantization``, step ≤ 3 cm), ``NORMAL`` int8
  VEC3 normalized padded to 4, ``_FEATURE_ID_0`` float (unsigned byte / short by count with
  :data:`SMALL_FEATURE_IDS`; 4 bytes a vertex either way) — 16 bytes a vertex; one ``ELEMENT_ARRAY_BUFFER`` view
  of uint16 indices (uint32 only for a single asset above 65,535 vertices);
- a node + mesh per cluster (the node matrix dequantises: scale = step, translation = the cluster's middle), a
  primitive per colour (a material each, no ``COLOR_0``) and per run of ≤ 65,535 vertices; primitives are accessors
  at offsets into the kind's views;
- one property table per tile, every primitive pointing at it (``featureCount`` = the table's count, so a
  primitive's ids are those of its features among them): CesiumJS reads one table per model (the first primitive's,
  ``Model.featureTableId``), so with a table per kind a pipe beside a valve was picked and styled with the valve's
  row. Its rows are the features of each kind in turn; its class is the kind's, or for a tile of several kinds a
  class holding their properties (:func:`cim.tiling.properties.props_of_kinds`).

glTF is y-up, so ENU (east, north, up) is written as (east, up, −north); 3D Tiles turns it back. The tile's box
holds every dequantised vertex (+1 mm). Degenerate triangles (zero area) are dropped and counted.

Measured against main's writer (every vertex per face, float32 positions and feature ids; same machine, runs a
minute apart under a load of 16–21), ``bench/tiles_bench.py -n 100000``, bytes per LOD1 building incl. metadata:
plain 1,040 → 677 (32 vertices, 17 triangles a building: 512 B vertices, 103 B indices), plain + gzip 310 → 171,
meshopt 568 → 275, meshopt + gzip 367 → 145; build 22,571 → 21,043 buildings/s (CPU 5.1 → 5.5 s: the weld, smooth
groups and clusters cost ≈ 1.5 ms per 914-building tile). AC20-FZK-Haus.ifc: 69,613 → 20,135 vertices for 23,264
triangles (12,041 stored, 8,430 positions once welded; py3dtiles 12 writes 17,066), glb 1,682,108 → 476,732 bytes
plain, 491,764 → 198,004 meshopt.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cim.geodesy import enu_rotation, lonlat_to_ecef
from cim.model import MeshBatch
from cim.tiling import properties
from cim.tiling.mesh_prep import MAX_SHORT_VERTICES, SMOOTH_DEG, SMOOTH_DEG_BY_KIND, PreparedMesh, prepare

I64 = npt.NDArray[np.int64]

#: Added around the dequantised vertices for the tile's box (a client dequantises in float32).
BOX_MARGIN_M = 1e-3
#: Feature ids as unsigned byte / short by count (:func:`feature_id_type`) rather than float. Off: a vertex attribute
#: takes 4 bytes a vertex whatever its type (glTF aligns each element to 4 bytes), after meshopt the small types save
#: 1 B per LOD1 building (239 against 240 on a 914-building tile), and loaders.gl 4.5.4 reads them wrong from
#: meshopt tiles — it decodes EXT_mesh_features before EXT_meshopt_compression and copies a strided (padded) view
#: at once, so it copies the not yet decoded zeros; a float id (element = stride) is a view it reads after decoding.
SMALL_FEATURE_IDS = False

#: Colour (linear RGBA) by kind; a mesh's own colour wins.
KIND_COLORS: dict[str, tuple[float, float, float, float]] = {
    "building": (0.80, 0.78, 0.74, 1.0),
    "bridge": (0.55, 0.55, 0.58, 1.0),
    "site": (0.45, 0.55, 0.40, 1.0),
    "storey": (0.70, 0.70, 0.75, 1.0),
    "space": (0.40, 0.65, 0.90, 0.6),
    "element": (0.75, 0.72, 0.68, 1.0),
    "lift": (0.95, 0.60, 0.10, 1.0),
    "pipe": (0.10, 0.45, 0.95, 1.0),
    "node": (0.20, 0.30, 0.70, 1.0),
    "hydrant": (0.90, 0.10, 0.10, 1.0),
    "pole": (0.35, 0.35, 0.35, 1.0),
    "transit_stop": (0.10, 0.70, 0.30, 1.0),
    "metro_exit": (0.80, 0.10, 0.50, 1.0),
    "charger": (0.10, 0.80, 0.80, 1.0),
    "sensor": (1.00, 0.85, 0.10, 1.0),
}
DEFAULT_COLOR = (0.6, 0.6, 0.6, 1.0)

_FLOAT, _UBYTE, _BYTE, _USHORT, _SHORT, _UINT = 5126, 5121, 5120, 5123, 5122, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass
class TileContent:
    """What a tile's glb holds, for the tileset: its box in the tile frame (ENU, z up) and counts."""

    glb: bytes
    box_min: tuple[float, float, float]
    box_max: tuple[float, float, float]
    features: int
    degenerate: int
    features_by_kind: dict[str, int] = field(default_factory=dict)


def encode_tile(origin: tuple[float, float, float], meshes: MeshBatch, tables: dict[str, pa.Table]) -> TileContent:
    """The glb of one tile: ``meshes`` moved into the ENU frame at ``origin``; ``tables`` holds, per kind, the
    prepared asset rows (column ``id`` and the properties), whose order gives the feature ids. Every mesh must have
    a row; rows without a mesh are left out."""
    writer = _Writer()
    mesh_ids = pa.array(list(meshes.asset_ids), pa.string())
    rotation = enu_rotation(origin[0], origin[1])
    centre = lonlat_to_ecef(*origin)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    features = degenerate = 0
    counts: dict[str, int] = {}
    kept: list[tuple[str, PreparedMesh, I64, pa.Table, npt.NDArray[np.float32]]] = []
    for kind in sorted(tables):
        table = tables[kind]
        found = pc.fill_null(pc.index_in(mesh_ids, value_set=table.column("id")), -1)
        row = np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)
        picked = np.flatnonzero(row >= 0)
        if not len(picked):
            continue
        # the rows that have a mesh, renumbered 0..n-1 in table order
        used = np.unique(row[picked])
        feature_of_row = np.full(table.num_rows, -1, np.int64)
        feature_of_row[used] = np.arange(len(used))
        sub = meshes if len(picked) == len(meshes) else _select(meshes, picked)  # one kind: no copy
        smooth = SMOOTH_DEG_BY_KIND.get(kind, SMOOTH_DEG)
        colors = _asset_colors(sub.colors, kind)
        rgba = np.asarray(np.round(np.clip(colors, 0, 1) * 255), np.uint8)
        prepared = prepare(sub, rotation, centre, rgba, smooth)
        if prepared is None:
            degenerate += len(sub.triangles)
            continue
        degenerate += prepared.dropped
        lo, hi = np.minimum(lo, prepared.lo), np.maximum(hi, prepared.hi)
        vertex_feature = feature_of_row[row[picked]][prepared.vertex_asset]
        has = np.bincount(vertex_feature, minlength=len(used)) > 0
        present = np.flatnonzero(has)
        ids = (np.cumsum(has) - 1)[vertex_feature]  # rank among the kind's features left with triangles
        kept.append((kind, prepared, ids, table.take(pa.array(used[present])), colors))
    if kept:
        # one property table for the tile, the kinds' rows one after the other: CesiumJS reads one table per model
        # (the first primitive's), so a table per kind would give the second kind's features the first's rows
        rows = pa.concat_tables([k[3] for k in kept], promote_options="permissive")
        table_index = writer.property_table([k[0] for k in kept], rows)
        offset = 0
        for kind, prepared, ids, kind_rows, colors in kept:
            prim_tables = [(table_index, rows.num_rows)] * len(prepared.primitives)
            materials = [writer.material(kind, colors[a]) for a in prepared.color_assets.tolist()]
            writer.kind_meshes(kind, prepared, ids + offset, prim_tables, materials)
            counts[kind] = kind_rows.num_rows
            offset += kind_rows.num_rows
        features = offset
    if not features:
        lo = hi = np.zeros(3)
    return TileContent(
        glb=writer.glb(),
        box_min=tuple(float(v) for v in lo - BOX_MARGIN_M),  # type: ignore[arg-type]
        box_max=tuple(float(v) for v in hi + BOX_MARGIN_M),  # type: ignore[arg-type]
        features=features,
        degenerate=degenerate,
        features_by_kind=counts,
    )


def _select(meshes: MeshBatch, picked: I64) -> MeshBatch:
    """The meshes at ``picked`` as a batch of their own."""
    v_lo, v_hi = meshes.vertex_offsets[picked], meshes.vertex_offsets[picked + 1]
    t_lo, t_hi = meshes.triangle_offsets[picked], meshes.triangle_offsets[picked + 1]
    v_index = _ranges(v_lo, v_hi)
    t_index = _ranges(t_lo, t_hi)
    return MeshBatch(
        asset_ids=[meshes.asset_ids[i] for i in picked],
        origins=meshes.origins[picked],
        vertices=meshes.vertices[v_index],
        vertex_offsets=np.r_[0, np.cumsum(v_hi - v_lo)].astype(np.int64),
        triangles=meshes.triangles[t_index],
        triangle_offsets=np.r_[0, np.cumsum(t_hi - t_lo)].astype(np.int64),
        colors=meshes.colors[picked],
    )


def _ranges(lo: I64, hi: I64) -> I64:
    """Concatenated ``arange(lo[i], hi[i])``."""
    lengths = hi - lo
    if not len(lengths) or not lengths.sum():
        return np.zeros(0, np.int64)
    starts = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return (starts + np.arange(int(lengths.sum()))).astype(np.int64)


def _asset_colors(own: npt.NDArray[np.float32], kind: str) -> npt.NDArray[np.float32]:
    """Each asset's RGBA: its own colour, else its kind's."""
    has = np.asarray(~np.isnan(own).any(axis=1), dtype=bool)
    kind_color = np.asarray(KIND_COLORS.get(kind, DEFAULT_COLOR), np.float32)
    return np.asarray(np.where(has[:, None], own, kind_color), np.float32)


def feature_id_type(count: int) -> tuple[int, type[np.generic]]:
    """The smallest component type holding feature ids ``0 … count − 1``: unsigned byte, short, else float (exact
    integers up to 2^24; glTF has no uint32 vertex attribute)."""
    if count <= 256:
        return _UBYTE, np.uint8
    if count <= 65536:
        return _USHORT, np.uint16
    return _FLOAT, np.float32


class _Writer:
    """Collects buffer views, accessors, meshes and property tables; :meth:`glb` packs them."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []
        self.meshes: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.materials: list[dict[str, Any]] = []
        self.material_index: dict[tuple[Any, ...], int] = {}
        self.tables: list[dict[str, Any]] = []
        self.kinds: list[tuple[str, ...]] = []
        self.quantized = False

    def view(self, data: bytes, *, target: int | None = None, stride: int | None = None) -> int:
        pad = (-self.length) % 8
        if pad:
            self.chunks.append(b"\x00" * pad)
            self.length += pad
        entry: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        if stride is not None:
            entry["byteStride"] = stride
        self.chunks.append(data)
        self.length += len(data)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, view: int, component: int, count: int, type_: str, **extra: Any) -> int:
        if extra.get("byteOffset") == 0:
            del extra["byteOffset"]  # the default
        self.accessors.append({"bufferView": view, "componentType": component, "count": count, "type": type_, **extra})
        return len(self.accessors) - 1

    def property_table(self, kinds: list[str], table: pa.Table) -> int:
        """The tile's property table: the rows of the features of ``kinds``, in feature-id order."""
        name = properties.class_of(kinds)
        props: dict[str, Any] = {}
        for column in properties.encode(kinds, table):
            assert column.values, f"{name}.{column.prop.id}: an empty column is left out of the table, never padded"
            entry = {"values": self.view(column.values)}
            if column.offsets is not None:
                entry["stringOffsets"] = self.view(column.offsets)
            props[column.prop.id] = entry
        self.tables.append({"class": name, "count": table.num_rows, "properties": props})
        self.kinds.append(tuple(kinds))
        return len(self.tables) - 1

    def material(self, kind: str, rgba: npt.NDArray[np.float32]) -> int:
        """The material of one colour of a kind (shared by its primitives)."""
        color = [round(float(v), 4) for v in np.clip(rgba, 0, 1)]
        key = (kind, *color)
        if key not in self.material_index:
            self.materials.append(
                {
                    "name": kind,
                    "pbrMetallicRoughness": {"baseColorFactor": color, "metallicFactor": 0.0, "roughnessFactor": 1.0},
                    **({"alphaMode": "BLEND"} if color[3] < 1.0 else {}),
                }
            )
            self.material_index[key] = len(self.materials) - 1
        return self.material_index[key]

    def kind_meshes(
        self, kind: str, mesh: PreparedMesh, ids: I64, tables: list[tuple[int, int]], materials: list[int]
    ) -> None:
        """A node + mesh per cluster of ``mesh`` (its matrix dequantises), a primitive per colour (material
        ``materials[colour]``; and per run of at most 65,535 vertices). Primitive ``k`` has the property table and
        feature count ``tables[k]``; ``ids`` are the vertices' feature ids (rows of that table). Each vertex
        attribute of the kind is one buffer view (stride a multiple of 4, as glTF asks of vertex attributes);
        primitives take runs of it."""
        self.quantized = True
        n = len(mesh.positions)
        q = np.zeros((n, 4), np.int16)  # ENU → glTF y-up: (east, up, −north), padded to 8 bytes
        q[:, 0], q[:, 1], q[:, 2] = mesh.positions[:, 0], mesh.positions[:, 2], -mesh.positions[:, 1]
        nrm = np.zeros((n, 4), np.int8)
        nrm[:, 0], nrm[:, 1], nrm[:, 2] = mesh.normals[:, 0], mesh.normals[:, 2], -mesh.normals[:, 1]
        id_bytes = np.zeros((n, 4), np.uint8)  # one id per 4 bytes
        id_types = []
        for p, (_, count) in zip(mesh.primitives, tables, strict=True):
            id_type, id_dtype = feature_id_type(count) if SMALL_FEATURE_IDS else (_FLOAT, np.float32)
            id_bytes[p.v_lo : p.v_hi].view(id_dtype)[:, 0] = ids[p.v_lo : p.v_hi]
            id_types.append(id_type)
        position_view = self.view(q.tobytes(), target=_ARRAY_BUFFER, stride=8)
        normal_view = self.view(nrm.tobytes(), target=_ARRAY_BUFFER, stride=4)
        id_view = self.view(id_bytes.tobytes(), target=_ARRAY_BUFFER, stride=4)
        prims = mesh.primitives
        v_lo = np.array([p.v_lo for p in prims])
        q_min = np.minimum.reduceat(q[:, :3], v_lo, axis=0).tolist()
        q_max = np.maximum.reduceat(q[:, :3], v_lo, axis=0).tolist()
        wide = [p.v_hi - p.v_lo > MAX_SHORT_VERTICES for p in prims]
        index_views: dict[bool, int] = {}
        for is_wide, dtype in ((False, np.uint16), (True, np.uint32)):
            runs = [mesh.triangles[p.t_lo : p.t_hi] for p, w in zip(prims, wide, strict=True) if w == is_wide]
            if runs:
                data = np.concatenate(runs).astype(dtype).tobytes()
                index_views[is_wide] = self.view(data, target=_ELEMENT_ARRAY_BUFFER)
        index_at = {False: 0, True: 0}
        by_cluster: dict[int, list[dict[str, Any]]] = {}
        for k, p in enumerate(prims):
            count = p.v_hi - p.v_lo
            position = self.accessor(
                position_view, _SHORT, count, "VEC3", byteOffset=8 * p.v_lo, min=q_min[k], max=q_max[k]
            )
            normal = self.accessor(normal_view, _BYTE, count, "VEC3", byteOffset=4 * p.v_lo, normalized=True)
            feature = self.accessor(id_view, id_types[k], count, "SCALAR", byteOffset=4 * p.v_lo)
            size = 4 if wide[k] else 2
            indices = self.accessor(
                index_views[wide[k]],
                _UINT if wide[k] else _USHORT,
                3 * (p.t_hi - p.t_lo),
                "SCALAR",
                byteOffset=index_at[wide[k]],
            )
            index_at[wide[k]] += 3 * size * (p.t_hi - p.t_lo)
            by_cluster.setdefault(p.cluster, []).append(
                {
                    "attributes": {"POSITION": position, "NORMAL": normal, "_FEATURE_ID_0": feature},
                    "indices": indices,
                    "material": materials[p.color],
                    "mode": 4,
                    "extensions": {
                        "EXT_mesh_features": {
                            "featureIds": [
                                {"featureCount": tables[k][1], "attribute": 0, "propertyTable": tables[k][0]}
                            ]
                        }
                    },
                }
            )
        for cluster, primitives in by_cluster.items():
            step = float(mesh.cluster_step[cluster])
            east, north, up = mesh.cluster_mid[cluster].tolist()
            self.meshes.append({"name": kind, "primitives": primitives})
            matrix = [step, 0, 0, 0, 0, step, 0, 0, 0, 0, step, 0, east, up, -north, 1]
            self.nodes.append({"mesh": len(self.meshes) - 1, "matrix": matrix})

    def glb(self) -> bytes:
        binary = b"".join(self.chunks)
        binary += b"\x00" * ((-len(binary)) % 8)  # EXT_structural_metadata: BIN and JSON chunks padded to 8
        used = ["EXT_mesh_features", "EXT_structural_metadata"]
        doc: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "cim tiling"},
            "scene": 0,
            "scenes": [{"nodes": list(range(len(self.nodes)))}],
            "nodes": self.nodes,
            "meshes": self.meshes,
            "materials": self.materials,
            "accessors": self.accessors,
            "bufferViews": self.views,
            "buffers": [{"byteLength": len(binary)}],
            "extensions": {
                "EXT_structural_metadata": {
                    "schema": properties.schema_of_tables(self.kinds),
                    "propertyTables": self.tables,
                }
            },
            "extensionsUsed": used + (["KHR_mesh_quantization"] if self.quantized else []),
        }
        if self.quantized:
            doc["extensionsRequired"] = ["KHR_mesh_quantization"]
        if not self.nodes:  # an empty tile still needs a valid document
            for key in ("nodes", "meshes", "materials", "accessors"):
                doc.pop(key)
            doc["scenes"] = [{}]
            if not self.views:
                doc.pop("bufferViews")
                doc.pop("buffers")
                binary = b""
        text = json.dumps(doc, separators=(",", ":")).encode()
        text += b" " * ((-len(text)) % 8)
        body = struct.pack("<II", len(text), 0x4E4F534A) + text
        if binary:
            body += struct.pack("<II", len(binary), 0x004E4942) + binary
        return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON document and binary chunk of a glb (for tests and tools)."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67 or version != 2 or length != len(data):
        raise ValueError("not a glb 2.0 file")
    json_length, _ = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20 : 20 + json_length])
    rest = 20 + json_length
    binary = data[rest + 8 :] if rest < len(data) else b""
    return doc, binary


def accessor_array(doc: dict[str, Any], binary: bytes, index: int) -> npt.NDArray[Any]:
    """The values of accessor ``index`` (de-normalised as stored, not dequantised by node matrices)."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {
        _FLOAT: np.float32,
        _UBYTE: np.uint8,
        _BYTE: np.int8,
        _USHORT: np.uint16,
        _SHORT: np.int16,
        _UINT: np.uint32,
    }[acc["componentType"]]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    item = np.dtype(dtype).itemsize
    stride = view.get("byteStride", item * width)
    start = view["byteOffset"] + acc.get("byteOffset", 0)
    raw = np.frombuffer(binary, np.uint8, count=stride * acc["count"], offset=start)
    rows = raw.reshape(acc["count"], stride)[:, : item * width]
    return np.ascontiguousarray(rows).view(dtype).reshape(acc["count"], width)
