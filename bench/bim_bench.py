"""IFC → assets + meshes vs the bare ifcopenshell geometry iteration, and peak memory vs file size.

    .venv/bin/python bench/bim_bench.py [--elements 5000] [--repeat 3]

Each run is a fresh subprocess; bare iteration and ingest runs alternate, and the fastest of ``--repeat`` runs of
each is reported (the machine is shared: the minimum is the least disturbed run). Figures:

- wall time of ``ingest_ifc`` (parse, structure, properties, geometry, store writes and commit), and of the whole
  run including opening and closing the stores (DuckDB loads its spatial extension on open: a fixed cost of the
  store, not of IFC);
- CPU seconds (user + system, this process and its geometry children): on a loaded machine the ratio of CPU
  times says what the ingest costs on top of the kernel better than wall time does;
- peak RSS (ru_maxrss) of the ingest process and of its geometry child, and the ingest process's RSS after its
  imports, before the file is touched. Targets (issue 3): ratio ≤ 1.3, peak ≤ 10× file size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ifc"

_BARE = """
import json, resource, sys, time
import ifcopenshell, ifcopenshell.geom
from cim.bim.geometry import settings
t = time.perf_counter()
model = ifcopenshell.open(sys.argv[1])
spatial = "IfcSpatialStructureElement" if model.schema == "IFC2X3" else "IfcSpatialElement"
it = ifcopenshell.geom.iterator(
    settings(), model, 1, exclude=["IfcOpeningElement", spatial], geometry_library=sys.argv[2]
)
n = 0
if it.initialize():
    while True:
        it.get(); n += 1
        if not it.next(): break
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "shapes": n, "rss_kb": r.ru_maxrss,
    "cpu": r.ru_utime + r.ru_stime}))
"""
_INGEST = """
import json, resource, sys, time
from pathlib import Path
from cim.bim.ingest import ingest_ifc
from cim.bim.georef import Placement
from cim.store import open_store
from cim.store.meshes import MeshStore
if __name__ == "__main__":
    before = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    d = Path(sys.argv[2])
    with open_store(str(d / "b.duckdb")) as store, MeshStore(d / "b.meshes.duckdb") as meshes:
        opened = time.perf_counter()
        s = ingest_ifc(store, sys.argv[1], meshes=meshes, placement=Placement(121.5, 31.2, 4.0))
        ingested = time.perf_counter() - opened
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": time.perf_counter() - t, "ingest_seconds": ingested,
        "assets": sum(s.assets.values()), "meshes": s.meshes, "failed": s.failed_elements,
        "rss_kb": r.ru_maxrss, "child_rss_kb": c.ru_maxrss, "base_rss_kb": before.ru_maxrss,
        "cpu": r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime - before.ru_utime - before.ru_stime}))
"""


def run(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr_lines"] = len(out.stderr.splitlines())
    return result


def generated(elements: int, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.bim.conftest import build_model

    path = folder / f"generated-{elements}.ifc"
    build_model("IFC4", walls=elements - elements // 100, lifts=elements // 100).write(str(path))
    return path


def fastest(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return min(runs, key=lambda r: float(r[key]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--elements", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        largest = max(DATA.glob("*.ifc"), key=lambda p: p.stat().st_size)
        for path in (largest, generated(args.elements, Path(tmp))):
            bares, ingests = [], []
            for _ in range(args.repeat):
                bares.append(run(_BARE, str(path), "manifold"))
                ingests.append(run(_INGEST, str(path), tempfile.mkdtemp(dir=tmp)))
            bare, ingest = fastest(bares, "seconds"), fastest(ingests, "ingest_seconds")
            bare_cpu, ingest_cpu = fastest(bares, "cpu")["cpu"], fastest(ingests, "cpu")["cpu"]
            size_mb = path.stat().st_size / 1e6
            parent_mb, child_mb = ingest["rss_kb"] / 1e3, ingest["child_rss_kb"] / 1e3
            print(
                f"{path.name}: {size_mb:.1f} MB, {ingest['assets']} assets, {ingest['meshes']} meshes, "
                f"{ingest['failed']} failed; fastest of {args.repeat}\n"
                f"  bare manifold iteration {bare['seconds']:.2f} s ({bare['shapes']} shapes), "
                f"ingest_ifc {ingest['ingest_seconds']:.2f} s → ratio "
                f"{ingest['ingest_seconds'] / bare['seconds']:.2f} (target ≤ 1.3); with store open/close "
                f"{ingest['seconds']:.2f} s → {ingest['seconds'] / bare['seconds']:.2f}\n"
                f"  CPU bare {bare_cpu:.2f} s, ingest (parent + geometry child) {ingest_cpu:.2f} s → ratio "
                f"{ingest_cpu / bare_cpu:.2f}\n"
                f"  peak RSS ingest {parent_mb:.0f} MB (after imports {ingest['base_rss_kb'] / 1e3:.0f} MB), "
                f"geometry child {child_mb:.0f} MB, bare iteration {bare['rss_kb'] / 1e3:.0f} MB; "
                f"max/file {max(parent_mb, child_mb) / size_mb:.0f}× (target ≤ 10×), "
                f"ingest growth over imports {(parent_mb - ingest['base_rss_kb'] / 1e3) / size_mb:.0f}×; "
                f"stderr lines {ingest['stderr_lines']}"
            )


if __name__ == "__main__":
    main()
