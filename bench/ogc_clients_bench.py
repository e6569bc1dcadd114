"""GDAL as an engineer uses it against our OGC API – Features, on the demo city, timed beside issue 23's targets.

Prepares the demo city (the demo pipeline's data: 20,000 generated buildings, lifts, pipes … and the IFC towers;
no tiles) in a cache folder, reused by later runs, starts ``cim serve`` on it, then times Debian's GDAL:

- ``ogrinfo -ro -so OAPIF:<url> <collection>`` for every collection (target ≤ 3 s each),
- ``ogrinfo -ro OAPIF:<url> building -where "height_m > 300"`` (target ≤ 2 s and ≤ 3 HTTP requests),
- ``ogr2ogr -f GPKG out.gpkg OAPIF:<url> building`` and the features the GeoPackage holds (target ≤ 10 s).

HTTP requests are counted from GDAL's own debug output (``CPL_DEBUG=ON``: one ``HTTP: Fetch(...)`` line per
request). A command still running after ``--timeout`` seconds is stopped and shown as such.

    .venv/bin/python bench/ogc_clients_bench.py                      # DuckDB store, every collection (≤ 10 min)
    .venv/bin/python bench/ogc_clients_bench.py --quick              # building, lift, park; 10 s timeout (~1 min)
    .venv/bin/python bench/ogc_clients_bench.py --store postgis --tipg   # and the same on tipg for reference

With ``--tipg`` (PostGIS only) tipg serves a view of the same store's buildings (bench/peers/README.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from ogc_bench import (
    TIPG_VENV,
    VIEW_COLUMNS,
    Server,
    database_url,
    get_json,
    server_errors,
    start_ours,
    start_tipg,
    stop_servers,
    wait_ready,
)

from cim.pipeline.model import load_pipeline
from cim.pipeline.run import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
DEMO_PIPELINE = ROOT / "pipelines" / "shanghai-demo.toml"
DEMO_SCHEMA = "ogc_clients_demo"
WHERE = "height_m > 300"


def prepare_demo(kind: str, cache: Path, admin: str) -> tuple[str, str | None]:
    """The demo pipeline into a store of ``kind`` (no tiles): (store URL, the database's URL for PostGIS)."""
    pipeline = load_pipeline(DEMO_PIPELINE)
    assert pipeline.synth is not None
    cache.mkdir(parents=True, exist_ok=True)
    database = None
    if kind == "duckdb":
        store = str(cache / "city.duckdb")
    else:
        database = database_url(admin)
        store = f"{database}?schema={DEMO_SCHEMA}"
    synth = pipeline.synth.model_copy(update={"out": str(cache / "synth")})
    pipeline = pipeline.model_copy(update={"store": store, "tiles": None, "synth": synth})
    here = Path.cwd()
    os.chdir(ROOT)  # the generated layers name their mappings from the checkout (pipelines/mappings/...)
    try:
        summary = run_pipeline(pipeline)
    finally:
        os.chdir(here)
    if not summary.ok:
        failed = [s.error for s in summary.sources if not s.ok]
        raise SystemExit(f"the demo pipeline failed: {failed or summary.sensors['errors']}")
    fresh = [s for s in summary.sources if not s.skipped]
    print(
        f"demo city ({kind}) in {cache}: "
        + (f"built in {summary.seconds:.1f} s" if fresh else f"reused (checked in {summary.seconds:.1f} s)")
    )
    if database is not None:
        with psycopg.connect(database, autocommit=True) as con:
            con.execute(
                f"CREATE OR REPLACE VIEW {DEMO_SCHEMA}.building AS SELECT {VIEW_COLUMNS}, props, geom "
                f"FROM {DEMO_SCHEMA}.assets WHERE kind = 'building'"
            )
    return store, database


@dataclass
class GdalRun:
    seconds: float
    requests: int
    stopped: bool
    stdout: str
    debug: str

    def time_text(self, limit: float) -> str:
        return f"> {limit:.0f} s (stopped)" if self.stopped else f"{self.seconds:.2f} s"


def gdal(command: list[str], *, timeout: float, folder: Path) -> GdalRun:
    """Run a GDAL command with ``CPL_DEBUG=ON``, stopped after ``timeout`` s; its requests counted from the debug."""
    out, err = folder / "gdal.out", folder / "gdal.err"
    env = os.environ | {"CPL_DEBUG": "ON"}
    with out.open("w") as stdout, err.open("w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        try:
            proc.wait(timeout=timeout)
            stopped = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            stopped = True
        seconds = time.perf_counter() - started
    debug = err.read_text(errors="replace")
    return GdalRun(seconds, debug.count("HTTP: Fetch("), stopped, out.read_text(errors="replace"), debug)


def feature_count(text: str) -> str:
    found = re.search(r"^Feature Count: (\d+)", text, re.MULTILINE)
    return f"{int(found.group(1)):,}" if found else "?"


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def bench_server(server: Server, collections: list[str], args: argparse.Namespace, folder: Path) -> None:
    """The three GDAL tasks against ``server``, printed beside the targets."""
    source = f"OAPIF:{server.base}"
    building = server.collection
    print(f"\n{server.name} at {server.base}: ogrinfo -ro -so {source} <collection>   (target ≤ 3 s each)")
    print(f"  {'collection':26} {'time':>18} {'requests':>9} {'features':>9}  geometry")
    for collection in collections:
        run = gdal(["ogrinfo", "-ro", "-so", source, collection], timeout=args.timeout, folder=folder)
        geometry = re.search(r"^Geometry: (.+)$", run.stdout, re.MULTILINE)
        print(
            f"  {collection:26} {run.time_text(args.timeout):>18} {run.requests:>9,} "
            f"{feature_count(run.stdout):>9}  {geometry.group(1) if geometry else '?'} "
            f"{mark(not run.stopped and run.seconds <= 3)}"
        )
    run = gdal(["ogrinfo", "-ro", source, building, "-where", WHERE], timeout=args.timeout, folder=folder)
    found = run.stdout.count("OGRFeature(")
    on_server = any("filter=" in line for line in run.debug.splitlines() if "HTTP: Fetch(" in line)
    client_side = "evaluated on client side" in run.debug
    print(
        f'\n  ogrinfo -ro {source} {building} -where "{WHERE}":  {run.time_text(args.timeout)}, '
        f"{run.requests:,} requests, {found:,} features; filter sent to the server: {'yes' if on_server else 'no'}"
        + ("; GDAL: full filter evaluated on client side" if client_side else "")
        + f"   (target ≤ 2 s, ≤ 3 requests) {mark(not run.stopped and run.seconds <= 2 and run.requests <= 3)}"
    )
    gpkg = folder / f"{server.name.replace(' ', '-')}.gpkg"
    run = gdal(["ogr2ogr", "-f", "GPKG", str(gpkg), source, building], timeout=args.timeout, folder=folder)
    written = "none"
    if gpkg.exists():
        counted = subprocess.run(["ogrinfo", "-ro", "-so", str(gpkg), building], capture_output=True, text=True)
        written = feature_count(counted.stdout)
    print(
        f"  ogr2ogr -f GPKG out.gpkg {source} {building}:  {run.time_text(args.timeout)}, {run.requests:,} "
        f"requests, {written} features in the GeoPackage   (target ≤ 10 s) "
        f"{mark(not run.stopped and run.seconds <= 10)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["duckdb", "postgis"], default="duckdb")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench" / "demo")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a GDAL command is stopped")
    parser.add_argument("--collections", help="comma-separated collections for ogrinfo -so (default: all)")
    parser.add_argument("--tipg", action="store_true", help="the same against tipg (needs --store postgis)")
    parser.add_argument("--tipg-venv", type=Path, default=TIPG_VENV)
    parser.add_argument("--quick", action="store_true", help="building, lift and park only; 10 s timeout")
    args = parser.parse_args()
    if args.quick:
        args.timeout = min(args.timeout, 10.0)
        args.collections = args.collections or "building,lift,park"
    if shutil.which("ogrinfo") is None:
        sys.exit("needs GDAL: apt-get install -y gdal-bin")
    if args.tipg and args.store != "postgis":
        sys.exit("--tipg serves PostGIS tables only: add --store postgis")
    print(subprocess.run(["ogrinfo", "--version"], capture_output=True, text=True).stdout.strip())
    cache = args.cache / args.store
    store, database = prepare_demo(args.store, cache, args.postgres)
    tmp = Path(tempfile.mkdtemp(prefix="ogc-clients-"))
    servers: list[Server] = []
    try:
        servers.append(start_ours(store, tmp))
        if args.tipg:
            assert database is not None
            servers.append(start_tipg(database, DEMO_SCHEMA, tmp, args.tipg_venv))
        wait_ready(servers)
        ours = servers[0]
        listed = [c["id"] for c in get_json(f"{ours.base}/collections")["collections"]]
        wanted = args.collections.split(",") if args.collections else listed
        bench_server(ours, [c for c in wanted if c in listed], args, tmp)
        for peer in servers[1:]:
            bench_server(peer, [peer.collection], args, tmp)
    finally:
        stop_servers(servers)
        server_errors(servers, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
