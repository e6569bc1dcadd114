"""Tilesets from the real sample layers in ../shared/data (GIS ingest with its meshes) pass every check."""

from __future__ import annotations

from pathlib import Path

from cim.gis.mapping import load_mapping, preset
from cim.pipeline.ingest import write_source
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling.build import build_tiles
from tests.tiling.checks import check_all
from tests.tiling.second_client import store_rows

MAPPINGS = Path(__file__).resolve().parents[2] / "pipelines" / "mappings"


def test_sample_layers_become_valid_tilesets(data_dir: Path, tmp_path: Path) -> None:
    store_path = str(tmp_path / "real.duckdb")
    with open_store(store_path) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        write_source(store, data_dir / "gis" / "Helsinki.osm.pbf", mapping=preset("osm-buildings"), meshes=meshes)
        pipes = load_mapping(MAPPINGS / "ky4-water-mains.toml")
        write_source(store, data_dir / "gis" / "ky4_pipes.geojson", mapping=pipes, meshes=meshes)
        write_source(
            store,
            data_dir / "gis" / "INFRA_Hydrants.geojson",
            mapping=load_mapping(MAPPINGS / "cambridge-hydrants.toml"),
            meshes=meshes,
        )
        counts = store.count_by_kind()
    with open_store(store_path) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        summary = build_tiles(store, meshes, tmp_path / "tiles" / "real", workers=2)
    found = check_all(tmp_path / "tiles" / "real", store_rows(store_path))  # loaders.gl's metadata = the store's
    assert len(found["buildings"]) == summary.tilesets["buildings"].features > 0
    assert len(found["underground"]) == counts["pipe"] - summary.without_mesh
    assert len(found["points"]) == counts["hydrant"]
