"""History benchmark: a metered day for millions of meters into a store, then the questions asked of it.

    .venv/bin/python bench/history_bench.py                                  # 200M readings into DuckDB
    .venv/bin/python bench/history_bench.py --readings 20000000 --store postgis
    .venv/bin/python bench/history_bench.py --readings 2000000 --order time  # in the order they arrive live
    .venv/bin/python bench/history_bench.py --ingest 30 [--code ../main]     # live batches: append_readings only

A day of 15-minute readings (96 a meter) of ``--readings / 96`` gas meters goes in through the store's bulk path,
:meth:`SqlStore.load_history` — Arrow tables of ~1M readings, each appended through the same code as
``append_readings`` (raw history, latest state, and the merge into the minute, hour and day rollups), one
transaction each. ``--order block`` (the default) gives each table of ~10,000 meters in blocks of 1,280 meters, each
block interval by interval (its meters at 00:00, then at 00:15 …): a block's day fills one DuckDB row group, whose
zone maps then find one meter's rows in one row group and whose times are runs of one value (cheap to compress).
``--order sensor`` gives the table meter by meter (a head-end's daily file); ``--order time`` all meters interval
by interval, as the readings arrive live (its zone maps cannot narrow a meter's rows: every row group has them
all). Then it prints:

* the load rate (readings/s);
* one meter's last 24 hours (``Store.readings``), p50/p95 over ``--queries`` random meters (target p50 ≤ 20 ms);
* an hourly series of one district's meters summed over the day (``Store.reading_series(area=…, step="1h")``),
  the median of 5 (target ≤ 500 ms). Meters are spread over districts in consecutive blocks of ids, ``--per-district``
  each (100,000); the bench writes each meter's district into the ``asset_areas`` derived table directly and marks
  it fresh, instead of making 2M sensor assets with points and district polygons and locating them
  (cim.store.areas does that for a real city; the series query reads the same table either way);
* storage bytes per reading: the store's size / readings, and — DuckDB — the same for the rollups alone, as a
  day is kept once its raw readings (30 days) and then its minute rollups (90 days) are past their retention.

The generator is numpy-vectorised here (the same shape as cim.iot.meters.meter_day of the simulator helper, which
yields interval by interval: ``--order time``). Values are m³ with 0.001 resolution, mostly zero at night.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
if "--code" in sys.argv:  # --ingest against another tree (e.g. main, before this change)
    ROOT = Path(sys.argv[sys.argv.index("--code") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from cim.store import open_store  # noqa: E402
from cim.store.areas import asset_areas_sql  # noqa: E402
from cim.store.sqlstore import READINGS_SCHEMA, SqlStore  # noqa: E402

POSTGRES = os.environ.get("CIM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SLOTS = 96
TABLE_ROWS = 1_000_000
#: Meters of one block in --order block: a DuckDB row group (122,880 rows) holds one block's day.
BLOCK_METERS = 1_280


def meter_ids(first: int, count: int) -> pa.Array:
    numbers = pc.utf8_lpad(pa.array(np.arange(first, first + count)).cast(pa.string()), width=7, padding="0")
    return pc.binary_join_element_wise(pa.scalar("GM-"), numbers, "")


def slot_shares() -> np.ndarray:
    """A household's gas use over the day: breakfast, lunch and a larger evening peak, little at night."""
    hours = (np.arange(SLOTS) + 0.5) / 4
    curve = 0.05 + np.exp(-(((hours - 7.5) / 1.2) ** 2)) + 0.6 * np.exp(-(((hours - 12) / 1.0) ** 2))
    curve += 1.5 * np.exp(-(((hours - 18.5) / 1.5) ** 2))
    return np.asarray(curve / curve.sum())


def metered_day(meters: int, day: date, *, order: str, seed: int = 1) -> Iterator[pa.Table]:
    """A day of readings of ``meters`` meters as tables of ~1M rows: meter by meter (``sensor``) or interval by
    interval (``time``)."""
    midnight_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    shares = slot_shares()
    time_type = READINGS_SCHEMA.field("time").type
    if order in ("sensor", "block"):
        per_table = max(TABLE_ROWS // SLOTS // BLOCK_METERS, 1) * BLOCK_METERS
        for first in range(0, meters, per_table):
            count = min(per_table, meters - first)
            rng = np.random.default_rng([seed, first])
            daily = rng.lognormal(np.log(0.8) - 0.125, 0.5, count)
            values = daily[:, None] * shares[None, :] * rng.gamma(4.0, 0.25, (count, SLOTS))
            values[rng.random((count, SLOTS)) < 0.3] = 0.0
            times = midnight_us + np.arange(SLOTS, dtype=np.int64) * 900_000_000
            if order == "block":  # each block of meters interval by interval: [meter, slot] → [block, slot, meter]
                blocks = -(-count // BLOCK_METERS)
                padded = np.full((blocks * BLOCK_METERS, SLOTS), np.nan)
                padded[:count] = values
                index = np.arange(blocks * BLOCK_METERS).reshape(blocks, BLOCK_METERS)
                keep = (index < count)[:, None, :].repeat(SLOTS, axis=1).ravel()
                meter_index = np.broadcast_to(index[:, None, :], (blocks, SLOTS, BLOCK_METERS)).ravel()[keep]
                slot_times = np.broadcast_to(times[None, :, None], (blocks, SLOTS, BLOCK_METERS)).ravel()[keep]
                values = padded.reshape(blocks, BLOCK_METERS, SLOTS).transpose(0, 2, 1).ravel()[keep]
            else:
                meter_index, slot_times = np.repeat(np.arange(count), SLOTS), np.tile(times, count)
            yield pa.Table.from_arrays(
                [
                    meter_ids(first, count).take(pa.array(meter_index)),
                    pa.array(slot_times).cast(time_type),
                    pa.array(np.round(values.ravel(), 3)),
                    pa.nulls(count * SLOTS, pa.string()),
                ],
                schema=READINGS_SCHEMA,
            )
        return
    ids = meter_ids(0, meters)
    rng = np.random.default_rng(seed)
    daily = rng.lognormal(np.log(0.8) - 0.125, 0.5, meters)
    for slot in range(SLOTS):
        values = np.round(daily * shares[slot] * rng.gamma(4.0, 0.25, meters), 3)
        values[rng.random(meters) < 0.3] = 0.0
        for first in range(0, meters, TABLE_ROWS):
            count = min(TABLE_ROWS, meters - first)
            yield pa.Table.from_arrays(
                [
                    ids.slice(first, count),
                    pa.array(np.full(count, midnight_us + slot * 900_000_000, dtype=np.int64)).cast(time_type),
                    pa.array(values[first : first + count]),
                    pa.nulls(count, pa.string()),
                ],
                schema=READINGS_SCHEMA,
            )


def district_of(meter: int, per_district: int) -> str:
    return f"D{meter // per_district:02d}"


def assign_districts(store: SqlStore, meters: int, per_district: int) -> None:
    """Each meter's district straight into the ``asset_areas`` derived table, marked fresh (see the docstring)."""
    import hashlib

    p = store.dialect.param
    with store.change("writing the meters' districts"):
        store.execute("DROP TABLE IF EXISTS asset_areas")
        store.execute("CREATE TABLE asset_areas (id TEXT, grid_cell TEXT, street TEXT, district TEXT)")
        for first in range(0, meters, 1_000_000):
            count = min(1_000_000, meters - first)
            store.execute(
                "INSERT INTO asset_areas SELECT 'GM-' || lpad(CAST(i AS TEXT), 7, '0'), NULL, NULL, "
                f"'D' || lpad(CAST(CAST(floor(CAST(i AS DOUBLE PRECISION) / {p}) AS BIGINT) AS TEXT), 2, '0') "
                f"FROM generate_series(CAST({p} AS BIGINT), CAST({p} AS BIGINT)) AS t(i)",
                [per_district, first, first + count - 1],
            )
        digest = hashlib.sha256(asset_areas_sql(store.dialect).encode()).hexdigest()[:16]
        store.execute(
            f"INSERT INTO cim_meta VALUES ({p}, {p}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            ["derived:asset_areas", f"0:{digest}"],
        )
    if store.dialect.param == "%s":  # PostgreSQL: the planner's statistics of the new table
        store.execute("ANALYZE asset_areas")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def size_of(store: SqlStore, path: Path | None) -> dict[str, int]:
    if path is not None:
        store._execute("CHECKPOINT")
        return {"file": path.stat().st_size + (path.with_name(path.name + ".wal").stat().st_size
                                               if path.with_name(path.name + ".wal").exists() else 0)}  # fmt: skip
    rows = store.select(
        "SELECT CASE WHEN c.relname LIKE 'readings\\_p%%' OR c.relname = 'readings_default' THEN 'readings' "
        "ELSE c.relname END AS name, sum(pg_total_relation_size(c.oid)) AS bytes FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' "
        "GROUP BY 1"
    ).to_pylist()
    return {row["name"]: int(row["bytes"]) for row in rows}


def rollups_only_bytes(path: Path, tables: tuple[str, ...]) -> int:
    """DuckDB: the size of a fresh file holding only ``tables`` (what a day costs once the rest is past retention;
    DuckDB does not give a deleted table's space back to the file system, a copy shows the size)."""
    import duckdb

    target = path.with_name(f"rollups-{uuid.uuid4().hex[:6]}.duckdb")
    con = duckdb.connect(str(target))
    try:
        con.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
        for table in tables:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM src.{table}")  # in the store's order
        con.execute("DETACH src")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    size = target.stat().st_size
    target.unlink()
    return size


def ingest(batches: int, sensors: int, batch_size: int, folder: Path) -> None:
    """The store's side of the live ingest: ``append_readings`` of the IoT service's flush batches (Reading objects,
    ``batch_size`` of ``sensors`` sensors each, one a second per sensor), into a fresh DuckDB store."""
    from cim.model import Reading

    store = open_store(str(folder / "ingest.duckdb"))
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = np.random.default_rng(3)
    prepared = []
    for b in range(batches):
        values = rng.normal(1.0, 0.1, batch_size)
        prepared.append([
            Reading(sensor_id=f"s{i % sensors}", time=start + timedelta(seconds=(b * batch_size + i) // sensors),
                    value=float(values[i]))
            for i in range(batch_size)
        ])  # fmt: skip
    store.append_readings(prepared[0])  # warm
    started = time.perf_counter()
    for batch in prepared[1:]:
        store.append_readings(batch)
    seconds = time.perf_counter() - started
    n = (batches - 1) * batch_size
    print(f"ingest ({ROOT}): {n:,} readings of {sensors:,} sensors in batches of {batch_size:,}: "
          f"{n / seconds:,.0f} readings/s into history + state (+ rollups where the store has them)")  # fmt: skip
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000_000)
    parser.add_argument("--store", default="duckdb", help="duckdb, postgis, or a store URL")
    parser.add_argument("--order", choices=("block", "sensor", "time"), default="block")
    parser.add_argument("--per-district", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the DuckDB file goes")
    parser.add_argument("--memory-limit", default="8GB", help="DuckDB's memory_limit (a shared machine)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--ingest", type=int, metavar="BATCHES", help="measure append_readings of live batches only")
    parser.add_argument("--sensors", type=int, default=1000, help="(--ingest) sensors")
    parser.add_argument("--batch", type=int, default=20_000, help="(--ingest) readings a batch (the flush size)")
    parser.add_argument("--code", help="(--ingest) the tree to import cim from")
    args = parser.parse_args()
    if args.ingest:
        folder = Path(tempfile.mkdtemp(prefix="cim-ingest-", dir=args.dir))
        try:
            ingest(args.ingest, args.sensors, args.batch, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return

    meters = max(args.readings // SLOTS, 1)
    day = (datetime.now(UTC) - timedelta(days=1)).date()  # yesterday: inside the raw retention
    path: Path | None = None
    if args.store == "duckdb":
        folder = Path(tempfile.mkdtemp(prefix="cim-history-", dir=args.dir))
        path = folder / "history.duckdb"
        url = str(path)
    elif args.store == "postgis":
        url = POSTGRES.rsplit("/", 1)[0] + f"/cim_test?schema=hbench_{os.getpid()}"
    else:
        url = args.store
    print(f"cores: {os.cpu_count()}, load: {subprocess.getoutput('uptime').split('load average:')[-1].strip()}")
    print(f"store: {args.store}, meters: {meters:,}, readings: {meters * SLOTS:,}, order: {args.order}, day: {day}")
    store = open_store(url)
    assert isinstance(store, SqlStore)
    try:
        if path is not None:
            store._execute(f"SET memory_limit = '{args.memory_limit}'")
        started = time.perf_counter()
        written, last_report = 0, started
        for table in metered_day(meters, day, order=args.order):
            written += store.load_history([table])
            if time.perf_counter() - last_report > 30:
                last_report = time.perf_counter()
                rate = written / (last_report - started)
                print(f"  … {written:,} readings, {rate:,.0f}/s", flush=True)
        seconds = time.perf_counter() - started
        print(f"load: {written:,} readings in {seconds:,.1f} s = {written / seconds:,.0f} readings/s "
              "(raw + latest state + 3 rollups, one transaction per table of ~1M)", flush=True)  # fmt: skip
        assign_districts(store, meters, args.per_district)

        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        rng = np.random.default_rng(7)
        store.readings("GM-0000000", start=end - timedelta(days=1), end=end)  # warm
        times = []
        for meter in rng.integers(0, meters, args.queries):
            t = time.perf_counter()
            got = store.readings(f"GM-{meter:07d}", start=end - timedelta(days=1), end=end)
            times.append((time.perf_counter() - t) * 1000)
            assert len(got) == SLOTS, (meter, len(got))
        print(f"one meter's last 24 h ({SLOTS} readings): p50 {percentile(times, 0.5):.1f} ms, "
              f"p95 {percentile(times, 0.95):.1f} ms over {args.queries} meters (target p50 ≤ 20 ms)")  # fmt: skip

        district = district_of(meters // 2, args.per_district)
        in_district = min(args.per_district, meters)
        series_times, points = [], []
        for _ in range(5):
            t = time.perf_counter()
            points = store.reading_series(None, start=end - timedelta(days=1), end=end, step="1h", area=district)
            series_times.append((time.perf_counter() - t) * 1000)
        assert len(points) == 24 and sum(p.n for p in points) == in_district * SLOTS, (len(points), points[:1])
        print(f"hourly series of district {district} ({in_district:,} meters) over the day: median "
              f"{statistics.median(series_times):.0f} ms, min {min(series_times):.0f} ms (target ≤ 500 ms); "
              f"{len(points)} points, {sum(p.sum for p in points):,.0f} m³")  # fmt: skip

        sizes = size_of(store, path)
        total = sum(sizes.values())
        print(f"storage: {total / written:.2f} bytes/reading ({total / 1e9:.2f} GB: "
              + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in sorted(sizes.items())) + ")")  # fmt: skip
        if path is not None:
            store.close()
            after_raw = rollups_only_bytes(path, ("readings_1m", "readings_1h", "readings_1d"))
            after_minutes = rollups_only_bytes(path, ("readings_1h", "readings_1d"))
            print(f"  a day past raw retention (rollups 1m+1h+1d): {after_raw / written:.2f} bytes/reading; "
                  f"past minute retention (1h+1d): {after_minutes / written:.2f} bytes/reading")  # fmt: skip
    finally:
        if path is None or not args.keep:
            if path is not None:
                with __import__("contextlib").suppress(Exception):
                    store.close()
                shutil.rmtree(path.parent, ignore_errors=True)
            else:
                store.close()
                if args.store == "postgis" and not args.keep:
                    schema = url.rsplit("schema=", 1)[1]
                    with psycopg.connect(url.split("?")[0], autocommit=True) as con:
                        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
