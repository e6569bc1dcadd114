"""3D shapes of GIS assets: closed LOD1 blocks (holes, multipolygons), buried tubes, markers; written on ingest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
import trimesh
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from cim.errors import InvalidInput
from cim.gis.mapping import load_mapping, preset
from cim.model import Mesh
from cim.model.shapes import TUBE_SIDES, shapes_for
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore

METRIC = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True)  # UTM 51N, Shanghai


def square(lon: float, lat: float, size_deg: float) -> Polygon:
    return Polygon([(lon, lat), (lon + size_deg, lat), (lon + size_deg, lat + size_deg), (lon, lat + size_deg)])


def solid(mesh: Mesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices.astype(np.float64), mesh.triangles, process=True)


def metric_area(geom: shapely.Geometry) -> float:
    return float(shapely.transform(geom, lambda xy: np.column_stack(METRIC.transform(xy[:, 0], xy[:, 1]))).area)


def shapes(geoms: list[shapely.Geometry], kinds: list[str], z_min: list[float], z_max: list[float]) -> list[Mesh]:
    n = len(geoms)
    batch = shapes_for(
        [f"a{i}" for i in range(n)],
        kinds,
        np.array(geoms, dtype=object),
        np.array(z_min, dtype=float),
        np.array(z_max, dtype=float),
        np.full(n, 300.0),
    )
    return batch.to_meshes()


def test_lod1_blocks_are_closed_solids_of_footprint_area_times_height() -> None:
    plain = square(121.5, 31.2, 0.0002)
    courtyard = Polygon(plain.exterior.coords, [square(121.50005, 31.20005, 0.0001).exterior.coords[::-1]])
    two_parts = MultiPolygon([square(121.51, 31.2, 0.0001), square(121.5102, 31.2, 0.0001)])
    l_shape = Polygon([(121.52, 31.2), (121.5204, 31.2), (121.5204, 31.2001), (121.5201, 31.2001), (121.5201, 31.2003),
                       (121.52, 31.2003)])  # fmt: skip
    geoms = [plain, courtyard, two_parts, l_shape]
    meshes = shapes(geoms, ["building"] * 4, [0, 0, 4, 0], [30, 12, 10, 6])
    for mesh, geom, height in zip(meshes, geoms, [30, 12, 6, 6], strict=True):
        block = solid(mesh)
        assert block.is_watertight and block.is_winding_consistent
        assert block.volume == pytest.approx(metric_area(geom) * height, rel=0.01)  # positive: normals point out
        assert block.bounds[:, 2] == pytest.approx([0, height], abs=0.01)
    assert meshes[2].origin[2] == 4.0  # a block standing on a bridge deck starts at its z_min


def test_pipes_become_tubes_below_ground_along_the_line() -> None:
    line = LineString([(121.5, 31.2), (121.501, 31.2), (121.501, 31.201)])
    (tube,) = shapes([line], ["pipe"], [-1.8], [-1.5])  # depth 1.5 m, 300 mm diameter
    world_z = tube.vertices[:, 2] + tube.origin[2]
    assert world_z.max() == pytest.approx(-1.5, abs=0.01) and world_z.min() == pytest.approx(-1.8, abs=0.01)
    assert tube.triangle_count == 2 * 2 * TUBE_SIDES  # two segments
    span = np.ptp(tube.vertices[:, :2], axis=0)
    assert span[0] == pytest.approx(95.3 + 0.3, abs=0.5) and span[1] == pytest.approx(110.9 + 0.3, abs=0.5)


def test_points_get_markers_and_flat_ground_layers_get_no_shape() -> None:
    park = square(121.5, 31.2, 0.001)
    meshes = shapes([Point(121.5, 31.2), Point(121.5, 31.2), park], ["hydrant", "pole", "park"], [0, 0, 0], [0, 0, 0])
    assert [m.asset_id for m in meshes] == ["a0", "a1"]
    heights = [float(np.ptp(m.vertices[:, 2])) for m in meshes]
    assert heights[0] < 2 < heights[1]  # a pole is taller than a hydrant
    assert all(solid(m).is_watertight for m in meshes)


def test_ingest_writes_one_mesh_per_building_and_tube_per_pipe(store: Store, tmp_path: Path, data_dir: Path) -> None:
    with MeshStore(tmp_path / "meshes.duckdb") as meshes:
        buildings = write_source(
            store, data_dir / "gis/Helsinki.osm.pbf", mapping=preset("osm-buildings"), meshes=meshes
        )
        pipes = write_source(
            store,
            data_dir / "gis/ky4_pipes.geojson",
            mapping=load_mapping(Path("pipelines/mappings/ky4-water-mains.toml")),
            meshes=meshes,
        )
        assert buildings.meshes == buildings.assets["building"] == 482
        assert pipes.meshes == pipes.assets["pipe"] == 1156
        some = store.find_assets(AssetQuery(ids=[f"ky4_pipes:{n}" for n in ("P-1", "P-100", "P-1000")]))
        tubes = meshes.get([a.id for a in some])
        assert len(tubes) == len(some) > 0
        for asset, tube in zip(some, tubes.to_meshes(), strict=True):
            assert asset.z_max is not None and asset.z_max < 0
            assert (tube.vertices[:, 2] + tube.origin[2]).max() == pytest.approx(asset.z_max, abs=0.02)


def test_a_failed_layer_leaves_earlier_meshes_in_place(store: Store, tmp_path: Path, data_dir: Path) -> None:
    mapping = preset("osm-buildings")
    with MeshStore(tmp_path / "meshes.duckdb") as meshes:
        write_source(store, data_dir / "gis/Helsinki.osm.pbf", mapping=mapping, meshes=meshes)
        with pytest.raises(InvalidInput):
            write_source(
                store, data_dir / "gis/Helsinki.osm.pbf", mapping=mapping, layer="no_such_layer", meshes=meshes
            )
        assert meshes.count() == 482
