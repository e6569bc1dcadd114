"""A building's geometry for CityGML 3.0, in the export's projected CRS: the LoD1 block from its footprint and heights,
and the LoD2 surfaces of its stored mesh.

- **LoD1** (``lod1Solid``): the footprint extruded from ``z_min`` to ``z_max`` (or ``z_min + height_m``): a
  ``gml:Solid`` whose shell is the bottom, the top and one wall per footprint edge, every face oriented outwards
  (GML's rule for a solid's shell: seen from outside, an exterior ring runs counter-clockwise). A footprint of
  several polygons is a ``gml:CompositeSolid`` of one solid each.
- **LoD2**: the mesh's triangles as ``boundary`` surfaces — ``con:RoofSurface`` (facing up), ``con:GroundSurface``
  (facing down at the mesh's foot, within :data:`GROUND_BAND_M` of its lowest point), ``con:OuterCeilingSurface``
  (facing down higher up: the underside of an overhang or a passage, which a ground surface is not — an importer
  takes the footprint from the ground surfaces), ``con:WallSurface`` (the rest; a triangle within
  :data:`WALL_TILT_DEGREES` of vertical) — each a
  ``lod2MultiSurface`` of ``gml:Polygon``\\ s. When the mesh is closed (every edge shared by exactly two triangles)
  the building also gets a ``lod2Solid`` whose shell refers to those polygons by ``xlink:href``, as the OGC samples
  do. Triangles of no area are left out (a ring needs three distinct points).

Heights are written as the store holds them (metres above the WGS84 ellipsoid for what this project ingests;
CityJSON sources keep their file's datum, which their ingest summary names).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer

from cim.export.citygml_attributes import CON, CORE, GML, XLINK, nested
from cim.geodesy import ecef_to_lonlat, enu_rotation, lonlat_to_ecef
from cim.model import MeshBatch

F64 = npt.NDArray[np.float64]
#: A triangle whose normal is within this many degrees of horizontal is a wall; above, a roof; below, a ground.
WALL_TILT_DEGREES = 10.0
#: A downward triangle whose highest corner is at most this far above the mesh's lowest point is ground (a building on
#: a slope of 10 % over 20 m spans 2 m); higher ones are outer ceilings (overhangs start a storey up).
GROUND_BAND_M = 2.0
#: Decimals of a coordinate written (millimetres).
DECIMALS = 3


class Projector:
    """WGS84 lon/lat (and mesh ENU frames) to the export's projected CRS; heights pass through."""

    def __init__(self, crs: CRS) -> None:
        self._transformer = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)

    def xy(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[F64, F64]:
        x, y = self._transformer.transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        return np.asarray(x, np.float64), np.asarray(y, np.float64)

    def mesh_points(self, meshes: MeshBatch) -> F64:
        """Every vertex of ``meshes`` (n, 3) in the CRS: its ENU offset carried to ECEF through its asset's origin,
        then to lon/lat/height and projected."""
        counts = np.diff(meshes.vertex_offsets)
        owner = np.repeat(np.arange(len(meshes)), counts)
        origins = meshes.origins[owner]
        rotation = enu_rotation(origins[:, 0], origins[:, 1])  # rows: east, north, up in ECEF
        ecef = np.einsum("nji,nj->ni", rotation, meshes.vertices.astype(np.float64))
        ecef += lonlat_to_ecef(origins[:, 0], origins[:, 1], origins[:, 2])
        lonlat = ecef_to_lonlat(ecef)
        x, y = self.xy(lonlat[:, 0], lonlat[:, 1])
        return np.stack([x, y, lonlat[:, 2]], axis=-1)


@dataclass(frozen=True, slots=True)
class Surfaces:
    """A mesh's triangles (t, 3, 3) in the CRS, by theme, and whether they close a volume."""

    roof: F64
    wall: F64
    ground: F64
    ceiling: F64
    closed: bool


def lod1_solids(footprint: shapely.Geometry, projector: Projector, low: float, high: float) -> list[list[list[F64]]]:
    """The solids (each a list of faces, each a list of closed rings (k, 3), exterior first) of ``footprint``
    extruded from ``low`` to ``high``; none for a footprint with no area."""
    polygons = [p for p in getattr(footprint, "geoms", [footprint]) if isinstance(p, shapely.Polygon) and p.area > 0]
    solids = []
    for polygon in polygons:
        oriented = shapely.geometry.polygon.orient(polygon, sign=1.0)  # exterior CCW, holes CW seen from above
        rings = []
        for ring in (oriented.exterior, *oriented.interiors):
            lonlat = np.asarray(ring.coords, np.float64)[:, :2]
            x, y = projector.xy(lonlat[:, 0], lonlat[:, 1])
            plain = _without_repeats(np.stack([x, y], axis=-1))
            if plain is not None:
                rings.append(plain)
            elif not rings:  # the exterior collapses at millimetres: no solid
                break
        if not rings:
            continue
        faces: list[list[F64]] = [
            [_at(ring[::-1], low) for ring in rings],  # the bottom faces down: its rings reversed
            [_at(ring, high) for ring in rings],
        ]
        for ring in rings:
            for a, b in itertools.pairwise(ring):
                faces.append([np.array([[*a, low], [*b, low], [*b, high], [*a, high], [*a, low]])])
        solids.append(faces)
    return solids


def _without_repeats(ring: F64) -> F64 | None:
    """A closed ring at the millimetres written, each point once in a row (GML: a ring's consecutive points
    differ), or None when fewer than three distinct points are left."""
    rounded = np.round(ring, DECIMALS)
    keep = np.concatenate([[True], np.any(np.diff(rounded, axis=0) != 0, axis=1)])
    rounded = rounded[keep]
    if len(rounded) > 1 and np.array_equal(rounded[0], rounded[-1]):
        rounded = rounded[:-1]
    if len(rounded) < 3:
        return None
    return np.vstack([rounded, rounded[:1]])


def _at(ring: F64, z: float) -> F64:
    return np.column_stack([ring, np.full(len(ring), z)])


def mesh_surfaces(points: F64, triangles: npt.NDArray[np.uint32]) -> Surfaces:
    """The triangles of one mesh (its projected ``points``), those of no area left out, by the way they face."""
    corners = np.round(points, DECIMALS)[triangles.astype(np.int64)]  # as written: a triangle must stay one
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1)
    keep = length > 1e-7
    corners, normals, length = corners[keep], normals[keep], length[keep]
    up = normals[:, 2] / length
    limit = math.sin(math.radians(WALL_TILT_DEGREES))
    edges = np.sort(triangles[keep][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    down = up < -limit
    at_foot = corners[:, :, 2].max(axis=1) <= (corners[:, :, 2].min() if len(corners) else 0.0) + GROUND_BAND_M
    return Surfaces(
        roof=corners[up > limit],
        wall=corners[np.abs(up) <= limit],
        ground=corners[down & at_foot],
        ceiling=corners[down & ~at_foot],
        closed=bool(len(uses)) and bool((uses == 2).all()),
    )


def pos_list(ring: F64) -> str:
    """A ring's coordinates as a ``gml:posList`` (x y z …), formatted in one C call (a Python format per number was
    a tenth of the export's time)."""
    values = ring.ravel().tolist()
    return (_FORMAT * len(values))[:-1] % tuple(values)


_FORMAT = f"%.{DECIMALS}f "
_POLYGON, _LINEAR_RING, _POS_LIST = (f"{{{GML}}}{name}" for name in ("Polygon", "LinearRing", "posList"))
_SIDES = (f"{{{GML}}}exterior", f"{{{GML}}}interior")
_GML_ID = f"{{{GML}}}id"


def write_polygon(xf: Any, rings: Sequence[F64], polygon_id: str | None = None) -> None:
    with xf.element(_POLYGON, {_GML_ID: polygon_id} if polygon_id else {}):
        for n, ring in enumerate(rings):
            with xf.element(_SIDES[n > 0]), xf.element(_LINEAR_RING), xf.element(_POS_LIST):
                xf.write(pos_list(ring))


def write_lod1(xf: Any, solids: list[list[list[F64]]]) -> None:
    """``lod1Solid``: one ``gml:Solid``, or a ``gml:CompositeSolid`` of several."""
    with xf.element(f"{{{CORE}}}lod1Solid"):
        if len(solids) == 1:
            _write_solid(xf, solids[0])
            return
        with xf.element(f"{{{GML}}}CompositeSolid"):
            for faces in solids:
                with xf.element(f"{{{GML}}}solidMember"):
                    _write_solid(xf, faces)


def _write_solid(xf: Any, faces: list[list[F64]]) -> None:
    with nested(xf, f"{{{GML}}}Solid", f"{{{GML}}}exterior", f"{{{GML}}}Shell"):
        for rings in faces:
            with xf.element(f"{{{GML}}}surfaceMember"):
                write_polygon(xf, rings)


def write_lod2_boundaries(xf: Any, surfaces: Surfaces, building_id: str) -> list[str]:
    """The mesh's ``boundary`` surfaces, one per theme it has; the ids given to their polygons (when the mesh is
    closed, for :func:`write_lod2_solid`)."""
    ids: list[str] = []
    for theme, triangles in (
        ("GroundSurface", surfaces.ground),
        ("WallSurface", surfaces.wall),
        ("OuterCeilingSurface", surfaces.ceiling),
        ("RoofSurface", surfaces.roof),
    ):
        ids += _write_boundary(xf, theme, triangles, building_id, len(ids), surfaces.closed)
    return ids


def _write_boundary(xf: Any, theme: str, triangles: F64, building_id: str, first: int, named: bool) -> list[str]:
    if not len(triangles):
        return []
    ids = [f"{building_id}_p{first + n}" for n in range(len(triangles))] if named else []
    with nested(
        xf, f"{{{CORE}}}boundary", f"{{{CON}}}{theme}", f"{{{CORE}}}lod2MultiSurface", f"{{{GML}}}MultiSurface"
    ):
        for n, triangle in enumerate(triangles):
            with xf.element(f"{{{GML}}}surfaceMember"):
                write_polygon(xf, [np.vstack([triangle, triangle[:1]])], ids[n] if named else None)
    return ids


def write_lod2_solid(xf: Any, polygon_ids: list[str]) -> None:
    """``lod2Solid`` whose shell is the boundary polygons, by reference."""
    with nested(xf, f"{{{CORE}}}lod2Solid", f"{{{GML}}}Solid", f"{{{GML}}}exterior", f"{{{GML}}}Shell"):
        for polygon_id in polygon_ids:
            with xf.element(f"{{{GML}}}surfaceMember", {f"{{{XLINK}}}href": f"#{polygon_id}"}):
                pass


def extent_of(rings: Sequence[F64]) -> F64 | None:
    """(min x, min y, min z, max x, max y, max z) of the coordinates of ``rings``; None for none."""
    if not rings:
        return None
    stacked = np.vstack(rings)
    return np.concatenate([stacked.min(axis=0), stacked.max(axis=0)])
