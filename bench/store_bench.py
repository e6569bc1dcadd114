"""Store benchmark: bulk load of N polygon assets, and a polygon query returning about 1% of them.

Prints, for each backend, the load time and the median query time through the store beside the same query as raw
SQL in the database's own client (the store's overhead), plus DuckDB's two window paths side by side.

    .venv/bin/python bench/store_bench.py                 # 1,000,000 assets, DuckDB and PostGIS
    .venv/bin/python bench/store_bench.py -n 100000 --backend duckdb

Targets (issue 2): load 1M into DuckDB ≤ 30 s, into PostGIS ≤ 60 s; the 1% query ≤ 50 ms on DuckDB and within 2×
of raw SQL.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import shapely

from cim.model import AssetBatch
from cim.store import AssetQuery, Store, open_store
from cim.store.duckdb import DuckDBStore

WEST, SOUTH, SIDE = 121.2, 30.9, 0.5  # a 50 km square over central Shanghai
BATCH = 100_000


def footprints(n: int, seed: int = 1) -> Iterator[pa.Table]:
    """Batches of small rectangular footprints (about 10-30 m a side) spread over the square, with attributes."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        x = WEST + rng.random(size) * SIDE
        y = SOUTH + rng.random(size) * SIDE
        w, h = 0.0001 + rng.random(size) * 0.0002, 0.0001 + rng.random(size) * 0.0002
        height = 6 + rng.random(size) * 90
        yield pa.table(
            {
                "id": pa.array([f"b{i}" for i in range(start, start + size)]),
                "kind": pa.array(["building"] * size),
                "name": pa.array([f"Building {i}" for i in range(start, start + size)]),
                "source": pa.array(["bench"] * size),
                "geom": pa.array(shapely.to_wkb(shapely.box(x, y, x + w, y + h))),
                "z_min": np.full(size, 4.0),
                "z_max": 4.0 + height,
                "height_m": height,
                "storeys": (height // 3).astype(np.int32),
                "props": pa.array(['{"use": "residential"}'] * size),
            }
        )


def one_percent_polygon() -> shapely.Polygon:
    """A hexagon covering about 1% of the square."""
    radius = SIDE * 0.062
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    cx, cy = WEST + SIDE / 2, SOUTH + SIDE / 2
    return shapely.Polygon(np.column_stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)]))


def median_ms(run: Callable[[], Any], repeat: int = 11) -> tuple[float, Any]:
    run()  # warm
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def load(store: Store, n: int) -> float:
    """Seconds to write n assets in batches as an ingest does, then optimize the store once."""
    start = time.perf_counter()
    for table in footprints(n):
        store.upsert_assets(AssetBatch.from_table(table))
    store.optimize()
    return time.perf_counter() - start


def bench_duckdb(n: int, folder: Path) -> None:
    store = DuckDBStore(folder / "bench.duckdb")
    seconds = load(store, n)
    print(f"duckdb  load {n:,} assets: {seconds:.1f} s ({n / seconds:,.0f}/s)   target ≤ 30 s for 1M")
    polygon = one_percent_polygon()
    query = AssetQuery(polygon=polygon)
    ours, found = median_ms(lambda: store.find_batch(query))
    objects, _ = median_ms(lambda: store.find_assets(query))
    con = store._con  # the same connection, raw SQL with the polygon typed in
    raw_sql = (
        f"SELECT * EXCLUDE (geom), ST_AsWKB(geom) FROM assets WHERE ST_Intersects(geom, '{polygon.wkt}'::GEOMETRY)"
    )
    raw, rows = median_ms(lambda: con.execute(raw_sql).fetchall())
    bbox_sql = (
        f"SELECT * EXCLUDE (geom), ST_AsWKB(geom) FROM assets WHERE "
        f"max_x >= {polygon.bounds[0]} AND min_x <= {polygon.bounds[2]} AND max_y >= {polygon.bounds[1]} "
        f"AND min_y <= {polygon.bounds[3]} AND ST_Intersects(ST_Force2D(geom), '{polygon.wkt}'::GEOMETRY)"
    )
    raw_bbox, rows_bbox = median_ms(lambda: con.execute(bbox_sql).fetchall())
    assert len(found) == len(rows) == len(rows_bbox), (len(found), len(rows), len(rows_bbox))
    print(
        f"duckdb  1% polygon query ({len(found):,} assets): store p50 {ours:.1f} ms as columns, {objects:.1f} ms "
        f"as Asset objects   target ≤ 50 ms"
    )
    print(
        f"        raw SQL, R-tree path: p50 {raw:.1f} ms; raw SQL, bbox-column path: p50 {raw_bbox:.1f} ms; "
        f"store / best raw = {ours / min(raw, raw_bbox):.2f}×   target ≤ 2×"
    )
    store.close()


def bench_postgis(n: int, url: str) -> None:
    schema = "bench_" + uuid.uuid4().hex[:8]
    store = open_store(f"{url}?schema={schema}")
    try:
        seconds = load(store, n)
        print(f"postgis load {n:,} assets: {seconds:.1f} s ({n / seconds:,.0f}/s)   target ≤ 60 s for 1M")
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"ANALYZE {schema}.assets")
            con.execute("SET jit = off")
            con.execute("SET max_parallel_workers_per_gather = 0")
            polygon = one_percent_polygon()
            ours, found = median_ms(lambda: store.find_batch(AssetQuery(polygon=polygon)))
            raw_sql = (
                f"SELECT *, ST_AsBinary(geom) FROM {schema}.assets "
                f"WHERE ST_Intersects(geom, ST_GeomFromText('{polygon.wkt}', 4326))"
            )
            raw, rows = median_ms(lambda: con.execute(raw_sql).fetchall())
            assert len(found) == len(rows)
            print(
                f"postgis 1% polygon query ({len(found):,} assets): store p50 {ours:.1f} ms, raw SQL p50 "
                f"{raw:.1f} ms, store / raw = {ours / raw:.2f}×"
            )
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="number of assets (default 1,000,000)")
    parser.add_argument("--backend", choices=["duckdb", "postgis", "both"], default="both")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.backend in ("duckdb", "both"):
            bench_duckdb(args.n, Path(folder))
    if args.backend in ("postgis", "both"):
        bench_postgis(args.n, args.postgres)


if __name__ == "__main__":
    main()
