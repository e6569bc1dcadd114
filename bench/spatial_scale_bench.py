"""Spatial joins at scale (issue 27 part 2): homes within / beyond 500 m of a park, and the vital sign's counts, on
layers of 1M, 3M, 10M homes, by three paths side by side in one run:

- ``one``: today's one statement in the store (``near_rows`` / ``near_counts`` with ``banded=False``);
- ``bands``: the store's SQL by bands of :data:`cim.store.near_bands.PER_BAND` homes, 2 at a time (``banded=True``);
- ``dask``: a real ``distributed`` cluster (a scheduler and 2 worker processes, one thread each): one task per band
  reads its homes and the parks near them from the store as WKB and joins them in geopandas (``sjoin`` with
  ``predicate="dwithin"`` in the area's UTM zone) — dask-geopandas's partitioned ``sjoin`` with the parks broadcast,
  minus loading the whole layer into the client first, which alone would hold the city in memory.

Each path runs in a fresh process; its peak RSS (and the dask workers' peaks) is printed. The dask path measures in
UTM through pyproj, the stores in their own metric (PostGIS geography; DuckDB's UTM): its count may differ by the
homes within centimetres of 500 m, printed as ``Δ``.

Layers are written once by ``bench/spatial_layers.py`` (sizes ``-n``) into ``--folder`` (DuckDB) and PostgreSQL schemas
``spatialscale_h<n>``:

    .venv/bin/python bench/spatial_layers.py -n 1000000 --url /tmp/spatialscale/h1000000.duckdb
    .venv/bin/python bench/spatial_scale_bench.py --sizes 1000000 3000000 --backends duckdb postgis
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

POSTGRES = "postgresql://postgres@localhost:5432/postgres"
DISTANCE_M = 500.0
LIMIT_S = 3600.0


def store_url(backend: str, n: int, folder: str) -> str:
    return f"{folder}/h{n}.duckdb" if backend == "duckdb" else f"{POSTGRES}?schema=spatialscale_h{n}"


def run_path(path: str, url: str) -> dict[str, Any]:
    """One path over the store at ``url``, in this process: seconds, the answer's figures, peak RSS (MB)."""
    from cim.model import Kind
    from cim.store import AssetQuery
    from cim.store.duckdb import DuckDBStore
    from cim.store.postgis import PostGISStore
    from cim.store.questions import near_rows
    from cim.store.vitals import near_counts

    # no read limit here, so the one statement gets a time too (the server's limit is 60 s a statement)
    store = (
        DuckDBStore(url, read_timeout_s=LIMIT_S, upgrade=False)
        if url.endswith(".duckdb")
        else PostGISStore(url, read_timeout_s=LIMIT_S, upgrade=False)
    )
    try:
        extent = store.extent(kind=Kind.BUILDING)
        assert extent is not None
        out: dict[str, Any] = {}
        start = time.perf_counter()
        if path == "dask":
            out.update(dask_counts(store, url, extent))
        else:
            banded = path == "bands"
            total, near = near_counts(store, query=AssetQuery(kinds=(Kind.BUILDING,)), near_kind=Kind.PARK,
                                      distance_m=DISTANCE_M, extent=extent, banded=banded)  # fmt: skip
            out["counts_s"] = time.perf_counter() - start
            out["total"], out["near"] = total, near
            out["counts_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            start = time.perf_counter()
            far = near_rows(store, kind=Kind.BUILDING, near_kind=Kind.PARK, distance_m=DISTANCE_M, extent=extent,
                            bbox=None, beyond=True, banded=banded)  # fmt: skip
            out["beyond_s"] = time.perf_counter() - start
            out["beyond"] = len(far)
            out["beyond_hash"] = hashlib.sha256("\n".join(r["id"] for r in far).encode()).hexdigest()
    finally:
        store.close()
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def dask_counts(store: Any, url: str, extent: tuple[float, float, float, float]) -> dict[str, Any]:
    """(homes, homes within 500 m of a park) by tasks on a local distributed cluster of 2 worker processes."""
    from dask.distributed import Client, LocalCluster

    from cim.model import Kind
    from cim.store.near_bands import bands_for
    from cim.store.sql import Where
    from cim.store.sqlstore import sql_store

    db = sql_store(store)
    bands = bands_for(db, Where(f"a.kind = {db.dialect.param}", ["building"]), "a", banded=True)
    if url.endswith(".duckdb"):
        store.close()  # the workers open the file read-only; DuckDB lets no other process in while this one has it
    start = time.perf_counter()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter() - start
        futures = client.map(band_task, [(url, b.low, b.high, b.first, extent) for b in bands], pure=False)
        results = client.gather(futures)
        workers_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    del Kind
    return {
        "counts_s": time.perf_counter() - start,
        "cluster_start_s": started,
        "total": sum(r[0] for r in results),
        "near": sum(r[1] for r in results),
        "worker_rss_mb": max(workers_rss.values()),
        "bands": len(bands),
    }


def band_task(args: tuple[str, float | None, float | None, bool, tuple[float, float, float, float]]) -> tuple[int, int]:
    """In a dask worker: read one band of homes and the parks that may be near them; count the near homes."""
    import duckdb
    import geopandas as gpd
    import psycopg
    import shapely

    from cim.geodesy import degrees_for, utm_epsg

    url, low, high, first, extent = args
    lon0, lat0 = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    dlon, dlat = degrees_for(DISTANCE_M, max(abs(extent[1]), abs(extent[3])))
    centre = "(min_y + max_y) / 2"
    cond = " AND ".join(
        [c for c in (low is not None and f"{centre} >= {low!r}", high is not None and f"{centre} < {high!r}") if c]
    )
    cond = f"({cond or 'TRUE'}{' OR min_y IS NULL' if first else ''})"
    homes_sql = f"SELECT {{wkb}} AS g, min_y, max_y FROM assets WHERE kind = 'building' AND {cond}"
    if url.endswith(".duckdb"):
        from cim.store.spatial_extension import load_spatial

        con = duckdb.connect(url, read_only=True)
        load_spatial(con)
        homes = con.execute(homes_sql.format(wkb="ST_AsWKB(geom)")).fetchall()
    else:
        schema = url.split("schema=")[1]
        con = psycopg.connect(url.split("?")[0])
        con.execute(f"SET search_path = {schema}, public")
        homes = con.execute(homes_sql.format(wkb="ST_AsBinary(geom)")).fetchall()
    if not homes:
        return 0, 0
    south = min(r[1] for r in homes if r[1] is not None) - dlat
    north = max(r[2] for r in homes if r[2] is not None) + dlat
    wkb = "ST_AsWKB(geom)" if url.endswith(".duckdb") else "ST_AsBinary(geom)"
    parks = con.execute(
        f"SELECT {wkb} FROM assets WHERE kind = 'park' AND max_y >= {south!r} AND min_y <= {north!r}"
    ).fetchall()
    con.close()
    crs = f"EPSG:{utm_epsg(lon0, lat0)}"
    left = gpd.GeoDataFrame(geometry=shapely.from_wkb([bytes(r[0]) for r in homes]), crs="EPSG:4326").to_crs(crs)
    if not parks:
        return len(homes), 0
    right = gpd.GeoDataFrame(geometry=shapely.from_wkb([bytes(r[0]) for r in parks]), crs="EPSG:4326").to_crs(crs)
    joined = gpd.sjoin(left, right, predicate="dwithin", distance=DISTANCE_M)
    del dlon
    return len(homes), int(joined.index.nunique())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--backends", nargs="+", default=["duckdb", "postgis"])
    parser.add_argument("--paths", nargs="+", default=["one", "bands", "dask"])
    parser.add_argument("--folder", default="/tmp/spatialscale")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_path(*args.child)))
        return
    print(f"homes within / beyond {DISTANCE_M:g} m of a park; 2 cores; peak RSS per process", flush=True)
    for n in args.sizes:
        for backend in args.backends:
            url = store_url(backend, n, args.folder)
            figures: dict[str, dict[str, Any]] = {}
            for path in args.paths:
                done = subprocess.run([sys.executable, __file__, "--child", path, url], capture_output=True,
                                      text=True, env=os.environ)  # fmt: skip
                if done.returncode:
                    last = (done.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{n:>11,} {backend:8} {path:6} failed: {last}", flush=True)
                    continue
                figures[path] = f = json.loads(done.stdout.strip().splitlines()[-1])
                line = f"{n:>11,} {backend:8} {path:6} counts {f['counts_s']:7.1f} s "
                line += f"(near {f['near']:,} of {f['total']:,})"
                if "beyond_s" in f:
                    line += f"   beyond list {f['beyond_s']:7.1f} s ({f['beyond']:,})"
                if "counts_rss_mb" in f:
                    line += f"   peak RSS after counts {f['counts_rss_mb']:,.0f} MB, after list"
                else:
                    line += "   peak RSS"
                line += f" {f['rss_mb']:,.0f} MB"
                if "worker_rss_mb" in f:
                    line += f", workers {f['worker_rss_mb']:,.0f} MB, {f['bands']} tasks"
                    line += f", cluster start {f['cluster_start_s']:.1f} s"
                if "one" in figures and path != "one":
                    one = figures["one"]
                    line += (
                        f"   Δ near {f['near'] - one['near']:+,}   time ×{f['counts_s'] / one['counts_s']:.2f} of one"
                    )
                    if "beyond_hash" in f:
                        line += "   same list" if f["beyond_hash"] == one["beyond_hash"] else "   LIST DIFFERS"
                print(line, flush=True)


if __name__ == "__main__":
    main()
