"""API and query benchmark: old lifts, buried gas pipes in a 1 km² polygon, an items page with a CQL2 filter.

Each is timed three ways, medians of --repeat runs: the query function (library), the HTTP endpoint in-process
(TestClient, so JSON encoding included, no network), and a raw SQL statement selecting the same rows.

    .venv/bin/python bench/api_bench.py --buildings 1000000            # the issue's size (slow to build)
    .venv/bin/python bench/api_bench.py --buildings 100000 --store postgis

Targets (issue 6, 1M buildings / 100k lifts / 100k pipes): old lifts p50 ≤ 50 ms, buried gas pipes in 1 km² ≤ 30 ms,
items page of 100 with CQL2 ≤ 30 ms, each within 2× of raw SQL.
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
import pyarrow as pa
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.model import Asset, Kind
from cim.queries import buried_pipes, old_lifts
from cim.queries.sqlbits import sql_store
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import AssetBatch, open_store

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def wrk(url: str, *, seconds: int, connections: int) -> float:
    """Requests per second ``wrk`` measures against ``url`` (one thread: the machine has few cores)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if found is None or non_2xx is not None:
        raise RuntimeError(f"wrk against {url} failed:\n{out}")
    return float(found.group(1))


def tile_throughput(tmp: Path, *, seconds: int, connections: int, workers: int) -> None:
    """GET throughput of our ``/tiles`` route under uvicorn against nginx serving the same files, both measured
    by wrk in this run, nginx first, then ours; a 3D-Tiles-sized glb (64 KB) and the tileset JSON (gzip)."""
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        print("tile throughput: needs wrk and nginx (apt-get install -y wrk nginx); skipped")
        return
    tiles = tmp / "tiles"
    (tiles / "city").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    (tiles / "city" / "0.glb").write_bytes(b"glTF" + rng.bytes(64 * 1024 - 4))
    (tiles / "city" / "tileset.json").write_text('{"asset": {"version": "1.1"}, "root": {"x": "' + "y" * 8000 + '"}}')
    tmp.chmod(0o755)  # nginx's workers drop to an unprivileged user when started as root; they must read the files
    nginx_port, cim_port = free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""worker_processes {workers}; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types {{ application/json json; model/gltf-binary glb; }}
  client_body_temp_path {tmp}/nginx-body; proxy_temp_path {tmp}/nginx-proxy; fastcgi_temp_path {tmp}/nginx-fcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi; scgi_temp_path {tmp}/nginx-scgi;
  gzip on; gzip_types application/json; gzip_min_length 256;
  server {{ listen 127.0.0.1:{nginx_port}; location /tiles/ {{ alias {tiles}/; etag on; }} }}
}}
"""
    )
    store = tmp / "tiles-bench.duckdb"
    env = os.environ | {"CIM_STORE": str(store)}
    servers = {
        "nginx": [shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(tmp)],
        "cim (uvicorn)": [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "--app-dir",
            str(Path(__file__).parent),
            "api_bench:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(cim_port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
    }
    env["CIM_TILES_DIR"] = str(tiles)
    ports = {"nginx": nginx_port, "cim (uvicorn)": cim_port}
    results: dict[str, dict[str, float]] = {}
    for name, command in servers.items():
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{ports[name]}/tiles/city/"
            wait_for(base + "tileset.json")
            results[name] = {
                "glb 64 KB": wrk(base + "0.glb", seconds=seconds, connections=connections),
                "tileset.json": wrk(base + "tileset.json", seconds=seconds, connections=connections),
            }
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"\ntile GET throughput (wrk -t1 -c{connections} -d{seconds}s, {workers} worker(s) each, req/s)")
    print(f"{'file':14} {'nginx':>9} {'cim':>9} {'cim/nginx':>10} {'target':>7}")
    for file in results["nginx"]:
        ours, theirs = results["cim (uvicorn)"][file], results["nginx"][file]
        print(f"{file:14} {theirs:>9.0f} {ours:>9.0f} {ours / theirs:>10.2f} {'0.50':>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buildings", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["duckdb", "postgis"], default="duckdb")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/cim_test")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--tiles-only", action="store_true", help="only the tile throughput against nginx")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per file and server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers and nginx worker processes")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        if not args.tiles_only:
            query_figures(args, tmp)
        tile_throughput(tmp, seconds=args.seconds, connections=args.connections, workers=args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def query_figures(args: argparse.Namespace, tmp: Path) -> None:
    url = str(tmp / "bench.duckdb") if args.store == "duckdb" else f"{args.postgres}?schema=b_{uuid.uuid4().hex[:8]}"
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
    rows: list[tuple[str, float, float, float, str]] = []
    with TestClient(create_app(settings)) as client, open_store(url) as _:
        pass
    # library and raw SQL (the app holds the store while it runs, so they run in turn)
    with open_store(url) as store:
        db, s = sql_store(store)
        p = s.param
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
    del rows


if __name__ == "__main__":
    main()
