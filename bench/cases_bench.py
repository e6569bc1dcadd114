"""Cases benchmark: a year of closed cases and their logs, then a filtered case list and a month's assessment.

Builds N cases (default 1,000,000) with E events each (default 10: 10,000,000) over 12 months, 16 districts,
~200 streets, ~5,000 grid cells and 48 units, bulk-loaded in report order (Arrow into DuckDB, COPY into PostGIS),
then times through the store's own functions (median of --runs runs, each on another district or place):

- a case list: closed cases of one district in one month, newest 100, with the number matched
  (:func:`cim.store.cases.list_cases`);
- a case list by bbox: the newest 100 cases in a ~1 km square, with the number matched;
- a month's assessment per district (:func:`cim.store.assessment.assess`).

    .venv/bin/python bench/cases_bench.py                        # 1,000,000 cases, DuckDB and PostGIS
    .venv/bin/python bench/cases_bench.py --cases 20000 --backend duckdb

Targets (issue 21): a filtered case list p50 ≤ 50 ms; a month's assessment per district ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import shapely

from cim.store import open_store
from cim.store.assessment import assess
from cim.store.cases import CaseFilter, list_cases
from cim.store.duckdb import spatial_extension_path

START = datetime(2025, 12, 1, tzinfo=UTC)
MONTHS = 12
WEST, SOUTH, SIDE = 121.2, 30.9, 0.5  # a 50 km square over central Shanghai
DISTRICTS, STREETS, CELLS, UNITS = 16, 208, 5_200, 48
CHUNK = 100_000  # cases generated and loaded at a time
STEPS = ("report", "file", "dispatch", "accept", "note", "handle", "verify", "close", "reopen", "note")
STATES = ("reported", "filed", "dispatched", "in_progress", "in_progress", "handled", "verified", "closed", "filed",
          "filed")  # fmt: skip
CATEGORIES = ("manhole_cover", "street_light_out", "lift_fault", "overflowing_bin", "gas_leak", "pipe_burst",
              "waterlogging", "illegal_parking")  # fmt: skip
LIST_TARGET_MS, ASSESS_TARGET_MS = 50.0, 200.0


def district_code(i: np.ndarray) -> np.ndarray:
    return np.char.add("3101", np.char.zfill(i.astype(str), 2))


def cases_chunk(start: int, size: int, total: int, rng: np.random.Generator) -> pa.Table:
    """``size`` closed cases from number ``start``, reported in order over the year."""
    year_s = (START.replace(year=START.year + 1) - START).total_seconds()
    offset = (np.arange(start, start + size) + rng.random(size)) / total * year_s
    reported = np.datetime64(START.replace(tzinfo=None), "us") + (offset * 1e6).astype("timedelta64[us]")
    cell = rng.integers(0, CELLS, size)
    street, district = cell // (CELLS // STREETS), cell // (CELLS // DISTRICTS)
    cx, cy = cell % 72, cell // 72  # cells on a 72 × 73 lattice over the square
    lon = WEST + (cx + rng.random(size)) * SIDE / 72
    lat = SOUTH + (cy + rng.random(size)) * SIDE / 73
    minutes = lambda low, high: (rng.uniform(low, high, size) * 60e6).astype("timedelta64[us]")  # noqa: E731
    filed = reported + minutes(1, 10)
    dispatched = filed + minutes(1, 30)
    handled = dispatched + (rng.exponential(120, size) * 60e6).astype("timedelta64[us]")
    closed = handled + minutes(10, 120)
    deadline = reported + minutes(120, 120)
    ts = lambda a: pa.array(a, pa.timestamp("us", tz="UTC"))  # noqa: E731
    empty = pa.array(["{}"] * size)
    ids = np.char.add("K", np.char.zfill(np.arange(start, start + size).astype(str), 8))
    cats = np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), size)]
    return pa.table({
        "id": ids, "category": cats, "source": np.where(rng.random(size) < 0.7, "sensor", "hotline"),
        "severity": np.full(size, "normal"), "state": np.full(size, "closed"), "resolution": np.full(size, "resolved"),
        "title": np.full(size, ""), "description": np.full(size, ""), "reporter": np.full(size, "machine"),
        "lon": lon, "lat": lat, "grid_cell": np.char.add("g", cell.astype(str)),
        "street": np.char.add("s", street.astype(str)), "district": district_code(district),
        "asset_ids": empty, "alert_ids": empty, "unit_id": np.char.add("u", (district * 3 + cell % 3).astype(str)),
        "level": np.full(size, "street"), "reported_at": ts(reported), "deadline": ts(deadline),
        "filed_at": ts(filed), "dispatched_at": ts(dispatched), "handled_at": ts(handled), "closed_at": ts(closed),
        "dispatched_by_machine": rng.random(size) < 0.7, "reopened": (rng.random(size) < 0.03).astype(np.int32),
        "version": np.full(size, len(STEPS), np.int32), "updated_at": ts(closed),
        "last_hash": pc.utf8_lpad(pa.array(ids), 64, "0"),
    })  # fmt: skip


def events_chunk(cases: pa.Table, per_case: int) -> pa.Table:
    """``per_case`` events of each case: the loop's steps, then notes, a minute or more apart."""
    n = cases.num_rows
    seq = np.tile(np.arange(1, per_case + 1, dtype=np.int32), n)
    step = np.minimum(seq - 1, len(STEPS) - 1)
    reported = cases.column("reported_at").to_numpy().astype("datetime64[us]")
    at = np.repeat(reported, per_case) + (seq.astype(np.int64) * 60_000_000).astype("timedelta64[us]")
    key = np.repeat(np.arange(n, dtype=np.int64), per_case) * 1000 + seq
    hashes = pc.utf8_lpad(pc.cast(pa.array(key), pa.string()), 64, "0")
    prev = pc.if_else(pa.array(seq == 1), "", pc.utf8_lpad(pc.cast(pa.array(key - 1), pa.string()), 64, "0"))
    return pa.table({
        "case_id": pc.take(cases.column("id"), pa.array(np.repeat(np.arange(n), per_case))), "seq": seq,
        "action": np.array(STEPS)[step], "from_state": np.array(("", *STATES[:-1]))[step],
        "to_state": np.array(STATES)[step], "actor": np.full(n * per_case, "machine"),
        "unit_id": np.full(n * per_case, "u1"), "acted_at": pa.array(at, pa.timestamp("us", tz="UTC")),
        "at_offset_s": np.zeros(n * per_case, np.int32), "note": np.full(n * per_case, ""),
        "photos": pa.array(["{}"] * (n * per_case)), "data": pa.array(["{}"] * (n * per_case)),
        "prev_hash": prev, "hash": hashes,
    })  # fmt: skip


def chunks(total: int, per_case: int) -> Iterator[tuple[pa.Table, pa.Table]]:
    rng = np.random.default_rng(21)
    for start in range(0, total, CHUNK):
        cases = cases_chunk(start, min(CHUNK, total - start), total, rng)
        yield cases, events_chunk(cases, per_case)


def load_duckdb(path: Path, total: int, per_case: int) -> float:
    open_store(str(path)).close()  # the schema
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    con.execute(f"LOAD '{spatial_extension_path()}'")
    for cases, events in chunks(total, per_case):
        con.register("batch_cases", cases)
        con.register("batch_events", events)
        con.execute(
            "INSERT INTO cases BY NAME SELECT * REPLACE (CAST([] AS VARCHAR[]) AS asset_ids, CAST([] AS VARCHAR[]) AS "
            "alert_ids), ST_Point(lon, lat) AS geom FROM batch_cases"
        )
        con.execute(
            "INSERT INTO case_events BY NAME SELECT * REPLACE (NULLIF(from_state, '') AS from_state, "
            "CAST([] AS VARCHAR[]) AS photos) FROM batch_events"
        )
        con.unregister("batch_cases")
        con.unregister("batch_events")
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - started


def load_postgis(url: str, total: int, per_case: int) -> float:
    open_store(url).close()  # the schema
    conninfo, schema = url.split("?schema=")
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(f"SET search_path TO {schema}, public")
        for cases, events in chunks(total, per_case):
            points = shapely.points(cases.column("lon").to_numpy(), cases.column("lat").to_numpy())
            ewkb = shapely.to_wkb(shapely.set_srid(points, 4326), hex=True, include_srid=True)
            copy_csv(con, "cases", cases.append_column("geom", pa.array(ewkb.astype(object), pa.string())))
            copy_csv(con, "case_events", events)
        for table in ("cases", "case_events"):
            con.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def copy_csv(con: psycopg.Connection[Any], table: str, rows: pa.Table) -> None:
    with con.cursor().copy(f"COPY {table} ({', '.join(rows.column_names)}) FROM STDIN (FORMAT csv)") as copy:
        for offset in range(0, rows.num_rows, 50_000):
            buffer = io.BytesIO()
            pacsv.write_csv(rows.slice(offset, 50_000), buffer, pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())


def median_ms(runs: int, call: Callable[[int], object]) -> float:
    call(0)  # warm
    times = []
    for n in range(runs):
        started = time.perf_counter()
        call(n)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(name: str, url: str, total: int, runs: int) -> None:
    with open_store(url) as store:
        month = [START + timedelta(days=30.4 * m) for m in range(MONTHS + 1)]

        def by_district(n: int) -> object:
            m = n % MONTHS
            f = CaseFilter(states=("closed",), area=f"3101{n % DISTRICTS:02d}", since=month[m], until=month[m + 1])
            page, matched = list_cases(store, f)
            assert len(page) == min(100, matched or 0)
            return page

        def by_bbox(n: int) -> object:
            x, y = WEST + (n * 0.037) % SIDE, SOUTH + (n * 0.053) % SIDE
            return list_cases(store, CaseFilter(bbox=(x, y, x + 0.01, y + 0.01)))

        def month_per_district(n: int) -> object:
            rows = assess(store, level="district", start=month[n % MONTHS], end=month[n % MONTHS + 1])
            assert len(rows) == DISTRICTS
            return rows

        listed = median_ms(runs, by_district)
        boxed = median_ms(runs, by_bbox)
        assessed = median_ms(runs, month_per_district)
        matched = list_cases(store, CaseFilter(area="310100", since=month[0], until=month[1]))[1]
    print(f"{name:8} case list, closed × district × month (~{matched:,} matched), newest 100 + count: "
          f"p50 {listed:6.1f} ms   target ≤ {LIST_TARGET_MS:.0f} ms")  # fmt: skip
    print(f"{name:8} case list, ~1 km bbox, newest 100 + count: p50 {boxed:6.1f} ms   target ≤ {LIST_TARGET_MS:.0f} ms")
    print(f"{name:8} a month's assessment per district ({DISTRICTS} rows, ~{total // MONTHS:,} cases): "
          f"p50 {assessed:6.1f} ms   target ≤ {ASSESS_TARGET_MS:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1_000_000, help="number of cases (default 1,000,000)")
    parser.add_argument("--events-per-case", type=int, default=10, help="events of each case (default 10)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each query (default 15)")
    parser.add_argument("--backend", choices=["duckdb", "postgis", "both"], default="both")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/cim_test")
    parser.add_argument("--schema", default="bench_cases", help="the PostGIS schema, dropped at the end")
    parser.add_argument("--keep", action="store_true", help="keep the PostGIS schema (to EXPLAIN its queries)")
    args = parser.parse_args()
    total, per_case = args.cases, args.events_per_case
    print(f"{total:,} cases, {total * per_case:,} events")
    if args.backend in ("duckdb", "both"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "cases.duckdb"
            seconds = load_duckdb(path, total, per_case)
            print(f"duckdb   load: {seconds:.1f} s ({path.stat().st_size / 2**20:,.0f} MB)")
            measure("duckdb", str(path), total, args.runs)
    if args.backend in ("postgis", "both"):
        url = f"{args.postgres}?schema={args.schema}"
        with psycopg.connect(args.postgres, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
        try:
            seconds = load_postgis(url, total, per_case)
            print(f"postgis  load: {seconds:.1f} s")
            measure("postgis", url, total, args.runs)
        finally:
            if not args.keep:
                with psycopg.connect(args.postgres, autocommit=True) as con:
                    con.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")


if __name__ == "__main__":
    main()
