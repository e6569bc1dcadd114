"""API and query benchmark: old lifts, buried gas pipes in a 1 km² polygon, an items page with a CQL2 filter.

Each is timed three ways, medians of --repeat runs: the query function (library), the HTTP endpoint in-process
(TestClient, so JSON encoding included, no network), and a raw SQL statement selecting the same rows.

    .venv/bin/python bench/api_bench.py --buildings 1000000            # the issue's size (slow to build)
    .venv/bin/python bench/api_bench.py --buildings 100000 --store postgis
    .venv/bin/python bench/api_bench.py --tiles-only                   # tile GETs vs nginx (apt: wrk nginx)
    .venv/bin/python bench/api_bench.py --queries-only                 # the queries alone

Targets (issue 6, 1M buildings / 100k lifts / 100k pipes): old lifts p50 ≤ 50 ms, buried gas pipes in 1 km² ≤ 30 ms,
items page of 100 with CQL2 ≤ 30 ms, each within 2× of raw SQL; tile GET throughput of the server ≥ 50% of nginx's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.model import Asset, AssetBatch, Kind
from cim.queries import buried_pipes, old_lifts
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store
from cim.store.sqlstore import sql_store

W, S, SIDE = 121.3, 31.0, 0.4  # a 0.4° square over Shanghai
AS_OF = date(2026, 5, 1)


def build(url: str, n_buildings: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    n_lifts = n_pipes = n_buildings // 10
    with open_store(url) as store:
        xs, ys = W + rng.random(n_buildings) * SIDE, S + rng.random(n_buildings) * SIDE
        for start in range(0, n_buildings, 200_000):
            sl = slice(start, start + 200_000)
            geoms = shapely.box(xs[sl], ys[sl], xs[sl] + 0.0003, ys[sl] + 0.0003)
            ids = [f"b{i}" for i in range(start, start + len(geoms))]
            store.upsert_assets(
                AssetBatch.from_table(
                    pa.table({"id": ids, "kind": ["building"] * len(ids), "name": ids, "geom": shapely.to_wkb(geoms)})
                )
            )
        owners = rng.integers(0, n_buildings, n_lifts)
        days = rng.integers(0, 40 * 365, n_lifts)
        dates = [None if d % 20 == 0 else date.fromordinal(date(1986, 1, 1).toordinal() + int(d)) for d in days]
        store.upsert_assets(
            AssetBatch.from_table(
                pa.table(
                    {
                        "id": [f"l{i}" for i in range(n_lifts)],
                        "kind": ["lift"] * n_lifts,
                        "parent_id": [f"b{o}" for o in owners],
                        "install_date": pa.array(dates, pa.date32()),
                    }
                )
            )
        )
        px, py = W + rng.random(n_pipes) * SIDE, S + rng.random(n_pipes) * SIDE
        ends = np.stack([px + rng.normal(0, 0.001, n_pipes), py + rng.normal(0, 0.001, n_pipes)], axis=1)
        lines = shapely.linestrings(np.stack([np.stack([px, py], axis=1), ends], axis=1))
        networks = rng.choice(["gas", "water", "drainage", "sewer"], n_pipes)
        depth = rng.uniform(0.5, 4.0, n_pipes)
        pdays = rng.integers(0, 60 * 365, n_pipes)
        store.upsert_assets(
            AssetBatch.from_table(
                pa.table(
                    {
                        "id": [f"p{i}" for i in range(n_pipes)],
                        "kind": ["pipe"] * n_pipes,
                        "geom": shapely.to_wkb(lines),
                        "network": networks,
                        "depth_m": depth,
                        "z_min": -depth - 0.3,
                        "z_max": -depth,
                        "install_date": pa.array(
                            [date.fromordinal(date(1966, 1, 1).toordinal() + int(d)) for d in pdays], pa.date32()
                        ),
                    }
                )
            )
        )
        store.optimize()


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def app_from_env() -> FastAPI:
    """The app over ``CIM_STORE`` and ``CIM_TILES_DIR``, for ``uvicorn --factory`` (core routers only)."""
    return create_app(AppSettings(store=StoreSettings(), server=ServerSettings()))


def asgi_fast_app() -> Callable[..., Any]:
    """Candidate: :func:`app_from_env` behind a raw ASGI middleware answering cached tiles as the protocol fast path
    (cim/api/fastpath.py) does, one layer up; for ``uvicorn --factory`` and ``granian --factory``."""
    from cim.api.tiles import answer

    app = app_from_env()

    async def front(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/tiles/") and scope["method"] in ("GET", "HEAD"):
            tile = app.state.resources.tiles.fresh(scope["path"][len("/tiles/") :])
            if tile is not None:
                reply = answer(tile, scope["method"], scope["headers"])
                await send({"type": "http.response.start", "status": reply.status, "headers": list(reply.headers)})
                await send({"type": "http.response.body", "body": reply.body})
                return
        await app(scope, receive, send)

    return front


def serve_fast(port: int) -> None:
    """The app served as ``cim serve`` serves it (uvicorn, uvloop, the tile protocol) but with no access log."""
    import uvicorn

    from cim.api.fastpath import tile_protocol

    app = app_from_env()
    http = tile_protocol(app)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http=http, loop="uvloop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def wrk(base: str, paths: list[str], *, seconds: int, connections: int, gzip_ok: bool, script: Path) -> float:
    """Requests per second ``wrk`` measures against ``base`` (one thread: the machine has few cores), cycling through
    ``paths`` with a Lua script when there are several; ``Accept-Encoding: gzip`` as browsers send it if ``gzip_ok``."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    if len(paths) == 1:
        command += [*(["-H", "Accept-Encoding: gzip"] if gzip_ok else []), base + paths[0]]
    else:
        header = '{["Accept-Encoding"] = "gzip"}' if gzip_ok else "{}"
        script.write_text(
            "local paths = {" + ", ".join(f'"{p}"' for p in paths) + "}\nlocal requests, i = {}, 0\n"
            "init = function(args)\n  for n, p in ipairs(paths) do requests[n] = wrk.format('GET', p, "
            + header
            + ") end\nend\nrequest = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n"
        )
        command += ["-s", str(script), base]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if found is None or non_2xx is not None:
        raise RuntimeError(f"wrk against {base} {paths[:3]} failed:\n{out}")
    return float(found.group(1))


def mix_tileset(folder: Path, out: Path, buildings: int) -> list[str]:
    """A real tileset of ``buildings`` LOD1 buildings (as bench/tiles_bench.py builds it) in ``out``: the request
    paths (under /tiles/) of all its files, JSON and glb."""
    from tiles_bench import write_city

    from cim.store.meshes import MeshStore, mesh_path_for
    from cim.tiling.build import build_tiles

    folder.mkdir(parents=True)
    write_city(folder / "city.duckdb", buildings)
    with open_store(str(folder / "city.duckdb")) as store, MeshStore(mesh_path_for(store.url), read_only=True) as m:
        build_tiles(store, m, out, workers=1)
    real = out.resolve()  # the build swaps a symlink to a versioned folder
    files = sorted(p.relative_to(real) for p in real.rglob("*") if p.is_file() and p.suffix in (".json", ".glb"))
    return [f"/tiles/{out.name}/{p.as_posix()}" for p in files if not p.parts[0].startswith(".")]  # .state: ours


def tile_throughput(tmp: Path, *, seconds: int, connections: int, workers: int, rounds: int, mix: int) -> None:
    """GET throughput of our ``/tiles`` route against nginx serving the same files, all measured by wrk with the
    same settings in this run: a 3D-Tiles-sized glb (64 KB), the tileset JSON (8 KB; plain, and gzip as browsers
    ask), and a browser-like mix cycling through every file of a tileset built from ``mix`` buildings.

    Every server is started first; then each load goes to each server in turn, ``rounds`` times, and the median
    counts (the machine is shared and noisy). nginx gets the same worker count, gzip for JSON (gzip_static: the
    .json.gz files beside, as we keep gzip bodies in memory), ETag on and access_log off. The servers:

    - ``cim serve``: the real command, one process: uvicorn (httptools, uvloop) with cached tiles answered in its
      HTTP protocol (cim/api/fastpath.py), its access log on (to a file), the live IoT service running;
    - ``protocol, no log``: the same server and fast path over the core app, access log off as nginx's;
    - ``ASGI, uvicorn`` / ``ASGI, granian``: a raw ASGI middleware answering cached tiles in front of FastAPI
      (:func:`asgi_fast_app`) under uvicorn (httptools, uvloop) and under granian (Rust HTTP, ASGI, uvloop);
    - ``route, uvicorn``: the FastAPI route alone (no fast path), as every tile was served before;
    - ``granian static``: granian's own Rust static files. For reference only, it does not keep the route's
      behaviour: no ETag, no 304, no gzip, no Content-Length, hidden files and ``..`` inside the folder served.
    Servers that run one process only (``cim serve``, ``protocol, no log``) are left out when ``workers`` > 1.
    """
    import gzip
    import importlib.util

    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        print("tile throughput: needs wrk and nginx (apt-get install -y wrk nginx); skipped")
        return
    tiles = tmp / "tiles"
    (tiles / "city").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    (tiles / "city" / "0.glb").write_bytes(b"glTF" + rng.bytes(64 * 1024 - 4))
    (tiles / "city" / "tileset.json").write_text('{"asset": {"version": "1.1"}, "root": {"x": "' + "y" * 8000 + '"}}')
    started = time.perf_counter()
    mix_paths = mix_tileset(tmp / "mix", tiles / "mix", mix)
    mix_bytes = sum((tiles / p.removeprefix("/tiles/")).stat().st_size for p in mix_paths)
    print(
        f"mix tileset: {len(mix_paths)} files of {mix:,} buildings, {mix_bytes / len(mix_paths) / 1024:,.0f} KB "
        f"mean, built in {time.perf_counter() - started:.1f} s"
    )
    for json_file in tiles.rglob("*.json"):  # nginx's gzip_static sends these; we gzip at level 6 too
        json_file.with_name(json_file.name + ".gz").write_bytes(gzip.compress(json_file.read_bytes(), 6))
    tmp.chmod(0o755)  # nginx's workers drop to an unprivileged user when started as root; they must read the files
    bench_dir = str(Path(__file__).parent)
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "--factory", "--app-dir", bench_dir, "--host", "127.0.0.1"]
    uvicorn += ["--workers", str(workers), "--http", "httptools", "--loop", "uvloop", "--log-level", "warning"]
    uvicorn += ["--no-access-log"]
    granian = [python, "-m", "granian", "--interface", "asgi", "--factory", "--working-dir", bench_dir]
    granian += ["--host", "127.0.0.1", "--workers", str(workers), "--loop", "uvloop", "--log-level", "warning"]
    static = ["--static-path-route", "/tiles", "--static-path-mount", str(tiles)]
    servers: dict[str, list[str]] = {
        "nginx": [shutil.which("nginx") or "nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
        "cim serve": [python, "-m", "cim", "serve", "--tiles", str(tiles), "--port"],
        "protocol, no log": [python, "-c", "import sys, api_bench; api_bench.serve_fast(int(sys.argv[1]))"],
        "ASGI, uvicorn": [*uvicorn, "api_bench:asgi_fast_app", "--port"],
        "ASGI, granian": [*granian, "api_bench:asgi_fast_app", "--port"],
        "route, uvicorn": [*uvicorn, "api_bench:app_from_env", "--port"],
        "granian static": [*granian, *static, "api_bench:app_from_env", "--port"],
    }
    if workers != 1:
        del servers["cim serve"], servers["protocol, no log"]
    if importlib.util.find_spec("granian") is None:
        print("granian is not installed (pip install granian): its servers are left out")
        del servers["ASGI, granian"], servers["granian static"]
    ports = {name: free_port() for name in servers}
    (tmp / "nginx.conf").write_text(
        f"""worker_processes {workers}; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types {{ application/json json; model/gltf-binary glb; }}
  client_body_temp_path {tmp}/nginx-body; proxy_temp_path {tmp}/nginx-proxy; fastcgi_temp_path {tmp}/nginx-fcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi; scgi_temp_path {tmp}/nginx-scgi;
  gzip on; gzip_static on; gzip_types application/json; gzip_min_length 256; gzip_vary on;
  server {{ listen 127.0.0.1:{ports["nginx"]}; location /tiles/ {{ alias {tiles}/; etag on; }} }}
}}
"""
    )
    loads: dict[str, tuple[list[str], bool]] = {
        "glb 64 KB": (["/tiles/city/0.glb"], False),
        "tileset.json": (["/tiles/city/tileset.json"], False),
        "tileset.json gzip": (["/tiles/city/tileset.json"], True),
        f"mix, {len(mix_paths)} files": (mix_paths, True),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    results: dict[str, dict[str, list[float]]] = {name: {load: [] for load in loads} for name in servers}
    try:
        for name, command in servers.items():
            store = tmp / f"store-{len(procs)}.duckdb"  # one DuckDB file per server: a file has one writer
            env = os.environ | {"CIM_STORE": str(store), "CIM_TILES_DIR": str(tiles), "CIM_HOST": "127.0.0.1"}
            log = (tmp / f"server-{len(procs)}.log").open("w")
            args = command if name == "nginx" else [*command, str(ports[name])]
            procs[name] = subprocess.Popen(args, env=env, stdout=log, stderr=log, cwd=bench_dir, start_new_session=True)
        for name in servers:
            base = f"http://127.0.0.1:{ports[name]}"
            wait_for(base + "/tiles/city/tileset.json")
            for path in mix_paths:  # warm: every file read once, and the tileset is whole
                try:
                    urllib.request.urlopen(base + path, timeout=10).close()
                except OSError as exc:
                    raise RuntimeError(f"{name}: GET {path} failed: {exc}") from None
        for _ in range(rounds):
            for load, (paths, gzip_ok) in loads.items():
                for name in servers:
                    results[name][load].append(
                        wrk(
                            f"http://127.0.0.1:{ports[name]}",
                            paths,
                            seconds=seconds,
                            connections=connections,
                            gzip_ok=gzip_ok,
                            script=tmp / "mix.lua",
                        )
                    )
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=30)
    print(
        f"\ntile GET throughput, req/s: wrk -t1 -c{connections} -d{seconds}s, median of {rounds} rounds, "
        f"{workers} worker process(es) each; (x.xx) = ours / nginx, target ≥ 0.50"
    )
    print(f"{'server':18}" + "".join(f"{load:>22}" for load in loads))
    nginx = {load: statistics.median(runs) for load, runs in results["nginx"].items()}
    for name, by_load in results.items():
        cells = []
        for load, runs in by_load.items():
            rate = statistics.median(runs)
            cells.append(f"{rate:>15,.0f}" + (f" ({rate / nginx[load]:.2f})" if name != "nginx" else " " * 7))
        print(f"{name:18}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buildings", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["duckdb", "postgis"], default="duckdb")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/cim_test")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--tiles-only", action="store_true", help="only the tile throughput against nginx")
    parser.add_argument("--queries-only", action="store_true", help="only the query timings")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per load, server and round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of nginx, uvicorn and granian")
    parser.add_argument("--rounds", type=int, default=3, help="tile loads run on every server this many times")
    parser.add_argument("--mix-buildings", type=int, default=20_000, help="buildings of the tileset in the mix")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        if not args.tiles_only:
            query_figures(args, tmp)
        if args.queries_only:
            return
        tile_throughput(
            tmp,
            seconds=args.seconds,
            connections=args.connections,
            workers=args.workers,
            rounds=args.rounds,
            mix=args.mix_buildings,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def query_figures(args: argparse.Namespace, tmp: Path) -> None:
    if args.store == "duckdb":
        measure_queries(args, tmp, str(tmp / "bench.duckdb"))
        return
    schema = f"b_{uuid.uuid4().hex[:8]}"
    try:
        measure_queries(args, tmp, f"{args.postgres}?schema={schema}")
    finally:  # a million rows per run: never leave them behind
        with psycopg.connect(args.postgres, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def measure_queries(args: argparse.Namespace, tmp: Path, url: str) -> None:
    t = time.perf_counter()
    build(url, args.buildings)
    print(
        f"store {args.store}: {args.buildings:,} buildings, {args.buildings // 10:,} lifts, "
        f"{args.buildings // 10:,} pipes built in {time.perf_counter() - t:.1f} s"
    )
    km = 0.0093  # ~1 km in lat; lon side scaled by cos(31.2°) → about 1 km²
    cx, cy = W + SIDE / 2, S + SIDE / 2
    area = shapely.box(cx, cy, cx + km / np.cos(np.radians(cy)) * 1.0, cy + km)
    cql = "network = 'gas' AND depth_m > 2 AND install_date < DATE('2000-01-01')"
    settings = AppSettings(store=StoreSettings(store=url), server=ServerSettings(tiles_dir=tmp))
    with TestClient(create_app(settings)) as client, open_store(url) as _:
        pass
    # library and raw SQL (the app holds the store while it runs, so they run in turn)
    with open_store(url) as store:
        db = sql_store(store)
        s, p = db.dialect, db.dialect.param
        cutoff = date(2011, 5, 1)
        raw_lifts = (
            f"SELECT l.id, l.install_date, b.id AS building, b.name, ST_X(ST_Centroid(b.geom)) AS lon, "
            f"ST_Y(ST_Centroid(b.geom)) AS lat FROM assets l LEFT JOIN assets b ON b.id = l.parent_id "
            f"WHERE l.kind = {p} AND (l.install_date IS NULL OR l.install_date < {p}) ORDER BY b.id, l.id"
        )
        raw_pipes = (
            f"SELECT id, network, install_date, depth_m, "
            f"{s.length_m('ST_Intersection(geom, ' + s.geom_param() + ')')} AS len FROM assets "
            f"WHERE kind = {p} AND network = {p} AND z_max < 0 AND ST_Intersects(geom, {s.geom_param()}) "
            f"ORDER BY id"
        )
        wkb = shapely.to_wkb(area)
        raw_items = (
            f"SELECT {db.dialect.select_list()} FROM assets WHERE kind = {p} AND network = {p} "
            f"AND depth_m > {p} AND install_date < {p} ORDER BY id LIMIT 100"
        )
        lib = {
            "old lifts (15 y)": median_ms(lambda: old_lifts(store, years=15, as_of=AS_OF), args.repeat),
            "buried gas pipes, 1 km²": median_ms(lambda: buried_pipes(store, area=area, network="gas"), args.repeat),
        }
        raw = {
            "old lifts (15 y)": median_ms(lambda: db.select(raw_lifts, ["lift", cutoff]), args.repeat),
            "buried gas pipes, 1 km²": median_ms(lambda: db.select(raw_pipes, [wkb, "pipe", "gas", wkb]), args.repeat),
            "items page 100, CQL2": median_ms(
                lambda: db.select(raw_items, ["pipe", "gas", 2.0, date(2000, 1, 1)]), args.repeat
            ),
        }

        # the first query after a write rebuilds the lift register (one lift re-dated, then timed once per repeat)
        def after_a_write() -> float:
            store.upsert_assets(
                AssetBatch.from_assets([Asset(id="l0", kind=Kind.LIFT, parent_id="b0", install_date=date(1990, 1, 1))])
            )
            t = time.perf_counter()
            old_lifts(store, years=15, as_of=AS_OF)
            return (time.perf_counter() - t) * 1000

        first_after_write = statistics.median(after_a_write() for _ in range(3))
        counts = {
            "old lifts (15 y)": sum(len(b["lifts"]) for b in old_lifts(store, years=15, as_of=AS_OF)["buildings"]),
            "buried gas pipes, 1 km²": len(buried_pipes(store, area=area, network="gas")["pipes"]),
        }
    with TestClient(create_app(settings)) as client:
        http = {
            "old lifts (15 y)": median_ms(
                lambda: client.get("/queries/old-lifts", params={"as_of": AS_OF.isoformat()}), args.repeat
            ),
            "buried gas pipes, 1 km²": median_ms(
                lambda: client.get(
                    "/queries/buried-pipes", params={"network": "gas", "bbox": ",".join(map(str, area.bounds))}
                ),
                args.repeat,
            ),
            "items page 100, CQL2": median_ms(
                lambda: client.get("/collections/pipe/items", params={"limit": 100, "filter": cql}), args.repeat
            ),
        }
        counts["items page 100, CQL2"] = client.get(
            "/collections/pipe/items", params={"limit": 100, "filter": cql}
        ).json()["numberReturned"]
    targets = {"old lifts (15 y)": 50, "buried gas pipes, 1 km²": 30, "items page 100, CQL2": 30}
    print(f"\nmedians of {args.repeat} runs (ms)")
    print(f"{'query':26} {'rows':>7} {'library':>9} {'HTTP':>9} {'raw SQL':>9} {'HTTP/raw':>9} {'target':>7}")
    for name, target in targets.items():
        lib_ms = lib.get(name, float("nan"))
        print(
            f"{name:26} {counts[name]:>7,} {lib_ms:>9.1f} {http[name]:>9.1f} {raw[name]:>9.1f} "
            f"{http[name] / raw[name]:>9.2f} {target:>7}"
        )
    print(f"old lifts, first query after a write (lift register rebuilt): {first_after_write:.0f} ms (median of 3)")


if __name__ == "__main__":
    main()
