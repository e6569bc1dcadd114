"""The plan of a build: which tile each asset goes to, each tile's frame origin and content hash — before any mesh
is read (sizes and digests come from the mesh index)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cim.tiling.groups import GROUPS
from cim.tiling.properties import props_of
from cim.tiling.quadtree import TreeLimits, assign, cell_of, root_level, split_key, tile_key

#: Bumped when what a tile's inputs produce changes (encoder, schema): every tile is then rewritten.
FORMAT = "cim-tiles-4"
#: Bytes a tile needs per stored vertex / triangle / feature — the estimate that bounds tiles before any mesh is
#: read. A vertex is 16 B (int16 position 8, int8 normal 4, feature id 4); a triangle 6 B of uint16 indices plus the
#: vertices creases add (AC20-FZK-Haus: 12,041 stored → 20,135 written for 23,264 triangles, 0.35 × 16 B); a feature
#: its metadata and share of the JSON (LOD1 bench: 686 B per building, 615 of them geometry).
BYTES_PER_VERTEX, BYTES_PER_TRIANGLE, BYTES_PER_FEATURE = 16, 12, 80
PROPERTY_COLUMNS = sorted({p.id for kind in ("building", "pipe", "node") for p in props_of(kind)})


@dataclass(frozen=True, slots=True)
class PlannedTile:
    """A content tile: rows ``lo:hi`` of the planned asset table, its ENU origin, content hash and file name."""

    group: str
    key: int
    lo: int
    hi: int
    origin: tuple[float, float, float]
    digest: str

    @property
    def file(self) -> str:
        level, x, y = split_key(self.key)
        return f"{level}_{x}_{y}.glb"


@dataclass(frozen=True, slots=True)
class Plan:
    assets: pa.Table  # sorted by (group, tile, id)
    tiles: list[PlannedTile]
    roots: dict[str, int]  # group → root tile key
    keys: npt.NDArray[np.int64] | None = None  # the tile key of each row of ``assets``
    order: npt.NDArray[np.int64] | None = None  # ``assets`` = the input (sorted by id) taken in this order


def plan_tiles(assets: pa.Table, limits: TreeLimits) -> Plan:
    """Assign every asset (joined to its mesh index) to a tile of its group's quadtree."""
    keys, rank, roots = assign_keys(assets, limits)
    order = np.lexsort((np.arange(assets.num_rows), keys, rank))
    ordered = assets.take(pa.array(order))
    return Plan(ordered, planned_tiles(ordered, keys[order], rank[order]), roots, keys[order], order)


def planning_inputs(assets: pa.Table) -> dict[str, npt.NDArray[Any]]:
    """What the quadtree reads of each asset: ``group``, ``lon``, ``lat``, ``size_m`` and estimated ``nbytes``."""
    return {
        "group": np.asarray(assets.column("group").to_numpy(zero_copy_only=False), dtype=object),
        "lon": _numbers(assets, "lon"),
        "lat": _numbers(assets, "lat"),
        "size_m": _numbers(assets, "size_m"),
        "nbytes": _numbers(assets, "vertex_count") * BYTES_PER_VERTEX
        + _numbers(assets, "triangle_count") * BYTES_PER_TRIANGLE
        + BYTES_PER_FEATURE,
    }


def assign_keys(
    assets: pa.Table | dict[str, npt.NDArray[Any]], limits: TreeLimits
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], dict[str, int]]:
    """The tile key and group rank of every asset, and each group's root key."""
    inputs = planning_inputs(assets) if isinstance(assets, pa.Table) else assets
    group_names, lon, lat = inputs["group"], inputs["lon"], inputs["lat"]
    keys = np.zeros(len(lon), np.int64)
    rank = np.zeros(len(lon), np.int64)
    roots: dict[str, int] = {}
    for g, name in enumerate(GROUPS):
        rows = np.flatnonzero(group_names == name)
        if not len(rows):
            continue
        keys[rows] = assign(lon[rows], lat[rows], inputs["size_m"][rows], inputs["nbytes"][rows], limits)
        rank[rows] = g
        level = root_level(lon[rows], lat[rows])
        ix, iy = cell_of(lon[rows[:1]], lat[rows[:1]], level)
        roots[name] = int(tile_key(level, ix[0], iy[0]))
    return keys, rank, roots


def planned_tiles(ordered: pa.Table, keys: npt.NDArray[np.int64], rank: npt.NDArray[np.int64]) -> list[PlannedTile]:
    """The tiles of assets sorted by (rank, key, id): one per run of equal (rank, key), with origin and hash."""
    lon, lat, h = _numbers(ordered, "lon"), _numbers(ordered, "lat"), _numbers(ordered, "h")
    boundaries = np.flatnonzero((np.diff(keys) != 0) | (np.diff(rank) != 0)) + 1
    starts, ends = np.r_[0, boundaries], np.r_[boundaries, len(keys)]
    digests = np.asarray(ordered.column("digest").to_numpy(zero_copy_only=False), dtype=np.uint64)
    props = ordered.select([c for c in PROPERTY_COLUMNS if c in ordered.column_names])
    tiles = []
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        origin = (
            float((lon[lo:hi].min() + lon[lo:hi].max()) / 2),
            float((lat[lo:hi].min() + lat[lo:hi].max()) / 2),
            float(np.round(h[lo:hi].mean(), 1)),
        )
        digest = hashlib.blake2b(FORMAT.encode(), digest_size=16)
        digest.update(np.asarray(origin).tobytes())
        digest.update(digests[lo:hi].tobytes())
        digest.update(_ipc(props.slice(lo, hi - lo)))
        tiles.append(PlannedTile(GROUPS[int(rank[lo])], int(keys[lo]), lo, hi, origin, digest.hexdigest()))
    return tiles


def _numbers(table: pa.Table, name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.nan_to_num(np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64))


def _ipc(table: pa.Table) -> bytes:
    """The table's content as bytes (Arrow IPC of compacted columns), for hashing."""
    compact = pa.Table.from_arrays([pa.concat_arrays(c.chunks) for c in table.columns], schema=table.schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, compact.schema) as writer:
        writer.write_table(compact)
    return bytes(sink.getvalue())
