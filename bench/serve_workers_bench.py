"""Many servers, one store (issue 27, part 3): ``cim serve --workers 1`` against ``--workers 2`` on one PostGIS
schema, requests/s on the items/queries read mix of bench/load_bench.py (asset by id, building items in a ~1 km bbox,
gas pipes deeper than 1 m by CQL2, old lifts), then live WebSocket pushes reaching clients of either worker.

A generated city (bench/api_bench.py's: ``--buildings`` buildings, a tenth as many lifts and pipes) is written once
into the schema ``serve_workers_bench``. Each round starts the server with 1 and then 2 workers and drives it with
``wrk`` (one thread, ``--clients`` connections) for ``--seconds``; the rounds alternate so both see the same
machine, and the medians and their ratio are printed with the load average (``wrk`` and PostgreSQL share the
2 cores with the server: the figure is a floor).

    .venv/bin/python bench/serve_workers_bench.py                       # 100k buildings, 3 rounds of 20 s
    .venv/bin/python bench/serve_workers_bench.py --buildings 20000 --rounds 2 --seconds 10

Target (issue 27): 2 workers ≥ 1.6× one worker's requests/s; WebSocket pushes reach clients of either worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import websockets
from api_bench import SIDE, S, W, build, free_port

from cim.iot import sensor_asset
from cim.model import AssetBatch
from cim.store import open_store

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("CIM_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/cim_test")
SCHEMA = "serve_workers_bench"
TOKEN = "bench-token"
SENSOR = "bench-sensor"
LUA = """
local paths, requests, i = {}, {}, 0
init = function(args)
  for line in io.lines(os.getenv("CIM_BENCH_PATHS")) do paths[#paths + 1] = line end
  for n, p in ipairs(paths) do requests[n] = wrk.format("GET", p) end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buildings", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rebuild", action="store_true", help="write the city again")
    args = parser.parse_args()
    url = f"{POSTGRES}?schema={SCHEMA}"
    work = Path(tempfile.mkdtemp(prefix="cim-workers-bench-"))
    (work / "tiles").mkdir()
    if args.rebuild or not _has_city(args.buildings):
        started = time.perf_counter()
        with psycopg.connect(POSTGRES, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        build(url, args.buildings)
        print(f"city of {args.buildings:,} buildings written in {time.perf_counter() - started:.0f} s")
    paths = mix(args.buildings)
    (work / "paths.txt").write_text("\n".join(paths) + "\n")
    (work / "mix.lua").write_text(LUA)
    rates: dict[int, list[float]] = {1: [], 2: []}
    print(f"{'round':>5} {'workers':>7} {'req/s':>8} {'non-2xx':>7} {'load 1m':>7}")
    for n in range(1, args.rounds + 1):
        for workers in (1, 2):
            with serving(url, work, workers) as base:
                _warm(base, paths)
                rps, bad = _wrk(base, work, args.clients, args.seconds)
            rates[workers].append(rps)
            print(f"{n:>5} {workers:>7} {rps:>8.0f} {bad:>7} {os.getloadavg()[0]:>7.1f}")
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"median req/s: 1 worker {one:.0f}, 2 workers {two:.0f}: {two / one:.2f}× (target ≥ 1.6×)")
    with open_store(url) as store:  # the sensor the live check posts readings of
        store.upsert_assets(
            AssetBatch.from_assets([sensor_asset(id=SENSOR, parent_id=None, quantity="level", unit="m")])
        )
    with serving(url, work, 2) as base:
        print(asyncio.run(live_pushes(base)))


def _has_city(buildings: int) -> bool:
    try:
        with psycopg.connect(POSTGRES, autocommit=True) as con:
            row = con.execute(f"SELECT count(*) FROM {SCHEMA}.assets WHERE kind = 'building'").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == buildings


def mix(buildings: int, count: int = 3000, seed: int = 27) -> list[str]:
    """load_bench.py's data mix over the generated city (its ids are b<n>, l<n>)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        x, y = rng.uniform(W, W + SIDE - 0.01), rng.uniform(S, S + SIDE - 0.01)
        window = f"{x:.5f},{y:.5f},{x + 0.01:.5f},{y + 0.01:.5f}"
        choice = rng.random()
        if choice < 0.35:
            out.append(f"/assets/b{rng.randrange(buildings)}")
        elif choice < 0.65:
            out.append(f"/collections/building/items?bbox={window}&limit=100")
        elif choice < 0.9:
            out.append(
                f"/collections/pipe/items?bbox={window}&filter=network%3D%27gas%27%20AND%20depth_m%3E1"
                "&filter-lang=cql2-text&limit=100"
            )
        else:
            out.append(f"/queries/old-lifts?years={rng.choice([10, 15, 20, 25])}")
    return out


@contextmanager
def serving(url: str, work: Path, workers: int) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CIM_HOST": "127.0.0.1", "CIM_WRITE_TOKEN": TOKEN}
    env.pop("CIM_MQTT_URL", None)
    command = [sys.executable, "-m", "cim", "serve", "--store", url, "--tiles", "tiles", "--port", str(port)]
    with (work / f"serve-{workers}.log").open("a") as log:
        server = subprocess.Popen(
            [*command, "--workers", str(workers)], cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{port}"
    try:
        origins: set[str] = set()
        deadline = time.monotonic() + 120
        while len(origins) < workers:  # every worker up: each names itself in /iot/stats
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cim serve --workers {workers} did not start; see {work}")
            try:
                stats = httpx.get(f"{base}/iot/stats", headers={"Connection": "close"}, timeout=5).json()
                origins.add(stats["live_relay"]["origin"])
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.2)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _warm(base: str, paths: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        for path in paths[:40]:
            http.get(path, headers={"Connection": "close"})  # both workers: fresh connections


def _wrk(base: str, work: Path, clients: int, seconds: int) -> tuple[float, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", str(work / "mix.lua"), base],
        capture_output=True,
        text=True,
        env={**os.environ, "CIM_BENCH_PATHS": str(work / "paths.txt")},
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rps.group(1)) if rps else 0.0), (int(bad.group(1)) if bad else 0)


async def live_pushes(base: str, clients: int = 20, readings: int = 50) -> str:
    """``clients`` WebSocket clients (spread over the workers by the shared socket), ``readings`` readings posted
    on fresh connections (so either worker takes them): how many of the last state each worker's clients got."""
    sockets = []
    by_worker: dict[str, list[object]] = {}
    for _ in range(clients):
        ws = await websockets.connect(base.replace("http://", "ws://") + "/iot/live", max_size=None)
        await ws.recv()
        sockets.append(ws)
        by_worker.setdefault(ws.response.headers["cim-server"], []).append(ws)
    start = datetime.now(UTC) - timedelta(minutes=10)
    taken: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        auth = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
        started = time.perf_counter()
        for i in range(readings):
            at = (start + timedelta(seconds=i)).isoformat()
            await http.post("/iot/readings", json={"sensor_id": SENSOR, "value": float(i), "time": at}, headers=auth)
            stats = (await http.get("/iot/stats", headers={"Connection": "close"})).json()
            taken[stats["live_relay"]["origin"]] = stats["accepted"]
    last = float(readings - 1)

    async def last_of(ws: object) -> float:
        value = float("nan")
        deadline = time.monotonic() + 10
        while value != last and time.monotonic() < deadline:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))  # type: ignore[attr-defined]
            except TimeoutError:
                continue
            value = next((s["value"] for s in message.get("states", []) if s["sensor_id"] == SENSOR), value)
        return value

    reached = {w: sum([v == last for v in await asyncio.gather(*map(last_of, c))]) for w, c in by_worker.items()}
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))  # type: ignore[attr-defined]
    relays: dict[str, dict[str, object]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(20):  # each worker's relay counts (fresh connections reach either)
            stats = (await http.get("/iot/stats", headers={"Connection": "close"})).json()["live_relay"]
            relays[stats["origin"]] = {k: stats[k] for k in ("sent", "received", "peers", "reconnects", "bad")}
    lines = [f"live: {readings} readings posted in {elapsed:.1f} s; accepted per worker {taken}; relays {relays}"]
    lines += [f"  clients of {w}: {reached[w]}/{len(c)} got the last state" for w, c in by_worker.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
