"""Cases under live load on a real server (issue 21): machine dispatch at 100 alerts/s, then 50 clients racing
transitions for 60 s — on each store.

The demo city (``pipelines/shanghai-demo.toml``: areas, units, 20,000 buildings, thousands of sensors) is built once
into a work folder; ``cim serve`` runs on it as its own process, with live sensors fed over HTTP.

1. **Alert → dispatched case.** Readings that put sensors into alarm (gas pressure below its threshold, water above
   its, lifts in fault) are posted at ``--alerts-per-s`` for ``--alert-seconds``, each stamped with the time it is
   sent. Afterwards, from the store: every alert opened is in exactly one case (none lost, none twice), how many
   joined a case another alert had opened (duplicates), and the latency from the reading's time to the moment its
   alert was in a dispatched case (``case_alerts.added_at``, written in the dispatching transaction): p50/p99.
2. **Concurrent transitions.** ``--clients`` clients, as the command centre, each read a random case of a small
   shared set (so they collide), pick an allowed action and send it with the version they read, for ``--seconds``.
   Then every case's log is checked: steps 1…n without a gap, its hash chain intact, its version n, its state the
   last step's — and the 200 answers per case equal the steps added (no lost update). Any 5xx is counted.

    .venv/bin/python bench/cases_live_bench.py --stores duckdb,postgis --work /tmp/cim-cases

Targets: alert → dispatched case p99 ≤ 1 s at 100 alerts/s, no alert lost, duplicates joined; 50 clients for 60 s:
0 lost updates, 0 5xx, every log consistent with its state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from load_bench import build_city, serving  # bench/ is on the path when a bench runs as a script

POSTGRES = os.environ.get("CIM_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/cim_test")
TOKEN = "bench-token"
NOTES = {"return": "not ours", "reject": "not done", "reopen": "came back", "dismiss": "not a case"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="duckdb", help="comma-separated: duckdb, postgis")
    parser.add_argument("--work", type=Path, default=None, help="folder to build the city in (kept, reused)")
    parser.add_argument("--alerts-per-s", type=float, default=100.0)
    parser.add_argument("--alert-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cases", type=int, default=200, help="cases the clients share (fewer: more collisions)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cim-cases-"))
    work.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%H%M%S")  # a new store each run: sensors still in alarm from a run before open no alert
    for kind in args.stores.split(","):
        store = str(work / f"city-{run}.duckdb") if kind == "duckdb" else f"{POSTGRES}?schema=cases_bench_{run}"
        tiles = work / f"tiles-{kind}"
        print(f"\n== {kind}")
        build_city(store, tiles / "shanghai")
        try:
            run_store(kind, store, tiles, args)
        finally:
            if kind == "postgis":
                _drop_schema(f"cases_bench_{run}")


def run_store(kind: str, store: str, tiles: Path, args: argparse.Namespace) -> None:
    with serving(kind, store, tiles, env={"CIM_WRITE_TOKEN": TOKEN}) as (base, _):
        sent = asyncio.run(raise_alerts(base, args.alerts_per_s, args.alert_seconds))
        time.sleep(3)  # the last batch reaches the store
        opened = store_alerts(base)
        asyncio.run(race_transitions(base, args.clients, args.seconds, args.cases))
    report_dispatch(store, opened, sent)  # from the store, once the server has let go of it


async def raise_alerts(base: str, per_s: float, seconds: float) -> dict[str, float]:
    """Post alarming readings for sensors not in alarm yet, at ``per_s``; sensor id → send time (epoch s)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        sensors = (await http.get("/iot/sensors")).json()
        alarming = [(s["id"], _alarm(s)) for s in sensors if _alarm(s) is not None]
        random.Random(21).shuffle(alarming)
        wanted = min(len(alarming), int(per_s * seconds))
        print(f"  {len(sensors):,} sensors, {len(alarming):,} can alarm; sending {wanted:,} at {per_s:.0f}/s")
        sent: dict[str, float] = {}
        statuses: Counter[int] = Counter()
        start = time.monotonic()
        batch = max(1, int(per_s / 10))  # ten posts a second
        for i in range(0, wanted, batch):
            await asyncio.sleep(max(0.0, start + i / per_s - time.monotonic()))
            now = time.time()
            chunk = alarming[i : i + batch]
            body = [{"sensor_id": sid, "time": now, **reading} for sid, reading in chunk]
            answer = await http.post("/iot/readings", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            statuses[answer.status_code] += 1
            for sid, _ in chunk:
                sent[sid] = now
        print(f"  sent in {time.monotonic() - start:.1f} s; answers {dict(statuses)}")
        return sent


def _alarm(sensor: dict[str, Any]) -> dict[str, Any] | None:
    quantity = sensor.get("quantity")
    if quantity == "gas_pressure":
        return {"value": 50.0}
    if quantity == "water_level":
        return {"value": 5.0}
    if quantity == "lift_status":
        return {"status": "fault"}
    return None


def store_alerts(base: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=base, timeout=60) as http:
        return list(http.get("/alerts", params={"open": "true"}).json())


def report_dispatch(store_url: str, open_alerts: list[dict[str, Any]], sent: dict[str, float]) -> None:
    """Every alert in one case; latency reading → case, from the case_alerts times the server wrote."""
    from cim.store import open_store
    from cim.store.cases import alert_case_times

    ours = [a for a in open_alerts if a["sensor_id"] in sent]
    with open_store(store_url) as store:
        found = alert_case_times(store, [a["id"] for a in ours])
    lost = [a["id"] for a in ours if a["id"] not in found]
    cases = Counter(case_id for case_id, _ in found.values())
    latencies = sorted(
        (added.timestamp() - sent[a["sensor_id"]]) for a in ours if a["id"] in found for _, added in [found[a["id"]]]
    )
    joined = sum(n - 1 for n in cases.values())
    print(
        f"  alerts opened {len(ours):,}; in a case {len(found):,}; LOST {len(lost)}; cases {len(cases):,}; "
        f"joined (duplicates) {joined:,}"
    )
    if latencies:
        p = _percentiles(latencies)
        print(
            f"  alert → dispatched case: p50 {p[50] * 1000:.0f} ms, p99 {p[99] * 1000:.0f} ms, "
            f"max {p[100] * 1000:.0f} ms"
        )


async def race_transitions(base: str, clients: int, seconds: float, count: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
        ids = []
        for i in range(count):
            answer = await http.post(
                "/cases",
                json={"category": "overflowing_bin", "lon": 121.47 + (i % 20) * 0.01, "lat": 31.23, "title": f"b{i}"},
            )
            answer.raise_for_status()
            ids.append(answer.json()["id"])
        start_versions = {i: (await http.get(f"/cases/{i}")).json()["properties"]["version"] for i in ids}
        successes: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        async def client(n: int) -> None:
            rng = random.Random(n)
            while time.monotonic() < deadline:
                case_id = rng.choice(ids)
                read = (await http.get(f"/cases/{case_id}")).json()["properties"]
                actions = [a for a in read["allowed_actions"] if a not in ("dispatch", "dismiss")] or ["note"]
                action = rng.choice(actions)
                body = {"action": action, "version": read["version"], "actor": f"client {n}"}
                if action in NOTES:
                    body["note"] = NOTES[action]
                began = time.perf_counter()
                answer = await http.post(f"/cases/{case_id}/transitions", json=body)
                latencies.append(time.perf_counter() - began)
                statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    successes[case_id] += 1

        await asyncio.gather(*(client(n) for n in range(clients)))
        served = sum(statuses.values())
        p = _percentiles(sorted(latencies))
        print(
            f"  {clients} clients × {seconds:.0f} s: {served:,} transitions sent ({served / seconds:.0f}/s), "
            f"answers {dict(sorted(statuses.items()))}; p50 {p[50] * 1000:.0f} ms, p99 {p[99] * 1000:.0f} ms"
        )
        lost = inconsistent = 0
        for case_id in ids:
            detail = (await http.get(f"/cases/{case_id}")).json()
            timeline, props = detail["timeline"], detail["properties"]
            numbered = [e["seq"] for e in timeline] == list(range(1, len(timeline) + 1))
            if not numbered or props["version"] != len(timeline) or timeline[-1]["to_state"] != props["state"]:
                inconsistent += 1
            if props["version"] - start_versions[case_id] != successes[case_id]:
                lost += 1
        fivexx = sum(n for s, n in statuses.items() if s >= 500)
        print(f"  lost updates {lost}; 5xx {fivexx}; logs inconsistent with their case {inconsistent}")


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _percentiles(values: list[float]) -> dict[int, float]:
    if not values:
        return {50: 0.0, 99: 0.0, 100: 0.0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {50: q[49], 99: q[98], 100: values[-1]}


if __name__ == "__main__":
    main()
