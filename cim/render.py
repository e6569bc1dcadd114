"""Pictures of an asset in its surroundings: an off-screen pyvista/VTK rendering to PNG, with no display.

The asset (and its descendants, e.g. a building's BIM elements) is drawn in :data:`HIGHLIGHT`, the assets around it
within a radius in grey, on a ground plate, seen from the south-west and above. Meshes come from the mesh file
beside the store; assets that have none get the LOD1 block / tube / marker :mod:`cim.model.shapes` makes from their
geometry, so a store without meshes still draws.

Work is in two steps so a caller can cache: :func:`load_scene` (store queries, cheap, gives a ``digest`` of everything
drawn) and :func:`render_scene` (the rendering, a few hundred ms). :func:`render_asset` does both.

Off-screen rendering: VTK's PyPI wheel (9.4+) picks its OpenGL window at run time — X, then EGL, then OSMesa. With no
``DISPLAY`` we ask for EGL straight away (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``); with Mesa's EGL
(Debian ``libegl1`` + ``libegl-mesa0`` + ``libgl1-mesa-dri``) that renders on the CPU (llvmpipe), no X server needed.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc

from cim.errors import CimError, InvalidInput, NotFound
from cim.geodesy import METRES_PER_DEGREE, enu_rotation, lonlat_to_ecef
from cim.model import AssetBatch, MeshBatch
from cim.store import AssetQuery, Store, duckdb_path
from cim.store.meshes import MeshStore, mesh_path_for, open_meshes

if TYPE_CHECKING:
    import pyvista as pv

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Picture sizes (pixels, each side) a caller may ask for.
MIN_SIZE, MAX_SIZE = 64, 2048
#: RGB (0…1) of the asset drawn, of its neighbours, of the ground and of the sky.
HIGHLIGHT = (1.0, 0.42, 0.0)
NEIGHBOUR = (0.66, 0.66, 0.68)
GROUND = (0.86, 0.86, 0.82)
BACKGROUND = (0.93, 0.95, 0.98)
#: The surroundings drawn: a radius of this many times the asset's size, within these bounds (metres).
RADIUS_FACTOR, MIN_RADIUS_M, MAX_RADIUS_M = 4.0, 80.0, 1000.0
#: At most this many neighbouring assets are drawn.
MAX_NEIGHBOURS = 3000
#: Camera: looking from the south-west, this many degrees above the horizon, with this field of view.
ELEVATION_DEG, AZIMUTH_DEG, VIEW_ANGLE_DEG = 38.0, 225.0, 30.0
#: An asset narrower than its length over this ratio (a pipe, a road) is drawn with lines too, to stay visible.
THIN_RATIO = 40.0
#: Opacity of the asset's ancestors (the building around a lift), so they do not hide it.
SHELL_OPACITY = 0.25

_RENDER_LOCK = threading.Lock()  # one VTK/EGL context at a time: VTK rendering is not thread-safe


class RenderUnavailable(CimError):
    """This machine cannot render off-screen (no EGL nor OSMesa OpenGL)."""


@dataclass(frozen=True, slots=True)
class Triangles:
    """Triangles in the scene's ENU frame: ``vertices`` (n, 3) metres, ``faces`` (m, 3) vertex indices."""

    vertices: F64
    faces: I64

    def __len__(self) -> int:
        return len(self.faces)


@dataclass(frozen=True, slots=True)
class Scene:
    """What a picture of one asset shows, in the ENU frame at ``origin`` (lon, lat, ellipsoidal height)."""

    asset_id: str
    origin: tuple[float, float, float]
    highlight: Triangles
    context: Triangles
    shell: Triangles  # the asset's ancestors (a lift's building), drawn see-through
    radius_m: float
    digest: str  # changes whenever anything drawn changes: a cache key


def check_size(*, width: int, height: int) -> None:
    """Raise :class:`InvalidInput` unless both sides are within :data:`MIN_SIZE`…:data:`MAX_SIZE` pixels."""
    for name, value in (("width", width), ("height", height)):
        if not MIN_SIZE <= value <= MAX_SIZE:
            raise InvalidInput(f"{name} {value}", f"must be between {MIN_SIZE} and {MAX_SIZE} pixels")


def open_meshes_for(store: str | Store) -> MeshStore | None:
    """The meshes of the store (its URL or the opened store), read-only, or None when a DuckDB store has no mesh
    file."""
    url = store if isinstance(store, str) else store.url
    if duckdb_path(url) is None:
        return open_meshes(store, read_only=True)
    path = Path(mesh_path_for(url))
    try:
        return MeshStore(path, read_only=True) if path.is_file() else None
    except duckdb.ConnectionException:  # this process writes it now (a server's ingest job): draw the footprints
        return None


def render_asset(store: Store, meshes: MeshStore | None, asset_id: str, *, width: int, height: int) -> bytes:
    """A PNG of asset ``asset_id`` in its surroundings, ``width`` × ``height`` pixels.

    Raises :class:`NotFound` for an unknown asset (or one with nothing to draw), :class:`InvalidInput` for a size
    outside :data:`MIN_SIZE`…:data:`MAX_SIZE`, :class:`RenderUnavailable` when the machine cannot render.
    """
    check_size(width=width, height=height)
    return render_scene(load_scene(store, meshes, asset_id), width=width, height=height)


def load_scene(store: Store, meshes: MeshStore | None, asset_id: str) -> Scene:
    """The scene around ``asset_id``: its shape and its descendants' in one set, the neighbours' in another."""
    own = store.find_batch(AssetQuery(ids=[asset_id]))
    if not len(own):
        raise NotFound(f"asset {asset_id!r}", "is not in the store")
    own_shape = _shapes(own, meshes)
    if len(own_shape):
        origin = (float(own_shape.origins[0, 0]), float(own_shape.origins[0, 1]), float(own_shape.origins[0, 2]))
    else:
        geom = own.geometries()[0]
        if geom is None or geom.is_empty:
            raise NotFound(f"a picture of asset {asset_id!r}", "it has no mesh and no geometry to draw")
        z = own.table.column("z_min")[0].as_py()
        origin = (float(geom.centroid.x), float(geom.centroid.y), float(z or 0.0))

    size = _size_of(_to_frame(own_shape, origin)) if len(own_shape) else 10.0
    radius = min(max(RADIUS_FACTOR * size, MIN_RADIUS_M), MAX_RADIUS_M)
    lon, lat = origin[0], origin[1]
    dlat = radius / METRES_PER_DEGREE
    dlon = radius / (METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 0.01))
    around = store.find_batch(
        AssetQuery(bbox=(lon - dlon, lat - dlat, lon + dlon, lat + dlat), limit=MAX_NEIGHBOURS + 1)
    )
    around = AssetBatch(around.table.filter(pc.not_equal(around.table.column("id"), asset_id)))
    family, ancestors = _relatives(store, asset_id, own, around)
    shapes = _shapes(around, meshes)
    shape_ids = np.asarray(shapes.asset_ids, dtype=object)
    in_family = np.isin(shape_ids, list(family))
    in_shell = np.isin(shape_ids, list(ancestors))
    highlight = _to_frame(MeshBatch.concat([own_shape, _select(shapes, in_family)]), origin)
    if not len(highlight):
        highlight = _to_frame(_outline(own), origin)
    if not len(highlight):
        raise NotFound(f"a picture of asset {asset_id!r}", "it has no mesh and no geometry to draw")
    context = _select(shapes, ~in_family & ~in_shell)
    shell = _to_frame(_select(shapes, in_shell), origin)
    context_tris = _to_frame(context, origin)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(origin).tobytes())
    for part in (highlight, context_tris, shell):
        digest.update(np.ascontiguousarray(part.vertices).tobytes())
        digest.update(np.ascontiguousarray(part.faces).tobytes())
    return Scene(
        asset_id=asset_id,
        origin=origin,
        highlight=highlight,
        context=context_tris,
        shell=shell,
        radius_m=radius,
        digest=digest.hexdigest(),
    )


def render_scene(scene: Scene, *, width: int, height: int) -> bytes:
    """The scene as a PNG of ``width`` × ``height`` pixels, rendered off-screen."""
    check_size(width=width, height=height)
    if not os.environ.get("DISPLAY"):  # no X server: go straight to EGL instead of failing on X first
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import pyvista as pv

    with _RENDER_LOCK:
        plotter = pv.Plotter(off_screen=True, window_size=[width, height])
        try:
            window = plotter.render_window
            if window is None or not window.SupportsOpenGL():
                raise RenderUnavailable(
                    "off-screen rendering",
                    "no OpenGL here: install Mesa's EGL (libegl1 libegl-mesa0 libgl1-mesa-dri) or OSMesa",
                )
            plotter.background_color = pv.Color(BACKGROUND)
            _draw(plotter, scene)
            image = plotter.screenshot(return_img=True)
        finally:
            plotter.close()
    return _png(np.asarray(image))


def _draw(plotter: pv.Plotter, scene: Scene) -> None:
    import pyvista as pv

    both = np.concatenate([scene.highlight.vertices, scene.context.vertices, scene.shell.vertices])
    ground_z = float(both[:, 2].min()) - 0.05
    plate = 2.2 * scene.radius_m
    plotter.add_mesh(
        pv.Plane(center=(0.0, 0.0, ground_z), direction=(0, 0, 1), i_size=plate, j_size=plate), color=GROUND
    )
    if len(scene.context):
        plotter.add_mesh(_polydata(scene.context), color=NEIGHBOUR, ambient=0.3, diffuse=0.7)
    if len(scene.shell):
        plotter.add_mesh(_polydata(scene.shell), color=NEIGHBOUR, opacity=SHELL_OPACITY)
    highlight = _polydata(scene.highlight)
    plotter.add_mesh(highlight, color=HIGHLIGHT, ambient=0.3, diffuse=0.7)

    low, high = scene.highlight.vertices.min(axis=0), scene.highlight.vertices.max(axis=0)
    focus = (low + high) / 2.0
    reach = max(float(np.linalg.norm(high - low)) / 2.0, 8.0)
    if float(np.min(high[:2] - low[:2])) < reach / THIN_RATIO:  # a long pipe or road: keep it a few pixels wide
        plotter.add_mesh(highlight.extract_all_edges(), color=HIGHLIGHT, line_width=3, lighting=False)
    distance = 2.6 * reach / math.sin(math.radians(VIEW_ANGLE_DEG / 2.0))
    el, az = math.radians(ELEVATION_DEG), math.radians(AZIMUTH_DEG)
    direction = np.array([math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el)])
    camera = plotter.camera
    camera.focal_point = tuple(focus)
    camera.position = tuple(focus + distance * direction)
    camera.up = (0.0, 0.0, 1.0)
    camera.view_angle = VIEW_ANGLE_DEG
    plotter.reset_camera_clipping_range()


def _polydata(tris: Triangles) -> pv.PolyData:
    import pyvista as pv

    cells = np.hstack([np.full((len(tris.faces), 1), 3, dtype=np.int64), tris.faces]).ravel()
    return pv.PolyData(tris.vertices, faces=cells)


def _png(image: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of an (h, w, 3|4) uint8 image, encoded by VTK (no imaging library needed)."""
    import pyvista as pv
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGWriter

    h, w, channels = image.shape
    data = pv.ImageData(dimensions=(w, h, 1))
    data.point_data["rgb"] = np.ascontiguousarray(image[::-1]).reshape(-1, channels)
    writer = vtkPNGWriter()
    writer.SetWriteToMemory(True)
    writer.SetInputData(data)
    writer.Write()
    return bytes(vtk_to_numpy(writer.GetResult()).tobytes())


def _shapes(batch: AssetBatch, meshes: MeshStore | None) -> MeshBatch:
    """The stored meshes of these assets, and for those without one the shape their geometry makes."""
    from cim.model.shapes import shapes_of_batch

    if not len(batch):
        return MeshBatch.empty()
    stored = meshes.get(batch.table.column("id").to_pylist()) if meshes is not None else MeshBatch.empty()
    if len(stored) == len(batch):
        return stored
    missing = pc.invert(pc.is_in(batch.table.column("id"), value_set=_ids(stored)))
    return MeshBatch.concat([stored, shapes_of_batch(AssetBatch(batch.table.filter(missing)))])


def _outline(batch: AssetBatch) -> MeshBatch:
    """A shape for an asset its kind gives none (a park, a road): its polygon as a 1 m slab, its line as a tube."""
    from cim.model.shapes import shapes_for

    geoms = batch.geometries()
    kind = {"Polygon": "building", "MultiPolygon": "building"}.get(geoms[0].geom_type, "pipe")
    z = batch.table.column("z_min")[0].as_py() or 0.0
    return shapes_for(
        batch.table.column("id").to_pylist(), [kind], geoms, np.array([z]), np.array([z + 1.0]), np.array([1000.0])
    )


def _ids(batch: MeshBatch) -> object:
    import pyarrow as pa

    return pa.array(list(batch.asset_ids), pa.string())


def _relatives(store: Store, asset_id: str, own: AssetBatch, batch: AssetBatch) -> tuple[set[str], set[str]]:
    """Ids in ``batch`` whose parent chain reaches ``asset_id`` (descendants), and the asset's ancestors. Parents
    outside the batch (a storey with no geometry) are looked up in the store, a few levels deep."""
    ids = batch.table.column("id").to_pylist()
    parent: dict[str, str | None] = dict(zip(ids, batch.table.column("parent_id").to_pylist(), strict=True))
    parent[asset_id] = own.table.column("parent_id")[0].as_py()
    for _ in range(4):
        unknown = {p for p in parent.values() if p is not None and p not in parent}
        if not unknown:
            break
        found = store.find_batch(AssetQuery(ids=sorted(unknown)))
        parent.update(
            zip(found.table.column("id").to_pylist(), found.table.column("parent_id").to_pylist(), strict=True)
        )
        parent.update((p, None) for p in unknown if p not in parent)
    family: set[str] = set()
    for start in ids:
        chain: list[str] = []
        node: str | None = start
        while node is not None and node != asset_id and node not in family and len(chain) < 32:
            chain.append(node)
            node = parent.get(node)
        if node == asset_id or node in family:
            family.update(chain)
    ancestors: set[str] = set()
    node = parent.get(asset_id)
    while node is not None and node != asset_id and node not in ancestors and len(ancestors) < 32:
        ancestors.add(node)
        node = parent.get(node)
    return family, ancestors


def _select(batch: MeshBatch, keep: npt.NDArray[np.bool_]) -> MeshBatch:
    if bool(keep.all()):
        return batch
    return MeshBatch.from_meshes([m for m, k in zip(batch.to_meshes(), keep, strict=True) if k])


def _to_frame(batch: MeshBatch, origin: tuple[float, float, float]) -> Triangles:
    """The triangles of ``batch`` in one ENU frame at ``origin`` (each mesh has an origin of its own)."""
    n = len(batch)
    if not n or not len(batch.triangles):
        return Triangles(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    r0 = enu_rotation(origin[0], origin[1])
    rotations = r0 @ np.swapaxes(enu_rotation(batch.origins[:, 0], batch.origins[:, 1]), -1, -2)
    shifts = (
        lonlat_to_ecef(batch.origins[:, 0], batch.origins[:, 1], batch.origins[:, 2]) - lonlat_to_ecef(*origin)
    ) @ r0.T
    owner = np.repeat(np.arange(n), np.diff(batch.vertex_offsets))
    vertices = np.einsum("nij,nj->ni", rotations[owner], batch.vertices.astype(np.float64)) + shifts[owner]
    tri_owner = np.repeat(np.arange(n), np.diff(batch.triangle_offsets))
    faces = batch.triangles.astype(np.int64) + batch.vertex_offsets[tri_owner][:, None]
    return Triangles(vertices, faces)


def _size_of(tris: Triangles) -> float:
    """The larger horizontal side of the triangles' bounding box, in metres."""
    if not len(tris):
        return 0.0
    span = tris.vertices.max(axis=0) - tris.vertices.min(axis=0)
    return float(max(span[0], span[1], 1.0))
