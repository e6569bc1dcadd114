"""GIS ingest benchmark: N building footprints from a GeoParquet file into the embedded store.

    .venv/bin/python bench/gis_bench.py               # 1,000,000 footprints
    .venv/bin/python bench/gis_bench.py -n 100000

Prints features/s and peak memory (max RSS of this process). Target (issue 4): 1,000,000 footprints → assets + LOD1
meshes ≤ 60 s, peak ≤ 3 GB. Meshes are not built yet: this measures read + map + store.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from cim.gis.ingest import ingest_layer
from cim.gis.mapping import LayerMapping
from cim.model import Kind
from cim.store.duckdb import DuckDBStore


def write_footprints(path: Path, n: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    x = 121.2 + rng.random(n) * 0.5
    y = 30.9 + rng.random(n) * 0.5
    w, h = 0.0001 + rng.random(n) * 0.0002, 0.0001 + rng.random(n) * 0.0002
    frame = gpd.GeoDataFrame(
        {
            "bid": np.arange(n),
            "height": np.round(6 + rng.random(n) * 90, 1),
            "levels": rng.integers(1, 30, n),
            "name": [f"Building {i}" for i in range(n)],
            "year": rng.integers(1950, 2024, n),
        },
        geometry=shapely.box(x, y, x + w, y + h),
        crs="EPSG:4326",
    )
    frame.to_parquet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "footprints.parquet"
        write_footprints(source, args.n)
        mapping = LayerMapping(
            kind=Kind.BUILDING,
            id=["bid"],
            fields={"height_m": "height", "storeys": "levels", "name": "name", "install_date": "year"},
            units={"install_date": "year"},
        )
        store = DuckDBStore(Path(folder) / "bench.duckdb")
        start = time.perf_counter()
        summary = ingest_layer(store, source, mapping)
        seconds = time.perf_counter() - start
        store.close()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"{summary.features_read:,} footprints (GeoParquet) → {summary.assets} in {seconds:.1f} s "
        f"({summary.features_read / seconds:,.0f}/s); peak RSS {peak_gb:.2f} GB (including writing the source)"
    )


if __name__ == "__main__":
    main()
