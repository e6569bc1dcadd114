"""A spatial quadtree per layer group, assigned vectorised: each asset goes to one tile, tiles stay bounded.

Cells are squares of a fixed global grid in lon/lat degrees (level ``L`` cells are ``360 / 2**L`` degrees a side,
starting at lon −180, lat −90), so a tile's key does not move when the city grows elsewhere — what makes incremental
builds rewrite few tiles. The tree of a group starts at the deepest cell holding all its assets. Level by level, a
cell whose remaining assets fit the limits (features and estimated bytes) becomes a leaf holding them all; a fuller
cell keeps its largest assets (at least ``keep_ratio`` of the cell size, up to the limits) as its own content —
refinement is ADD, so they stay visible while the children load — and passes the rest down. At
:data:`MAX_LEVEL` (cells under a metre) a cell takes whatever is left.

>>> import numpy as np
>>> keys = assign(np.array([121.40, 121.40001, 121.6]), np.array([31.2, 31.2, 31.3]), np.ones(3), np.ones(3),
...               TreeLimits(max_features=2))
>>> bool(keys[0] == keys[1] != keys[2]), split_key(int(keys[0]))[0]
(True, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cim.geodesy import METRES_PER_DEGREE

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MAX_LEVEL = 26
_BITS = 28


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeLimits:
    """Bounds of one tile: features, estimated content bytes; and how large (relative to its cell) an asset must be
    to stay in an inner tile."""

    max_features: int = 1000
    max_bytes: int = 2_000_000
    keep_ratio: float = 1 / 8


def tile_key(level: npt.ArrayLike, ix: npt.ArrayLike, iy: npt.ArrayLike) -> I64:
    """One int64 per cell: level in the top bits, then x and y."""
    return (np.asarray(level, np.int64) << (2 * _BITS)) | (np.asarray(ix, np.int64) << _BITS) | np.asarray(iy, np.int64)


def split_key(key: int) -> tuple[int, int, int]:
    """(level, x, y) of a tile key.

    >>> split_key(int(tile_key(3, 5, 6)))
    (3, 5, 6)
    """
    mask = (1 << _BITS) - 1
    return key >> (2 * _BITS), (key >> _BITS) & mask, key & mask


def parent_key(key: int) -> int:
    level, x, y = split_key(key)
    return int(tile_key(level - 1, x >> 1, y >> 1))


def cell_of(lon: F64, lat: F64, level: int) -> tuple[I64, I64]:
    scale = (1 << level) / 360.0
    top = (1 << level) - 1
    ix = np.clip(np.floor((np.asarray(lon) + 180.0) * scale), 0, top).astype(np.int64)
    iy = np.clip(np.floor((np.asarray(lat) + 90.0) * scale), 0, top).astype(np.int64)
    return ix, iy


def cell_bounds(key: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a cell."""
    level, x, y = split_key(key)
    side = 360.0 / (1 << level)
    return -180.0 + x * side, -90.0 + y * side, -180.0 + (x + 1) * side, -90.0 + (y + 1) * side


def cell_size_m(level: int, lat: float | F64) -> F64:
    """The smaller side of a level's cell in metres at latitude ``lat``."""
    side = 360.0 / (1 << level) * METRES_PER_DEGREE
    return np.asarray(side * np.maximum(np.cos(np.radians(lat)), 0.01), dtype=np.float64)


def root_level(lon: F64, lat: F64) -> int:
    """The deepest level whose one cell holds every point."""
    level = 0
    corners = np.array([np.min(lon), np.max(lon)]), np.array([np.min(lat), np.max(lat)])
    for candidate in range(MAX_LEVEL + 1):
        ix, iy = cell_of(*corners, candidate)  # cells grow with lon and lat: the extremes decide
        if ix[0] != ix[1] or iy[0] != iy[1]:
            break
        level = candidate
    return level


def assign(lon: F64, lat: F64, size_m: F64, nbytes: F64, limits: TreeLimits) -> I64:
    """The tile key of each asset (position lon/lat, size in metres, estimated bytes in a tile)."""
    n = len(lon)
    keys = np.full(n, -1, np.int64)
    if not n:
        return keys
    active = np.arange(n)
    for level in range(root_level(lon, lat), MAX_LEVEL + 1):
        ix, iy = cell_of(lon[active], lat[active], level)
        node = tile_key(level, ix, iy)
        _, inverse, counts = np.unique(node, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        node_bytes = np.bincount(inverse, weights=nbytes[active])
        fits = ((counts <= limits.max_features) & (node_bytes <= limits.max_bytes)) | (level == MAX_LEVEL)
        leaf = fits[inverse]
        keys[active[leaf]] = node[leaf]
        # fuller cells keep their largest assets
        big = ~leaf & (size_m[active] >= cell_size_m(level, lat[active]) * limits.keep_ratio)
        candidates = np.flatnonzero(big)
        if len(candidates):
            order = candidates[np.lexsort((candidates, -size_m[active[candidates]], inverse[candidates]))]
            group = inverse[order]
            starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
            first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            rank = np.arange(len(order)) - first
            cum_bytes = np.cumsum(nbytes[active[order]])
            before = np.r_[0.0, cum_bytes][first]
            kept = order[(rank < limits.max_features // 2) & (cum_bytes - before <= limits.max_bytes / 2)]
            keys[active[kept]] = node[kept]
            leaf[kept] = True
        active = active[~leaf]
        if not len(active):
            break
    return keys
