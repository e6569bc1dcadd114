"""A small city made in the test: LOD1 buildings (one with a storey and lifts), buried pipes, hydrants — assets in
a real DuckDB store and 8-vertex box meshes (shared corners, so flat shading must split them) in its mesh file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import LineString, Point, box

from cim.model import Asset, AssetBatch, Kind, Mesh, MeshBatch
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for

LON, LAT = 121.47, 31.23
M_LON, M_LAT = 111_320.0 * np.cos(np.radians(LAT)), 111_320.0


def box_mesh(asset_id: str, lon: float, lat: float, z0: float, w: float, d: float, h: float) -> Mesh:
    """A closed box w × d × h metres standing on (lon, lat, z0): 8 shared corners, 12 triangles."""
    x, y = w / 2, d / 2
    corners = np.array(
        [[-x, -y, 0], [x, -y, 0], [x, y, 0], [-x, y, 0], [-x, -y, h], [x, -y, h], [x, y, h], [-x, y, h]], np.float32
    )
    faces = [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7],
             [2, 7, 6], [3, 0, 4], [3, 4, 7]]  # fmt: skip
    return Mesh(asset_id=asset_id, origin=(lon, lat, z0), vertices=corners, triangles=np.array(faces, np.uint32))


def small_city(n_buildings: int = 40) -> tuple[list[Asset], list[Mesh]]:
    rng = np.random.default_rng(5)
    assets: list[Asset] = []
    meshes: list[Mesh] = []
    for i in range(n_buildings):
        lon = LON + rng.random() * 0.02
        lat = LAT + rng.random() * 0.02
        w, d, h = 10 + rng.random() * 20, 10 + rng.random() * 20, 6 + rng.random() * 60
        foot = box(lon - w / 2 / M_LON, lat - d / 2 / M_LAT, lon + w / 2 / M_LON, lat + d / 2 / M_LAT)
        assets.append(
            Asset(
                id=f"b{i:03d}",
                kind=Kind.BUILDING,
                name=f"Block {i}",
                geom=foot,
                z_min=4.0,
                z_max=4.0 + h,
                height_m=h,
                storeys=int(h // 3),
                source="test-gis",
                install_date=None if i % 5 == 0 else date(1960 + i, 1, 1),
            )
        )
        meshes.append(box_mesh(f"b{i:03d}", lon, lat, 4.0, w, d, h))
    b0 = assets[0]
    centre = b0.geom.centroid if b0.geom is not None else Point(LON, LAT)
    assets.append(Asset(id="s0", kind=Kind.STOREY, parent_id="b000", geom=centre, z_min=4.0, z_max=7.0))
    meshes.append(box_mesh("s0", centre.x, centre.y, 4.0, 8, 8, 3))
    for j, parent in enumerate(["s0", "s0", "b000"]):
        assets.append(Asset(id=f"lift{j}", kind=Kind.LIFT, parent_id=parent, geom=centre, z_min=4.0, z_max=30.0))
        meshes.append(box_mesh(f"lift{j}", centre.x + j * 2e-5, centre.y, 4.0, 2, 2, 26))
    for k in range(6):  # buried water mains: top of pipe 1.2 m below a 4 m ground
        lon, lat = LON + 0.003 * k, LAT - 0.002
        line = LineString([(lon, lat), (lon + 0.002, lat)])
        assets.append(
            Asset(
                id=f"pipe{k}",
                kind=Kind.PIPE,
                geom=line,
                network="water",
                diameter_mm=300,
                material="cast iron",
                depth_m=1.2,
                z_min=2.5,
                z_max=2.8,
                install_date=date(1975, 6, 1),
            )
        )
        meshes.append(box_mesh(f"pipe{k}", lon + 0.001, lat, -40.0, 0.002 * M_LON, 0.3, 0.3))
    for k in range(5):
        lon, lat = LON + 0.004 * k, LAT + 0.025
        assets.append(Asset(id=f"hydrant{k}", kind=Kind.HYDRANT, geom=Point(lon, lat), network="water"))
        meshes.append(box_mesh(f"hydrant{k}", lon, lat, 4.0, 0.5, 0.5, 0.8))
    assets.append(Asset(id="park0", kind=Kind.PARK, geom=box(LON, LAT, LON + 0.001, LAT + 0.001)))
    return assets, meshes


def write_city(store_path: Path, assets: list[Asset], meshes: list[Mesh]) -> None:
    with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url)) as mesh_store:
        store.upsert_assets(AssetBatch.from_assets(assets))
        if meshes:
            mesh_store.replace_source("test", [MeshBatch.from_meshes(meshes)])


@pytest.fixture
def city(tmp_path: Path) -> Path:
    """The path of a store holding :func:`small_city`."""
    path = tmp_path / "city.duckdb"
    write_city(path, *small_city())
    return path
