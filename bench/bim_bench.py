"""IFC → assets + meshes vs the bare ifcopenshell geometry iteration, and peak memory vs file size.

    .venv/bin/python bench/bim_bench.py [--elements 5000] [--repeat 5]

Like with like: both sides parse the same file with ``ifcopenshell.open`` and mesh the same elements with the
same settings (:func:`cim.bim.geometry.settings`: same element classes, openings subtracted, manifold kernel). The
bare side is ifcopenshell's geometry iterator, :func:`cim.bim.geometry.iterator` with one thread, in a function
that calls ``get()`` on each shape and nothing else, timed until it returns, so it releases its iterator and model
as ``ingest_ifc`` releases what it made (ifcopenshell frees a 5,000-shape iterator's caches in ~50 ms; its timing
without the release is printed too). The ingest (``ingest_ifc``) meshes element by element with the same kernel
(see :mod:`cim.bim.geometry` for why, and ``tests/bim/test_geometry.py`` for the identical meshes), and also
reads georeference, structure and properties, georeferences the meshes and writes assets and meshes to DuckDB
files and commits. Its kernel runs in two child processes (each meshing half of the elements) while the parent
does the rest, so it keeps two cores busy: the bare iteration with two iterator threads (``--threads``) is printed
too, for reference (in ifcopenshell 0.9 it is slower than with one).

Each run is a fresh subprocess; the bare runs and the ingest run of one round go back to back, and a ratio is
taken per round, so a busy moment of the shared machine hits both sides. Reported: the median over ``--repeat``
rounds (and the fastest run of each side). Figures:

- wall time of ``ingest_ifc`` (the issue's target, ≤ 1.3×, is read against it: wall time is what a user waits
  for), and of the whole run with opening and closing the stores (DuckDB loads its spatial extension on open: a
  fixed cost of the store, not of IFC);
- CPU seconds (user + system of the process, its threads and its geometry children, over the same span as the
  wall time: imports and store open excluded on both sides): what the ingest costs on top of the kernel in work,
  whatever the number of cores;
- memory (target: peak ≤ 10× file size): peak RSS of the ingest process (VmHWM: ``ru_maxrss`` keeps the peak of
  the process that started it across ``exec``, here this bench, which has built the generated model), its RSS
  after its imports and after opening the stores, and its peak growth over the imports; the geometry children's
  peak RSS (they share the parent's pages, so parent + child overstates); and, in one more ingest run per file,
  the peak of the process tree sampled every 5 ms: the parent's RSS plus the children's private pages, so each
  page counts once (PSS would split shared libraries with every other process on the machine); the bare
  iteration's peak and growth likewise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ifc"

_RSS = """
def rss_kb(field="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
"""
_BARE = (
    _RSS
    + """
import json, resource, sys, time
import ifcopenshell
from cim.bim.geometry import iterator
def bare(path, library, threads, marks):
    model = ifcopenshell.open(path)
    it = iterator(model, library, threads)
    n = 0
    if it is not None and it.initialize():
        while True:
            it.get(); n += 1
            if not it.next(): break
    marks.append(time.perf_counter())
    return n  # the iterator and the model are released here, as when ingest_ifc returns
base, before = rss_kb(), resource.getrusage(resource.RUSAGE_SELF)
t, marks = time.perf_counter(), []
n = bare(sys.argv[1], sys.argv[2], int(sys.argv[3]), marks)
done = time.perf_counter()
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": done - t, "loop_seconds": marks[0] - t, "shapes": n, "rss_kb": rss_kb("VmHWM:"),
    "base_rss_kb": base, "cpu": r.ru_utime + r.ru_stime - before.ru_utime - before.ru_stime}))
"""
)
_INGEST = (
    _RSS
    + """
import json, resource, sys, time
from pathlib import Path
from cim.bim.ingest import ingest_ifc
from cim.bim.georef import Placement
from cim.store import open_store
from cim.store.meshes import MeshStore
def cpu():
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime
if __name__ == "__main__":
    base, cpu0 = rss_kb(), cpu()
    t = time.perf_counter()
    d = Path(sys.argv[2])
    with open_store(str(d / "b.duckdb")) as store, MeshStore(d / "b.meshes.duckdb") as meshes:
        opened, open_rss, cpu1 = time.perf_counter(), rss_kb(), cpu()
        s = ingest_ifc(store, sys.argv[1], meshes=meshes, placement=Placement(121.5, 31.2, 4.0))
        ingested, cpu2 = time.perf_counter() - opened, cpu()
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": time.perf_counter() - t, "ingest_seconds": ingested,
        "assets": sum(s.assets.values()), "meshes": s.meshes, "failed": s.failed_elements,
        "rss_kb": rss_kb("VmHWM:"), "child_rss_kb": c.ru_maxrss, "base_rss_kb": base, "open_rss_kb": open_rss,
        "cpu": cpu2 - cpu1, "cpu_total": cpu() - cpu0}))
"""
)


def run(code: str, *args: str, sample: bool = False) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; with ``sample``, also the peak memory (kB) of its process tree: the RSS
    of the process plus the private pages of its children (what they allocated or copied on write)."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    peak = 0
    while sample and process.poll() is None:
        pids = _tree(process.pid)
        peak = max(peak, _smaps(pids[0])[0] + sum(_smaps(p)[1] for p in pids[1:]))
        time.sleep(0.005)
    out, err = process.communicate()
    if process.returncode:
        raise RuntimeError(f"benchmark run failed ({process.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["stderr_lines"] = len(err.splitlines())
    result["tree_kb"] = peak
    return result


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        try:
            with open(f"/proc/{pids[i]}/task/{pids[i]}/children") as handle:
                pids += [int(p) for p in handle.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def _smaps(pid: int) -> tuple[int, int]:
    """RSS and private (clean + dirty) kB of a process; zeros when it is gone."""
    rss = private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Private_"):
                    private += int(line.split()[1])
    except OSError:
        pass
    return rss, private


def generated(elements: int, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.bim.conftest import build_model

    path = folder / f"generated-{elements}.ifc"
    build_model("IFC4", walls=elements - elements // 100, lifts=elements // 100).write(str(path))
    return path


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--elements", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads of the second bare iteration (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        largest = max(DATA.glob("*.ifc"), key=lambda p: p.stat().st_size)
        for path in (largest, generated(args.elements, Path(tmp))):
            bares, multis, ingests = [], [], []
            for _ in range(args.repeat):
                bares.append(run(_BARE, str(path), "manifold", "1"))
                if args.threads > 1:
                    multis.append(run(_BARE, str(path), "manifold", str(args.threads)))
                ingests.append(run(_INGEST, str(path), tempfile.mkdtemp(dir=tmp)))
            sampled = run(_INGEST, str(path), tempfile.mkdtemp(dir=tmp), sample=True)
            print(_report(path, args, bares, multis, ingests, sampled))


def _report(
    path: Path,
    args: argparse.Namespace,
    bares: list[dict[str, Any]],
    multis: list[dict[str, Any]],
    ingests: list[dict[str, Any]],
    sampled: dict[str, Any],
) -> str:
    def ratio(key: str, bare_key: str, against: list[dict[str, Any]]) -> float:
        """The median of the per-round ratios."""
        return statistics.median(float(i[key]) / float(b[bare_key]) for i, b in zip(ingests, against, strict=True))

    mb = path.stat().st_size / 1e6
    first = ingests[0]
    fastest, fastest_bare = min(r["ingest_seconds"] for r in ingests), min(r["seconds"] for r in bares)
    lines = [
        f"{path.name}: {mb:.2f} MB, {first['assets']} assets, {first['meshes']} meshes, {first['failed']} failed; "
        f"bare iteration {bares[0]['shapes']} shapes; medians of {args.repeat} rounds",
        f"  wall    bare {median(bares, 'seconds'):.3f} s, ingest_ifc {median(ingests, 'ingest_seconds'):.3f} s → "
        f"ratio {ratio('ingest_seconds', 'seconds', bares):.2f} [≤ 1.3]; fastest {fastest_bare:.3f} / {fastest:.3f} "
        f"s → {fastest / fastest_bare:.2f}; with store open + close {median(ingests, 'seconds'):.3f} s → "
        f"{ratio('seconds', 'seconds', bares):.2f}",
        f"          bare without releasing its iterator and model {median(bares, 'loop_seconds'):.3f} s → ratio "
        f"{ratio('ingest_seconds', 'loop_seconds', bares):.2f}",
    ]
    if multis:
        lines.append(
            f"          bare with {args.threads} threads (the ingest runs two processes) "
            f"{median(multis, 'seconds'):.3f} s → ratio {ratio('ingest_seconds', 'seconds', multis):.2f}"
        )
    lines.append(
        f"  CPU     bare {median(bares, 'cpu'):.3f} s, ingest_ifc {median(ingests, 'cpu'):.3f} s (with its geometry "
        f"children) → ratio {ratio('cpu', 'cpu', bares):.2f}"
    )
    peak, base, opened = (median(ingests, k) / 1e3 for k in ("rss_kb", "base_rss_kb", "open_rss_kb"))
    tree = sampled["tree_kb"] / 1e3
    bare_peak, bare_base = median(bares, "rss_kb") / 1e3, median(bares, "base_rss_kb") / 1e3
    lines += [
        f"  memory  [peak ≤ 10× file = {10 * mb:.0f} MB]",
        f"          ingest peak RSS {peak:.0f} MB = {peak / mb:.0f}× file; after imports {base:.0f} MB, after store "
        f"open {opened:.0f} MB; growth {peak - base:.0f} MB = {(peak - base) / mb:.1f}× file over imports, "
        f"{peak - opened:.0f} MB = {(peak - opened) / mb:.1f}× over store open",
        f"          geometry children's peak RSS {median(ingests, 'child_rss_kb') / 1e3:.0f} MB (mostly the parent's "
        f"pages); process tree peak {tree:.0f} MB = {tree / mb:.0f}× file, growth {tree - base:.0f} MB = "
        f"{(tree - base) / mb:.1f}× over imports (one sampled run)",
        f"          bare iteration peak RSS {bare_peak:.0f} MB = {bare_peak / mb:.0f}× file; after imports "
        f"{bare_base:.0f} MB; growth {bare_peak - bare_base:.0f} MB = {(bare_peak - bare_base) / mb:.1f}×",
        f"  stderr lines of the ingest {first['stderr_lines']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
