"""Exports of a large city: ``cim export`` to GeoPackage and to CityJSON, timed end to end with their peak memory.

Builds (once, kept in ``--keep``) a DuckDB store of ``-n`` footprint buildings — 4- to 8-cornered polygons spread
over Shanghai, with heights, storeys, install dates, status and a few props each — then runs each export ``--rounds``
times, each in a fresh process (``python -m cim export``, as a user runs it), and prints the median time and the
peak RSS of the exporting process beside the targets (1,000,000 buildings: GeoPackage ≤ 60 s, CityJSON ≤ 90 s).

    PYTHONPATH=$PWD python bench/export_bench.py -n 1000000 --keep /tmp/export-bench

The machine may be shared: the load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

from cim.model import AssetBatch
from cim.store import open_store

BATCH = 100_000
WEST, SOUTH, SIDE = 121.2, 30.9, 0.5
M_PER_DEG_LAT = 111_320.0
TARGETS_S = {"gpkg": 60.0, "cityjson": 90.0}

# One export in a fresh process: its wall time and its own peak RSS (the children's RUSAGE: the process exec'd).
_RUN = r"""
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run([sys.executable, "-m", "cim", "export", *sys.argv[1:]], capture_output=True, text=True)
seconds = time.perf_counter() - start
if done.returncode:
    sys.exit(done.stderr)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{seconds} {peak_kb}")
"""


def buildings(n: int, seed: int = 1) -> Iterator[AssetBatch]:
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        lon = WEST + rng.random(size) * SIDE
        lat = SOUTH + rng.random(size) * SIDE
        corners = rng.choice([4, 4, 4, 5, 6, 8], size)
        radius = 4 + rng.random(size) * 16
        angle = rng.random(size)[:, None] * np.pi + 2 * np.pi * np.arange(8)[None, :] / corners[:, None]
        valid = np.arange(8)[None, :] < corners[:, None]
        ring_lon = lon[:, None] + radius[:, None] * np.cos(angle) / (M_PER_DEG_LAT * np.cos(np.radians(lat)))[:, None]
        ring_lat = lat[:, None] + radius[:, None] * np.sin(angle) / M_PER_DEG_LAT
        owner = np.repeat(np.arange(size), corners)
        polygons = shapely.polygons(
            shapely.linearrings(np.column_stack([ring_lon[valid], ring_lat[valid]]), indices=owner)
        )
        height = 6 + rng.random(size) * 90
        ids = [f"b{i:07d}" for i in range(start, start + size)]
        props = [f'{{"owner":"district {i % 16}","use":"{("home", "office", "shop")[i % 3]}"}}' for i in range(size)]
        yield AssetBatch.from_table(
            pa.table(
                {
                    "id": pa.array(ids),
                    "kind": pa.array(["building"] * size),
                    "name": pa.array([f"Building {i}" for i in range(start, start + size)]),
                    "source": pa.array(["bench"] * size),
                    "geom": pa.array(shapely.to_wkb(polygons)),
                    "z_min": np.full(size, 4.0),
                    "z_max": 4.0 + height,
                    "height_m": height,
                    "storeys": (height // 3).astype(np.int32),
                    "install_date": pa.array(rng.integers(-20000, 19000, size).astype("datetime64[D]")).cast(
                        pa.date32()
                    ),
                    "status": pa.array(["in_use"] * size),
                    "props": pa.array(props),
                }
            )
        )


def write_store(path: Path, n: int) -> float:
    start = time.perf_counter()
    with open_store(str(path)) as store:
        store.replace_source("bench", buildings(n))
        store.optimize()
    return time.perf_counter() - start


def run_export(store: Path, fmt: str, out: Path) -> tuple[float, float]:
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _RUN, "-f", fmt, "-o", str(out), "-s", str(store), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak_kb = done.stdout.split()
    return float(seconds), int(peak_kb) / 1024


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="number of buildings")
    parser.add_argument("--keep", type=Path, help="folder to keep the store in (default: a temp folder)")
    parser.add_argument("--rounds", type=int, default=3, help="exports of each format")
    parser.add_argument("--formats", default="gpkg,cityjson", help="comma-separated formats to time")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="export-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / f"city{args.n}.duckdb"
    try:
        if not store.exists():
            print(f"writing {args.n:,} buildings … {write_store(store, args.n):.1f} s; {load()}", flush=True)
        print(f"{args.n:,} buildings in {store} ({store.stat().st_size / 1e6:,.0f} MB); {os.cpu_count()} CPUs")
        for fmt in args.formats.split(","):
            out = folder / ("city.gpkg" if fmt == "gpkg" else "city.city.json")
            times, peaks = [], []
            for round_ in range(args.rounds):
                seconds, peak_mb = run_export(store, fmt, out)
                times.append(seconds)
                peaks.append(peak_mb)
                print(
                    f"  {fmt} round {round_ + 1}: {seconds:6.1f} s, peak RSS {peak_mb:,.0f} MB, "
                    f"{out.stat().st_size / 1e6:,.0f} MB written; {load()}",
                    flush=True,
                )
            median = statistics.median(times)
            target = TARGETS_S.get(fmt)
            scaled = "" if target is None else f" [target at 1,000,000: ≤ {target:.0f} s]"
            rate = args.n / median
            print(
                f"{fmt}: median {median:.1f} s for {args.n:,} buildings ({rate:,.0f}/s), peak RSS "
                f"{max(peaks):,.0f} MB{scaled}",
                flush=True,
            )
            if fmt == "cityjson":
                with out.open("rb") as f:
                    head = json.loads(f.read(200).split(b',"CityObjects"')[0] + b"}")
                print(f"  CityJSON head: version {head['version']}, transform {head['transform']}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
