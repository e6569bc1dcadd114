"""Mesh store benchmark: writing and reading N LOD1 building meshes in the DuckDB mesh file and in PostgreSQL.

The meshes are :mod:`bench.tiles_bench`'s (roof, floor, a quad per wall). Each round, alternating the backends, it
times: the write (``replace_source``, 20,000-mesh batches), the digests (what a build plans from), and the read a
tile build does (``get_table`` of the ids in runs of 5,000, in a shuffled order). Prints medians in MB/s of mesh
blobs (vertices and triangles) and the PostgreSQL/DuckDB ratio of each.

    .venv/bin/python bench/mesh_store_bench.py               # 100,000 meshes, 3 rounds
    .venv/bin/python bench/mesh_store_bench.py -n 20000 --rounds 1

Target (issue 27): none set; the figures say what moving a cluster's meshes into PostGIS costs.
Measured (2 shared cores, load average ~8, 100,000 meshes, 57 MB): write DuckDB 2.19 s / PostgreSQL 4.16 s (1.9×),
digests 0.19 / 0.48 s (2.5×), build-style reads 2.86 / 4.80 s (1.7×); under a load of ~30 the two were even.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg

from cim.model import MeshBatch
from cim.store import open_store
from cim.store.meshes import MeshStore, open_meshes

POSTGRES = "postgresql://postgres@127.0.0.1:5432/cim_test"
WRITE_BATCH = 20_000
READ_RUN = 5_000


def megabytes(batch: MeshBatch) -> float:
    return (batch.vertices.nbytes + batch.triangles.nbytes) / 1e6


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def one_round(meshes: MeshStore, batches: list[MeshBatch], ids: list[str]) -> dict[str, float]:
    write = timed(lambda: meshes.replace_source("bench", batches))
    digests = timed(meshes.digests)

    def read() -> None:
        for lo in range(0, len(ids), READ_RUN):
            meshes.get_table(ids[lo : lo + READ_RUN])

    return {"write": write, "digests": digests, "read": timed(read)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="meshes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=POSTGRES, help="a database with PostGIS")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiles_bench import city  # type: ignore[import-not-found]

    whole = MeshBatch.concat([meshes for _, meshes in city(args.n)])
    batches = [
        MeshBatch.from_table(whole.to_table(None).slice(lo, WRITE_BATCH)) for lo in range(0, args.n, WRITE_BATCH)
    ]
    mb = megabytes(whole)
    ids = list(np.random.default_rng(3).permutation(np.array(whole.asset_ids, dtype=object)))
    print(f"{args.n:,} meshes, {mb:.1f} MB of vertices and triangles, {args.rounds} rounds")

    schema = "bench_meshes_" + uuid.uuid4().hex[:8]
    pg_url = f"{args.postgres}?schema={schema}"
    times: dict[str, dict[str, list[float]]] = {"duckdb": {}, "postgres": {}}
    with tempfile.TemporaryDirectory() as tmp:
        open_store(pg_url).close()
        try:
            with MeshStore(Path(tmp) / "m.duckdb") as on_duckdb, open_meshes(pg_url) as on_postgres:
                for _ in range(args.rounds):
                    for name, meshes in (("duckdb", on_duckdb), ("postgres", on_postgres)):
                        for step, seconds in one_round(meshes, batches, ids).items():
                            times[name].setdefault(step, []).append(seconds)
                        assert meshes.count() == args.n
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as con:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    print(f"{'step':<9}{'DuckDB s':>10}{'MB/s':>9}{'PostgreSQL s':>14}{'MB/s':>9}{'PG/DuckDB time':>16}")
    for step in ("write", "digests", "read"):
        d, p = (statistics.median(times[name][step]) for name in ("duckdb", "postgres"))
        print(f"{step:<9}{d:>10.2f}{mb / d:>9.0f}{p:>14.2f}{mb / p:>9.0f}{p / d:>15.2f}×")


if __name__ == "__main__":
    main()
