"""Tilesets to mount beside a city, made here by others' tools:

- :func:`third_party_tileset`: a red sphere (glb, by trimesh) and a yellow column (repackaged as b3dm) in a tileset
  JSON written by CesiumGS's ``3d-tiles-tools createTilesetJson`` (npm, ``tools/tiles-tools``): local metres around
  (0, 0, 0), z up, to be placed with a transform;
- :func:`neighbour_tileset`: a neighbour's buildings, built by our own ``build_tiles`` from another store (ECEF,
  a root with one external tileset per group).

Each is made once per test session (:func:`made_once`, in the session's temporary folder); tests that change one
work on a copy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from cim.model import Asset, Kind
from tests.conftest import missing_service
from tests.tiling.conftest import M_LAT, M_LON, box_mesh, write_city

ROOT = Path(__file__).resolve().parents[2]
TILES_TOOLS = ROOT / "tools" / "tiles-tools" / "node_modules" / ".bin" / "3d-tiles-tools"
#: Where the sphere's centre stands above the tileset's origin, and its radius (metres, z up).
SPHERE_UP, SPHERE_RADIUS = 120.0, 60.0
#: The column's centre in the tileset's frame (east, north, up) and its size.
COLUMN_AT, COLUMN_RADIUS, COLUMN_HEIGHT = (150.0, 0.0, 120.0), 25.0, 240.0


def tiles_tools(*args: str, cwd: Path) -> None:
    if not TILES_TOOLS.exists():
        missing_service(f"3d-tiles-tools is not installed in {TILES_TOOLS.parent.parent}: scripts/env.sh does")
    done = subprocess.run([str(TILES_TOOLS), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def third_party_tileset(folder: Path) -> Path:
    """``folder`` holding ``tileset.json``, ``sphere.glb`` and ``column.b3dm`` (see the module docstring)."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    y_up = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])  # glTF is y-up; 3D Tiles clients turn it
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=SPHERE_RADIUS)
    sphere.apply_translation([0.0, 0.0, SPHERE_UP])
    sphere.visual.vertex_colors = np.tile([220, 40, 40, 255], (len(sphere.vertices), 1))
    sphere.apply_transform(y_up)
    sphere.export(folder / "sphere.glb")
    column = trimesh.creation.cylinder(radius=COLUMN_RADIUS, height=COLUMN_HEIGHT, sections=24)
    column.apply_translation(COLUMN_AT)
    column.visual.vertex_colors = np.tile([240, 200, 40, 255], (len(column.vertices), 1))
    column.apply_transform(y_up)
    column.export(folder / "column.glb")
    tiles_tools("glbToB3dm", "-i", "column.glb", "-o", "column.b3dm", cwd=folder)
    (folder / "column.glb").unlink()
    tiles_tools("createTilesetJson", "-i", ".", "-o", "tileset.json", cwd=folder)
    return folder


def neighbour_tileset(folder: Path, lon: float, lat: float) -> Path:
    """A neighbour's 3 × 4 towers south-west of (``lon``, ``lat``), built into ``folder / "tiles" / "city"``."""
    from cim.store import open_store
    from cim.store.meshes import MeshStore, mesh_path_for
    from cim.tiling.build import build_tiles

    assets, meshes = [], []
    for i in range(12):
        x, y = lon + (i % 3) * 90 / M_LON, lat + (i // 3) * 90 / M_LAT
        height = 80.0 + 25.0 * i
        foot = box(x - 20 / M_LON, y - 20 / M_LAT, x + 20 / M_LON, y + 20 / M_LAT)
        assets.append(
            Asset(id=f"nb{i:02d}", kind=Kind.BUILDING, name=f"Neighbour {i}", geom=foot,
                  z_min=4.0, z_max=4.0 + height, height_m=height, source="neighbour")
        )  # fmt: skip
        meshes.append(box_mesh(f"nb{i:02d}", x, y, 4.0, 40.0, 40.0, height))
    store = folder / "neighbour.duckdb"
    write_city(store, assets, meshes)
    out = folder / "tiles" / "city"
    with open_store(str(store)) as opened, MeshStore(mesh_path_for(opened.url)) as mesh_store:
        build_tiles(opened, mesh_store, out, workers=1)
    return out


_MADE: dict[tuple[str, float, float], Path] = {}


def made_once(factory: pytest.TempPathFactory, lon: float = 121.515, lat: float = 31.225) -> dict[str, Path]:
    """The third-party tileset and a neighbour's build at (``lon``, ``lat``), made the first time a test session asks
    (three test modules mount them: each would pay node's and a build's start-up again)."""
    base = factory.getbasetemp()
    key = (str(base), lon, lat)
    if key not in _MADE:
        _MADE[key] = neighbour_tileset(factory.mktemp("neighbour"), lon, lat)
    third_key = (str(base), 0.0, 0.0)
    if third_key not in _MADE:
        _MADE[third_key] = third_party_tileset(factory.mktemp("third-party") / "third")
    return {"third": _MADE[third_key], "neighbour": _MADE[key]}
