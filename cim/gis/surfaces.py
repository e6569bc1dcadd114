"""Surfaces given as rings of vertex indices into lon/lat/height points (CityJSON's boundaries): their triangles
and the footprint they cover seen from above."""

from __future__ import annotations

import mapbox_earcut
import numpy as np
import numpy.typing as npt
import shapely

#: Rough metres per degree (lon scaled for ~mid latitudes): only to make surface planes comparable, not to measure.
_DEGREE_SCALE = np.array([70_000.0, 111_000.0, 1.0])


def footprint(triangles: npt.NDArray[np.int64], points: npt.NDArray[np.float64]) -> shapely.Geometry | None:
    """The area an object covers seen from above: the union of its downward triangles (its floor), or of its
    upward ones when it has no floor (a road, a roof-only surface)."""
    corners = points[triangles]
    xy = corners[:, :, :2]
    area2 = (xy[:, 1, 0] - xy[:, 0, 0]) * (xy[:, 2, 1] - xy[:, 0, 1]) - (xy[:, 1, 1] - xy[:, 0, 1]) * (
        xy[:, 2, 0] - xy[:, 0, 0]
    )
    down, up = area2 < -1e-16, area2 > 1e-16
    chosen = down if down.any() else up
    if not chosen.any():
        return None
    polygons = shapely.polygons(xy[chosen])
    try:
        union = shapely.coverage_union_all(polygons)
    except shapely.errors.GEOSException:
        union = shapely.union_all(polygons)
    if not union.is_valid:
        union = shapely.make_valid(union)
    parts = shapely.get_parts(union)
    parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
    return shapely.multipolygons(shapely.get_parts(parts)) if len(parts) else None


def triangulate(surfaces: list[list[list[int]]], points: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Triangles (indices into ``points``) of every surface. Triangle surfaces are taken as they are; others are
    earcut in the axis plane they face most (holes included), then turned to face the way the surface does
    (CityJSON rings run counter-clockwise seen from outside)."""
    simple = [surface[0] for surface in surfaces if len(surface) == 1 and len(surface[0]) == 3]
    out = [np.asarray(simple, dtype=np.int64).reshape(-1, 3)]
    for surface in surfaces:
        if len(surface) == 1 and len(surface[0]) == 3:
            continue
        rings = [np.asarray(r, dtype=np.int64) for r in surface if len(r) >= 3]
        flat = np.concatenate(rings)
        # lon/lat degrees are fine for choosing a plane and for earcut's 2D work at one object's size
        xyz = points[flat] * _DEGREE_SCALE
        normal = _newell_normal(xyz[: len(rings[0])])
        if not np.any(normal):
            continue
        keep = [a for a in range(3) if a != int(np.argmax(np.abs(normal)))]
        ends = np.cumsum([len(r) for r in rings]).astype(np.uint32)
        found = mapbox_earcut.triangulate_float64(np.ascontiguousarray(xyz[:, keep]), ends).reshape(-1, 3)
        if len(found):
            a, b, c = xyz[found[:, 0]], xyz[found[:, 1]], xyz[found[:, 2]]
            facing = np.einsum("ij,j->i", np.cross(b - a, c - a), normal) < 0
            found[facing] = found[facing][:, ::-1]
            out.append(flat[found])
    return np.concatenate(out)


def _newell_normal(ring: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    following = np.roll(ring, -1, axis=0)
    return np.array(
        [
            np.sum((ring[:, 1] - following[:, 1]) * (ring[:, 2] + following[:, 2])),
            np.sum((ring[:, 2] - following[:, 2]) * (ring[:, 0] + following[:, 0])),
            np.sum((ring[:, 0] - following[:, 0]) * (ring[:, 1] + following[:, 1])),
        ]
    )


def triangulate_rings(
    points: npt.NDArray[np.float64], ring_sizes: npt.NDArray[np.int64], rings_per_surface: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """:func:`triangulate` for surfaces whose rings lie one after another in ``points`` (``ring_sizes`` points
    each, ``rings_per_surface`` rings per surface, outer first), in bulk: the convex one-ring surfaces of up to
    :data:`_FAN_MAX` points (triangles, most walls and roofs) are fanned in numpy, the rest go through earcut.

    >>> square = np.array([[0, 0, 0], [1e-4, 0, 0], [1e-4, 1e-4, 0], [0, 1e-4, 0]], dtype=np.float64)
    >>> triangulate_rings(square, np.array([4]), np.array([1])).tolist()
    [[0, 1, 2], [0, 2, 3]]
    """
    ring_starts = np.concatenate([[0], np.cumsum(ring_sizes)[:-1]]).astype(np.int64)
    first_ring = np.concatenate([[0], np.cumsum(rings_per_surface)[:-1]]).astype(np.int64)
    sizes = ring_sizes[first_ring]
    fanned = np.zeros(len(first_ring), dtype=bool)
    out: list[npt.NDArray[np.int64]] = []
    for size in np.unique(sizes[(rings_per_surface == 1) & (sizes <= _FAN_MAX)]):
        chosen = np.flatnonzero((rings_per_surface == 1) & (sizes == size))
        index = ring_starts[first_ring[chosen]][:, None] + np.arange(size)
        xyz = points[index] * _DEGREE_SCALE
        following = np.roll(xyz, -1, axis=1)
        normal = np.stack(
            [
                np.sum((xyz[..., 1] - following[..., 1]) * (xyz[..., 2] + following[..., 2]), axis=1),
                np.sum((xyz[..., 2] - following[..., 2]) * (xyz[..., 0] + following[..., 0]), axis=1),
                np.sum((xyz[..., 0] - following[..., 0]) * (xyz[..., 1] + following[..., 1]), axis=1),
            ],
            axis=1,
        )
        flat = ~normal.any(axis=1)
        fanned[chosen[flat]] = True  # no plane: no triangle, as triangulate does
        if size == 3:
            convex = ~flat
        else:
            drop = np.argmax(np.abs(normal), axis=1)
            keep = np.array([[1, 2], [0, 2], [0, 1]])[drop]
            uv = np.take_along_axis(xyz, np.broadcast_to(keep[:, None, :], (len(xyz), size, 2)), axis=2)
            edge = np.roll(uv, -1, axis=1) - uv
            turn = edge[..., 0] * np.roll(edge, -1, axis=1)[..., 1] - edge[..., 1] * np.roll(edge, -1, axis=1)[..., 0]
            convex = ~flat & ((turn >= 0).all(axis=1) | (turn <= 0).all(axis=1))
        fan = index[convex]
        steps = np.arange(1, size - 1)
        triangles = np.stack(
            [np.repeat(fan[:, :1], size - 2, axis=1), fan[:, steps], fan[:, steps + 1]], axis=2
        ).reshape(-1, 3)
        out.append(triangles)
        fanned[chosen[convex]] = True
    rest = np.flatnonzero(~fanned)
    if len(rest):
        surfaces = []
        for surface in rest:
            first = int(first_ring[surface])
            rings = range(first, first + int(rings_per_surface[surface]))
            surfaces.append([list(range(ring_starts[r], ring_starts[r] + ring_sizes[r])) for r in rings])
        out.append(triangulate(surfaces, points))
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


#: The most points a one-ring surface may have to be fanned in bulk when convex.
_FAN_MAX = 16
