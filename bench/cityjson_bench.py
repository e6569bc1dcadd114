"""CityJSON import benchmark: the reader alone (:func:`cim.gis.cityjson.read_cityjson`, every batch made), no store.

    .venv/bin/python bench/cityjson_bench.py                                  # this checkout, delft.city.json
    .venv/bin/python bench/cityjson_bench.py --tree ../main --tree .          # two checkouts in the same run
    .venv/bin/python bench/cityjson_bench.py --file ../shared/data/cityjson/rotterdam_subset.city.json --crs EPSG:7415
    .venv/bin/python bench/cityjson_bench.py --file …/rotterdam_subset.city.json --crs EPSG:7415 --repeat 100

``--repeat N`` imports a file made of N copies of the file's CityObjects (ids suffixed ``_r<n>``, the same vertices):
Delft's surfaces are all triangles, Rotterdam's LoD2 ones polygons, and its 16 buildings are too few to time alone.

Each round imports the file in a fresh process per checkout (run in it, ``PYTHONPATH`` set to it), the checkouts
taking turns round by round so a shared machine's drift falls on both alike; the figures are the medians over the
rounds of the time from opening the file to its last batch, wall-clock and the process's CPU time (the steadier one
when the machine is loaded; imports of numpy, pyproj … not counted). Besides the time, each run prints
a digest of what it made — triangles, footprint area and heights summed — so two checkouts can be seen to agree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cityjson"

ONE_RUN = """
import json, sys, time
from pathlib import Path
from cim.gis.cityjson import read_cityjson
from cim.gis.readers import parse_crs
from cim.model import AssetBatch, MeshBatch
path, crs = Path(sys.argv[1]), (parse_crs(sys.argv[2]) if sys.argv[2] else None)
start, cpu = time.perf_counter(), time.process_time()
triangles, assets, area, heights = 0, 0, 0.0, 0.0
with read_cityjson(path, crs=crs) as read:
    for batch in read.items(None):
        if isinstance(batch, MeshBatch):
            triangles += sum(m.triangle_count for m in batch.to_meshes())
        elif isinstance(batch, AssetBatch):
            assets += len(batch.to_assets())
            for asset in batch.to_assets():
                area += asset.geom.area
                heights += (asset.z_max or 0) - (asset.z_min or 0)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "assets": assets, "triangles": triangles,
                  "footprint_deg2": round(area, 12), "heights_m": round(heights, 3)}))
"""


def run_once(tree: Path, path: Path, crs: str) -> dict[str, float]:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(path), crs],
        env=environment,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def repeated(path: Path, copies: int, folder: Path) -> Path:
    """``path``'s CityObjects ``copies`` times over in one file (``parents`` / ``children`` ids suffixed alike)."""
    document = json.loads(path.read_text(encoding="utf-8"))

    def renamed(city_object: dict[str, Any], n: int) -> dict[str, Any]:
        links = {k: [f"{i}_r{n}" for i in city_object[k]] for k in ("parents", "children") if k in city_object}
        return {**city_object, **links}

    objects = document["CityObjects"]
    document["CityObjects"] = {f"{k}_r{n}": renamed(v, n) for n in range(copies) for k, v in objects.items()}
    out = folder / f"{path.name.split('.')[0]}_x{copies}.city.json"
    out.write_text(json.dumps(document), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=DATA / "delft.city.json")
    parser.add_argument("--crs", default="", help="for a file without metadata.referenceSystem")
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to import with (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="import this many copies of the file's objects")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = repeated(args.file, args.repeat, Path(folder)) if args.repeat > 1 else args.file
        compare(args, path)


def compare(args: argparse.Namespace, path: Path) -> None:
    """Import ``path`` with each checkout, round by round, and print each one's medians and digest."""
    trees = [t.resolve() for t in args.tree or [Path(__file__).resolve().parents[1]]]
    runs: dict[Path, list[dict[str, float]]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            runs[tree].append(run_once(tree, path, args.crs))
    size = path.stat().st_size / 1e6
    for tree, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        digest = {k: v for k, v in results[0].items() if k not in ("seconds", "cpu")}
        each = ", ".join(f"{r['seconds']:.3f}" for r in results)
        print(
            f"{tree}: {path.name} ({size:.1f} MB) median {seconds:.3f} s of {len(results)} ({each}), "
            f"CPU {cpu:.3f} s; {digest}"
        )


if __name__ == "__main__":
    main()
