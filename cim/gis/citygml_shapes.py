"""A batch of CityGML objects' polygons into what their assets and meshes need, with numpy over the whole batch.

Each object arrives as its rings' raw coordinates (:class:`Pending`); the batch is reprojected per CRS in one call,
triangulated in one call (:func:`cim.gis.rings.triangulate_rings`), put in each object's east-north-up frame in
one call, and its triangles' areas summed by object and surface class at once. Only the footprint (a shapely union)
and the mesh's slicing are per object. Objects come by the hundred, each with tens to thousands of small polygons:
done one object at a time, numpy's per-call cost outweighed the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from cim.geodesy import lonlat_to_enu
from cim.gis import surfaces as surface_geometry
from cim.gis.gml import SrsFrame
from cim.gis.rings import triangulate_rings
from cim.model import MeshBatch


@dataclass
class Pending:
    """One object's polygons as read: rings one after another in ``raw`` (its CRS's coordinates, ``frame``),
    ``rings_per_surface`` rings per polygon, each polygon's class (an index into ``classes``), and how many
    geometry properties (thematic surfaces) of each class it has. ``thematic``: its classes are thematic surfaces
    (wall, roof …), worth counting and measuring. ``details``: what the caller needs back to make its asset."""

    asset_id: str
    frame: SrsFrame
    raw: npt.NDArray[np.float64]
    ring_sizes: npt.NDArray[np.int64]
    rings_per_surface: npt.NDArray[np.int64]
    surface_class: npt.NDArray[np.int64]
    classes: list[str]
    members: dict[str, int]
    thematic: bool
    details: Any = None


@dataclass
class Shaped:
    """What an object's asset takes from its shape: footprint, vertical extent, surface figures by class."""

    footprint: shapely.Geometry
    z_min: float
    z_max: float
    stats: dict[str, float | int] = field(default_factory=dict)


def shape_batch(pending: list[Pending]) -> tuple[list[Shaped | str], MeshBatch]:
    """Each object's :class:`Shaped`, or the rule that rejects it (``outside_lonlat``, ``empty_geometry``), and
    the meshes of the ones kept."""
    results: list[Shaped | str] = ["empty_geometry"] * len(pending)
    if not pending:
        return results, MeshBatch.empty()
    points = _lonlat(pending)
    sizes = np.array([len(p.raw) for p in pending], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    outside = np.add.reduceat(np.isnan(points[:, 0]), starts) > 0
    kept = [n for n in range(len(pending)) if not outside[n]]
    for off_earth in np.flatnonzero(outside):
        results[int(off_earth)] = "outside_lonlat"
    if not kept:
        return results, MeshBatch.empty()
    if len(kept) < len(pending):
        points = np.concatenate([points[starts[n] : starts[n] + sizes[n]] for n in kept])
        sizes = sizes[kept]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    objects = [pending[n] for n in kept]
    triangles, surface_of = triangulate_rings(
        points,
        np.concatenate([p.ring_sizes for p in objects]),
        np.concatenate([p.rings_per_surface for p in objects]),
    )
    names: dict[str, int] = {}  # class → its number in this batch
    classes = np.concatenate(
        [np.array([names.setdefault(c, len(names)) for c in p.classes])[p.surface_class] for p in objects]
    )
    owner_of_surface = np.repeat(np.arange(len(objects)), [len(p.rings_per_surface) for p in objects])
    owner, cls = owner_of_surface[surface_of], classes[surface_of]
    order = np.lexsort((cls, owner))  # by object, then by class
    triangles, owner, cls = triangles[order], owner[order], cls[order]
    origins = _origins(points, starts, sizes)
    enu = lonlat_to_enu(points[:, 0], points[:, 1], points[:, 2], np.repeat(origins, sizes, axis=0))
    corners = enu[triangles]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    bounds = np.searchsorted(owner, np.arange(len(objects) + 1))
    ground = names.get("GroundSurface", -1)
    ids, mesh_origins, vertices, faces = [], [], [], []
    for j, (n, p) in enumerate(zip(kept, objects, strict=True)):
        first, last = int(bounds[j]), int(bounds[j + 1])
        if first == last:
            continue  # no surface with a plane: empty_geometry
        own_points = points[starts[j] : starts[j] + sizes[j]]
        local = triangles[first:last] - starts[j]
        own_classes = cls[first:last]
        on_ground = own_classes == ground  # a footprint is what the object stands on, where it says so
        footprint = surface_geometry.footprint(local[on_ground] if on_ground.any() else local, own_points)
        if footprint is None:
            continue
        z = own_points[local.ravel(), 2]
        stats = _stats(p, names, own_classes, areas[first:last]) if p.thematic else {}
        results[n] = Shaped(footprint=footprint, z_min=float(z.min()), z_max=float(z.max()), stats=stats)
        ids.append(p.asset_id)
        mesh_origins.append((float(origins[j, 0]), float(origins[j, 1]), float(origins[j, 2])))
        vertices.append(enu[starts[j] : starts[j] + sizes[j]].astype(np.float32))
        faces.append(local.astype(np.uint32))
    meshes = MeshBatch.build(ids, mesh_origins, vertices, faces) if ids else MeshBatch.empty()
    return results, meshes


def _lonlat(pending: list[Pending]) -> npt.NDArray[np.float64]:
    """Every object's points as lon, lat, height: one transform per CRS in the batch."""
    raw = np.concatenate([p.raw for p in pending])
    frames: dict[int, tuple[SrsFrame, list[int]]] = {}
    for n, p in enumerate(pending):
        frames.setdefault(id(p.frame), (p.frame, []))[1].append(n)
    if len(frames) == 1:
        return pending[0].frame.lonlat(raw)
    sizes = np.array([len(p.raw) for p in pending])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    points = np.empty_like(raw)
    for frame, members in frames.values():
        index = np.concatenate([np.arange(starts[n], starts[n] + sizes[n]) for n in members])
        points[index] = frame.lonlat(raw[index])
    return points


def _origins(
    points: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Each object's mesh origin: the mean of its points' lon and lat, at its lowest height."""
    lonlat = np.add.reduceat(points[:, :2], starts, axis=0) / sizes[:, None]
    low = np.minimum.reduceat(points[:, 2], starts)
    return np.column_stack([lonlat, low])


def _stats(
    pending: Pending, names: dict[str, int], classes: npt.NDArray[np.int64], areas: npt.NDArray[np.float64]
) -> dict[str, float | int]:
    """Surfaces, triangles and area (m²) by thematic surface class, e.g. ``citygml.WallSurface.area_m2``."""
    stats: dict[str, float | int] = {}
    for name in pending.classes:
        number = names[name]
        mine = classes == number
        key = f"citygml.{name}"
        stats[f"{key}.count"] = pending.members.get(name, 0)
        stats[f"{key}.triangles"] = int(mine.sum())
        stats[f"{key}.area_m2"] = round(float(areas[mine].sum()), 2)
    return stats
