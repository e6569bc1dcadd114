"""Synthetic layers for the spatial-join benchmarks: N homes (small building footprints) and the parks among them
(one park per 2,000 homes, 60-400 m a side), at the density of central Shanghai whatever N (the square grows).

    .venv/bin/python bench/spatial_layers.py -n 1000000 --duckdb /tmp/s/1m.duckdb --postgis postgresql://…?schema=x
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import shapely

from cim.model import AssetBatch
from cim.store import Store, open_store

WEST, SOUTH = 121.2, 30.9
BATCH = 200_000
HOMES_PER_PARK = 2_000


def side_degrees(n: int) -> float:
    """The side of the square holding n homes at 1M per 0.5° (about 50 km) square."""
    return 0.5 * float(np.sqrt(n / 1_000_000))


def homes(n: int, seed: int = 1) -> Iterator[pa.Table]:
    """Batches of small rectangular home footprints (about 10-30 m a side) spread over the square."""
    rng = np.random.default_rng(seed)
    side = side_degrees(n)
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        x, y = WEST + rng.random(size) * side, SOUTH + rng.random(size) * side
        w, h = 0.0001 + rng.random(size) * 0.0002, 0.0001 + rng.random(size) * 0.0002
        yield pa.table(
            {
                "id": pa.array([f"h{i:09d}" for i in range(start, start + size)]),
                "kind": pa.array(["building"] * size),
                "source": pa.array(["homes"] * size),
                "geom": pa.array(shapely.to_wkb(shapely.box(x, y, x + w, y + h))),
            }
        )


def parks(n: int, seed: int = 2) -> pa.Table:
    """One park per :data:`HOMES_PER_PARK` homes: rectangles of 60-400 m a side."""
    rng = np.random.default_rng(seed)
    side = side_degrees(n)
    size = max(1, n // HOMES_PER_PARK)
    x, y = WEST + rng.random(size) * side, SOUTH + rng.random(size) * side
    w, h = 0.0006 + rng.random(size) * 0.0034, 0.0006 + rng.random(size) * 0.0034
    return pa.table(
        {
            "id": pa.array([f"p{i:07d}" for i in range(size)]),
            "kind": pa.array(["park"] * size),
            "source": pa.array(["parks"] * size),
            "geom": pa.array(shapely.to_wkb(shapely.box(x, y, x + w, y + h))),
        }
    )


def load(store: Store, n: int) -> float:
    """Seconds to write the homes and parks in batches, then optimize the store once."""
    start = time.perf_counter()
    store.upsert_assets(AssetBatch.from_table(parks(n)))
    for table in homes(n):
        store.upsert_assets(AssetBatch.from_table(table))
    store.optimize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--url", required=True, help="a store URL (a DuckDB file or postgresql://…?schema=…)")
    args = parser.parse_args()
    store = open_store(args.url)
    try:
        print(f"{args.url}: {args.n:,} homes loaded in {load(store, args.n):.0f} s", flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    main()
