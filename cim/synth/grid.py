"""Street grids and blocks of one district, in metres.

Each district is a regular grid of streets turned to the district's bearing. Grid cell ``(i, j)`` is one block with
half a street on each side; the block's buildable part is :data:`BLOCK_W` × :data:`BLOCK_H` metres. A district takes
the cells nearest its centre that lie wholly inside its own part of the city (closer to its centre than to any other
district's by a margin), so districts never overlap however many buildings are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from cim.synth.places import District, FloatArray

STREET_W = 30.0  # kerb to kerb, centreline on the grid line
BLOCK_W = 190.0
BLOCK_H = 160.0
PITCH_X = BLOCK_W + STREET_W
PITCH_Y = BLOCK_H + STREET_W
ARTERIAL_EVERY = 4  # every 4th grid line is an arterial road
_MARGIN = 150.0  # metres kept clear between two districts' cells

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Frame:
    """A district's local street frame: grid coordinates (metres, along the streets) → projected metres."""

    x0: float
    y0: float
    angle: float  # radians

    def to_world(self, u: npt.ArrayLike, v: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        u, v = np.asarray(u, dtype="float64"), np.asarray(v, dtype="float64")
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.x0 + c * u - s * v, self.y0 + s * u + c * v


@dataclass(frozen=True, slots=True)
class Edge:
    """The street segments of a grid: ``horizontal`` edges run from node (i, j) to (i+1, j), others to (i, j+1)."""

    i: IntArray
    j: IntArray
    horizontal: npt.NDArray[np.bool_]

    @property
    def arterial(self) -> npt.NDArray[np.bool_]:
        line = np.where(self.horizontal, self.j, self.i)
        return np.asarray(line % ARTERIAL_EVERY == 0)

    def ends(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Start and end of each edge in grid metres: (u0, v0, u1, v1)."""
        u0, v0 = self.i * PITCH_X, self.j * PITCH_Y
        u1 = u0 + np.where(self.horizontal, PITCH_X, 0.0)
        v1 = v0 + np.where(self.horizontal, 0.0, PITCH_Y)
        return u0.astype("float64"), v0.astype("float64"), u1.astype("float64"), v1.astype("float64")


def frame_of(district: District, centre: tuple[float, float]) -> Frame:
    return Frame(centre[0], centre[1], np.radians(district.rotation_deg))


def candidate_blocks(frame: Frame, index: int, centres: FloatArray, radius: int) -> tuple[IntArray, IntArray]:
    """Grid cells within ``radius`` cells of the centre that lie wholly in this district's part of the city,
    nearest first (ties broken by position, so the order is stable)."""
    span = np.arange(-radius, radius)
    i, j = (a.ravel() for a in np.meshgrid(span, span, indexing="ij"))
    inside = np.ones(len(i), dtype=bool)
    for du in (0, 1):
        for dv in (0, 1):
            x, y = frame.to_world((i + du) * PITCH_X, (j + dv) * PITCH_Y)
            own = np.hypot(x - centres[index, 0], y - centres[index, 1])
            for k in range(len(centres)):
                if k != index:
                    inside &= own + _MARGIN < np.hypot(x - centres[k, 0], y - centres[k, 1])
    i, j = i[inside], j[inside]
    distance = np.hypot((i + 0.5) * PITCH_X, (j + 0.5) * PITCH_Y)
    order = np.lexsort((j, i, np.round(distance, 3)))
    return i[order].astype(np.int64), j[order].astype(np.int64)


def streets_of(block_i: IntArray, block_j: IntArray) -> Edge:
    """Every street segment bounding at least one of the blocks, each once, in a stable order."""
    i = np.concatenate([block_i, block_i, block_i, block_i + 1])
    j = np.concatenate([block_j, block_j + 1, block_j, block_j])
    horizontal = np.concatenate([np.ones(2 * len(block_i), bool), np.zeros(2 * len(block_i), bool)])
    keys = np.unique(np.column_stack([~horizontal, i, j]), axis=0)
    return Edge(i=keys[:, 1].astype(np.int64), j=keys[:, 2].astype(np.int64), horizontal=keys[:, 0] == 0)


def nodes_of(edges: Edge) -> tuple[IntArray, IntArray]:
    """The grid nodes (street crossings) the edges meet, each once."""
    u = np.concatenate([edges.i, edges.i + edges.horizontal])
    v = np.concatenate([edges.j, edges.j + ~edges.horizontal])
    keys = np.unique(np.column_stack([u, v]), axis=0)
    return keys[:, 0].astype(np.int64), keys[:, 1].astype(np.int64)


def cell_polygons(frame: Frame, block_i: IntArray, block_j: IntArray, grow: float = 0.0) -> npt.NDArray[np.object_]:
    """Each grid cell (its block and half the streets round it) grown by ``grow`` metres, as world polygons."""
    u0, v0 = block_i * PITCH_X - grow, block_j * PITCH_Y - grow
    u1, v1 = u0 + PITCH_X + 2 * grow, v0 + PITCH_Y + 2 * grow
    x, y = frame.to_world(np.column_stack([u0, u1, u1, u0]), np.column_stack([v0, v0, v1, v1]))
    return np.asarray(shapely.polygons(np.stack([x, y], axis=-1)), dtype=object)
