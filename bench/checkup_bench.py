"""Check-up benchmark: ``cim report checkup`` (HTML + PDF) on the demo city's scale, each step timed.

The demo city (``cim synth``: ``--buildings`` 20,000 at seed 7, no IFC) is generated and ingested once into
``--work``/<buildings> (DuckDB) dated 1 January 2022, with the yearly changes of ``tests/report/city.py`` (mains
renewed, lifts, chargers and poles added) and its cases; a second run reuses it. The report of ``--year`` is then
written with the plan's targets (pipelines/targets/shanghai-renewal.toml) and the seconds of each step printed:
the data (five model states as of the years' ends, the year's changes, cases, targets), the charts and maps, the
model's picture, the HTML and PDF.

    PYTHONPATH=. .venv/bin/python bench/checkup_bench.py                    # 20,000 buildings
    PYTHONPATH=. .venv/bin/python bench/checkup_bench.py --buildings 2000

Target (issue 26): the demo city's check-up builds in ≤ 60 s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cim.report.build import write_checkup
from cim.store import open_store
from cim.synth.generate import generate_city
from tests.report.city import add_cases, build_city

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "pipelines" / "targets" / "shanghai-renewal.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buildings", type=int, default=20_000)
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cim-checkup-bench"))
    args = parser.parse_args()
    folder = args.work / str(args.buildings)
    url = folder / "city.duckdb"
    if not url.exists():
        started = time.perf_counter()
        synth = folder / "synth"
        generate_city(out=synth, buildings=args.buildings, seed=7, towers=0, landmarks=False)
        with open_store(str(url)) as store:
            build_city(store, synth)
            add_cases(store)
        print(f"city of {args.buildings:,} buildings with its history built in {time.perf_counter() - started:.1f} s")
    with open_store(str(url)) as store:
        counts = store.count_by_kind()
        print("assets:", json.dumps(counts))
        result = write_checkup(store, year=args.year, out=folder / "reports", targets=TARGETS, targets_scale=0.01)
    print(json.dumps(result, indent=1))
    print(f"check-up {args.year}: {result['seconds']['total']:.1f} s (target ≤ 60 s)")


if __name__ == "__main__":
    main()
