"""Triangles of many surfaces at once, their rings laid one after another in one array of points.

CityGML objects come as hundreds of polygons each: triangulating them one Python call at a time costs more than
reading them. Both readers' batches come here (CityGML's through :mod:`cim.gis.citygml_shapes`, CityJSON's through
:mod:`cim.gis.surfaces`). Convex one-ring surfaces (triangles, most walls and roofs) are fanned in numpy by ring size,
and the rest (concave rings, holes) go to earcut in a loop that does nothing else; their planes and the turning of
their triangles to face the way the surface does are worked out for all of them together.
"""

from __future__ import annotations

import mapbox_earcut
import numpy as np
import numpy.typing as npt

#: Rough metres per degree (lon scaled for ~mid latitudes): only to make surface planes comparable, not to measure.
_DEGREE_SCALE = np.array([70_000.0, 111_000.0, 1.0])
#: The most points a one-ring surface may have to be fanned in bulk when convex.
FAN_MAX = 16
_OTHER_AXES = np.array([[1, 2], [0, 2], [0, 1]])


def triangulate_rings(
    points: npt.NDArray[np.float64], ring_sizes: npt.NDArray[np.int64], rings_per_surface: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Triangles (indices into ``points``: lon, lat, height) of surfaces whose rings lie one after another in
    ``points`` (``ring_sizes`` points each, open, ``rings_per_surface`` rings per surface, outer first), and the
    surface each triangle belongs to. A surface with no plane (its points in a line) gets none.

    >>> square = np.array([[0, 0, 0], [1e-4, 0, 0], [1e-4, 1e-4, 0], [0, 1e-4, 0]], dtype=np.float64)
    >>> triangles, surface = triangulate_rings(square, np.array([4]), np.array([1]))
    >>> triangles.tolist(), surface.tolist()
    ([[0, 1, 2], [0, 2, 3]], [0, 0])
    """
    ring_starts = np.concatenate([[0], np.cumsum(ring_sizes)[:-1]]).astype(np.int64)
    first_ring = np.concatenate([[0], np.cumsum(rings_per_surface)[:-1]]).astype(np.int64)
    xyz = points * _DEGREE_SCALE
    normals = _outer_normals(xyz, ring_starts[first_ring], ring_sizes[first_ring])
    planar = normals.any(axis=1)
    sizes = ring_sizes[first_ring]
    one_ring = (rings_per_surface == 1) & planar
    done: npt.NDArray[np.bool_] = np.logical_not(planar)
    triangles: list[npt.NDArray[np.int64]] = []
    owners: list[npt.NDArray[np.int64]] = []
    for size in np.unique(sizes[one_ring & (sizes <= FAN_MAX)]):
        chosen = np.flatnonzero(one_ring & (sizes == size))
        index = ring_starts[first_ring[chosen]][:, None] + np.arange(size)
        if size > 3:
            uv = np.take_along_axis(
                xyz[index],
                np.broadcast_to(
                    _OTHER_AXES[np.argmax(np.abs(normals[chosen]), axis=1)][:, None, :], (len(chosen), size, 2)
                ),
                axis=2,
            )
            edge = np.roll(uv, -1, axis=1) - uv
            following = np.roll(edge, -1, axis=1)
            turn = edge[..., 0] * following[..., 1] - edge[..., 1] * following[..., 0]
            convex = (turn >= 0).all(axis=1) | (turn <= 0).all(axis=1)
            chosen, index = chosen[convex], index[convex]
        steps = np.arange(1, size - 1)
        fan = np.stack([np.repeat(index[:, :1], size - 2, axis=1), index[:, steps], index[:, steps + 1]], axis=2)
        triangles.append(fan.reshape(-1, 3))
        owners.append(np.repeat(chosen, size - 2))
        done[chosen] = True
    rest = np.flatnonzero(~done)
    if len(rest):
        found, owner = _earcut(xyz, normals, rest, first_ring, ring_starts, ring_sizes, rings_per_surface)
        triangles.append(found)
        owners.append(owner)
    if not triangles:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(triangles).astype(np.int64), np.concatenate(owners).astype(np.int64)


def _outer_normals(
    xyz: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Newell's normal of each surface's outer ring (not unit length), all at once."""
    ends = np.cumsum(sizes)
    offsets = ends - sizes
    index = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - offsets, sizes)
    following = index + 1
    following[ends[sizes > 0] - 1] = starts[sizes > 0]  # each ring's last point is followed by its first
    a, b = xyz[index], xyz[following]
    terms = np.empty((len(index), 3))
    terms[:, 0] = (a[:, 1] - b[:, 1]) * (a[:, 2] + b[:, 2])
    terms[:, 1] = (a[:, 2] - b[:, 2]) * (a[:, 0] + b[:, 0])
    terms[:, 2] = (a[:, 0] - b[:, 0]) * (a[:, 1] + b[:, 1])
    return np.add.reduceat(terms, offsets, axis=0) if len(terms) else np.zeros((0, 3))


def _earcut(
    xyz: npt.NDArray[np.float64],
    normals: npt.NDArray[np.float64],
    surfaces: npt.NDArray[np.int64],
    first_ring: npt.NDArray[np.int64],
    ring_starts: npt.NDArray[np.int64],
    ring_sizes: npt.NDArray[np.int64],
    rings_per_surface: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Earcut each of ``surfaces`` in the axis plane it faces most, holes included, then turn every triangle to
    face the way its surface does."""
    found: list[npt.NDArray[np.int64]] = []
    owner: list[npt.NDArray[np.int64]] = []
    keep = _OTHER_AXES[np.argmax(np.abs(normals[surfaces]), axis=1)]
    for n, surface in enumerate(surfaces):
        first = int(first_ring[surface])
        rings = int(rings_per_surface[surface])
        start = int(ring_starts[first])
        stop = int(ring_starts[first + rings - 1] + ring_sizes[first + rings - 1])
        flat = np.ascontiguousarray(xyz[start:stop][:, keep[n]])
        ends = np.cumsum(ring_sizes[first : first + rings]).astype(np.uint32)
        triangles = mapbox_earcut.triangulate_float64(flat, ends).reshape(-1, 3).astype(np.int64)
        found.append(triangles + start)
        owner.append(np.full(len(triangles), surface, dtype=np.int64))
    triangles = np.concatenate(found)
    owners = np.concatenate(owner)
    if len(triangles):
        a, b, c = xyz[triangles[:, 0]], xyz[triangles[:, 1]], xyz[triangles[:, 2]]
        backwards = np.einsum("ij,ij->i", np.cross(b - a, c - a), normals[owners]) < 0
        triangles[backwards] = triangles[backwards][:, ::-1]
    return triangles, owners
