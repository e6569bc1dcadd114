"""The scale-out modes of bench/iot_bench.py (``--only shared``, ``--only dedupe``): several service processes
sharing one MQTT subscription into PostGIS, and the cost of storing each PostGIS reading once.

    .venv/bin/python bench/iot_bench.py --only shared [--readings 200000] [--members 2] [--runs 3] [--store URL]
    .venv/bin/python bench/iot_bench.py --only dedupe
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import aiomqtt
from iot_bench import (
    DRAIN_TIMEOUT,
    POSTGRES,
    ROOT,
    Broker,
    declare,
    drain_service_in_child,
    load,
    publish_bulk,
    register_session,
)


async def shared(args: argparse.Namespace) -> None:
    """Drain N readings into one PostGIS schema with one service process, then with ``--members`` processes sharing
    the subscription ($share/bench/cim/+/state), each a persistent session the broker dealt N/members to while
    offline. The group's rate is N over the time from the first member's start to the last one's end."""
    import psycopg

    from cim.store import open_store

    store_url = args.store
    if "://" not in store_url:
        store_url = POSTGRES.rsplit("/", 1)[0] + f"/cim_test?schema=bench_share_{os.getpid()}"
    conninfo, schema = store_url.split("?schema=")
    with open_store(store_url) as store:
        declare(store, args.sensors)
    broker = Broker()
    child_args = argparse.Namespace(**(vars(args) | {"store": store_url}))
    rates: dict[int, list[float]] = {1: [], args.members: []}
    print(f"load before: {load()}", flush=True)
    try:
        for run in range(1, args.runs + 1):
            for members in rates:
                n = args.readings - args.readings % members
                with psycopg.connect(conninfo, autocommit=True) as con:
                    con.execute(f"TRUNCATE {schema}.readings, {schema}.sensor_state")
                # a group of its own: the broker deals a group's messages over every session in it, offline ones too
                group = f"bench{time.monotonic_ns()}"
                ids = [f"{group}-{k}" for k in range(members)]
                for client_id in ids:
                    await register_session(broker.port, client_id, f"$share/{group}/cim/+/state")
                pub_rate = await asyncio.to_thread(publish_bulk, broker.port, n, args.sensors)
                share = ["--share-group", group, "--expect", str(n // members)]
                results = await asyncio.wait_for(
                    asyncio.gather(
                        *(drain_service_in_child(ROOT, child_args, broker.port, cid, share=share) for cid in ids)
                    ),
                    DRAIN_TIMEOUT,
                )
                first = min(results, key=lambda r: r["span"][0])["stats"]["machine"][0]
                last = max(results, key=lambda r: r["span"][1])["stats"]["machine"][1]
                (busy0, all0, pg0, mq0), (busy1, all1, pg1, mq1) = first, last
                for client_id in ids:  # end the sessions: the next round's group must not deal to them
                    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id, clean_session=True):
                        pass
                span = max(r["span"][1] for r in results) - min(r["span"][0] for r in results)
                with psycopg.connect(conninfo, autocommit=True) as con:
                    rows = con.execute(f"SELECT count(*) FROM {schema}.readings").fetchone()[0]  # type: ignore[index]
                rate = n / span
                rates[members].append(rate)
                cpu = sum(r["stats"]["cpu_s"] for r in results)
                each = ", ".join(f"{r['rate']:,.0f}/s" for r in results)
                print(
                    f"run {run}  {members} process{'es' if members > 1 else ''}: {rate:>8,.0f} readings/s "
                    f"({n:,} in {span:.2f} s; each {each}; rows {rows:,}; queued at {pub_rate:,.0f}/s)   "
                    f"CPU while draining: machine busy {busy1 - busy0:.1f} of {all1 - all0:.1f} core-s: services "
                    f"{cpu:.1f} s, postgres {pg1 - pg0:.1f} s, mosquitto {mq1 - mq0:.1f} s, "
                    f"other work {busy1 - busy0 - cpu - (pg1 - pg0) - (mq1 - mq0):.1f} s",
                    flush=True,
                )
        print(f"load after:  {load()}", flush=True)
        one, many = (statistics.median(rates[k]) for k in rates)
        print(
            f"medians of {args.runs} runs: 1 process {one:,.0f} readings/s, {args.members} processes "
            f"{many:,.0f} readings/s = {many / one:.2f}x",
            flush=True,
        )
    finally:
        broker.stop()
        if "://" not in args.store:
            with psycopg.connect(conninfo, autocommit=True) as con:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# --- the cost of each reading once (PostGIS) ---
def dedupe_cost(args: argparse.Namespace) -> None:
    """Batches of 20,000 readings into a PostGIS history of 2M, loaded four ways: plain INSERT (no dedupe), the
    store's anti-join, ON CONFLICT DO NOTHING on a unique (sensor_id, time) index, and both; median ms per batch."""
    import io

    import psycopg

    conninfo, schema = POSTGRES.rsplit("/", 1)[0] + "/cim_test", f"bench_dedupe_{os.getpid()}"
    sensors, batch, rounds = 1000, 20_000, 8
    first = datetime(2026, 1, 1, tzinfo=UTC)
    made = 0

    def rows(n: int) -> str:
        nonlocal made
        out = io.StringIO()
        for i in range(made, made + n):
            at = first + timedelta(seconds=i // sensors, microseconds=i % sensors)
            out.write(f"s{i % sensors},{at.isoformat()},{i % 97},\n")
        made += n
        return out.getvalue()

    plain = "INSERT INTO readings SELECT * FROM stage"
    store_s = (  # as cim.store.postgis.PostGISStore._load_readings
        "INSERT INTO readings SELECT DISTINCT ON (sensor_id, time) * FROM stage s WHERE NOT EXISTS "
        "(SELECT 1 FROM readings r WHERE r.sensor_id = s.sensor_id AND r.time = s.time) ON CONFLICT DO NOTHING"
    )
    conflict = "INSERT INTO readings SELECT * FROM stage ON CONFLICT DO NOTHING"
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
        con.execute(f"SET search_path TO {schema}")
        con.execute("SET jit = off")
        try:
            con.execute(
                "CREATE TABLE readings (sensor_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, "
                "value DOUBLE PRECISION, status TEXT)"
            )
            con.execute("CREATE INDEX readings_sensor_time ON readings (sensor_id, time)")
            con.execute("CREATE TEMP TABLE stage (LIKE readings)")
            for _ in range(100):
                with con.cursor().copy("COPY readings FROM STDIN (FORMAT csv)") as copy:
                    copy.write(rows(batch))
            con.execute("VACUUM ANALYZE readings")

            def run(label: str, statement: str) -> None:
                times = []
                for _ in range(rounds):
                    con.execute("TRUNCATE stage")
                    with con.cursor().copy("COPY stage FROM STDIN (FORMAT csv)") as copy:
                        copy.write(rows(batch))
                    started = time.perf_counter()
                    with con.transaction():
                        con.execute(statement)
                    times.append(time.perf_counter() - started)
                ms = statistics.median(times) * 1000
                print(f"  {label:58s} {ms:7.1f} ms per {batch:,} ({ms * 1000 / batch:.2f} µs/reading)", flush=True)

            print(f"load before: {load()}", flush=True)
            run("plain INSERT, index (sensor_id, time)", plain)
            run("the store's: anti-join + ON CONFLICT, same index", store_s)
            con.execute("DROP INDEX readings_sensor_time")
            con.execute("CREATE UNIQUE INDEX readings_sensor_time ON readings (sensor_id, time)")
            run("ON CONFLICT DO NOTHING alone, unique index", conflict)
            run("the store's, unique index", store_s)
            run("plain INSERT, unique index (fails on a duplicate)", plain)
            print(f"load after:  {load()}", flush=True)
        finally:
            con.execute(f"DROP SCHEMA {schema} CASCADE")
