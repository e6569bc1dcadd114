"""OGC API – Features side by side with tipg: the same PostGIS table, the same requests, the same load generator.

Builds (or reuses) a PostGIS store of N buildings, starts ``cim serve`` on it and tipg (developmentseed's
PostGIS feature server, in its own venv) on a view of the same rows, each on its own port, then drives both with
``wrk`` in interleaved rounds (every shape, connection count and server once per round; medians over rounds):

- ``item``: one feature by id (random ids),
- ``page``: a page of 100 (random offsets in the first 10,000),
- ``bbox 1%``: a page of 100 in a random window of 1% of the extent's area,
- ``cql2``: ``height_m > 100`` (about 4% of the buildings), a page of 100 (random offsets in the first 2,000).

Each shape has the same URL form on both servers; only the collection's name differs (ours ``building``, tipg's
``<schema>.building``). Before the load, one answer per shape is compared between the servers (same features) and
checked for ``numberMatched``.

    .venv/bin/python bench/ogc_bench.py               # 200,000 buildings, 3 rounds of 5 s runs (about 6 min)
    .venv/bin/python bench/ogc_bench.py --quick       # 20,000 buildings, 1 round of 2 s runs (about 1 min)
    .venv/bin/python bench/ogc_bench.py --drop        # and drop the store's schema afterwards

Needs ``wrk`` (apt-get install wrk) and tipg in a venv of its own (bench/peers/README.md). The store is kept in
database ``cim_bench`` as schema ``ogc_bench_<N>`` so a rerun skips the build (``--drop`` removes it).

Targets (issue 23): every shape ≥ 1.5× tipg's requests/s at 1 and 16 connections, with ``numberMatched``; item by
id p50 ≤ 2 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import shapely

from cim.model import AssetBatch
from cim.store import open_store

W, S, SIDE = 121.3, 31.0, 0.4  # a 0.4° square over Shanghai
BATCH = 100_000
DATABASE = "cim_bench"
TIPG_VENV = Path("/work/peers/tipg-venv")
#: The view tipg serves: the columns our building features carry, from the one asset table both servers read.
VIEW_COLUMNS = "id, kind, name, parent_id, source, z_min, z_max, install_date, status, material, height_m, storeys"


def buildings(n: int, seed: int = 1) -> list[pa.Table]:
    """``n`` small footprints spread over the square; heights log-normal (median ~25 m, ~4% above 100 m)."""
    rng = np.random.default_rng(seed)
    tables = []
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        x, y = W + rng.random(size) * SIDE, S + rng.random(size) * SIDE
        w, h = 0.0001 + rng.random(size) * 0.0002, 0.0001 + rng.random(size) * 0.0002
        height = np.clip(rng.lognormal(3.2, 0.8, size), 3.0, 450.0).round(1)
        ids = [f"b{i:07d}" for i in range(start, start + size)]
        tables.append(
            pa.table(
                {
                    "id": ids,
                    "kind": ["building"] * size,
                    "name": [f"Building {i}" for i in range(start, start + size)],
                    "source": ["bench"] * size,
                    "geom": shapely.to_wkb(shapely.box(x, y, x + w, y + h)),
                    "z_min": np.full(size, 4.0),
                    "z_max": 4.0 + height,
                    "height_m": height,
                    "storeys": (height // 3).astype(np.int32),
                    "props": ['{"use": "residential"}'] * size,
                }
            )
        )
    return tables


def database_url(admin: str) -> str:
    """The bench database's URL (created, with PostGIS, when missing)."""
    with psycopg.connect(admin, autocommit=True) as con:
        if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            con.execute(f"CREATE DATABASE {DATABASE}")
    url = admin.rsplit("/", 1)[0] + "/" + DATABASE
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return url


def prepare_store(url: str, n: int) -> tuple[str, float | None]:
    """Schema ``ogc_bench_<n>`` holding ``n`` buildings and the view ``building`` over them: (schema, build seconds,
    None when an earlier run's store was reused)."""
    schema = f"ogc_bench_{n}"
    with psycopg.connect(url, autocommit=True) as con:
        try:
            found = con.execute(f"SELECT count(*) FROM {schema}.building").fetchone()
        except psycopg.errors.UndefinedTable:
            found = None
        if found is not None and found[0] == n:
            return schema, None
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    started = time.perf_counter()
    with open_store(f"{url}?schema={schema}") as store:
        for table in buildings(n):
            store.upsert_assets(AssetBatch.from_table(table))
        store.optimize()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            f"CREATE VIEW {schema}.building AS SELECT {VIEW_COLUMNS}, props, geom FROM {schema}.assets "
            "WHERE kind = 'building'"
        )
        con.execute(f"ANALYZE {schema}.assets")
    return schema, time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


@dataclass
class Server:
    name: str
    port: int
    collection: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (the database's backends are not counted)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_ours(store_url: str, tmp: Path) -> Server:
    """``cim serve`` (the real command, its defaults: no access log) on ``store_url``, on a free port."""
    ours = Server("cim serve", free_port(), "building")
    tiles = tmp / "tiles"
    tiles.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "cim", "serve", "--store", store_url, "--tiles", str(tiles)]
    command += ["--host", "127.0.0.1", "--port", str(ours.port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIM_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    _launch(ours, command, env, tmp)
    return ours


def start_tipg(url: str, schema: str, tmp: Path, tipg_venv: Path) -> Server:
    """tipg on the view ``<schema>.building`` of database ``url``, on a free port.

    As its README runs it: one uvicorn process, with uvloop and httptools as cim serve has; the planner settings our
    store gives its connections (jit off, no parallel workers) through asyncpg's server settings in the URL."""
    tipg = Server("tipg", free_port(), f"{schema}.building")
    command = [str(tipg_venv / "bin" / "python"), "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1"]
    command += ["--port", str(tipg.port), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    command += ["--log-level", "warning"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": f"{url}?jit=off&max_parallel_workers_per_gather=0",
        "TIPG_DB_SCHEMAS": json.dumps([schema]),
        "TIPG_DB_TABLES": json.dumps([f"{schema}.building"]),
        "TIPG_CATALOG_TTL": "0",  # the catalogue read once at start (no refresh in the middle of a run)
    }
    _launch(tipg, command, env, tmp)
    return tipg


def _launch(server: Server, command: list[str], env: dict[str, str], tmp: Path) -> None:
    log = (tmp / f"{server.name.replace(' ', '-')}.log").open("w")
    server.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=tmp, start_new_session=True)


def wait_ready(servers: list[Server]) -> None:
    for server in servers:
        wait_for(f"{server.base}/collections/{server.collection}")


def server_errors(servers: list[Server], tmp: Path) -> None:
    """Print the end of a server's log when it has errors in it."""
    for server in servers:
        log = tmp / f"{server.name.replace(' ', '-')}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Traceback" in text or "ERROR" in text:
            print(f"\n{server.name}'s log has errors (last lines):\n" + "\n".join(text.splitlines()[-15:]))


def stop_servers(servers: list[Server]) -> None:
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGTERM)
    for server in servers:
        if server.proc is not None:
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)


def query_shapes(n: int, extent: tuple[float, float, float, float], seed: int = 3) -> dict[str, list[str]]:
    """Per shape, request paths relative to ``/collections/{collection}`` (the same list for both servers)."""
    rng = np.random.default_rng(seed)
    west, south, east, north = extent
    side_x, side_y = (east - west) * 0.1, (north - south) * 0.1  # 1% of the extent's area
    boxes = []
    for x, y in zip(rng.uniform(west, east - side_x, 500), rng.uniform(south, north - side_y, 500), strict=True):
        boxes.append(f"/items?limit=100&bbox={x:.5f},{y:.5f},{x + side_x:.5f},{y + side_y:.5f}")
    return {
        "item": [f"/items/b{i:07d}" for i in rng.integers(0, n, 2000)],
        "page": [f"/items?limit=100&offset={o}" for o in rng.integers(0, min(n, 10_000) // 100, 500) * 100],
        "bbox 1%": boxes,
        "cql2": [f"/items?limit=100&offset={o}&filter=height_m%20%3E%20100" for o in rng.integers(0, 20, 500) * 100],
    }


def compare_answers(servers: list[Server], shapes: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """One answer per shape from each server: the same features? ``numberMatched`` present? (shape → server → note)"""
    notes: dict[str, dict[str, str]] = {}
    for shape, paths in shapes.items():
        answers = {s.name: get_json(f"{s.base}/collections/{s.collection}{paths[0]}") for s in servers}
        notes[shape] = {}
        for server in servers:
            body = answers[server.name]
            if body.get("type") == "Feature":
                notes[shape][server.name] = "n/a (one feature)"
            else:
                matched = body.get("numberMatched")
                notes[shape][server.name] = "absent" if matched is None else f"{matched:,}"
        ids = {
            name: [body["id"]] if body.get("type") == "Feature" else [f["id"] for f in body["features"]]
            for name, body in answers.items()
        }
        first, *others = ids.values()
        if any(other != first for other in others):
            counts = {name: len(found) for name, found in ids.items()}
            print(f"WARNING {shape}: the servers answer {paths[0]} with different features {counts}")
    return notes


def write_script(path: Path, base_path: str, paths: list[str]) -> None:
    """A wrk Lua script cycling through ``paths`` (requests formatted once, in init)."""
    listed = ",\n".join(f'"{base_path}{p}"' for p in paths)
    path.write_text(
        f"local paths = {{{listed}}}\nlocal requests, i = {{}}, 0\n"
        "init = function(args)\n  for n, p in ipairs(paths) do requests[n] = wrk.format('GET', p) end\nend\n"
        "request = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n"
    )


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    wrk_cpu: float  # wrk's CPU seconds per second of the run (cores used)
    server_cpu: float  # the server process's, the same


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.runs)


def wrk(server: Server, script: Path, *, seconds: int, connections: int) -> Run:
    """One wrk run (one thread: the machine has two cores) with latency percentiles; wrk's and the server's CPU."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), server.base]
    before_wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = server.cpu_seconds()
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after_wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = (server.cpu_seconds() - before_server) / wall
    wrk_cpu = (after_wrk.ru_utime + after_wrk.ru_stime - before_wrk.ru_utime - before_wrk.ru_stime) / wall
    rate = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+(?:us|ms|s))\s*$", out, re.MULTILINE))
    if rate is None or set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"wrk against {server.name} gave no figures:\n{out}")

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (int(socket_errors.group(1)) if socket_errors else 0)
    return Run(float(rate.group(1)), ms(percentiles["50"]), ms(percentiles["99"]), errors, wrk_cpu, server_cpu)


def busy_cores() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def bench(args: argparse.Namespace, tmp: Path) -> None:
    load = os.getloadavg()
    load_before = " ".join(f"{v:.1f}" for v in load)
    url = database_url(args.postgres)
    schema, built = prepare_store(url, args.buildings)
    print(
        f"store: {args.buildings:,} buildings in {url.rsplit('@', 1)[-1]} schema {schema} "
        + (f"built in {built:.1f} s" if built is not None else "(reused from an earlier run)")
    )
    servers: list[Server] = []
    try:
        servers.append(start_ours(f"{url}?schema={schema}", tmp))
        servers.append(start_tipg(url, schema, tmp, args.tipg_venv))
        wait_ready(servers)
        extent_of = get_json(f"{servers[0].base}/collections/building")["extent"]["spatial"]["bbox"][0]
        shapes = query_shapes(args.buildings, tuple(extent_of))
        notes = compare_answers(servers, shapes)
        scripts = {}
        for shape, paths in shapes.items():
            for server in servers:
                scripts[shape, server.name] = tmp / f"{len(scripts)}.lua"
                write_script(scripts[shape, server.name], f"/collections/{server.collection}", paths)
        connections = [int(c) for c in args.connections.split(",")]
        for (_shape, name), script in scripts.items():  # warm: plans cached, pages in memory, pools filled
            server = next(s for s in servers if s.name == name)
            wrk(server, script, seconds=1, connections=max(connections))
        cells: dict[tuple[str, int, str], Cell] = {}
        busy0, total0 = busy_cores()
        started = time.perf_counter()
        for round_number in range(args.rounds):
            for shape in shapes:
                for c in connections:
                    order = servers if round_number % 2 == 0 else servers[::-1]  # neither always goes first
                    for server in order:
                        run = wrk(server, scripts[shape, server.name], seconds=args.seconds, connections=c)
                        cells.setdefault((shape, c, server.name), Cell()).runs.append(run)
        busy1, total1 = busy_cores()
        load_wall = time.perf_counter() - started
        report(args, servers, shapes, connections, cells, notes)
        wrk_cpu = [r.wrk_cpu for cell in cells.values() for r in cell.runs]
        print(
            f"\nclient: wrk -t1 --latency with a Lua script cycling through {sum(map(len, shapes.values())):,} "
            f"pre-drawn paths. The machine has {os.cpu_count()} cores shared by wrk, both servers, PostgreSQL "
            f"(and whatever else runs): busy {(busy1 - busy0) / (total1 - total0):.0%} of them during the "
            f"{load_wall:.0f} s of load (load average before the run {load_before}). wrk used at most "
            f"{max(wrk_cpu):.0%} of a core in any run (median {statistics.median(wrk_cpu):.0%}), "
            + ("so it is not the bottleneck" if max(wrk_cpu) < 0.25 else "so it MAY be a bottleneck")
            + "; the servers' own CPU is in the cpu column (their database work runs in PostgreSQL's backends, "
            "not counted there)."
        )
        if load[0] > (os.cpu_count() or 1):
            print(
                "CAUTION: the machine was loaded by other work (load average above its core count before the run): "
                "absolute figures are low and noisy; the ratios of the interleaved runs are the comparable part."
            )
        print(
            "tipg: its defaults (asyncpg pool of 1-10 connections, COUNT(*) per page for numberMatched), one uvicorn "
            "process with uvloop + httptools, catalogue TTL 0, DATABASE_URL with jit=off and "
            "max_parallel_workers_per_gather=0 (what our store sets on its connections); served a view of the "
            "same asset table (WHERE kind = 'building')."
        )
    finally:
        stop_servers(servers)
        server_errors(servers, tmp)
        if args.drop:
            with psycopg.connect(url, autocommit=True) as con:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            print(f"schema {schema} dropped")
        else:
            print(f"schema {schema} kept in database {DATABASE} for the next run (--drop removes it)")


def report(
    args: argparse.Namespace,
    servers: list[Server],
    shapes: dict[str, list[str]],
    connections: list[int],
    cells: dict[tuple[str, int, str], Cell],
    notes: dict[str, dict[str, str]],
) -> None:
    ours, tipg = servers
    print(
        f"\nrequests/s and latency: wrk -t1 -d{args.seconds}s, medians of {args.rounds} interleaved round(s); "
        "ratio = ours / tipg, target ≥ 1.5; item p50 target ≤ 2 ms"
    )
    header = f"{'shape':8} {'conn':>4} {'server':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu':>5} {'errors':>6}"
    print(header + f" {'ratio':>6}  numberMatched")
    for shape in shapes:
        for c in connections:
            for server in servers:
                cell = cells[shape, c, server.name]
                rate = cell.median("rate")
                ratio = ""
                if server is ours:
                    times = rate / cells[shape, c, tipg.name].median("rate")
                    ratio = f"{times:.2f} " + ("✓" if times >= 1.5 else "✗")
                errors = sum(r.errors for r in cell.runs)
                print(
                    f"{shape:8} {c:>4} {server.name:10} {rate:>9,.0f} {cell.median('p50_ms'):>8.2f} "
                    f"{cell.median('p99_ms'):>8.1f} {cell.median('server_cpu'):>5.0%} {errors:>6} {ratio:>6}  "
                    f"{notes[shape][server.name]}"
                )
    item_p50 = cells["item", connections[0], ours.name].median("p50_ms")
    print(f"item by id p50 at {connections[0]} connection(s), ours: {item_p50:.2f} ms (target ≤ 2 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buildings", type=int, default=200_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per shape, connection count and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="1,16", help="comma-separated connection counts")
    parser.add_argument("--tipg-venv", type=Path, default=TIPG_VENV, help="the venv tipg is installed in")
    parser.add_argument("--drop", action="store_true", help="drop the store's schema at the end")
    parser.add_argument("--quick", action="store_true", help="20,000 buildings, 1 round of 2 s runs (~1 min)")
    args = parser.parse_args()
    if args.quick:
        args.buildings, args.rounds, args.seconds = 20_000, 1, 2
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    if not (args.tipg_venv / "bin" / "python").exists():
        sys.exit(f"needs tipg in {args.tipg_venv}: see bench/peers/README.md")
    tmp = Path(tempfile.mkdtemp(prefix="ogc-bench-"))
    try:
        bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
