"""3D shapes for GIS assets, made for whole batches with numpy: LOD1 blocks, buried pipe tubes, point markers.

- **Blocks** (buildings and other extruded footprints): footprint + height → a closed LOD1 solid. Roofs and floors are
  triangulated with earcut (holes and multipolygons included); each wall quad has vertices of its own so every
  vertex lies on one plane (flat shading needs no vertex splitting later).
- **Tubes** (pipes): the centre line laid at ``z_max − radius`` (``z_max = −depth``), a ring of :data:`TUBE_SIDES`
  vertices at both ends of every segment.
- **Markers** (hydrants, poles, stops, sensors …): a small hexagonal prism, sized by kind, standing on the point.

Each mesh is in the ENU frame around its asset's origin (footprint centroid / line midpoint / the point, at the
asset's ``z_min``), exactly as :class:`cim.model.Mesh` says. The only Python loop is one earcut call per polygon part.
"""

from __future__ import annotations

from collections.abc import Sequence

import mapbox_earcut
import numpy as np
import numpy.typing as npt
import shapely

from cim.geodesy import lonlat_to_enu
from cim.model.batch import AssetBatch
from cim.model.meshes import MeshBatch
from cim.model.values import Kind

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Kinds whose polygons become LOD1 blocks; other polygons (parks, water, land use …) stay flat ground layers.
BLOCK_KINDS = frozenset({Kind.BUILDING, Kind.BRIDGE, Kind.TRANSIT_STOP, Kind.METRO_EXIT, Kind.CHARGER, Kind.POLE})
#: Height used to draw a block whose height is unknown (the asset's ``height_m`` stays empty).
UNKNOWN_BLOCK_HEIGHT_M = 3.0
#: Kinds drawn as tubes when their geometry is a line.
TUBE_KINDS = frozenset({Kind.PIPE})
TUBE_SIDES = 6
#: Tube diameter when a pipe has none.
UNKNOWN_DIAMETER_MM = 200.0
#: Marker (radius, height) in metres by kind, for point assets with no vertical extent of their own.
MARKER_SIZE: dict[Kind, tuple[float, float]] = {
    Kind.HYDRANT: (0.25, 0.8),
    Kind.POLE: (0.15, 8.0),
    Kind.TRANSIT_STOP: (0.6, 2.5),
    Kind.METRO_EXIT: (1.5, 3.0),
    Kind.CHARGER: (0.4, 1.5),
    Kind.SENSOR: (0.2, 0.5),
    Kind.NODE: (0.6, 1.0),
    Kind.LIFT: (1.0, 3.0),
}
DEFAULT_MARKER = (0.5, 1.0)


def shapes_for(
    ids: Sequence[str],
    kinds: Sequence[str],
    geoms: npt.NDArray[np.object_],
    z_min: F64,
    z_max: F64,
    diameter_mm: F64,
) -> MeshBatch:
    """The shapes of one batch of assets (lon/lat shapely geometries); assets that get no shape are left out."""
    ids_a = np.asarray(ids, dtype=object)
    kind_a = np.asarray(kinds, dtype=object)
    z_lo = np.nan_to_num(np.asarray(z_min, dtype=np.float64))
    z_hi = np.nan_to_num(np.asarray(z_max, dtype=np.float64))
    types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, (3, 6))
    linear = np.isin(types, (1, 2, 5))
    point = types == 0
    blocks = polygonal & np.isin(kind_a, [str(k) for k in BLOCK_KINDS])
    tubes = linear & np.isin(kind_a, [str(k) for k in TUBE_KINDS])
    batches = []
    if blocks.any():
        height = z_hi[blocks] - z_lo[blocks]
        height = np.where(height > 0, height, UNKNOWN_BLOCK_HEIGHT_M)
        batches.append(extrude_blocks(ids_a[blocks], geoms[blocks], z_lo[blocks], height))
    if tubes.any():
        diameter = np.asarray(diameter_mm, dtype=np.float64)[tubes]
        radius = np.where(np.isfinite(diameter) & (diameter > 0), diameter, UNKNOWN_DIAMETER_MM) / 2000.0
        batches.append(lay_tubes(ids_a[tubes], geoms[tubes], z_hi[tubes] - radius, radius))
    if point.any():
        sizes = np.array([MARKER_SIZE.get(Kind(k), DEFAULT_MARKER) for k in kind_a[point]], dtype=np.float64)
        extent = z_hi[point] - z_lo[point]
        height = np.where(extent > 0, extent, sizes[:, 1])
        batches.append(place_markers(ids_a[point], geoms[point], z_lo[point], sizes[:, 0], height))
    return MeshBatch.concat(batches)


def shapes_of_batch(batch: AssetBatch) -> MeshBatch:
    """:func:`shapes_for` the assets of a stored batch."""
    table = batch.table

    def floats(name: str) -> F64:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    return shapes_for(
        table.column("id").to_pylist(),
        table.column("kind").to_pylist(),
        batch.geometries(),
        floats("z_min"),
        floats("z_max"),
        floats("diameter_mm"),
    )


def extrude_blocks(ids: npt.NDArray[np.object_], geoms: npt.NDArray[np.object_], base: F64, height: F64) -> MeshBatch:
    """LOD1 solids: each (multi)polygon footprint raised from ``base`` by ``height`` metres."""
    parts, part_owner = shapely.get_parts(shapely.orient_polygons(geoms, exterior_cw=False), return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    last = last_in_ring(ring_of)  # each ring repeats its first point at the end: drop it
    coords, ring_of = coords[~last], ring_of[~last]
    nv = len(coords)
    owner = part_owner[ring_part[ring_of]]
    origins = _origins(shapely.centroid(geoms), base)
    enu = lonlat_to_enu(coords[:, 0], coords[:, 1], base[owner], origins[owner])
    bottom = enu
    top = enu + np.stack([np.zeros(nv), np.zeros(nv), height[owner]], axis=-1)

    # roofs (earcut per polygon part) and floors (the same, reversed)
    ring_start = np.r_[0, np.flatnonzero(np.diff(ring_of)) + 1]
    ring_len = np.diff(np.r_[ring_start, nv])
    part_of_ring = ring_part[ring_of[ring_start]]
    roof = _triangulate(enu[:, :2], ring_start, ring_len, part_of_ring)
    floor = roof[:, ::-1] + nv

    # walls: one quad (4 own vertices, 2 triangles) per ring edge, outward for CCW exteriors / CW holes
    idx = np.arange(nv)
    first_of_ring = np.repeat(ring_start, ring_len)
    following = np.where(last_in_ring(ring_of), first_of_ring, idx + 1)
    wall_vertices = np.stack([bottom[idx], bottom[following], top[following], top[idx]], axis=1).reshape(-1, 3)
    w = 2 * nv + 4 * idx
    walls = np.concatenate([np.stack([w, w + 1, w + 2], 1), np.stack([w, w + 2, w + 3], 1)])

    vertices = np.concatenate([top, bottom, wall_vertices])
    vertex_owner = np.concatenate([owner, owner, np.repeat(owner, 4)])
    triangles = np.concatenate([roof, floor, walls])
    return _group(ids, origins, vertices, vertex_owner, triangles)


def last_in_ring(ring_of: I64) -> npt.NDArray[np.bool_]:
    return np.r_[ring_of[1:] != ring_of[:-1], True]


def lay_tubes(ids: npt.NDArray[np.object_], geoms: npt.NDArray[np.object_], centre_z: F64, radius: F64) -> MeshBatch:
    """Tubes of ``radius`` along each line, the centre line at height ``centre_z`` (negative: below ground)."""
    lines, line_owner = shapely.get_parts(geoms, return_index=True)
    coords, line_of = shapely.get_coordinates(lines, return_index=True)
    owner = line_owner[line_of]
    mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
    origins = _origins(mid, centre_z)
    enu = lonlat_to_enu(coords[:, 0], coords[:, 1], centre_z[owner], origins[owner])
    same_line = line_of[1:] == line_of[:-1]
    start, end = enu[:-1][same_line], enu[1:][same_line]
    seg_owner = owner[:-1][same_line]
    direction = end - start
    length = np.linalg.norm(direction, axis=1)
    keep = length > 1e-3
    start, end, seg_owner, direction, length = start[keep], end[keep], seg_owner[keep], direction[keep], length[keep]
    d = direction / length[:, None]
    side = np.cross(d, [0.0, 0.0, 1.0])
    side_len = np.linalg.norm(side, axis=1)
    side = np.where(side_len[:, None] > 1e-9, side / np.maximum(side_len, 1e-12)[:, None], [1.0, 0.0, 0.0])
    up = np.cross(side, d)
    angle = np.linspace(0.0, 2 * np.pi, TUBE_SIDES, endpoint=False) + np.pi / 2  # a vertex at top and bottom
    r = radius[seg_owner][:, None, None]
    ring = r * (np.cos(angle)[None, :, None] * side[:, None, :] + np.sin(angle)[None, :, None] * up[:, None, :])
    vertices = np.concatenate([start[:, None, :] + ring, end[:, None, :] + ring], axis=1).reshape(-1, 3)
    j = np.arange(TUBE_SIDES)
    k = (j + 1) % TUBE_SIDES
    # side quads (a_j, b_j, b_k, a_k) with a = start ring, b = end ring; normals point outwards
    template = np.concatenate([np.stack([j, TUBE_SIDES + k, k], 1), np.stack([j, TUBE_SIDES + j, TUBE_SIDES + k], 1)])
    base = (np.arange(len(start)) * 2 * TUBE_SIDES)[:, None, None]
    triangles = (template[None] + base).reshape(-1, 3)
    vertex_owner = np.repeat(seg_owner, 2 * TUBE_SIDES)
    return _group(ids, origins, vertices, vertex_owner, triangles)


def place_markers(
    ids: npt.NDArray[np.object_], geoms: npt.NDArray[np.object_], base: F64, radius: F64, height: F64
) -> MeshBatch:
    """A hexagonal prism of ``radius`` and ``height`` standing on each point (its origin)."""
    n = len(ids)
    origins = _origins(geoms, base)
    angle = np.linspace(0.0, 2 * np.pi, 6, endpoint=False)
    ring = np.stack([np.cos(angle), np.sin(angle), np.zeros(6)], axis=1)
    j, k = np.arange(6), (np.arange(6) + 1) % 6
    # top cap (0..5 at height), bottom cap (6..11), sides: a quad of 4 own vertices each (12 + 4j …)
    cap = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]])
    sides = 12 + 4 * j
    template_triangles = np.concatenate(
        [cap, cap[:, ::-1] + 6, np.stack([sides, sides + 1, sides + 2], 1), np.stack([sides, sides + 2, sides + 3], 1)]
    )
    unit_top = ring + np.array([0.0, 0.0, 1.0])
    side_vertices = np.stack([ring[j], ring[k], unit_top[k], unit_top[j]], axis=1).reshape(-1, 3)
    template = np.concatenate([unit_top, ring, side_vertices])  # (36, 3) unit prism
    scale = np.stack([radius, radius, height], axis=-1)[:, None, :]
    vertices = (template[None] * scale).reshape(-1, 3)
    triangles = (template_triangles[None] + (np.arange(n) * len(template))[:, None, None]).reshape(-1, 3)
    return _group(ids, origins, vertices, np.repeat(np.arange(n), len(template)), triangles)


def _origins(points: npt.NDArray[np.object_], height: F64) -> F64:
    xy = shapely.get_coordinates(points)
    return np.column_stack([xy, height])


def _triangulate(xy: F64, ring_start: I64, ring_len: I64, part_of_ring: I64) -> I64:
    """Triangles (global vertex indices, counter-clockwise from above) of every polygon part: a fan for convex parts
    without holes (most footprints, all at once), earcut for the rest (one call per part)."""
    part_first_ring = np.r_[0, np.flatnonzero(np.diff(part_of_ring)) + 1]
    part_ring_end = np.r_[part_first_ring[1:], len(ring_start)]
    single = part_ring_end - part_first_ring == 1
    convex = single & _convex_rings(xy, ring_start, ring_len)[part_first_ring]
    fan_rings = part_first_ring[convex]
    out = [_fans(ring_start[fan_rings], ring_len[fan_rings])]
    for first, stop in zip(part_first_ring[~convex].tolist(), part_ring_end[~convex].tolist(), strict=True):
        v0 = int(ring_start[first])
        ends = (np.cumsum(ring_len[first:stop])).astype(np.uint32)
        local = mapbox_earcut.triangulate_float64(xy[v0 : v0 + int(ends[-1])], ends)
        out.append(local.astype(np.int64).reshape(-1, 3) + v0)
    triangles = np.concatenate(out)
    a, b, c = xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]]
    clockwise = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) < 0
    triangles[clockwise] = triangles[clockwise][:, ::-1]
    return triangles


def _convex_rings(xy: F64, ring_start: I64, ring_len: I64) -> npt.NDArray[np.bool_]:
    """Whether each ring turns the same way at every vertex (a convex polygon; collinear points allowed)."""
    nv = len(xy)
    ring_of = np.repeat(np.arange(len(ring_start)), ring_len)
    position = np.arange(nv) - ring_start[ring_of]
    following = ring_start[ring_of] + (position + 1) % ring_len[ring_of]
    preceding = ring_start[ring_of] + (position - 1) % ring_len[ring_of]
    e1, e2 = xy - xy[preceding], xy[following] - xy
    turn = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    scale = np.abs(e1).sum(axis=1) * np.abs(e2).sum(axis=1)
    left = np.bincount(ring_of, turn > 1e-9 * scale, minlength=len(ring_start)) > 0
    right = np.bincount(ring_of, turn < -1e-9 * scale, minlength=len(ring_start)) > 0
    return ~(left & right) & (ring_len >= 3)


def _fans(start: I64, length: I64) -> I64:
    """Fan triangles (s, s+k, s+k+1) of convex rings, vectorised."""
    count = np.maximum(length - 2, 0)
    if not count.sum():
        return np.zeros((0, 3), np.int64)
    first = np.repeat(start, count)
    k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count) + 1
    return np.stack([first, first + k, first + k + 1], axis=1)


def _group(ids: npt.NDArray[np.object_], origins: F64, vertices: F64, vertex_owner: I64, triangles: I64) -> MeshBatch:
    """Regroup global vertices/triangles by owning asset into a :class:`MeshBatch` (assets with no triangle are
    dropped)."""
    n = len(ids)
    order = np.argsort(vertex_owner, kind="stable")
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    vertex_counts = np.bincount(vertex_owner, minlength=n)
    vertex_offsets = np.r_[0, np.cumsum(vertex_counts)]
    tri = new_index[triangles]
    tri_owner = vertex_owner[triangles[:, 0]]
    t_order = np.argsort(tri_owner, kind="stable")
    tri, tri_owner = tri[t_order], tri_owner[t_order]
    tri_counts = np.bincount(tri_owner, minlength=n)
    local = tri - vertex_offsets[tri_owner][:, None]
    has = tri_counts > 0
    if not has.all():  # keep only assets with triangles, re-basing offsets
        keep_vertices = np.repeat(has, vertex_counts)
        order = order[keep_vertices[order]]
        vertex_counts, tri_counts = vertex_counts[has], tri_counts[has]
        ids, origins = ids[has], origins[has]
    return MeshBatch(
        asset_ids=ids.tolist(),
        origins=np.asarray(origins, dtype=np.float64),
        vertices=vertices[order].astype(np.float32),
        vertex_offsets=np.r_[0, np.cumsum(vertex_counts)].astype(np.int64),
        triangles=local.astype(np.uint32),
        triangle_offsets=np.r_[0, np.cumsum(tri_counts)].astype(np.int64),
        colors=np.full((len(ids), 4), np.nan, np.float32),
    )
