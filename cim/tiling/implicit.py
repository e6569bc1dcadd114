"""Implicit tiling (3D Tiles 1.1): a group's quadtree as one implicit root tile plus ``.subtree`` files, so that
tileset.json stays a few kilobytes whatever the size of the city.

Our quadtree already is an implicit quadtree in lon/lat: the ``region`` of a cell splits into exactly our four child
cells, so tile ``(L, X, Y)`` below an implicit root ``(R, X0, Y0)`` is implicit tile ``(L − R, X − X0·2^(L−R),
Y − Y0·2^(L−R))`` and its content lives at ``{level}/{x}/{y}.glb`` (relative coordinates, as the spec's template URIs
define them).

- **Implicit root**: the deepest cell (level ≥ 1; level 0's "cell" spans latitudes beyond ±90°) that holds the plan's
  root and every asset widened by its size, so that every tile's content — assets overhang the cell of their centre —
  stays inside the root region (spatial coherence at the top). Its ``transform`` is the root cell's ENU → ECEF frame.
- **Content**: implicit tiles carry no transform, so each tile's glb (written in its own ENU frame) is re-framed into
  the root's frame by :func:`reframe_glb`, which rewrites only the JSON chunk's node matrices.
- **Bounding volumes**: each available tile gets a ``TILE_BOUNDING_REGION`` in its subtree's tile metadata: the
  region of its own content and of every descendant's (CesiumJS 1.140 reads it, ``Implicit3DTileContent``
  ``getTileBoundingVolume``), so a volume contains its content and its children's volumes even where buildings
  overhang their cell and pipes lie buried. The derived cell regions are only the subdivision.
- **Geometric error**: the root's is ``cell_size_m(R) × keep_ratio`` and halves per level, as in the explicit tree.
- **Cost**: re-framing and regions add 0.29 s to a 5 s build of 100,000 buildings (144 tiles, cProfile of
  ``build_tiles``); CesiumJS draws the demo city pixel for pixel as from the explicit tree.
- **When**: ``cim build --implicit`` / ``--explicit``; by default a group of more than :data:`AUTO_TILES` tiles.
- **subtreeLevels**: half the tree's levels, rounded up (at most :data:`MAX_SUBTREE_LEVELS`) — two rows of subtree
  files. Measured in ``bench/implicit_bench.py``: 10M buildings over 50 km (12 levels, 32,800 content tiles), total
  subtree bytes for subtreeLevels 3–8: 3.02 MB (2,208 files), 2.36 MB (586), 6.75 MB (8,297), **2.14 MB (50)**,
  2.40 MB (157), 5.54 MB (577); 1M (10 levels): 4 → 418 KB (562 files), **5 → 148 KB (17)**, 6 → 180 KB (50),
  7 → 409 KB (145). A last row of subtrees holding one or two levels costs ~700 B of bitstreams per file for a few
  tiles; two full rows avoid it.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cim.errors import InvalidInput
from cim.geodesy import METRES_PER_DEGREE, ecef_to_lonlat, enu_to_ecef_matrix
from cim.tiling.plan import Plan, PlannedTile
from cim.tiling.quadtree import cell_bounds, cell_size_m, parent_key, split_key, tile_key

F64 = npt.NDArray[np.float64]

#: The most levels a subtree file spans: its child-subtree bitstream has 4^levels bits (2 KB at 7).
MAX_SUBTREE_LEVELS = 7
#: Above this many content tiles in a group, ``cim build`` writes it implicit by itself: where an explicit
#: tileset.json reaches ~2 MB (653–656 B per content tile, bench/implicit_bench.py), well below the 5 MB target.
#: Measured there: 1M buildings over 50 km → 2,143 tiles, explicit 1.40 MB (stays explicit); 10M → 32,800 tiles,
#: explicit 21.5 MB, implicit 877 B of tileset.json + 2.14 MB in 50 subtree files (goes implicit).
AUTO_TILES = 3_000
SUBTREE_MAGIC, SUBTREE_VERSION = 0x74627573, 1
CONTENT_URI = "{level}/{x}/{y}.glb"
SUBTREE_URI = "subtrees/{level}/{x}/{y}.subtree"
#: The metadata schema of implicit tiles (one property, the tile's bounding region).
SCHEMA: dict[str, Any] = {
    "id": "cim_implicit",
    "classes": {
        "tile": {
            "properties": {
                "region": {
                    "type": "SCALAR",
                    "componentType": "FLOAT64",
                    "array": True,
                    "count": 6,
                    "semantic": "TILE_BOUNDING_REGION",
                }
            }
        }
    },
}
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
_EARTH_RADIUS = 6_356_752.0  # the smallest: the widest angle a metre spans


@dataclass(frozen=True, slots=True)
class ImplicitTile(PlannedTile):
    """A planned tile named by its implicit coordinates below ``root`` (its group's implicit root key)."""

    root: int = 0

    @property
    def file(self) -> str:
        level, x, y = relative(self.key, self.root)
        return f"{level}/{x}/{y}.glb"


def relative(key: int, root: int) -> tuple[int, int, int]:
    """The implicit coordinates (level, x, y) of absolute cell ``key`` below the implicit root ``root``.

    >>> root = int(tile_key(10, 5, 7))
    >>> relative(int(tile_key(12, 5 * 4 + 3, 7 * 4 + 1)), root)
    (2, 3, 1)
    """
    level, x, y = split_key(key)
    r_level, r_x, r_y = split_key(root)
    depth = level - r_level
    if depth < 0 or x >> depth != r_x or y >> depth != r_y:
        raise ValueError(f"cell {split_key(key)} is not below the implicit root {split_key(root)}")
    return depth, x - (r_x << depth), y - (r_y << depth)


def implicit_root(plan_root: int, lon: F64, lat: F64, size_m: F64) -> int:
    """The deepest ancestor of ``plan_root`` (level ≥ 1) whose cell holds every asset widened by its size on each
    side (``size_m`` is an asset's largest extent and its position lies within its extent)."""
    widen = size_m / METRES_PER_DEGREE
    west = float(np.min(lon - widen / np.maximum(np.cos(np.radians(lat)), 0.01)))
    east = float(np.max(lon + widen / np.maximum(np.cos(np.radians(lat)), 0.01)))
    south, north = float(np.min(lat - widen)), float(np.max(lat + widen))
    key = plan_root
    while split_key(key)[0] >= 1:
        w, s, e, n = cell_bounds(key)
        if w <= west and e >= east and s <= south and n >= north:
            return key
        key = parent_key(key)
    raise InvalidInput(
        "implicit tiling",
        "the layer straddles a hemisphere's edge (longitude 0 or ±180), where no cell of our grid holds it;"
        " build it explicit (without --implicit)",
    )


def implicit_plan(plan: Plan, assets: pa.Table) -> Plan:
    """The plan with every tile named implicitly below its group's implicit root, found from ``assets`` (every
    planned asset's ``group``, ``lon``, ``lat``, ``size_m``). A tile's digest also covers its root: its glb is
    written in the root's frame."""
    groups = np.asarray(assets.column("group").to_numpy(zero_copy_only=False), dtype=object)
    numbers = {n: np.asarray(assets.column(n).to_numpy(zero_copy_only=False), np.float64) for n in ("lon", "lat")}
    size = np.nan_to_num(np.asarray(assets.column("size_m").to_numpy(zero_copy_only=False), np.float64))
    roots = {}
    for name, root in plan.roots.items():
        rows = np.flatnonzero(groups == name)
        roots[name] = implicit_root(root, numbers["lon"][rows], numbers["lat"][rows], size[rows])
    tiles: list[PlannedTile] = []
    for t in plan.tiles:
        digest = hashlib.blake2b(f"{t.digest}/implicit/{roots[t.group]}".encode(), digest_size=16).hexdigest()
        tiles.append(ImplicitTile(t.group, t.key, t.lo, t.hi, t.origin, digest, roots[t.group]))
    return replace(plan, tiles=tiles, roots=roots)


def root_frame(root: int) -> F64:
    """The implicit root's ENU → ECEF matrix: at the centre of its cell, on the ellipsoid."""
    w, s, e, n = cell_bounds(root)
    return enu_to_ecef_matrix(((w + e) / 2, (s + n) / 2, 0.0))


def reframe_matrix(tile_origin: tuple[float, float, float], root: int) -> F64:
    """Tile ENU frame → implicit root ENU frame (both z up)."""
    return np.linalg.inv(root_frame(root)) @ enu_to_ecef_matrix(tile_origin)


def reframe_glb(glb: bytes, matrix: npt.ArrayLike) -> bytes:
    """The glb with its scene's root nodes moved by ``matrix`` (4×4, row-major, between z-up frames): each root
    node's matrix becomes ``C⁻¹ · matrix · C · node`` where C turns glTF's y-up into z-up. Only the JSON chunk is
    rewritten; every other chunk is kept byte for byte (compressed buffer views included)."""
    magic, version, _ = struct.unpack_from("<III", glb, 0)
    json_length, json_type = struct.unpack_from("<II", glb, 12)
    if magic != 0x46546C67 or version != 2 or json_type != 0x4E4F534A:
        raise ValueError("not a glb 2.0 file with a JSON first chunk")
    doc = json.loads(glb[20 : 20 + json_length])
    move = np.linalg.inv(Y_UP_TO_Z_UP) @ np.asarray(matrix, np.float64) @ Y_UP_TO_Z_UP
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {}
    for index in scene.get("nodes", []):
        node = doc["nodes"][index]
        node["matrix"] = (move @ _node_matrix(node)).T.ravel().tolist()
        for trs in ("translation", "rotation", "scale"):
            node.pop(trs, None)
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 4)
    rest = glb[20 + json_length :]
    return struct.pack("<IIIII", magic, version, 20 + len(text) + len(rest), len(text), json_type) + text + rest


def _node_matrix(node: dict[str, Any]) -> F64:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    out = np.eye(4)
    out[:3, :3] = rotation * np.asarray(node.get("scale", [1.0, 1.0, 1.0]))
    out[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return out


def box_region(origin: tuple[float, float, float], box_min: npt.ArrayLike, box_max: npt.ArrayLike) -> F64:
    """A region (west, south, east, north in radians, min and max height) holding the ENU box at ``origin``.

    The box is sampled on a 5 × 5 × 3 grid: over a tile-sized box lon and lat are close to affine in ENU, and the
    region is widened by 1 cm plus 1e-4 of the box's size for what curvature bends between samples. The lowest
    height is also taken at ``origin`` height + the box's bottom: the ellipsoid falls away from the tangent plane,
    so no point of the box lies lower than that."""
    lo, hi = np.asarray(box_min, np.float64), np.asarray(box_max, np.float64)
    axes = [np.linspace(lo[i], hi[i], 5 if i < 2 else 3) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    world = enu_to_ecef_matrix(origin)
    geo = ecef_to_lonlat(grid @ world[:3, :3].T + world[:3, 3])
    pad_m = 0.01 + 1e-4 * float(np.max(hi - lo))
    pad = pad_m / _EARTH_RADIUS
    cos = max(math.cos(math.radians(float(np.max(np.abs(geo[:, 1]))))), 0.01)
    return np.array(
        [
            math.radians(float(geo[:, 0].min())) - pad / cos,
            math.radians(float(geo[:, 1].min())) - pad,
            math.radians(float(geo[:, 0].max())) + pad / cos,
            math.radians(float(geo[:, 1].max())) + pad,
            min(float(geo[:, 2].min()), origin[2] + float(lo[2])) - pad_m,
            float(geo[:, 2].max()) + pad_m,
        ]
    )


def cell_region(key: int, heights: tuple[float, float]) -> list[float]:
    w, s, e, n = (math.radians(v) for v in cell_bounds(key))
    return [w, s, e, n, float(heights[0]), float(heights[1])]


def union(a: F64, b: F64) -> F64:
    return np.array(
        [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), min(a[4], b[4]), max(a[5], b[5])]
    )


def subtree_levels_for(available_levels: int) -> int:
    """Levels per subtree file for a tree of ``available_levels`` levels: two rows of subtrees.

    >>> [subtree_levels_for(levels) for levels in (12, 10, 5, 1, 20)]
    [6, 5, 3, 1, 7]
    """
    return min(MAX_SUBTREE_LEVELS, max(1, math.ceil(available_levels / 2)))


def group_implicit_tileset(
    folder: Path, root: int, content: dict[int, F64], keep_ratio: float, subtree_levels: int | None = None
) -> tuple[dict[str, Any], F64, int]:
    """Write the subtree files of one group into ``folder/subtrees`` and return its tileset.json (not written), the
    region of all its content and the bytes of subtree files written. ``content`` maps the absolute key of every
    tile with content to the region of that content."""
    regions: dict[int, F64] = {}
    for key in sorted(content, key=lambda k: -split_key(k)[0]):  # deepest first
        regions[key] = union(regions[key], content[key]) if key in regions else content[key]
        child = key
        while child != root:  # every ancestor up to the root is available and holds the region
            parent = parent_key(child)
            regions[parent] = union(regions[parent], regions[key]) if parent in regions else regions[key].copy()
            child = parent
    whole = regions[root]
    cell = cell_region(root, (whole[4], whole[5]))
    if whole[0] < cell[0] or whole[1] < cell[1] or whole[2] > cell[2] or whole[3] > cell[3]:
        raise InvalidInput("implicit tiling", f"content reaches outside its implicit root cell {split_key(root)}")
    available = {relative(k, root): r for k, r in regions.items()}
    with_content = {relative(k, root) for k in content}
    depth = max(level for level, _, _ in available) + 1
    subtree_levels = subtree_levels or subtree_levels_for(depth)
    # each subtree's tiles, and the roots of its child subtrees (one level below its deepest)
    members: dict[tuple[int, int, int], dict[tuple[int, int, int], F64]] = {}
    for (level, x, y), region in available.items():
        within = level % subtree_levels
        members.setdefault((level - within, x >> within, y >> within), {})[(level, x, y)] = region
        if within == 0 and level:
            top = (level - subtree_levels, x >> subtree_levels, y >> subtree_levels)
            members.setdefault(top, {})[(level, x, y)] = region
    written = 0
    for (level, x, y), tiles in sorted(members.items()):
        data = subtree_bytes((level, x, y), tiles, with_content, subtree_levels)
        path = folder / "subtrees" / str(level) / str(x) / f"{y}.subtree"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written += len(data)
    error = float(cell_size_m(split_key(root)[0], (cell[1] + cell[3]) / 2 * 180 / math.pi) * keep_ratio)
    tileset = {
        "asset": {"version": "1.1", "generator": "cim tiling"},
        "schema": SCHEMA,
        "geometricError": error,
        "root": {
            "transform": root_frame(root).T.ravel().tolist(),
            "boundingVolume": {"region": cell},
            "geometricError": error,
            "refine": "ADD",
            "content": {"uri": CONTENT_URI},
            "implicitTiling": {
                "subdivisionScheme": "QUADTREE",
                "subtreeLevels": subtree_levels,
                "availableLevels": depth,
                "subtrees": {"uri": SUBTREE_URI},
            },
        },
    }
    return tileset, whole, written


def morton(x: int, y: int) -> int:
    """Bits of x and y interleaved, x in the lowest bit (the spec's ``interleaveBits(0b11, 0b00) = 0b0101``).

    >>> morton(0b11, 0b00), morton(0b1010, 0b0011), morton(0b0110, 0b0101)
    (5, 78, 54)
    """
    out = 0
    for bit in range(max(x.bit_length(), y.bit_length())):
        out |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    return out


def subtree_bytes(
    top: tuple[int, int, int],
    available: dict[tuple[int, int, int], F64],
    with_content: set[tuple[int, int, int]],
    levels: int,
) -> bytes:
    """The binary ``.subtree`` rooted at implicit tile ``top`` (``available`` holds at least its tiles and the roots
    of its child subtrees; others are skipped): tile, content and child-subtree availability
    (bitstreams in Morton order per level, levels concatenated; ``constant`` where uniform) and the tiles'
    ``TILE_BOUNDING_REGION`` as tile metadata, in the order of their availability bits."""
    t_level, t_x, t_y = top
    nodes = (4**levels - 1) // 3
    tile_bits = np.zeros(nodes, bool)
    content_bits = np.zeros(nodes, bool)
    child_bits = np.zeros(4**levels, bool)
    regions: dict[int, F64] = {}
    for (level, x, y), region in available.items():
        d = level - t_level
        if d < 0 or d > levels or x >> d != t_x or y >> d != t_y:
            continue
        local = morton(x - (t_x << d), y - (t_y << d))
        if d == levels:
            child_bits[local] = True
            continue
        index = (4**d - 1) // 3 + local
        tile_bits[index] = True
        content_bits[index] = (level, x, y) in with_content
        regions[index] = region
    chunks: list[bytes] = []
    views: list[dict[str, int]] = []

    def view(data: bytes) -> int:
        offset = sum(len(c) for c in chunks)
        chunks.append(data + b"\x00" * ((-len(data)) % 8))  # every buffer view starts on a multiple of 8
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data)})
        return len(views) - 1

    def availability(bits: npt.NDArray[np.bool_]) -> dict[str, int]:
        if bits.all() or not bits.any():
            return {"constant": int(bits.all())}
        return {"bitstream": view(np.packbits(bits, bitorder="little").tobytes()), "availableCount": int(bits.sum())}

    doc: dict[str, Any] = {
        "tileAvailability": availability(tile_bits),
        "contentAvailability": [availability(content_bits)],
        "childSubtreeAvailability": availability(child_bits),
    }
    values = np.array([regions[i] for i in sorted(regions)], np.float64)
    doc["propertyTables"] = [
        {"class": "tile", "count": len(regions), "properties": {"region": {"values": view(values.tobytes())}}}
    ]
    doc["tileMetadata"] = 0
    binary = b"".join(chunks)
    doc = {"buffers": [{"byteLength": len(binary)}], "bufferViews": views, **doc}
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<IIQQ", SUBTREE_MAGIC, SUBTREE_VERSION, len(text), len(binary)) + text + binary


def content_region(tile: PlannedTile, info: dict[str, Any]) -> F64:
    return box_region(tile.origin, info["box_min"], info["box_max"])


def reframe_written(folder: Path, tile: ImplicitTile, info: dict[str, Any]) -> None:
    """Move a freshly encoded glb (in its tile's frame) into its implicit root's frame, once: the manifest entry
    says so, and reused tiles come already moved."""
    if info.get("framed"):
        return
    path = folder / tile.group / tile.file
    path.write_bytes(reframe_glb(path.read_bytes(), reframe_matrix(tile.origin, tile.root)))
    info["bytes"] = path.stat().st_size
    info["framed"] = True


def root_tileset(groups: dict[str, tuple[dict[str, Any], F64]]) -> dict[str, Any]:
    """The root tileset over implicit groups: one child per group (its content region) referencing
    ``<group>/tileset.json``; the metadata schema sits here too, where CesiumJS looks for it."""
    children = []
    whole: F64 | None = None
    for name, (tileset, region) in groups.items():
        whole = region if whole is None else union(whole, region)
        children.append(
            {
                "boundingVolume": {"region": region.tolist()},
                "geometricError": tileset["geometricError"],
                "refine": "ADD",
                "content": {"uri": f"{name}/tileset.json"},
            }
        )
    assert whole is not None
    error = max(c["geometricError"] for c in children)
    return {
        "asset": {"version": "1.1", "generator": "cim tiling"},
        "schema": SCHEMA,
        "geometricError": error,
        "root": {
            "boundingVolume": {"region": whole.tolist()},
            "geometricError": error,
            "refine": "ADD",
            "children": children,
        },
    }


def directories(plan: Plan, folder: Path) -> None:
    """Make the ``{level}/{x}`` folders of every implicit tile (the encoder writes and links files into them)."""
    for parent in {(folder / t.group / t.file).parent for t in plan.tiles}:
        parent.mkdir(parents=True, exist_ok=True)


__all__ = ["ImplicitTile", "group_implicit_tileset", "implicit_plan", "reframe_glb", "subtree_bytes", "tile_key"]
