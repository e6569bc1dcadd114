"""CityGML import benchmark: a ~100 MB CityGML file made by repeating a shared sample's city objects, `cim ingest`ed.

    .venv/bin/python bench/citygml_bench.py                      # 100 MB of PLATEAU buildings (CityGML 2.0, LoD0-2)
    .venv/bin/python bench/citygml_bench.py --mb 20 --rounds 1
    .venv/bin/python bench/citygml_bench.py --sample Building_and_garage_LOD2-EPSG25832.v3.gml   # CityGML 3.0
    .venv/bin/python bench/citygml_bench.py --sample 53391597_frn_6697_op.gml.gz                 # LoD3 furniture

Target (issue 28): ≥ 20 MB/s with peak memory ≤ 500 MB for a 100 MB file. Each figure is a whole `cim ingest` in its
own process — reading, CRS transform, triangulation, writing the store and the mesh file — timed from outside, and
its peak memory is that process's max RSS. Beside it, in the same run, one plain `lxml.etree.iterparse` pass over the
same file (each member freed as read) shows what parsing alone costs on this machine: the figure the import is
compared with, since shared machines here vary by 2× from hour to hour.

The file: the sample's header, its ``cityObjectMember``s repeated with every ``gml:id`` (and each ``#id`` reference)
suffixed ``_r<n>`` so ids stay unique, and the sample's footer. The copies keep their coordinates: they sit on one
another, which costs an import nothing more than spread-out buildings would.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "citygml"
DEFAULT_SAMPLE = "53392642_bldg_6697_op2.gml"
_MEMBER = re.compile(rb"<(\w+:)?cityObjectMember[ >].*?</(\w+:)?cityObjectMember>", re.DOTALL)
_ID = re.compile(rb'(gml:id="|xlink:href="#)([^"]+)"')

PARSE_ONLY = """
import sys, gzip
from lxml import etree
path = sys.argv[1]
source = gzip.open(path) if path.endswith(".gz") else open(path, "rb")
count = 0
for _, element in etree.iterparse(source, events=("end",), resolve_entities=False, no_network=True):
    if element.tag.endswith("}cityObjectMember"):
        count += 1
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]
print(count)
"""


def make_file(sample: Path, out: Path, megabytes: float) -> int:
    """Write ``out`` (~``megabytes`` MB of XML) from ``sample``'s members; the number of member copies written."""
    raw = gzip.decompress(sample.read_bytes()) if sample.name.endswith(".gz") else sample.read_bytes()
    members = list(_MEMBER.finditer(raw))
    if not members:
        raise SystemExit(f"{sample}: no cityObjectMember found")
    head, tail = raw[: members[0].start()], raw[members[-1].end() :]
    body = raw[members[0].start() : members[-1].end()]
    copies = max(1, int(megabytes * 1e6 / len(body)))
    with out.open("wb") as f:
        f.write(head)
        for n in range(copies):
            f.write(_ID.sub(lambda m, n=n: m.group(1) + m.group(2) + b"_r%d" % n + b'"', body))  # type: ignore[misc]
        f.write(tail)
    return copies


def timed(command: list[str]) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) and stdout of ``command`` run in its own process (GNU time's report)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    peak_kb = float(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the file to make, in MB")
    parser.add_argument("--sample", default=DEFAULT_SAMPLE, help="a file of ../shared/data/citygml to repeat")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="folder to keep the made file in (made once, reused)")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="citygml-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    name = args.sample.removesuffix(".gz").removesuffix(".gml")
    made = folder / f"{name}-{args.mb:g}MB.gml"
    if not made.exists():
        copies = make_file(DATA / args.sample, made, args.mb)
        print(f"made {made} ({made.stat().st_size / 1e6:.1f} MB, {copies} copies of {args.sample}'s members)")
    size_mb = made.stat().st_size / 1e6

    python = sys.executable
    rows: list[tuple[float, float, float, float]] = []
    summary: dict[str, object] = {}
    for round_number in range(args.rounds):
        parse_s, parse_mb, members = timed([python, "-c", PARSE_ONLY, str(made)])
        store = folder / f"round{round_number}.duckdb"
        for stale in folder.glob(f"round{round_number}.duckdb*"):
            stale.unlink()
        ingest_s, ingest_mb, out = timed([python, "-m", "cim", "ingest", str(made), "--store", str(store), "--json"])
        summary = json.loads(out)
        rows.append((parse_s, parse_mb, ingest_s, ingest_mb))
        print(
            f"round {round_number + 1}: parse only {parse_s:.1f} s ({size_mb / parse_s:.1f} MB/s, {parse_mb:.0f} MB) · "
            f"cim ingest {ingest_s:.1f} s ({size_mb / ingest_s:.1f} MB/s, peak {ingest_mb:.0f} MB) · "
            f"{int(members)} members"
        )
    parse_s = statistics.median(r[0] for r in rows)
    ingest_s = statistics.median(r[2] for r in rows)
    peak = max(r[3] for r in rows)
    files = summary.get("files", [{}]) if isinstance(summary, dict) else [{}]
    entry = files[0] if isinstance(files, list) and files else {}
    print(f"\nfile: {size_mb:.1f} MB ({args.sample} repeated); assets: {json.dumps(summary.get('assets'))}")
    print(f"findings: {json.dumps([(f['rule'], f['count']) for f in entry.get('findings', [])], ensure_ascii=False)}")
    print(f"{'':28}{'median':>10}{'target':>12}")
    print(f"{'cim ingest MB/s':28}{size_mb / ingest_s:>10.1f}{'>= 20':>12}")
    print(f"{'cim ingest peak RSS MB':28}{peak:>10.0f}{'<= 500':>12}")
    print(f"{'lxml parse-only MB/s':28}{size_mb / parse_s:>10.1f}{'(floor)':>12}")
    print(f"{'ingest / parse-only time':28}{ingest_s / parse_s:>10.2f}")


if __name__ == "__main__":
    main()
