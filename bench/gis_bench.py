"""GIS ingest benchmark: building footprints → assets + LOD1 meshes, and a pipe network → assets + tube meshes.

    .venv/bin/python bench/gis_bench.py                  # 1,000,000 footprints, 100,000 pipe segments
    .venv/bin/python bench/gis_bench.py -n 100000 --segments 10000

Prints features/s and peak memory (max RSS of this process). Targets (issue 4): 1,000,000 footprints → assets + LOD1
meshes ≤ 60 s with peak ≤ 3 GB; a 10,000 km network of about 100,000 segments → tube meshes ≤ 30 s. Every tenth
footprint has a courtyard (a hole), so earcut sees real holes. Each figure includes reading, mapping, validating,
building the meshes and writing both the store and the mesh file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from cim.gis.layer import LayerSummary
from cim.gis.mapping import LayerMapping, preset
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store.duckdb import DuckDBStore
from cim.store.meshes import MeshStore


def write_footprints(path: Path, n: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    x = 121.2 + rng.random(n) * 0.5
    y = 30.9 + rng.random(n) * 0.5
    w, h = 0.0001 + rng.random(n) * 0.0002, 0.0001 + rng.random(n) * 0.0002
    boxes = shapely.box(x, y, x + w, y + h)
    courtyard = np.arange(n) % 10 == 0
    inner = shapely.box(x + w / 3, y + h / 3, x + 2 * w / 3, y + 2 * h / 3)
    boxes[courtyard] = shapely.difference(boxes[courtyard], inner[courtyard])
    frame = gpd.GeoDataFrame(
        {
            "bid": np.arange(n),
            "height": np.round(6 + rng.random(n) * 90, 1),
            "levels": rng.integers(1, 30, n),
            "name": [f"Building {i}" for i in range(n)],
            "year": rng.integers(1950, 2024, n),
        },
        geometry=boxes,
        crs="EPSG:4326",
    )
    frame.to_parquet(path)


def write_pipes(path: Path, segments: int, per_pipe: int = 5, seed: int = 4) -> None:
    """Pipes of ``per_pipe`` segments of about 100 m each, wandering along a street grid."""
    rng = np.random.default_rng(seed)
    n = segments // per_pipe
    start = np.column_stack([121.2 + rng.random(n) * 0.5, 30.9 + rng.random(n) * 0.5])
    step = 108.0 / 111_000  # ~100 m a segment on average (east-west steps are shorter by cos(latitude))
    turns = rng.integers(0, 4, (n, per_pipe))
    moves = np.array([[step, 0], [0, step], [-step, 0], [0, step]])[turns]
    coords = np.concatenate([start[:, None, :], start[:, None, :] + np.cumsum(moves, axis=1)], axis=1)
    frame = gpd.GeoDataFrame(
        {
            "id": np.arange(n),
            "network": rng.choice(["gas", "water", "drainage"], n),
            "diameter_mm": rng.choice([100, 150, 200, 300, 600], n),
            "depth_m": np.round(0.8 + rng.random(n) * 3, 2),
            "material": rng.choice(["PE", "steel", "ductile iron", "concrete"], n),
            "install_year": rng.integers(1960, 2024, n),
        },
        geometry=shapely.linestrings(coords),
        crs="EPSG:4326",
    )
    frame.to_parquet(path)


def ingest_in_child(store_dir: str, source: str, mapping: LayerMapping) -> tuple[LayerSummary, float, float]:
    """Ingest in a fresh process, so its peak memory is the ingest's own: (summary, seconds, peak RSS in GB)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_ingest, store_dir, source, mapping).result()


def _ingest(store_dir: str, source: str, mapping: LayerMapping) -> tuple[LayerSummary, float, float]:
    store = DuckDBStore(Path(store_dir) / "bench.duckdb")
    meshes = MeshStore(Path(store_dir) / "bench.meshes.duckdb")
    start = time.perf_counter()
    summary = write_source(store, Path(source), mapping=mapping, meshes=meshes)
    seconds = time.perf_counter() - start
    store.close()
    meshes.close()
    return summary, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="building footprints")
    parser.add_argument("--segments", type=int, default=100_000, help="pipe segments (about 100 m each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        buildings, pipes = Path(folder) / "footprints.parquet", Path(folder) / "pipes.parquet"
        write_footprints(buildings, args.n)
        write_pipes(pipes, args.segments)
        mapping = LayerMapping(
            kind=Kind.BUILDING,
            id=["bid"],
            fields={"height_m": "height", "storeys": "levels", "name": "name", "install_date": "year"},
            units={"install_date": "year"},
        )
        summary, seconds, peak_gb = ingest_in_child(folder, str(buildings), mapping)
        print(
            f"{summary.features_read:,} footprints (GeoParquet) → {summary.assets} + {summary.meshes:,} LOD1 meshes "
            f"in {seconds:.1f} s ({summary.features_read / seconds:,.0f}/s); peak RSS of the ingest {peak_gb:.2f} GB"
        )
        piped, seconds, peak_gb = ingest_in_child(folder, str(pipes), preset("pipes"))
        km = float(shapely.length(gpd.read_parquet(pipes).to_crs("EPSG:32651").geometry.values).sum()) / 1000
        print(
            f"{args.segments:,} pipe segments in {piped.features_read:,} pipes ({km:,.0f} km) → {piped.assets} + "
            f"{piped.meshes:,} tube meshes in {seconds:.1f} s; peak RSS {peak_gb:.2f} GB"
        )


if __name__ == "__main__":
    main()
