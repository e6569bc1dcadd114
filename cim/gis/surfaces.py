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
