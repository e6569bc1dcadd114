"""IFC → assets + meshes vs the bare ifcopenshell geometry iteration, and peak memory vs file size.

    .venv/bin/python bench/bim_bench.py [--elements 5000] [--repeat 5]

Like with like: both sides parse the same file with ``ifcopenshell.open`` and mesh the same elements with the same
settings (:func:`cim.bim.geometry.settings`: same element classes, openings subtracted, manifold kernel). The bare
side is ifcopenshell's geometry iterator, :func:`cim.bim.geometry.iterator` with one thread, in a function that
calls ``get()`` on each shape and nothing else, timed until it returns, so it releases its iterator and model as
``write_source`` releases what it made (ifcopenshell frees a 5,000-shape iterator's caches in ~50 ms; its timing
without the release is printed too). The ingest (``write_source``) meshes element by element with the same kernel
(see :mod:`cim.bim.geometry` for why, and ``tests/bim/test_geometry.py`` for the identical meshes), and also reads
georeference, structure and properties, georeferences the meshes and writes assets and meshes to DuckDB files and
commits. Its kernel runs in two geometry processes (each meshing half of the elements), children of the reader
process, which does the rest while the ingest process writes, so it keeps two cores busy: the bare iteration with
two iterator threads (``--threads``) is printed too, for reference (in ifcopenshell 0.9 it is slower than with
one).

Each run is a fresh subprocess; the bare runs and the ingest run of one round go back to back, and a ratio is
taken per round, so a busy moment of the shared machine hits both sides. Reported: the median over ``--repeat``
rounds (and the fastest run of each side). Figures:

- wall time of ``write_source`` (the issue's target, ≤ 1.3×, is read against it: wall time is what a user waits
  for), and of the whole run with opening and closing the stores (DuckDB loads its spatial extension on open: a
  fixed cost of the store, not of IFC);
- CPU seconds (user + system of the process, its threads and its geometry children, over the same span as the
  wall time: imports and store open excluded on both sides): what the ingest costs on top of the kernel in work,
  whatever the number of cores;
- memory (target: peak ≤ 10× file size): the peak of the process tree (the ingest process, its reader process and
  the reader's geometry children), each physical page counted once (see :func:`tree_kb`; needs root), in
  ``--sampled`` more ingest runs, sampled as often as reading the page tables allows, and at least the ingest
  process's own peak RSS; read as growth over the RSS after imports, and over the RSS after opening the stores
  (DuckDB's spatial extension: ~34 MB, whatever the file). The ingest process's peak RSS alone (VmHWM:
  ``ru_maxrss`` keeps the peak of the process that started it across ``exec``, here this bench, which has built
  the generated model), and the bare iteration's peak and growth likewise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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
    return n  # the iterator and the model are released here, as when write_source returns
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
from cim.pipeline.ingest import write_source
import cim.bim.source  # write_source loads the IFC reader on first use: imports are excluded from the timing
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
        s = write_source(store, sys.argv[1], meshes=meshes, placement=Placement(121.5, 31.2, 4.0))
        ingested, cpu2 = time.perf_counter() - opened, cpu()
    print(json.dumps({"seconds": time.perf_counter() - t, "ingest_seconds": ingested,
        "assets": sum(s.assets.values()), "meshes": s.meshes, "failed": s.failed_elements,
        "rss_kb": rss_kb("VmHWM:"), "base_rss_kb": base, "open_rss_kb": open_rss,
        "cpu": cpu2 - cpu1, "cpu_total": cpu() - cpu0}))
"""
)


def run(code: str, *args: str, sample: bool = False) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; with ``sample``, also the peak memory (kB) of its process tree, sampled
    as often as the machine allows (each sample reads the page tables: ~40 ms a process)."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    peak = 0
    while sample and process.poll() is None:
        peak = max(peak, tree_kb(_tree(process.pid)))
        time.sleep(0.005)
    out, err = process.communicate()
    if process.returncode:
        raise RuntimeError(f"benchmark run failed ({process.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["stderr_lines"] = len(err.splitlines())
    result["tree_kb"] = max(peak, result["rss_kb"])  # the parent's own peak may fall between samples
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


_PRESENT, _FRAME = np.uint64(1 << 63), np.uint64((1 << 55) - 1)


def tree_kb(pids: list[int]) -> int:
    """The memory of the processes ``pids`` in kB, each physical page counted once: the frame numbers of their
    resident pages (``/proc/PID/pagemap``, which shows them to root only). RSS counts a page shared by a parent and
    its forked children in each; their private pages miss the pages the children share among themselves (the
    reader's parsed model, shared with its geometry children); PSS splits a library's pages with every process
    on the machine."""
    frames = [_frames(pid) for pid in pids]
    return 4 * len(np.unique(np.concatenate(frames))) if frames else 0


def _frames(pid: int) -> npt.NDArray[np.uint64]:
    found = []
    try:
        with open(f"/proc/{pid}/maps") as handle:
            maps = handle.read().splitlines()
        pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    except OSError:
        return np.zeros(0, np.uint64)
    try:
        for line in maps:
            span, permissions = line.split(None, 2)[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if permissions.startswith("---") or start >= 1 << 47:  # reserved, never resident; vsyscall
                continue
            try:
                entries = np.frombuffer(os.pread(pagemap, (end - start) // 4096 * 8, start // 4096 * 8), np.uint64)
            except OSError:
                continue
            found.append(entries[(entries & _PRESENT) != 0] & _FRAME)
    finally:
        os.close(pagemap)
    frames = np.concatenate(found) if found else np.zeros(0, np.uint64)
    if len(frames) and not frames.any():
        raise SystemExit("bim_bench: reading page frame numbers needs root (/proc/PID/pagemap)")
    return frames


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
    parser.add_argument("--sampled", type=int, default=3, help="more ingest runs whose process tree is sampled")
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
            sampled = [run(_INGEST, str(path), tempfile.mkdtemp(dir=tmp), sample=True) for _ in range(args.sampled)]
            print(_report(path, args, bares, multis, ingests, sampled))


def _report(
    path: Path,
    args: argparse.Namespace,
    bares: list[dict[str, Any]],
    multis: list[dict[str, Any]],
    ingests: list[dict[str, Any]],
    sampled: list[dict[str, Any]],
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
        f"  wall    bare {median(bares, 'seconds'):.3f} s, write_source {median(ingests, 'ingest_seconds'):.3f} s → "
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
        f"  CPU     bare {median(bares, 'cpu'):.3f} s, write_source {median(ingests, 'cpu'):.3f} s (with its geometry "
        f"children) → ratio {ratio('cpu', 'cpu', bares):.2f}"
    )
    peak, base, opened = (median(ingests, k) / 1e3 for k in ("rss_kb", "base_rss_kb", "open_rss_kb"))
    tree = median(sampled, "tree_kb") / 1e3
    growths = sorted((r["tree_kb"] - r["base_rss_kb"]) / 1e3 for r in sampled)
    bare_peak, bare_base = median(bares, "rss_kb") / 1e3, median(bares, "base_rss_kb") / 1e3
    lines += [
        f"  memory  [peak ≤ 10× file = {10 * mb:.0f} MB]",
        f"          process tree peak (the ingest process, its reader and geometry children; each page once) "
        f"{tree:.0f} MB; growth over imports {statistics.median(growths):.0f} MB = "
        f"{statistics.median(growths) / mb:.1f}× file (median of {len(sampled)} sampled runs: "
        f"{', '.join(f'{g / mb:.1f}' for g in growths)}×), {tree - opened:.0f} MB = {(tree - opened) / mb:.1f}× over "
        f"store open",
        f"          ingest process alone: peak RSS {peak:.0f} MB; after imports {base:.0f} MB, after store open "
        f"{opened:.0f} MB; growth {peak - base:.0f} MB = {(peak - base) / mb:.1f}× over imports",
        f"          bare iteration peak RSS {bare_peak:.0f} MB = {bare_peak / mb:.0f}× file; after imports "
        f"{bare_base:.0f} MB; growth {bare_peak - bare_base:.0f} MB = {(bare_peak - bare_base) / mb:.1f}×",
        f"  stderr lines of the ingest {first['stderr_lines']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
