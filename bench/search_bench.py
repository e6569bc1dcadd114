"""Search benchmark: ``/search``'s query (:func:`cim.queries.search.search`) on a store of named buildings, PostGIS
with the trigram indexes of schema step 6 and without them (dropped, same data), and DuckDB beside.

Each building has an id (``b123456``), a Chinese name (``<district><street>路<n>号楼``) and sits among a few districts
with English names, so the three matched expressions (id, name, area's English name) are all exercised. The typed
texts: an id fragment, a Chinese street name (3 characters), an English district fragment, a two-character text
(no trigram: the index cannot help) and a text that matches nothing. Medians of ``--repeat`` runs, after a warm-up.

    PYTHONPATH=. .venv/bin/python bench/search_bench.py                     # 100,000 buildings
    PYTHONPATH=. .venv/bin/python bench/search_bench.py --buildings 1000000

Target (issue 25): the list answers within 1 s of typing on the demo city; server time here is a small part of it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import shapely

from cim.model import AssetBatch
from cim.queries.search import search
from cim.store import open_store

W, S, SIDE = 121.3, 31.0, 0.4
DISTRICTS = [("浦东新区", "Pudong"), ("黄浦区", "Huangpu"), ("徐汇区", "Xuhui"), ("静安区", "Jing'an")]
STREETS = ["世纪大道", "陆家嘴环路", "南京东路", "淮海中路", "衡山路", "延安西路", "张杨路", "浦东南路"]
QUERIES = {
    "id fragment '23456'": "23456",
    "street '陆家嘴'": "陆家嘴",
    "district 'pudo'": "pudo",
    "two characters '南京'": "南京",
    "no match 'zzqx'": "zzqx",
}


def build(url: str, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    xs, ys = W + rng.random(n) * SIDE, S + rng.random(n) * SIDE
    with open_store(url) as store:
        step = SIDE / len(DISTRICTS)
        areas = [shapely.box(W + i * step, S, W + (i + 1) * step, S + SIDE).wkb for i in range(len(DISTRICTS))]
        store.upsert_assets(
            AssetBatch.from_table(
                pa.table(
                    {
                        "id": [f"district:{i}" for i in range(len(DISTRICTS))],
                        "kind": ["district"] * len(DISTRICTS),
                        "name": [zh for zh, _ in DISTRICTS],
                        "geom": areas,
                        "props": [f'{{"name_en": "{en}", "code": "31011{i}"}}' for i, (_, en) in enumerate(DISTRICTS)],
                    }
                )
            )
        )
        for start in range(0, n, 100_000):
            ids = range(start, min(n, start + 100_000))
            geoms = shapely.box(
                xs[ids.start : ids.stop],
                ys[ids.start : ids.stop],
                xs[ids.start : ids.stop] + 3e-4,
                ys[ids.start : ids.stop] + 3e-4,
            )
            names = [f"{DISTRICTS[i % len(DISTRICTS)][0]}{STREETS[(i // 7) % len(STREETS)]}{i % 997}号楼" for i in ids]
            store.upsert_assets(
                AssetBatch.from_table(
                    pa.table(
                        {
                            "id": [f"b{i:06d}" for i in ids],
                            "kind": ["building"] * len(ids),
                            "name": names,
                            "geom": shapely.to_wkb(geoms),
                        }
                    )
                )
            )
        store.optimize()


def time_searches(url: str, repeat: int) -> dict[str, float]:
    out = {}
    with open_store(url) as store:
        for label, text in QUERIES.items():
            search(store, text, limit=10, offset=0)  # warm
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                search(store, text, limit=10, offset=0)
                times.append((time.perf_counter() - t) * 1000)
            out[label] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buildings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    schema = f"search_bench_{uuid.uuid4().hex[:8]}"
    pg = f"{args.postgres}?schema={schema}"
    columns: dict[str, dict[str, float]] = {}
    try:
        t = time.perf_counter()
        build(pg, args.buildings)
        print(f"PostGIS: {args.buildings:,} buildings in {time.perf_counter() - t:.0f} s (schema {schema})")
        with psycopg.connect(args.postgres, autocommit=True) as con:
            con.execute(f"ANALYZE {schema}.assets")
        columns["PostGIS, trigram GIN"] = time_searches(pg, args.repeat)
        with psycopg.connect(args.postgres, autocommit=True) as con:
            for index in ("assets_id_trgm", "assets_name_trgm", "assets_name_en_trgm"):
                con.execute(f"DROP INDEX {schema}.{index}")
        columns["PostGIS, no trigram"] = time_searches(pg, args.repeat)
        with tempfile.TemporaryDirectory() as folder:
            duck = str(Path(folder) / "search.duckdb")
            build(duck, args.buildings)
            columns["DuckDB (scan)"] = time_searches(duck, args.repeat)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    names = list(columns)
    print(f"\nsearch on {args.buildings:,} named buildings, ms, medians of {args.repeat}")
    print(f"{'typed':<26}" + "".join(f"{n:>24}" for n in names))
    for label in QUERIES:
        print(f"{label:<26}" + "".join(f"{columns[n][label]:>24.1f}" for n in names))


if __name__ == "__main__":
    main()
