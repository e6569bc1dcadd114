"""Tile builds on Dask distributed against the build before it (a home-made pool of spawned processes), side by side
in one run, each build in a fresh process:

1. full build of ``-n`` LOD1 buildings: the Dask build (a local cluster of 2 workers) and the old build (the code at
   ``--base``, e.g. a checkout of d894f6b), alternated ``--rounds`` times; medians and their ratio [target ≤ 1.1×];
2. ``--changed`` buildings changed, then rebuilt by each [target ≤ 5 s];
3. scaling: the Dask build on a local cluster of 1 worker, then of 2; peak RSS of every worker process, sampled
   [targets: ≥ 1.7× faster with 2; ≤ 1.5 GB per worker];
4. a worker killed (SIGKILL) when a third of the tiles are written: the build completes, and the sha256 of every file
   equals the undisturbed build's.

    PYTHONPATH=$PWD python bench/dask_build_bench.py -n 1000000 --keep /tmp/daskbench --base /work/main

The city is made as bench/tiles_bench.py makes it (kept in ``--keep`` for the next run). The machine may be shared:
the load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiles_bench import change_some, load, write_city

# One build in a fresh process: argv = store, out, options as JSON. Prints a JSON line with its figures. Runs under
# either code base (the old one has no ``cluster``), so it uses only what both have.
_BUILD = r"""
import json, os, resource, signal, sys, threading, time
import psutil
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling.build import build_tiles

store_path, out, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
me = psutil.Process()
peaks, stop, killed = {}, threading.Event(), []

def sample():
    while not stop.wait(0.2):
        for child in me.children(recursive=True):
            try:
                peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss)
            except psutil.Error:
                pass

def workers():
    return [c for c in me.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]

def progress(done, total):
    if options.get("kill_at") and not killed and total and done >= total * options["kill_at"]:
        victim = workers()[0]
        os.kill(victim.pid, signal.SIGKILL)
        killed.append(victim.pid)

threading.Thread(target=sample, daemon=True).start()
kwargs = {"progress": progress}
cluster = None
if options.get("local_workers"):  # a cluster of exactly this many workers, given to the build by address
    import logging
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=options["local_workers"], threads_per_worker=1, dashboard_address=None,
                           silence_logs=logging.ERROR)
    kwargs["cluster"] = cluster.scheduler_address
if options.get("workers"):
    kwargs["workers"] = options["workers"]
started = time.perf_counter()
with open_store(store_path) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
    summary = build_tiles(store, meshes, out, **kwargs)
seconds = time.perf_counter() - started
stop.set()
if cluster is not None:
    cluster.close()
print(json.dumps({
    "seconds": seconds, "written": summary.written, "tiles": summary.written + summary.reused,
    "worker_peak_mb": max(peaks.values(), default=0) / 2**20,
    "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "killed": killed,
}))
"""


def run_build(code: Path, store: Path, out: Path, **options: Any) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(store), str(out), json.dumps(options)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"build under {code} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def hashes(out: Path) -> dict[str, str]:
    version = out.resolve()
    return {
        str(p.relative_to(version)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(version.rglob("*"))
        if p.is_file()
    }


def fresh(out: Path) -> Path:
    shutil.rmtree(out.parent, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="number of buildings")
    parser.add_argument("--keep", type=Path, help="folder to keep the store in (default: a temp folder)")
    parser.add_argument("--base", type=Path, required=True, help="checkout of the build before Dask (d894f6b)")
    parser.add_argument("--rounds", type=int, default=3, help="full builds of each, alternated")
    parser.add_argument("--changed", type=int, default=100, help="buildings changed before the rebuild")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: full, changed, scaling, kill")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    new_code = Path(__file__).resolve().parents[1]
    folder = args.keep or Path(tempfile.mkdtemp(prefix="dask-build-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / ("city.duckdb" if args.keep is None else f"city{args.n}.duckdb")
    try:
        if not store.exists():
            print(f"writing {args.n:,} buildings + meshes … {write_city(store, args.n):.1f} s", flush=True)
        print(f"{args.n:,} buildings; new code {new_code}, old code {args.base}; {os.cpu_count()} CPUs", flush=True)
        dask_out, old_out = folder / "dask" / "city", folder / "old" / "city"
        reference: dict[str, str] = {}
        if "full" not in skip:
            times: dict[str, list[float]] = {"dask": [], "old": []}
            for round_ in range(args.rounds):
                for name, code, out in (("old", args.base, old_out), ("dask", new_code, dask_out)):
                    figures = run_build(code, store, fresh(out))
                    times[name].append(figures["seconds"])
                    print(
                        f"  round {round_ + 1} {name:4}: {figures['seconds']:6.1f} s, {figures['tiles']:,} tiles, "
                        f"worker peak RSS {figures['worker_peak_mb']:,.0f} MB, main {figures['main_peak_mb']:,.0f} MB"
                        f"; {load()}",
                        flush=True,
                    )
            old, new = statistics.median(times["old"]), statistics.median(times["dask"])
            print(f"full build medians: old {old:.1f} s, dask (local, 2 workers) {new:.1f} s → {new / old:.2f}×")
            reference = hashes(dask_out)
            print(f"  dask and old builds identical file for file: {reference == hashes(old_out)}")
        if "changed" not in skip and dask_out.is_symlink() and old_out.is_symlink():
            change_some(store, args.changed)
            for name, code, out in (("old", args.base, old_out), ("dask", new_code, dask_out)):
                figures = run_build(code, store, out)
                print(
                    f"rebuild after {args.changed} changed buildings, {name}: {figures['seconds']:.1f} s, "
                    f"{figures['written']:,} of {figures['tiles']:,} tiles written; {load()}",
                    flush=True,
                )
        if "scaling" not in skip:
            runs = {}
            for count in (1, 2):
                runs[count] = run_build(new_code, store, fresh(folder / f"scale{count}" / "city"), local_workers=count)
                print(
                    f"  dask, local cluster of {count} worker(s): {runs[count]['seconds']:.1f} s, worker peak RSS "
                    f"{runs[count]['worker_peak_mb']:,.0f} MB; {load()}",
                    flush=True,
                )
            print(f"scaling: 2 workers {runs[1]['seconds'] / runs[2]['seconds']:.2f}× faster than 1")
            reference = hashes(folder / "scale2" / "city")  # a full build of the city as it is now
        elif "changed" not in skip:
            reference = {}  # the rebuild's files are not a full build's (its .state differs): build one
        if "kill" not in skip:
            if not reference:
                run_build(new_code, store, fresh(folder / "undisturbed" / "city"))
                reference = hashes(folder / "undisturbed" / "city")
            killed_out = fresh(folder / "killed" / "city")
            figures = run_build(new_code, store, killed_out, kill_at=0.33)
            same = hashes(killed_out) == reference
            print(
                f"worker killed (pid {figures['killed']}) at a third of the tiles: completed in "
                f"{figures['seconds']:.1f} s; every file's sha256 equal to the undisturbed build's: {same}; {load()}"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
