"""A tile's meshes made lean before the glb is written: welded, smooth-grouped, cut into int16-sized clusters.

For the meshes of one kind in one tile (:func:`prepare`):

1. **Frame**: every vertex moved into the tile's ENU frame (float64); triangles of (near) zero area dropped.
2. **Weld**: coincident vertices of an asset (within :data:`WELD_M`, on a grid) become one — IFC meshes repeat
   positions per face. Vertices of different assets never weld: a vertex has one feature id.
3. **Smooth groups**: each corner of a triangle gets the area-weighted sum of the normals of the faces around its
   welded vertex that lie within the smoothing angle of its own face (:data:`SMOOTH_DEG`, per kind in
   :data:`SMOOTH_DEG_BY_KIND`), so curved surfaces (pipes, columns) are smooth and creases stay sharp. Faces at a
   vertex are first merged by direction (int8 grid), so a flat fan of many triangles costs one comparison.
4. **Clusters**: int16 positions at a step ≤ :data:`POSITION_STEP_M` span 65,534 steps (1,966 m at 3 cm); a wider
   tile is cut into cells of a grid (an asset goes to the cell of its box's lower corner; the triangles of an asset
   wider than a quarter span one by one, a triangle wider than that alone), each cluster dequantised by its own node
   matrix. Only a single triangle wider than 1,966 m gets a coarser step.
5. **Vertices**: one per (cluster and colour, welded vertex, int8 normal); a box has 24, an LOD1 wall quad 4.
   They are ordered by first use in the triangles, which are ordered by primitive, then asset (input order), so
   each primitive is one run of vertices and of triangles;
   a primitive is cut at an asset boundary before it passes 65,535 vertices (an asset alone above that keeps
   uint32 indices: cutting it would copy vertices).

Everything is vectorised numpy (a few sorts of vertex and corner keys per tile); the only Python loop is over the
primitives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cim.geodesy import enu_rotation, lonlat_to_ecef
from cim.model import MeshBatch

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Largest quantisation step of int16 positions (a cluster is at most 65,534 steps wide).
POSITION_STEP_M = 0.03
#: Widest extent a cluster's vertices may span.
CLUSTER_SPAN_M = POSITION_STEP_M * 65534
#: Vertices of an asset closer than this (on a grid) are one vertex.
WELD_M = 1e-3
#: Faces within this angle of a corner's face shade smoothly with it; wider angles are creases.
SMOOTH_DEG = 30.0
#: Kinds drawn with few sides per round shape: pipes are 6-sided tubes (60° between faces) meant to look round.
SMOOTH_DEG_BY_KIND = {"pipe": 61.0}
#: Twice the area (m²) below which a triangle counts as degenerate.
DEGENERATE_AREA2 = 1e-10
#: Most distinct face directions compared pairwise at one vertex; beyond, each keeps its own (flat) normal.
MAX_DIRECTIONS = 256
#: Most vertices a primitive with uint16 indices can address.
MAX_SHORT_VERTICES = 65535


@dataclass
class Primitive:
    """One primitive: vertices ``v_lo:v_hi`` and triangles ``t_lo:t_hi`` of the prepared arrays, its cluster and
    colour (an index into :attr:`PreparedMesh.color_assets`)."""

    cluster: int
    color: int
    v_lo: int
    v_hi: int
    t_lo: int
    t_hi: int


@dataclass
class PreparedMesh:
    """The lean geometry of one kind in one tile. ``positions`` are int16 steps of their cluster
    (``mid[c] + q * step[c]`` in ENU metres), ``normals`` int8 (×127, ENU), ``triangles`` index the vertices of their
    primitive (local to ``v_lo``)."""

    positions: npt.NDArray[np.int16]
    normals: npt.NDArray[np.int8]
    vertex_asset: I64
    triangles: I64
    primitives: list[Primitive]
    cluster_mid: F64  # (clusters, 3) ENU metres
    cluster_step: F64  # (clusters,)
    color_assets: I64  # an asset of each distinct colour, whose colour the material takes
    lo: F64  # box of the dequantised vertices (ENU)
    hi: F64
    dropped: int

    def dequantized(self) -> F64:
        """The vertices in ENU metres as a client decodes them."""
        cluster = np.repeat([p.cluster for p in self.primitives], [p.v_hi - p.v_lo for p in self.primitives])
        return self.cluster_mid[cluster] + self.positions.astype(np.float64) * self.cluster_step[cluster, None]


def prepare(
    meshes: MeshBatch, rotation: F64, centre: F64, asset_rgba: npt.NDArray[np.uint8], smooth_deg: float = SMOOTH_DEG
) -> PreparedMesh | None:
    """The lean geometry of ``meshes`` in the ENU frame given by ``rotation`` (ECEF → ENU) and ``centre`` (ECEF);
    ``asset_rgba`` is each asset's colour as bytes (one material per distinct value). None when no triangle is left."""
    positions, triangles, vertex_asset = tile_frame(meshes, rotation, centre)
    triangles, face, dropped = drop_degenerate(positions, triangles)
    if not len(triangles):
        return None
    asset_lo, asset_hi = _run_bounds(positions, vertex_asset, len(meshes))
    weld_id, weld_first = weld(positions, vertex_asset, asset_lo)
    tri_asset = vertex_asset[triangles[:, 0]]
    rgba_key = np.ascontiguousarray(asset_rgba).view(np.uint32).ravel()
    _, color_assets, asset_color = np.unique(rgba_key, return_index=True, return_inverse=True)
    palette = len(color_assets)
    cluster = clusters(positions, triangles, tri_asset, asset_lo, asset_hi)
    group = cluster * palette + asset_color.ravel()[tri_asset]  # a primitive (or more) per cluster and colour
    corner_vertex, vertex_weld, out_n8, out_group = shared_vertices(
        weld_id[triangles], face, group, np.cos(np.radians(smooth_deg))
    )
    out_pos = positions[weld_first[vertex_weld]]
    out_asset = vertex_asset[weld_first[vertex_weld]]
    out_tri = corner_vertex.reshape(-1, 3)

    # triangles by group, keeping asset order within
    if group.max() > 0:
        small = group.astype(np.uint16) if group.max() < 65536 else group  # radix sort
        t_order = np.argsort(small, kind="stable")
        out_tri, group, tri_asset = out_tri[t_order], group[t_order], tri_asset[t_order]
    tri_group = group
    # vertices in order of first use by the triangles (what index codecs and vertex caches like best); this keeps
    # them grouped by primitive and asset, as the triangles are
    flat = out_tri.ravel()
    first_use = np.full(len(out_pos), len(flat))
    np.minimum.at(first_use, flat, np.arange(len(flat)))
    by_use = np.argsort(first_use)
    rank = np.empty_like(by_use)
    rank[by_use] = np.arange(len(by_use))
    out_tri = rank[out_tri]
    out_pos, out_n8, out_asset, out_group = out_pos[by_use], out_n8[by_use], out_asset[by_use], out_group[by_use]
    prims = _primitives(out_group, out_asset, tri_group, tri_asset, palette)

    # quantise each cluster to int16 around its middle
    v_cluster = out_group // palette  # ascending: clusters are runs of vertices
    lo, hi = _run_bounds(out_pos, v_cluster, int(cluster.max()) + 1)
    mid = (lo + hi) / 2
    step = np.maximum((hi - lo).max(axis=1) / 65534.0, 1e-9)
    q = np.round((out_pos - mid[v_cluster]) / step[v_cluster, None])
    quantized = np.clip(q, -32767, 32767).astype(np.int16)
    local_tri = out_tri - np.repeat([p.v_lo for p in prims], [p.t_hi - p.t_lo for p in prims])[:, None]
    # rounding is monotonic: the extremes of the quantised vertices are the quantised extremes
    q_lo, q_hi = np.round((lo - mid) / step[:, None]), np.round((hi - mid) / step[:, None])
    present = np.bincount(v_cluster, minlength=len(mid)) > 0
    decoded_lo = (mid + q_lo * step[:, None])[present].min(axis=0)
    decoded_hi = (mid + q_hi * step[:, None])[present].max(axis=0)
    return PreparedMesh(
        positions=quantized,
        normals=out_n8,
        vertex_asset=out_asset,
        triangles=local_tri,
        primitives=prims,
        cluster_mid=mid,
        cluster_step=step,
        color_assets=np.asarray(color_assets, np.int64),
        lo=decoded_lo,
        hi=decoded_hi,
        dropped=dropped,
    )


def tile_frame(meshes: MeshBatch, rotation: F64, centre: F64) -> tuple[F64, I64, I64]:
    """Every vertex in the tile's ENU frame (float64), the triangles as global vertex indices, each vertex's asset."""
    n = len(meshes)
    vcount = np.diff(meshes.vertex_offsets)
    vertex_asset = np.repeat(np.arange(n), vcount)
    # asset ENU → ECEF → tile ENU: p = R_tile @ (R_asset.T @ v + o_asset − o_tile)
    r_asset = enu_rotation(meshes.origins[:, 0], meshes.origins[:, 1]).reshape(n, 3, 3)
    shift = lonlat_to_ecef(meshes.origins[:, 0], meshes.origins[:, 1], meshes.origins[:, 2]).reshape(n, 3) - centre
    m = np.einsum("ij,akj->aik", rotation, r_asset)  # R_tile @ R_asset.T per asset
    t = shift @ rotation.T
    v = meshes.vertices.astype(np.float64)
    positions = np.einsum("vij,vj->vi", m[vertex_asset], v) + t[vertex_asset]
    tcount = np.diff(meshes.triangle_offsets)
    triangles = meshes.triangles.astype(np.int64) + np.repeat(meshes.vertex_offsets[:-1], tcount)[:, None]
    return positions, triangles, vertex_asset


def drop_degenerate(positions: F64, triangles: I64) -> tuple[I64, F64, int]:
    """The triangles of non-zero area, their (area-weighted) face normals, and how many were dropped."""
    a = positions[triangles[:, 0]]
    u, v = positions[triangles[:, 1]] - a, positions[triangles[:, 2]] - a
    face = np.empty_like(u)  # u × v, written out: np.cross is slow on many short vectors
    face[:, 0] = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    face[:, 1] = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    face[:, 2] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    keep = np.einsum("ij,ij->i", face, face) > DEGENERATE_AREA2**2
    return triangles[keep], face[keep], int((~keep).sum())


def weld(positions: F64, vertex_asset: I64, asset_lo: F64) -> tuple[I64, I64]:
    """The welded vertex of every vertex (numbered in asset order) and a vertex of each welded one: vertices of one
    asset on the same :data:`WELD_M` grid point (coarser for assets too wide to key at that step) are one."""
    a_bits = max(int(len(asset_lo) - 1).bit_length(), 1)
    bits = (62 - a_bits) // 3
    rel = positions - asset_lo[vertex_asset]
    unit = max(WELD_M, float(rel.max()) / ((1 << bits) - 2))
    q = np.round(rel / unit).astype(np.int64)
    key = (vertex_asset << (3 * bits)) | (q[:, 0] << (2 * bits)) | (q[:, 1] << bits) | q[:, 2]
    order = np.argsort(key)
    sorted_key = key[order]
    first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    welded = np.empty(len(key), np.int64)
    welded[order] = np.cumsum(first) - 1
    return welded, order[first]


def shared_vertices(
    corner_weld: I64, face: F64, group: I64, cos_smooth: float
) -> tuple[I64, I64, npt.NDArray[np.int8], I64]:
    """One vertex per (group, welded vertex, int8 normal). A corner's normal is the sum of the weighted face normals
    at its welded vertex (in its group) within the smoothing angle of its own face. Returns the vertex of every corner
    (3T; triangle t's corners at 3t … 3t + 2), and per vertex its welded vertex, int8 normal and group — vertices
    ordered by group, then welded vertex (asset order)."""
    unit = face / np.sqrt(np.einsum("ij,ij->i", face, face))[:, None]
    w_bits = max(int(corner_weld.max()).bit_length(), 1)
    g_bits = max(int(group.max()).bit_length(), 1)
    if 24 + w_bits + g_bits > 63:
        raise ValueError("tile too large to key its vertices")  # ~2^30 welded vertices: never in one tile
    # faces meeting at a vertex, merged by direction (int8 grid): one sort of the corners
    direction = _pack(np.round(unit * 127).astype(np.int64))
    key = (np.repeat(group << (w_bits + 24) | direction, 3)) | (corner_weld.ravel() << 24)
    order = np.argsort(key)
    sorted_key = key[order]
    first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    dir_of_corner = np.empty(len(key), np.int64)
    dir_of_corner[order] = np.cumsum(first) - 1
    run = np.flatnonzero(first)
    n_dir = len(run)
    summed = np.stack([np.bincount(dir_of_corner, np.repeat(face[:, k], 3), minlength=n_dir) for k in range(3)], 1)
    dir_unit = summed / np.sqrt(np.einsum("ij,ij->i", summed, summed))[:, None]
    # directions at one (group, welded vertex) are runs of the sorted keys: compare each pair once (i < j)
    dir_vertex = sorted_key[run] >> 24
    run_start = np.r_[0, np.flatnonzero(np.diff(dir_vertex)) + 1]
    run_size = np.diff(np.r_[run_start, n_dir])
    size = np.repeat(run_size, run_size)
    after = np.where(size <= MAX_DIRECTIONS, size - 1 - (np.arange(n_dir) - np.repeat(run_start, run_size)), 0)
    result: F64 = np.array(summed, np.float64)
    total = int(after.sum())
    if total:
        i = np.repeat(np.arange(n_dir), after)
        j = i + 1 + np.arange(total) - np.repeat(np.cumsum(after) - after, after)
        close = np.einsum("ij,ij->i", dir_unit[i], dir_unit[j]) >= cos_smooth
        i, j = i[close], j[close]
        for axis in range(3 if len(i) else 0):
            result[:, axis] += np.bincount(i, summed[j, axis], minlength=n_dir)
            result[:, axis] += np.bincount(j, summed[i, axis], minlength=n_dir)
    n8 = np.clip(np.round(result * (127 / np.sqrt(np.einsum("ij,ij->i", result, result)))[:, None]), -127, 127)
    # directions of a (group, welded vertex) that came out with the same normal share a vertex; the keys are
    # sorted but for the normal, so this sort is quick
    vertex_key = (dir_vertex << 24) | _pack(n8.astype(np.int64))
    v_order = np.argsort(vertex_key)
    sorted_vertex = vertex_key[v_order]
    v_first = np.r_[True, sorted_vertex[1:] != sorted_vertex[:-1]]
    vertex_of_dir = np.empty(n_dir, np.int64)
    vertex_of_dir[v_order] = np.cumsum(v_first) - 1
    kept = v_order[v_first]
    mask = (1 << w_bits) - 1
    return (
        vertex_of_dir[dir_of_corner],
        dir_vertex[kept] & mask,
        n8[kept].astype(np.int8),
        dir_vertex[kept] >> w_bits,
    )


def clusters(positions: F64, triangles: I64, tri_asset: I64, asset_lo: F64, asset_hi: F64) -> I64:
    """The cluster of every triangle: one when all vertices fit :data:`CLUSTER_SPAN_M`, else cells of a grid, each
    cell a cluster. An asset goes to the cell of its box's lower corner; the triangles of an asset wider than a
    quarter span go one by one, and a triangle wider than that is a cluster of its own (one wider than the whole
    span gets a step above :data:`POSITION_STEP_M`: it is not cut)."""
    origin = asset_lo.min(axis=0)
    if (asset_hi.max(axis=0) - origin).max() <= CLUSTER_SPAN_M:
        return np.zeros(len(triangles), np.int64)
    quarter = CLUSTER_SPAN_M / 4
    extent = (asset_hi - asset_lo).max(axis=1)
    wide = (extent > quarter)[tri_asset]
    tri_points = positions[triangles[wide]]
    tri_lo = tri_points.min(axis=1)
    tri_extent = (tri_points.max(axis=1) - tri_lo).max(axis=1)
    huge = tri_extent > quarter
    # a cluster spans its cell plus the extent of its parts beyond their lower corners: at most a quarter span
    reach = max(float(extent[extent <= quarter].max(initial=0.0)), float(tri_extent[~huge].max(initial=0.0)))
    cell = CLUSTER_SPAN_M - reach

    def cell_of(points: F64) -> I64:
        ij = np.floor((points - origin) / cell).astype(np.int64)
        return np.asarray(ij[:, 0] * (1 << 20) + ij[:, 1] * (1 << 10) + ij[:, 2], np.int64)

    # keys of the assets' cells and of the wide assets' triangles, numbered together (few: one sort of them)
    wide_keys = np.where(huge, -1 - np.arange(len(huge)), cell_of(tri_lo))
    _, number = np.unique(np.concatenate([cell_of(asset_lo), wide_keys]), return_inverse=True)
    number = number.ravel()
    cluster = number[: len(asset_lo)][tri_asset]
    cluster[wide] = number[len(asset_lo) :]
    return np.asarray(cluster, np.int64)


def _run_bounds(points: F64, run_of: I64, runs: int) -> tuple[F64, F64]:
    """Per-run min and max of ``points`` whose run numbers ``run_of`` ascend (runs without points: 0)."""
    lo, hi = np.zeros((runs, 3)), np.zeros((runs, 3))
    if len(points):
        starts = np.r_[0, np.flatnonzero(np.diff(run_of)) + 1]
        columns = np.ascontiguousarray(points.T)  # reduceat along rows is fast, down columns slow
        lo[run_of[starts]] = np.minimum.reduceat(columns, starts, axis=1).T
        hi[run_of[starts]] = np.maximum.reduceat(columns, starts, axis=1).T
    return lo, hi


def _pack(n8: I64) -> I64:
    """Three int8 values (−127…127) as one 24-bit key."""
    return ((n8[:, 0] + 128) << 16) | ((n8[:, 1] + 128) << 8) | (n8[:, 2] + 128)


def _primitives(v_group: I64, v_asset: I64, t_group: I64, t_asset: I64, colors: int) -> list[Primitive]:
    """Runs of vertices and triangles per group, cut at asset boundaries to stay within uint16 indices."""
    groups, v_start = np.unique(v_group, return_index=True)
    v_end = np.r_[v_start[1:], len(v_group)]
    t_start = np.searchsorted(t_group, groups, side="left")
    t_end = np.searchsorted(t_group, groups, side="right")
    out: list[Primitive] = []
    runs = zip(groups.tolist(), v_start.tolist(), v_end.tolist(), t_start.tolist(), t_end.tolist(), strict=True)
    for g, vs, ve, ts, te in runs:
        cluster, color = divmod(g, colors)
        while ve - vs > MAX_SHORT_VERTICES:
            # the last asset boundary within reach, else the end of the first asset (it alone is too large)
            boundary = np.flatnonzero(v_asset[vs + 1 : ve] != v_asset[vs : ve - 1]) + vs + 1
            if not len(boundary):
                break  # one asset: uint32 indices
            fits = boundary[boundary - vs <= MAX_SHORT_VERTICES]
            cut = int(fits[-1]) if len(fits) else int(boundary[0])
            t_cut = ts + int(np.searchsorted(t_asset[ts:te], v_asset[cut], side="left"))
            out.append(Primitive(cluster, color, vs, cut, ts, t_cut))
            vs, ts = cut, t_cut
        out.append(Primitive(cluster, color, vs, ve, ts, te))
    return out
