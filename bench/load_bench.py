"""Load benchmark: 200 concurrent clients on the demo city, mixed load, on both stores (issue 19).

The demo city (``pipelines/shanghai-demo.toml``: 20,000 buildings with lifts, pipes, sensors, IFC towers) is built
once into a work folder (DuckDB, and PostGIS with ``--stores duckdb,postgis``), ``cim serve`` is started on it, and
two ``wrk`` processes (apt: wrk) drive it at once for ``--seconds`` per round: ``--data-clients`` connections on data
requests (asset detail, items pages with bbox, items with a CQL2 filter, old lifts) and ``--tile-clients``
connections on tiles (tileset.json and glb files). Each wrk connection is one closed-loop client. Per round it
prints requests/s, latency percentiles, errors (socket errors, timeouts, non-2xx answers) and the server's RSS after
the round, so two rounds show whether memory stays flat.

    .venv/bin/python bench/load_bench.py                               # DuckDB, 2 rounds of 60 s, 150 + 50 clients
    .venv/bin/python bench/load_bench.py --stores duckdb,postgis --work /tmp/cim-load

Targets (issue 19): 200 clients for 60 s on both stores: 0 errors, no hang, p99 ≤ 1 s for data requests, memory flat
across two rounds. wrk runs on the same 2 cores as the server, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "shanghai-demo.toml"
POSTGRES = os.environ.get("CIM_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/cim_test")

LUA = """
local paths = {}
for line in io.lines(os.getenv("CIM_LOAD_PATHS")) do paths[#paths + 1] = line end
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
function init(args) math.randomseed(os.time() * 1000 + id) end
function request() return wrk.format("GET", paths[math.random(#paths)]) end
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="duckdb", help="comma-separated: duckdb, postgis")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-clients", type=int, default=150)
    parser.add_argument("--tile-clients", type=int, default=50)
    parser.add_argument("--work", type=Path, default=None, help="folder to build the city in (kept, reused)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cim-load-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; {args.data_clients} data + {args.tile_clients} tile clients, {args.seconds} s rounds")
    for kind in args.stores.split(","):
        store = str(work / "city.duckdb") if kind == "duckdb" else f"{POSTGRES}?schema=load_bench"
        tiles = work / f"tiles-{kind}"
        build_city(store, tiles / "shanghai")
        run_store(kind, store, tiles, args)


def build_city(store: str, tiles: Path) -> None:
    """The demo pipeline into ``store`` and ``tiles`` (a second run skips what is unchanged)."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "cim", "run", str(PIPELINE), "--store", store, "--out", str(tiles)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"  city ready in {time.perf_counter() - started:.0f} s")


@contextmanager
def serving(
    kind: str, store: str, tiles: Path, *, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``cim serve`` on the store and tiles, its own process on a free port, without MQTT: (base URL, process) once
    it is ready. Stopped by SIGTERM when the block ends (killed if it has not stopped 20 s later); its log is
    ``server-<kind>.log`` beside the tiles."""
    port = _free_port()
    log = tiles.parent / f"server-{kind}.log"
    environment = {**os.environ, "CIM_HOST": "127.0.0.1", **(env or {})}
    environment.pop("CIM_MQTT_URL", None)
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "cim", "serve", "--store", store, "--tiles", str(tiles), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        yield base, server
    finally:
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            server.wait(timeout=20)
            print(f"server stopped {time.monotonic() - started:.1f} s after SIGTERM")
        except subprocess.TimeoutExpired:
            server.kill()
            print("server did NOT stop within 20 s of SIGTERM (killed)")


def run_store(kind: str, store: str, tiles: Path, args: argparse.Namespace) -> None:
    with serving(kind, store, tiles) as (base, server):
        data_paths, tile_paths = sample_paths(base)
        folder = Path(tempfile.mkdtemp(prefix="cim-wrk-"))
        (folder / "mix.lua").write_text(LUA)
        (folder / "data.txt").write_text("\n".join(data_paths) + "\n")
        (folder / "tiles.txt").write_text("\n".join(tile_paths) + "\n")
        print(
            f"\n== {kind}: {len(data_paths)} data paths, {len(tile_paths)} tile paths; server RSS {_rss(server.pid)} MB"
        )
        print(
            f"{'round':>5} {'load':>5} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
            f"{'errors':>7} {'non-2xx':>7} {'RSS MB':>7}"
        )
        for n in range(1, args.rounds + 1):
            runs = {
                "data": _wrk(base, folder, "data.txt", args.data_clients, args.seconds),
                "tiles": _wrk(base, folder, "tiles.txt", args.tile_clients, args.seconds),
            }
            results = {name: _finish(process) for name, process in runs.items()}
            rss = _rss(server.pid)
            for name, r in results.items():
                print(
                    f"{n:>5} {name:>5} {r['rps']:>8.0f} {r['p50']:>7.0f} {r['p90']:>7.0f} {r['p99']:>7.0f} "
                    f"{r['max']:>7.0f} {r['errors']:>7} {r['non2xx']:>7} {rss:>7.0f}"
                )
        with httpx.Client(base_url=base, timeout=5) as http:
            print(
                f"after the rounds: /ready {http.get('/ready').status_code}, /assets answers "
                f"{http.get(data_paths[0]).status_code}"
            )


def sample_paths(base: str, count: int = 3000, seed: int = 19) -> tuple[list[str], list[str]]:
    """Data request paths over the city's extent and real ids, and the tileset's files."""
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as http:
        buildings = http.get("/collections/building/items", params={"limit": 1000}).json()["features"]
        lifts = http.get("/collections/lift/items", params={"limit": 1000}).json()["features"]
        extent = http.get("/collections/building").json()["extent"]["spatial"]["bbox"][0]
        tiles = _tile_files(http, "/tiles/shanghai/tileset.json")
    ids = [f["id"] for f in buildings + lifts]
    west, south, east, north = extent
    paths = []
    for _ in range(count):
        x, y = rng.uniform(west, east - 0.01), rng.uniform(south, north - 0.01)
        window = f"{x:.5f},{y:.5f},{x + 0.01:.5f},{y + 0.01:.5f}"  # about 1 km
        choice = rng.random()
        if choice < 0.35:
            paths.append(f"/assets/{rng.choice(ids)}")
        elif choice < 0.65:
            paths.append(f"/collections/building/items?bbox={window}&limit=100")
        elif choice < 0.9:
            paths.append(
                f"/collections/pipe/items?bbox={window}&filter=network%3D%27gas%27%20AND%20depth_m%3E1"
                "&filter-lang=cql2-text&limit=100"
            )
        else:
            paths.append(f"/queries/old-lifts?years={rng.choice([10, 15, 20, 25])}")
    return paths, tiles


def _tile_files(http: httpx.Client, path: str, limit: int = 2000) -> list[str]:
    found: list[str] = [path]
    queue = [path]
    while queue and len(found) < limit:
        current = queue.pop()
        tileset = http.get(current).json()
        folder = current.rsplit("/", 1)[0]
        stack: list[dict[str, Any]] = [tileset["root"]]
        while stack:
            tile = stack.pop()
            stack.extend(tile.get("children", []))
            for content in [tile.get("content"), *tile.get("contents", [])]:
                if content and "uri" in content:
                    uri = f"{folder}/{content['uri']}"
                    found.append(uri)
                    if uri.endswith(".json"):
                        queue.append(uri)
    return found


def _wrk(base: str, folder: Path, paths: str, clients: int, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(folder / "mix.lua"),
            base,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CIM_LOAD_PATHS": str(folder / paths)},
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = process.communicate()
    result = {
        "rps": _number(r"Requests/sec:\s+([\d.]+)", out),
        "non2xx": _number(r"Non-2xx or 3xx responses: (\d+)", out),
    }
    for label, key in (("50%", "p50"), ("90%", "p90"), ("99%", "p99")):
        result[key] = _ms(re.search(rf"^\s+{re.escape(label)}\s+(\S+)", out, re.M))
    result["max"] = _ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return result


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0


def _ms(found: re.Match[str] | None) -> float:
    if found is None:
        return float("nan")
    value = found.group(1)
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value)


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("cim serve exited; see its log")
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("cim serve did not become ready within 60 s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
