"""Machine dispatch benchmark: alerts at a steady rate through ``CaseService.on_alert`` → a dispatched (or joined)
case committed in the store; the latency of each alert from ``on_alert`` to its batch's commit.

    .venv/bin/python bench/case_dispatch_bench.py [--store duckdb|postgis|URL] [--rate 100] [--seconds 20]
                                          [--sensors 3000] [--repeat 0.2]

The city is a 10 × 10 km square split into 4 districts, 16 streets and 256 grid cells (area assets as the areas
branch writes them), lifts placed at random with a lift sensor each, a unit per district and a team per street.
Alerts come at ``--rate`` a second from random sensors; a share ``--repeat`` of them is a second alert of a sensor
already alerted (they join its case). At the end every alert is checked to be held by a case (no alert lost) and
the p50/p99/max latency, the batches and the cases are printed. The target (issue 21): p99 ≤ 1 s at 100 alerts/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import shapely

from cim.cases import CaseService, CaseServiceOptions, case_rules
from cim.cases.config import area_tree, build_units, save_table
from cim.model import Alert, Asset, AssetBatch, Kind
from cim.store import Store, open_store
from cim.store import cases as case_store

W, S, SIDE = 121.40, 31.10, 0.1  # about 10 km


def areas() -> list[Asset]:
    out = [Asset(id="area:310000", kind=Kind.CITY, geom=shapely.box(W, S, W + SIDE, S + SIDE), name="city",
                 props={"code": "310000"})]  # fmt: skip
    for d in range(4):
        dx, dy = (d % 2) * SIDE / 2, (d // 2) * SIDE / 2
        dcode = f"3101{d:02d}"
        out.append(_area(dcode, Kind.DISTRICT, "310000", W + dx, S + dy, SIDE / 2))
        for s in range(4):
            sx, sy = dx + (s % 2) * SIDE / 4, dy + (s // 2) * SIDE / 4
            scode = f"{dcode}{s:03d}"
            out.append(_area(scode, Kind.STREET, dcode, W + sx, S + sy, SIDE / 4))
            for c in range(16):
                cx, cy = sx + (c % 4) * SIDE / 16, sy + (c // 4) * SIDE / 16
                out.append(_area(f"{scode}{c:03d}", Kind.GRID_CELL, scode, W + cx, S + cy, SIDE / 16))
    return out


def _area(code: str, kind: Kind, parent: str, x: float, y: float, size: float) -> Asset:
    return Asset(id=f"area:{code}", kind=kind, geom=shapely.box(x, y, x + size, y + size), name=code,
                 parent_id=f"area:{parent}", props={"code": code, "name_en": code})  # fmt: skip


def city(store: Store, sensors: int, rng: random.Random) -> list[str]:
    assets = areas()
    ids = []
    for i in range(sensors):
        p = shapely.Point(W + rng.random() * SIDE, S + rng.random() * SIDE)
        assets.append(Asset(id=f"lift:{i}", kind=Kind.LIFT, geom=p))
        assets.append(Asset(id=f"s-{i}", kind=Kind.SENSOR, geom=p, parent_id=f"lift:{i}",
                            props={"quantity": "lift_status"}))  # fmt: skip
        ids.append(f"s-{i}")
    store.upsert_assets(AssetBatch.from_assets(assets))
    units = [
        {"id": "city", "name": "city", "categories": ["lift_fault"]},
        {"per": "district", "id": "d-{code}", "categories": ["lift_fault"], "reports_to": "city"},
        {"per": "street", "id": "t-{code}", "categories": ["lift_fault"], "reports_to": "d-{parent}"},
    ]
    save_table(store, build_units(units, area_tree(store)))
    return ids


async def run(url: str, rate: float, seconds: float, sensors: int, repeat: float) -> None:
    rng = random.Random(7)
    with open_store(url) as store:
        ids = city(store, sensors, rng)
        service = CaseService(store, rules=case_rules([{"quantity": "lift_status", "category": "lift_fault"}]),
                              options=CaseServiceOptions())  # fmt: skip
        await service.start()
        sent: list[Alert] = []
        started = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            target = started + i / rate
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            sensor = rng.choice([a.sensor_id for a in sent]) if sent and rng.random() < repeat else rng.choice(ids)
            at = datetime.now(UTC)
            alert = Alert(id=f"{sensor}:status|{sensor}|{uuid.uuid4().hex}", rule=f"{sensor}:status",
                          sensor_id=sensor, opened_at=at, severity="critical", message="bench")  # fmt: skip
            sent.append(alert)
            service.on_alert(alert)
        while service.stats()["queue"]:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        stats = service.stats()
        latencies = sorted(service._latencies)
        await service.stop()
        held = case_store.cases_of_alerts(store, [a.id for a in sent])
        _, cases = case_store.list_cases(store, case_store.CaseFilter(limit=1))
    lost = len(sent) - len(held)
    print(f"store {url.split('?')[0][:40]}: {len(sent)} alerts in {elapsed:.1f} s ({len(sent) / elapsed:.0f}/s)")
    print(f"  cases {cases}, opened {stats['opened_by_machine']}, joined {stats['joined']}, lost {lost}")
    print(f"  batches {stats['batches']}, last batch {stats['last_batch_ms']} ms")
    q = statistics.quantiles(latencies, n=100)
    print(f"  latency on_alert → committed: p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="duckdb")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sensors", type=int, default=3000)
    parser.add_argument("--repeat", type=float, default=0.2)
    args = parser.parse_args()
    schema = None
    if args.store == "duckdb":
        url = str(Path(tempfile.mkdtemp(prefix="cases-bench-")) / "bench.duckdb")
    elif args.store == "postgis":
        schema = "bench_" + uuid.uuid4().hex[:8]
        url = f"postgresql://postgres@127.0.0.1:5432/cim_test?schema={schema}"
    else:
        url = args.store
    try:
        asyncio.run(run(url, args.rate, args.seconds, args.sensors, args.repeat))
    finally:
        if schema is not None:
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/cim_test", autocommit=True) as con:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
