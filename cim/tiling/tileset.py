"""tileset.json files: one external tileset per layer group, and a root tileset referencing them.

Every tile has a local east-north-up frame: content tiles at the centre of their content (the glb is written in it),
inner tiles at the mean of their children's. A tile's ``transform`` is its frame relative to its parent's (a group's
root tile carries the absolute ENU → ECEF matrix), so clients compose them back to ECEF in float64. Bounding volumes
are boxes in the tile's own frame: the content box the glb writer measured, grown to hold the 8 corners of every
child's box carried into this frame — so each box really contains everything below it, buried pipes included. The
root tileset's boxes are in ECEF (oriented boxes for the groups, an axis-aligned one around them for the root).

Geometric error comes from the cell size: ``cell_size_m(level) × keep_ratio`` for tiles with children (the size of
the largest asset a tile passes down), 0 for leaves. Refinement is ADD throughout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cim.geodesy import enu_to_ecef_matrix
from cim.tiling.quadtree import cell_size_m, parent_key, split_key

F64 = npt.NDArray[np.float64]
MIN_HALF_SIZE = 0.01


@dataclass
class TileNode:
    """One tile of a group's tree; ``file`` is the content's path relative to the group folder (None: no content)."""

    key: int
    origin: tuple[float, float, float] | None = None
    box_min: F64 | None = None
    box_max: F64 | None = None
    file: str | None = None
    children: list[int] = field(default_factory=list)
    world: F64 | None = None
    error: float = 0.0


def group_tileset(nodes: dict[int, TileNode], root_key: int, keep_ratio: float) -> tuple[dict[str, Any], F64, F64]:
    """The external tileset of one group (``nodes`` holds its content tiles; inner tiles are added) and the group
    root's world matrix and box corners (8, 3) in ECEF."""
    for key in sorted(list(nodes), reverse=True):
        child = key
        while child != root_key:
            parent = parent_key(child)
            node = nodes.setdefault(parent, TileNode(parent))
            if child not in node.children:
                node.children.append(child)
            child = parent
    for key in sorted(nodes, key=lambda k: -split_key(k)[0]):  # deepest first: children are ready
        _settle(nodes, nodes[key], keep_ratio)
    root = nodes[root_key]
    assert root.world is not None
    tileset = {
        "asset": {"version": "1.1", "generator": "cim tiling"},
        "geometricError": max(root.error, _cell_error(root, keep_ratio)),
        "root": _tile_json(nodes, root, parent_world=None),
    }
    return tileset, root.world, _corners(root) @ root.world[:3, :3].T + root.world[:3, 3]


def root_tileset(groups: dict[str, tuple[dict[str, Any], F64, F64]]) -> dict[str, Any]:
    """The root tileset: one child per group referencing ``<group>/tileset.json``."""
    children = []
    all_corners = []
    for name, (tileset, world, corners) in groups.items():
        all_corners.append(corners)
        root_box = tileset["root"]["boundingVolume"]["box"]
        centre = world[:3, :3] @ np.asarray(root_box[:3]) + world[:3, 3]
        axes = [world[:3, :3] @ np.asarray(root_box[3 + 3 * i : 6 + 3 * i]) for i in range(3)]
        children.append(
            {
                "boundingVolume": {"box": [*centre.tolist(), *(float(v) for a in axes for v in a)]},
                "geometricError": tileset["geometricError"],
                "refine": "ADD",
                "content": {"uri": f"{name}/tileset.json"},
            }
        )
    stacked = np.concatenate(all_corners)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    error = max(c["geometricError"] for c in children)
    return {
        "asset": {"version": "1.1", "generator": "cim tiling"},
        "geometricError": error,
        "root": {
            "boundingVolume": {"box": _box(lo, hi)},
            "geometricError": error,
            "refine": "ADD",
            "children": children,
        },
    }


def write_json(path: Path, value: dict[str, Any]) -> int:
    data = json.dumps(value, separators=(",", ":")).encode()
    path.write_bytes(data)
    return len(data)


def _settle(nodes: dict[int, TileNode], node: TileNode, keep_ratio: float) -> None:
    """Frame, box and geometric error of ``node`` once its children have theirs."""
    kids = [nodes[k] for k in sorted(node.children)]
    if node.origin is None:
        origins = np.array([k.origin for k in kids], dtype=np.float64)
        node.origin = (float(origins[:, 0].mean()), float(origins[:, 1].mean()), float(origins[:, 2].mean()))
    node.world = enu_to_ecef_matrix(node.origin)
    inverse = _rigid_inverse(node.world)
    points = [] if node.box_min is None else [_corners(node)]
    for kid in kids:
        assert kid.world is not None
        to_here = inverse @ kid.world
        points.append(_corners(kid) @ to_here[:3, :3].T + to_here[:3, 3])
    stacked = np.concatenate(points)
    node.box_min, node.box_max = stacked.min(axis=0), stacked.max(axis=0)
    node.error = _cell_error(node, keep_ratio) if kids else 0.0


def _rigid_inverse(m: F64) -> F64:
    """The inverse of a rotation + translation matrix (exact, and cheaper than a general inverse)."""
    out = np.eye(4)
    out[:3, :3] = m[:3, :3].T
    out[:3, 3] = -(m[:3, :3].T @ m[:3, 3])
    return out


def _cell_error(node: TileNode, keep_ratio: float) -> float:
    assert node.origin is not None
    return float(cell_size_m(split_key(node.key)[0], node.origin[1]) * keep_ratio)


def _corners(node: TileNode) -> F64:
    assert node.box_min is not None and node.box_max is not None
    lo, hi = node.box_min, node.box_max
    return np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _box(lo: F64, hi: F64) -> list[float]:
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, MIN_HALF_SIZE)
    return [*centre.tolist(), float(half[0]), 0.0, 0.0, 0.0, float(half[1]), 0.0, 0.0, 0.0, float(half[2])]


def _tile_json(nodes: dict[int, TileNode], node: TileNode, parent_world: F64 | None) -> dict[str, Any]:
    assert node.world is not None and node.box_min is not None and node.box_max is not None
    relative = node.world if parent_world is None else _rigid_inverse(parent_world) @ node.world
    out: dict[str, Any] = {
        "transform": relative.T.ravel().tolist(),
        "boundingVolume": {"box": _box(node.box_min, node.box_max)},
        "geometricError": node.error,
        "refine": "ADD",
    }
    if node.file is not None:
        out["content"] = {"uri": node.file}
    if node.children:
        out["children"] = [_tile_json(nodes, nodes[k], node.world) for k in sorted(node.children)]
    return out
