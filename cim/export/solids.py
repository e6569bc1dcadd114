"""LoD1 solids of footprints, as CityJSON geometry (:mod:`cim.export.cityjson`): a batch of 2D footprints in lon/lat
with a base and a top height becomes integer vertices and, per footprint, the JSON of its geometry.

Each polygon is extruded: its ground surface (the footprint's rings reversed, facing down), its roof (the rings as
they are, facing up) and one wall per edge of every ring, ``[b_i, b_i+1, t_i+1, t_i]``, which faces outwards when
the exterior ring runs counter-clockwise seen from above and the holes clockwise (``shapely.orient_polygons``).

Most city footprints are one polygon of one ring. Their geometry is written by one ``%``-format of a template per
corner count from an index matrix built in numpy (at 1,000,000 buildings, nested Python lists per surface cost more
than the rest of the export); a footprint with holes or several polygons, or without a height (a LoD0
``MultiSurface``), takes the general path of nested lists.

A stored mesh (:func:`mesh_surfaces`) is written as it is, a ``MultiSurface`` of its triangles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import shapely

from cim.geodesy import ecef_to_lonlat, enu_rotation, lonlat_to_ecef
from cim.model import MeshBatch

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
#: lon/lat (n × 2) and heights (n) → integer vertices (n × 3) of the file.
ToVertices = Callable[[FloatArray, FloatArray], IntArray]
SEMANTICS = [{"type": "GroundSurface"}, {"type": "RoofSurface"}, {"type": "WallSurface"}]
_SEMANTICS_JSON = orjson.dumps(SEMANTICS).decode()
_templates: dict[int, str] = {}


def heights(table: pa.Table) -> tuple[FloatArray, FloatArray]:
    """Each row's base and top: ``z_min`` (else ``z_max - height_m``, else 0) and ``z_max`` (else base +
    ``height_m``); top is NaN where no height is known or it is not above the base (no solid)."""

    def floats(name: str) -> FloatArray:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    z_min, z_max, height = floats("z_min"), floats("z_max"), floats("height_m")
    base = np.where(np.isfinite(z_min), z_min, np.where(np.isfinite(z_max - height), z_max - height, 0.0))
    top = np.where(np.isfinite(z_max), z_max, base + height)
    top = np.where(top > base, top, np.nan)
    return base, top


def extrude(
    geoms: npt.NDArray[np.object_], base: FloatArray, top: FloatArray, *, first_vertex: int, to_vertices: ToVertices
) -> tuple[list[Any], IntArray]:
    """Each footprint's CityJSON geometry — an ``orjson.Fragment`` of its JSON, a dict, or None where the row has
    no polygon — and the batch's vertices, numbered from ``first_vertex``."""
    n = len(geoms)
    areal = np.isin(shapely.get_type_id(geoms), (3, 6)) if n else np.zeros(0, bool)  # Polygon, MultiPolygon
    parts, owner = shapely.get_parts(geoms[areal], return_index=True)
    owner = np.flatnonzero(areal)[owner]
    parts = shapely.orient_polygons(parts, exterior_cw=False)
    rings, ring_polygon = shapely.get_rings(parts, return_index=True)
    coords, point_ring = shapely.get_coordinates(rings, return_index=True)
    # a ring's closing point repeats its first: CityJSON rings are not closed
    ring_sizes = np.bincount(point_ring, minlength=len(rings))
    keep = np.ones(len(coords), bool)
    keep[np.cumsum(ring_sizes) - 1] = False
    coords, point_ring = coords[keep], point_ring[keep]
    ring_sizes = ring_sizes - 1
    point_owner = owner[ring_polygon[point_ring]]
    extruded = np.isfinite(top[point_owner])
    points = len(coords)
    bottom_index = first_vertex + np.arange(points)
    top_index = np.full(points, -1, np.int64)
    top_index[extruded] = first_vertex + points + np.arange(int(extruded.sum()))
    xyz = to_vertices(
        np.concatenate([coords, coords[extruded]]), np.concatenate([base[point_owner], top[point_owner][extruded]])
    )
    ring_start = np.cumsum(ring_sizes) - ring_sizes
    result: list[Any] = [None] * n
    # the fast path: a row of one polygon of one ring, with a height
    polygons_per_row = np.bincount(owner, minlength=n)
    rings_per_polygon = np.bincount(ring_polygon, minlength=len(parts))
    polygon_start = np.cumsum(rings_per_polygon) - rings_per_polygon
    simple_polygon = (polygons_per_row[owner] == 1) & (rings_per_polygon == 1) & np.isfinite(top[owner])
    for size in np.unique(ring_sizes[polygon_start[simple_polygon]]):
        chosen = simple_polygon & (ring_sizes[polygon_start] == size)
        starts = ring_start[polygon_start[chosen]]
        corner = starts[:, None] + np.arange(size)[None, :]
        b, t = bottom_index[corner], top_index[corner]
        bn, tn = np.roll(b, -1, axis=1), np.roll(t, -1, axis=1)
        walls = np.stack([b, bn, tn, t], axis=2).reshape(len(starts), 4 * size)
        matrix = np.concatenate([b[:, ::-1], t, walls], axis=1)
        template = _template(int(size))
        for row, values in zip(owner[chosen].tolist(), matrix.tolist(), strict=True):
            result[row] = orjson.Fragment(template % tuple(values))
    # the general path: holes, several polygons, no height
    general = np.flatnonzero(~simple_polygon)
    if len(general):
        following = _following(ring_start, ring_sizes, point_ring)
        walls_all = np.column_stack([bottom_index, bottom_index[following], top_index[following], top_index])
        bottoms, tops, walls = bottom_index.tolist(), top_index.tolist(), walls_all.tolist()
        row_polygons: dict[int, list[int]] = {}
        for p in general.tolist():
            row_polygons.setdefault(int(owner[p]), []).append(p)
        ring_points = np.r_[0, np.cumsum(ring_sizes)]
        for row, polygons in row_polygons.items():
            solid = bool(np.isfinite(top[row]))
            shells = []
            for p in polygons:
                first = int(polygon_start[p])
                ring_range = range(first, first + int(rings_per_polygon[p]))
                spans = [(int(ring_points[r]), int(ring_points[r + 1])) for r in ring_range]
                if solid:
                    ground = [bottoms[a:b][::-1] for a, b in spans]
                    roof = [tops[a:b] for a, b in spans]
                    shells.append([ground, roof, *([wall] for a, b in spans for wall in walls[a:b])])
                else:
                    shells.append([bottoms[a:b] for a, b in spans])
            result[row] = _geometry(shells, solid=solid)
    return result, xyz


def _following(ring_start: IntArray, ring_sizes: IntArray, point_ring: IntArray) -> IntArray:
    """For each point, the index of the next point of its ring (the ring's first after its last)."""
    start = ring_start[point_ring]
    position = np.arange(len(point_ring)) - start
    return start + (position + 1) % ring_sizes[point_ring]


def _template(size: int) -> str:
    """The JSON of a one-ring solid of ``size`` corners, with ``%d`` for its 6 × ``size`` vertex indices: ground,
    roof, then the walls."""
    if size not in _templates:
        ring = ",".join(["%d"] * size)
        walls = ",".join(["[[%d,%d,%d,%d]]"] * size)
        values = ",".join(["0", "1", *["2"] * size])
        _templates[size] = (
            f'{{"type":"Solid","lod":"1","boundaries":[[[[{ring}]],[[{ring}]],{walls}]],'
            f'"semantics":{{"surfaces":{_SEMANTICS_JSON},"values":[[{values}]]}}}}'
        )
    return _templates[size]


def _geometry(shells: list[Any], *, solid: bool) -> dict[str, Any]:
    if not solid:  # footprints at the base: each polygon one surface
        return {"type": "MultiSurface", "lod": "0", "boundaries": shells}
    values = [[0, 1, *([2] * (len(shell) - 2))] for shell in shells]
    if len(shells) == 1:
        return {
            "type": "Solid",
            "lod": "1",
            "boundaries": [shells[0]],
            "semantics": {"surfaces": SEMANTICS, "values": values},
        }
    return {
        "type": "MultiSolid",
        "lod": "1",
        "boundaries": [[shell] for shell in shells],
        "semantics": {"surfaces": SEMANTICS, "values": [[v] for v in values]},
    }


def mesh_surfaces(
    meshes: MeshBatch, lods: Sequence[str], *, first_vertex: int, to_vertices: ToVertices
) -> tuple[list[orjson.Fragment], IntArray]:
    """Each mesh of ``meshes`` as a ``MultiSurface`` of its triangles at the LoD of ``lods`` (one per mesh), and
    their vertices numbered from ``first_vertex``: each mesh's local east-north-up vertices taken to ECEF by its
    origin's frame, then to lon/lat/height, then to the file's vertices."""
    counts = np.diff(meshes.vertex_offsets)
    owner = np.repeat(np.arange(len(counts)), counts)
    origins = meshes.origins
    rotation = enu_rotation(origins[:, 0], origins[:, 1])
    ecef = np.einsum("nji,nj->ni", rotation[owner], meshes.vertices.astype(np.float64))
    ecef += lonlat_to_ecef(origins[:, 0], origins[:, 1], origins[:, 2])[owner]
    lonlath = ecef_to_lonlat(ecef)
    xyz = to_vertices(lonlath[:, :2], lonlath[:, 2])
    triangle_owner = np.repeat(np.arange(len(counts)), np.diff(meshes.triangle_offsets))
    triangles = meshes.triangles.astype(np.int64) + (first_vertex + meshes.vertex_offsets[:-1])[triangle_owner, None]
    listed = triangles.tolist()
    offsets = meshes.triangle_offsets.tolist()
    surfaces = []
    for i, lod in enumerate(lods):
        text = ",".join(f"[[{a},{b},{c}]]" for a, b, c in listed[offsets[i] : offsets[i + 1]])
        surfaces.append(orjson.Fragment(f'{{"type":"MultiSurface","lod":"{lod}","boundaries":[{text}]}}'))
    return surfaces, xyz
