"""Aggregate benchmark: counts, lengths and areas by district (and other keys) on the demo city, on both stores.

The demo city (``cim synth``: 20,000 buildings at seed 7, with its lifts, pipes, areas …; ``--buildings`` for a
larger one) is generated and its layers ingested once into ``--work``/<buildings> (DuckDB, and PostGIS in schema
``aggregate_bench_<buildings>``); a second run reuses it. Each
aggregate is timed as the library call (:func:`cim.store.aggregates.aggregate`) and as the HTTP endpoint in-process
(TestClient: JSON encoding included, no network), medians of ``--repeat`` runs after one warm-up (the first call
may build the derived table of every asset's areas).

    .venv/bin/python bench/aggregate_bench.py                            # DuckDB and PostGIS
    .venv/bin/python bench/aggregate_bench.py --stores duckdb --buildings 100000      # ~90,000 pipes

Target (issue 23): each aggregate by district ≤ ~300 ms on both stores at the demo city's scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cim.api import create_app
from cim.gis.mapping import load_mapping
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store
from cim.store.aggregates import aggregate
from cim.synth.generate import generate_city, mapping_file

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("CIM_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/cim_test")
LAYERS = ("areas", "buildings", "lifts", "pipes", "nodes", "parks", "roads")
AS_OF = date(2026, 5, 1)
CASES: tuple[tuple[Kind, str], ...] = (
    (Kind.PIPE, "district"),
    (Kind.BUILDING, "district"),
    (Kind.LIFT, "district"),
    (Kind.PIPE, "network,age_band"),
    (Kind.PIPE, "district,network,age_band"),
    (Kind.BUILDING, "grid_cell"),
)


def build(url: str, city: Path, buildings: int) -> None:
    """The demo city's layers into the store at ``url`` (skipped when it already holds pipes)."""
    with open_store(url) as store:
        if store.count_by_kind().get("pipe"):
            return
        if not (city / "manifest.json").exists():
            started = time.perf_counter()
            generate_city(out=city, buildings=buildings, seed=7, towers=0)
            print(f"  generated the city in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        for layer in LAYERS:
            if (city / f"{layer}.parquet").exists():
                write_source(store, city / f"{layer}.parquet", mapping=load_mapping(ROOT / mapping_file(layer)))
        store.optimize()
        print(f"  ingested {dict(store.count_by_kind())} in {time.perf_counter() - started:.0f} s")


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: derived tables, plans, caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="duckdb,postgis", help="comma-separated: duckdb, postgis")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cim-aggregate-bench"))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--buildings", type=int, default=20_000, help="the demo's 20,000; more for a larger city")
    args = parser.parse_args()
    work = args.work / str(args.buildings)
    work.mkdir(parents=True, exist_ok=True)
    for kind in args.stores.split(","):
        schema = f"aggregate_bench_{args.buildings}"
        url = str(work / "city.duckdb") if kind == "duckdb" else f"{POSTGRES}?schema={schema}"
        print(f"{kind}: {url}")
        build(url, work / "synth", args.buildings)
        with open_store(url) as store:
            for collection, keys in CASES:
                group_by = keys.split(",")

                def library(collection: Kind = collection, group_by: list[str] = group_by) -> Any:
                    return aggregate(store, kind=collection, group_by=group_by, as_of=AS_OF)

                groups = len(library())
                ms = median_ms(library, args.repeat)
                print(f"  {f'{collection} by {keys}':<40} {groups:>5} groups  library p50 {ms:7.1f} ms")
        settings = AppSettings(store=StoreSettings(store=url), server=ServerSettings(tiles_dir=work))
        with TestClient(create_app(settings)) as client:
            for collection, keys in CASES:
                path = f"/collections/{collection}/aggregate?group_by={keys}&as_of={AS_OF}"

                def http(path: str = path) -> Any:
                    answer = client.get(path)
                    assert answer.status_code == 200, answer.text[:300]
                    return answer

                ms = median_ms(http, args.repeat)
                print(f"  GET {path:<70} p50 {ms:7.1f} ms")


if __name__ == "__main__":
    main()
