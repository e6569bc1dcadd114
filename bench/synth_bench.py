"""Demo city generator benchmark: N buildings (and everything around them) to GeoParquet, then the buildings layer
through the GIS ingest into the embedded store.

    .venv/bin/python bench/synth_bench.py               # 1,000,000 buildings
    .venv/bin/python bench/synth_bench.py -n 100000

Prints generation time (wall and CPU) and peak RSS, then the ingest time of buildings.parquet. Target (issue 9):
1,000,000 buildings generate in well under a minute with bounded memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from cim.gis.mapping import load_mapping
from cim.pipeline.ingest import write_source
from cim.store.duckdb import DuckDBStore
from cim.synth.generate import generate_city, mapping_file

ROOT = Path(__file__).resolve().parents[1]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--no-ingest", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "city"
        wall, cpu = time.perf_counter(), time.process_time()
        summary = generate_city(out=out, buildings=args.n, seed=0, towers=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = sum(p.stat().st_size for p in out.iterdir()) / 1024**2
        rows = sum(summary.layers.values())
        print(
            f"generate {args.n:,} buildings ({rows:,} features in {len(summary.layers)} layers, {size:,.0f} MB): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU; peak RSS {peak_gb():.2f} GB"
        )
        print(f"  {summary.layers}")
        print(f"  mains km {summary.mains_km}")
        if args.no_ingest:
            return
        store = DuckDBStore(Path(folder) / "bench.duckdb")
        start = time.perf_counter()
        result = write_source(store, out / "buildings.parquet", mapping=load_mapping(ROOT / mapping_file("buildings")))
        seconds = time.perf_counter() - start
        store.close()
    print(
        f"ingest buildings.parquet → {result.assets} in {seconds:.1f} s "
        f"({result.features_read / seconds:,.0f}/s); peak RSS of the process {peak_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
