"""Measured inputs of ``docs/scale.md``: the asset table in PostGIS as one table and partitioned by district.

For each size (default 1M and 3M synthetic LOD1 buildings over Shanghai's 16 real districts), in a schema of its own:
1. the asset table twice, with schema steps 1 and 6's columns and indexes plus ``district`` (partitioning by area
   needs the area on the row; today it is in a derived table, :mod:`cim.store.areas`): one table, and
   ``PARTITION BY LIST (district)`` with one partition per district code and a default one;
2. both loaded district by district with ``COPY`` into the indexed tables (as an ingest writes), each timed;
   bytes per building (``pg_total_relation_size``) and per partition;
3. the API's typical reads on both (medians of ``--runs``; partitions read from ``EXPLAIN (ANALYZE)``, where a
   pruned one never appears), then on the one table with a btree on district;
4. ``asset_versions`` (step 7) beside the one table, 10% of it rewritten as a re-ingest would, ``VACUUM`` timed.
Then the tile planner's RSS per million assets (a child process on a real store), ``NOTIFY`` throughput to one
listener, and the connections PostgreSQL allows against the store's pool. Footprints have 4 corners, 8–40 m; half
spread over land, half in a Gaussian of 8 km around People's Square (Pudong is the largest partition).

    PYTHONPATH=. .venv/bin/python bench/scale_inputs_bench.py                    # 1M and 3M buildings
    PYTHONPATH=. .venv/bin/python bench/scale_inputs_bench.py --sizes 200000 --runs 3   # a quick look
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import shapely

from cim.store import open_store
from cim.store.postgis import POOL_SIZE
from cim.synth.areas import DISTRICT_NAMES, district_boundaries

CENTRE = (121.4737, 31.2304)  # People's Square
M_PER_DEG = 111_320.0
COLUMNS = (
    "id, kind, name, parent_id, source, geom, z_min, z_max, install_date, status, material, height_m, network, "
    "diameter_mm, depth_m, storeys, props, min_x, min_y, max_x, max_y, district"
)
TABLE = """CREATE TABLE {name} (
  id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, parent_id TEXT, source TEXT, geom geometry(Geometry, 4326),
  z_min DOUBLE PRECISION, z_max DOUBLE PRECISION, install_date DATE, status TEXT, material TEXT,
  height_m DOUBLE PRECISION, network TEXT, diameter_mm DOUBLE PRECISION, depth_m DOUBLE PRECISION, storeys INTEGER,
  props JSONB, min_x DOUBLE PRECISION, min_y DOUBLE PRECISION, max_x DOUBLE PRECISION, max_y DOUBLE PRECISION,
  district TEXT NOT NULL, PRIMARY KEY ({key})
){partitioning}"""
# the indexes of schema steps 1 and 6, on the asset table as it is
INDEXES = (
    "CREATE INDEX ON {t} USING GIST (geom)",
    "CREATE INDEX ON {t} (parent_id)",
    "CREATE INDEX ON {t} (kind)",
    "CREATE INDEX ON {t} USING GIN (lower(id) gin_trgm_ops)",
    "CREATE INDEX ON {t} USING GIN (lower(name) gin_trgm_ops)",
    "CREATE INDEX ON {t} USING GIN (lower(CASE WHEN kind IN ('city', 'district', 'street', 'grid_cell') "
    "THEN (props ->> 'name_en') END) gin_trgm_ops)",
)
SESSION = ("SET jit = off", "SET max_parallel_workers_per_gather = 0", "SET work_mem = '64MB'")


def buildings(n: int, seed: int) -> pa.Table:
    """n buildings with their district, sorted by district (codes of :data:`DISTRICT_NAMES`)."""
    rng = np.random.default_rng(seed)
    codes, shapes = zip(*district_boundaries(), strict=True)
    land = shapely.union_all(shapes)
    shapely.prepare(land)
    west, south, east, north = land.bounds
    lon, lat = np.empty(0), np.empty(0)
    while len(lon) < n:
        m = n
        spread = rng.random(m) < 0.5
        x = np.where(spread, west + rng.random(m) * (east - west), CENTRE[0] + rng.normal(0, 8000 / 95_000, m))
        y = np.where(spread, south + rng.random(m) * (north - south), CENTRE[1] + rng.normal(0, 8000 / M_PER_DEG, m))
        inside = shapely.contains_xy(land, x, y)
        lon, lat = np.r_[lon, x[inside]], np.r_[lat, y[inside]]
    lon, lat = lon[:n], lat[:n]
    points = shapely.points(lon, lat)
    hit_point, hit_district = shapely.STRtree(list(shapes)).query(points, predicate="within")
    district = np.full(n, "", dtype=object)
    district[hit_point] = np.asarray(codes, dtype=object)[hit_district]
    district[district == ""] = "other"  # on a shared border of the simplified polygons: the default partition
    half_w, half_d = 4 + rng.random(n) * 16, 4 + rng.random(n) * 16
    spin = rng.random(n) * np.pi
    corner_u = np.array([-1, 1, 1, -1, -1])[None, :] * half_w[:, None]
    corner_v = np.array([-1, -1, 1, 1, -1])[None, :] * half_d[:, None]
    cos, sin = np.cos(spin)[:, None], np.sin(spin)[:, None]
    m_per_deg_lon = M_PER_DEG * np.cos(np.radians(lat))[:, None]
    ring_x = lon[:, None] + (corner_u * cos - corner_v * sin) / m_per_deg_lon
    ring_y = lat[:, None] + (corner_u * sin + corner_v * cos) / M_PER_DEG
    polygons = shapely.set_srid(shapely.polygons(np.stack([ring_x, ring_y], axis=2)), 4326)
    height = 6 + rng.random(n) * 90
    uses = np.array(["residential", "office", "mixed", "industrial"], dtype=object)[rng.integers(0, 4, n)]
    table = pa.table(
        {
            "id": pa.array([f"building:{i:08d}" for i in range(n)]),
            "kind": pa.array(np.full(n, "building", dtype=object)),
            "name": pa.array([f"Building {i}" for i in range(n)]),
            "parent_id": pa.nulls(n, pa.string()),
            "source": pa.array(np.full(n, "bench", dtype=object)),
            "geom": pa.array(shapely.to_wkb(polygons, hex=True, include_srid=True)),
            "z_min": np.full(n, 4.0),
            "z_max": 4.0 + height,
            "install_date": pa.array(rng.integers(-20000, 19000, n).astype("datetime64[D]")).cast(pa.date32()),
            "status": pa.array(np.full(n, "in_use", dtype=object)),
            "material": pa.nulls(n, pa.string()),
            "height_m": height,
            "network": pa.nulls(n, pa.string()),
            "diameter_mm": pa.nulls(n, pa.float64()),
            "depth_m": pa.nulls(n, pa.float64()),
            "storeys": (height // 3).astype(np.int32),
            "props": pa.array(
                [json.dumps({"use": u, "lifts": int(h // 20)}) for u, h in zip(uses, height, strict=True)]
            ),
            "min_x": ring_x.min(axis=1),
            "min_y": ring_y.min(axis=1),
            "max_x": ring_x.max(axis=1),
            "max_y": ring_y.max(axis=1),
            "district": pa.array(district.tolist()),
        }
    )
    return table.sort_by("district")


def csv_of(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def make_tables(conn: psycopg.Connection[Any], codes: list[str]) -> None:
    conn.execute(TABLE.format(name="flat", key="id", partitioning=""))
    conn.execute(TABLE.format(name="parted", key="district, id", partitioning=" PARTITION BY LIST (district)"))
    for code in codes:
        conn.execute(f"CREATE TABLE parted_{code} PARTITION OF parted FOR VALUES IN ('{code}')")
    conn.execute("CREATE TABLE parted_default PARTITION OF parted DEFAULT")
    for table in ("flat", "parted"):
        for index in INDEXES:
            conn.execute(index.format(t=table))  # on a partitioned table: made on every partition


def load(conn: psycopg.Connection[Any], table: str, city: pa.Table) -> dict[str, float]:
    """COPY the city district by district; seconds per district."""
    seconds = {}
    district = city.column("district").to_numpy(zero_copy_only=False)
    bounds = np.flatnonzero(np.r_[True, district[1:] != district[:-1], True])
    for lo, hi in itertools.pairwise(bounds):
        data = csv_of(city.slice(lo, hi - lo))
        start = time.perf_counter()
        with conn.cursor().copy(f"COPY {table} ({COLUMNS}) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(data)
        seconds[str(district[lo])] = time.perf_counter() - start
    conn.execute(f"ANALYZE {table}")
    return seconds


def sizes(conn: psycopg.Connection[Any], relation: str) -> tuple[int, int]:
    """(total bytes, index bytes) of a table or, for a partitioned one, of all its partitions."""
    row = conn.execute(
        "SELECT sum(pg_total_relation_size(r)), sum(pg_indexes_size(r)) FROM "
        "(SELECT %s::regclass AS r UNION ALL SELECT inhrelid::regclass FROM pg_inherits "
        "WHERE inhparent = %s::regclass) AS t",
        (relation, relation),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def partitions_touched(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> int:
    """Partitions a query's plan reads (pruned ones, at plan or run time, are left out of ANALYZE's counts)."""
    plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
    assert plan is not None
    touched: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node and node.get("Actual Loops", 0) > 0:
            touched.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0][0]["Plan"])
    return len(touched)


def median_ms(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...], runs: int) -> float:
    conn.execute(sql, params).fetchall()  # warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def reads(some_id: str, its_district: str) -> list[tuple[str, str, Callable[[str], tuple[Any, ...]]]]:
    """(name, SQL with {t} for the table, parameters) of the API's typical reads."""
    mid_district = "310104"  # Xuhui: central, mid-sized
    box = (121.465, 31.222, 121.485, 31.238)  # 1.9 × 1.8 km around People's Square, across district borders
    envelope = "ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
    page = (
        f"SELECT id, name, height_m, ST_AsBinary(geom) FROM {{t}} WHERE kind = 'building' AND geom && {envelope} "
        f"AND ST_Intersects(geom, {envelope}) ORDER BY id LIMIT 100"
    )
    return [
        ("bbox items page (100 of a 2 km box)", page, lambda t: (*box, *box)),
        (
            "count per district",
            "SELECT district, count(*) FROM {t} WHERE kind = 'building' GROUP BY district",
            lambda t: (),
        ),
        ("count of one district", "SELECT count(*) FROM {t} WHERE district = %s", lambda t: (mid_district,)),
        (
            "ST_DWithin 20 m pairs in one district",
            "SELECT count(*) FROM {t} AS a JOIN {t} AS b ON ST_DWithin(a.geom, b.geom, 0.0002) AND a.id < b.id "
            "WHERE a.district = %s AND b.district = %s",
            lambda t: (mid_district, mid_district),
        ),
        ("id lookup", "SELECT * FROM {t} WHERE id = %s", lambda t: (some_id,)),
        (
            "id lookup with its district",
            "SELECT * FROM {t} WHERE id = %s AND district = %s",
            lambda t: (some_id, its_district),
        ),
    ]


def versions(conn: psycopg.Connection[Any], n: int) -> None:
    """asset_versions beside the one table: bytes per version, then VACUUM after 10% were rewritten."""
    start = time.perf_counter()
    conn.execute(
        "CREATE TABLE asset_versions AS SELECT *, md5(id) AS row_hash, now() AS valid_from, "
        "NULL::timestamptz AS valid_to, 'ingest'::text AS change, 'bench'::text AS changed_by FROM flat"
    )
    for index in (
        "CREATE UNIQUE INDEX ON asset_versions (id) WHERE valid_to IS NULL",
        "CREATE INDEX ON asset_versions (id, valid_from)",
        "CREATE INDEX ON asset_versions (source)",
        "CREATE INDEX ON asset_versions (valid_from)",
        "CREATE INDEX ON asset_versions (valid_to)",
        "CREATE INDEX ON asset_versions (kind)",
        "CREATE INDEX ON asset_versions USING GIST (geom)",
    ):
        conn.execute(index)
    made = time.perf_counter() - start
    total, index = sizes(conn, "asset_versions")
    print(
        f"  asset_versions, {n:,} versions: built in {made:.1f} s; {total / n:,.0f} B per version "
        f"({index / n:,.0f} of it indexes)"
    )
    start = time.perf_counter()
    closed = conn.execute(
        "UPDATE asset_versions SET valid_to = now() WHERE valid_to IS NULL AND id < %s", (f"building:{n // 10:08d}",)
    ).rowcount
    conn.execute(
        "INSERT INTO asset_versions SELECT *, md5(id || 'v2'), now(), NULL, 'ingest', 'bench' FROM flat WHERE id < %s",
        (f"building:{n // 10:08d}",),
    )
    rewrite = time.perf_counter() - start
    start = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) asset_versions")
    vacuum = time.perf_counter() - start
    print(
        f"  re-ingest of 10% ({n // 10:,} assets): close + new versions {rewrite:.1f} s; "
        f"{closed:,} dead row versions; VACUUM (ANALYZE) asset_versions {vacuum:.1f} s"
    )


def one_size(url: str, n: int, runs: int, keep: bool, with_versions: bool, reuse: bool = False) -> None:
    schema = f"scale_bench_{n}"
    if reuse:  # the tables of a run with --keep (or one stopped after its load): the reads only
        print(f"\n== {n:,} buildings, schema {schema} as loaded before")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"SET search_path = {schema}, public")
            for setting in SESSION:
                conn.execute(setting)
            conn.execute("DROP INDEX IF EXISTS flat_district_idx")
            measure_reads(conn, n, runs, with_versions)
            if not keep:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        return
    codes = sorted(DISTRICT_NAMES)
    start = time.perf_counter()
    city = buildings(n, seed=n)
    print(f"\n== {n:,} buildings (generated in {time.perf_counter() - start:.1f} s), schema {schema}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path = {schema}, public")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        for setting in SESSION:
            conn.execute(setting)
        make_tables(conn, codes)
        flat_s = load(conn, "flat", city)
        parted_s = load(conn, "parted", city)
        flat_total, flat_index = sizes(conn, "flat")
        parted_total, parted_index = sizes(conn, "parted")
        print(
            f"load (COPY into the indexed table, district by district): one table {sum(flat_s.values()):.1f} s, "
            f"partitioned {sum(parted_s.values()):.1f} s"
        )
        print(
            f"store bytes per building: one table {flat_total / n:,.0f} B ({flat_index / n:,.0f} of it indexes); "
            f"partitioned {parted_total / n:,.0f} B ({parted_index / n:,.0f} of it indexes)"
        )
        print(f"  one table: {flat_total / 2**20:,.0f} MB, of it indexes {flat_index / 2**20:,.0f} MB")
        print("per partition: district, buildings, load s (partitioned | one table, same rows), total MB, index MB")
        counts = dict(
            zip(*np.unique(city.column("district").to_numpy(zero_copy_only=False), return_counts=True), strict=True)
        )
        for code in [*codes, "other"]:
            part = f"parted_{code}" if code != "other" else "parted_default"
            total, index = sizes(conn, part)
            print(
                f"  {code:>7} {DISTRICT_NAMES.get(code, ('', 'default'))[1]:<10} {int(counts.get(code, 0)):>9,} "
                f"{parted_s.get(code, 0):6.1f} | {flat_s.get(code, 0):6.1f}  {total / 2**20:8.1f} {index / 2**20:8.1f}"
            )
        measure_reads(conn, n, runs, with_versions)
        if not keep:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def measure_reads(conn: psycopg.Connection[Any], n: int, runs: int, with_versions: bool) -> None:
    """The reads on both tables (loaded by :func:`one_size`), then the one table with a district index."""
    row = conn.execute("SELECT id, district FROM flat ORDER BY id OFFSET %s LIMIT 1", (n // 2,)).fetchone()
    assert row is not None
    some_id, its_district = row
    print(f"reads, median of {runs} (ms): one table | partitioned (partitions read of {len(DISTRICT_NAMES) + 1})")
    for name, sql, params in reads(some_id, its_district):
        flat_ms = median_ms(conn, sql.format(t="flat"), params("flat"), runs)
        parted_ms = median_ms(conn, sql.format(t="parted"), params("parted"), runs)
        touched = partitions_touched(conn, sql.format(t="parted"), params("parted"))
        print(f"  {name:<38} {flat_ms:9.1f} | {parted_ms:9.1f}  ({touched} partitions)")
    # the fair rival of a partition key: the one table with a btree on district
    start = time.perf_counter()
    conn.execute("CREATE INDEX ON flat (district)")
    conn.execute("ANALYZE flat")
    print(f"one table + a btree on district (made in {time.perf_counter() - start:.1f} s), median of {runs} (ms):")
    for name, sql, params in reads(some_id, its_district):
        if "district" in sql:
            print(f"  {name:<38} {median_ms(conn, sql.format(t='flat'), params('flat'), runs):9.1f}")
    if with_versions:
        versions(conn, n)


def notify_rate(url: str, count: int) -> None:
    """NOTIFYs per second one sender gets to one listener: one per transaction, and 100 per transaction."""
    payload = json.dumps({"sensor": "s" * 12, "value": 1.0, "time": "2026-12-05T00:00:00Z", "pad": "x" * 112})
    for per_tx in (1, 100):
        got = 0
        ready = threading.Event()
        done = threading.Event()

        def listen(ready: threading.Event = ready, done: threading.Event = done) -> None:
            nonlocal got
            with psycopg.connect(url, autocommit=True) as listener:
                listener.execute("LISTEN scale_bench")
                ready.set()
                for _ in listener.notifies(timeout=60, stop_after=count):
                    got += 1
            done.set()

        thread = threading.Thread(target=listen)
        thread.start()
        ready.wait()
        start = time.perf_counter()
        with psycopg.connect(url) as sender:
            for i in range(0, count, per_tx):
                for j in range(per_tx):  # payloads differ: PostgreSQL folds equal ones in one transaction
                    sender.execute("SELECT pg_notify('scale_bench', %s)", (f"{i + j:08d}{payload}",))
                sender.commit()
        sent = time.perf_counter() - start
        done.wait(60)
        received = time.perf_counter() - start
        thread.join()
        print(
            f"  {per_tx:>3} per transaction: {count / sent:,.0f} sent/s; {got:,} of {count:,} received, "
            f"{got / received:,.0f}/s end to end ({len(payload)} B payload)"
        )


def planner(url: str, n: int) -> None:
    """RSS and seconds of the tile planner's read and plan (the one process a build starts with) over n buildings
    in a real store, measured in a child process."""
    schema = f"scale_plan_{n}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    store_url = f"{url}?schema={schema}"
    open_store(store_url).close()
    city = buildings(n, seed=n).drop_columns(["district"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}, public")
        for (index,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'assets' AND indexname <> "
            "'assets_pkey'",
            (schema,),
        ).fetchall():
            conn.execute(f"DROP INDEX {index}")  # the planner reads by kind and id only; loads faster without
        with conn.cursor().copy(
            f"COPY assets ({COLUMNS.removesuffix(', district')}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            copy.write(csv_of(city))
        conn.execute("VACUUM ANALYZE assets")
    child = subprocess.run(
        [sys.executable, __file__, "--planner-child", store_url], capture_output=True, text=True, check=True
    )
    base, peak, read_s, plan_s, tiles = (float(v) for v in child.stdout.split())
    print(
        f"  {n:>9,} buildings: read {read_s:.1f} s + plan {plan_s:.1f} s, {tiles:,.0f} tiles; RSS {base:,.0f} → "
        f"peak {peak:,.0f} MB: {(peak - base) / n * 1e6:,.0f} MB per million assets"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def planner_child(store_url: str) -> None:
    from cim.store.meshes import MeshStore
    from cim.tiling.assets import read_assets_and_hashes
    from cim.tiling.build import _join_meshes
    from cim.tiling.plan import plan_tiles
    from cim.tiling.quadtree import TreeLimits

    store = open_store(store_url)
    base = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20  # RSS now
    start = time.perf_counter()
    assets, _ = read_assets_and_hashes(store)
    read_s = time.perf_counter() - start
    # the mesh index a build joins (MeshStore.digests(): 24 vertices, 12 triangles per LOD1 box, a 64-bit digest)
    index = pa.table(
        {
            "asset_id": assets.column("id"),
            "lon": pc.divide(pc.add(assets.column("min_x"), assets.column("max_x")), 2),
            "lat": pc.divide(pc.add(assets.column("min_y"), assets.column("max_y")), 2),
            "h": pa.array(np.full(assets.num_rows, 4.0)),
            "vertex_count": pa.array(np.full(assets.num_rows, 24, np.int32)),
            "triangle_count": pa.array(np.full(assets.num_rows, 12, np.int32)),
            "digest": pa.array(np.arange(assets.num_rows, dtype=np.uint64)),
        }
    )
    assets, _, _ = _join_meshes(assets, cast(MeshStore, SimpleNamespace(digests=lambda: index)))
    start = time.perf_counter()
    plan = plan_tiles(assets, TreeLimits())
    plan_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(base, peak, read_s, plan_s, len(plan.tiles))


def connections(url: str) -> None:
    with psycopg.connect(url) as conn:
        most = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])  # type: ignore[index]
    usable = most - reserved
    print(
        f"  max_connections {most}, reserved {reserved}: {usable} usable = {usable // POOL_SIZE} server "
        f"processes at the store's pool of {POOL_SIZE} (with nothing else connected)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@localhost:5432/postgres", help="PostgreSQL to use")
    parser.add_argument("--sizes", default="1000000,3000000", help="buildings, comma separated")
    parser.add_argument("--runs", type=int, default=7, help="runs of each read (the median is printed)")
    parser.add_argument("--notifies", type=int, default=20000, help="NOTIFYs sent per round")
    parser.add_argument("--no-versions", action="store_true", help="skip asset_versions and its VACUUM")
    parser.add_argument("--keep", action="store_true", help="keep the schemas scale_bench_<n>")
    parser.add_argument("--reuse", action="store_true", help="measure the reads on the kept schemas, no load")
    parser.add_argument("--planner-sizes", default="300000,1000000,3000000", help="buildings for the planner's RSS")
    parser.add_argument("--only", choices=("tables", "planner", "notify"), help="run one stage only")
    parser.add_argument("--planner-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.planner_child:
        planner_child(args.planner_child)
        return
    with psycopg.connect(args.url) as conn:
        print(f"PostgreSQL {conn.info.server_version}, {conn.execute('SELECT postgis_lib_version()').fetchone()[0]}")  # type: ignore[index]
    if args.only in (None, "tables"):
        for n in (int(s) for s in args.sizes.split(",")):
            one_size(args.url, n, args.runs, args.keep, not args.no_versions, args.reuse)
    if args.only in (None, "planner"):
        print("\ntile planner (read_assets_and_hashes + plan_tiles) on a PostGIS store, in a child process:")
        for n in (int(s) for s in args.planner_sizes.split(",")):
            planner(args.url, n)
    if args.only in (None, "notify"):
        print("\nNOTIFY to one listener:")
        notify_rate(args.url, args.notifies)
        print("connections:")
        connections(args.url)


if __name__ == "__main__":
    main()
