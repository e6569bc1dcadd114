"""Part 4 edits against a live ``cim serve`` on the small test city: PATCH latency one at a time, and PATCHes/s from
16 clients at once, each on a feature of its own.

    PYTHONPATH=. python bench/edit_bench.py --store /tmp/edit-bench.duckdb
    PYTHONPATH=. python bench/edit_bench.py --store 'postgresql://postgres@127.0.0.1:5432/cim_test?schema=edit_bench'
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from cim.store import open_store
from tests.api.city import build_city
from tests.api.conftest import cim_serve

TOKEN = "bench"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/merge-patch+json"}
ITEMS = "/collections/building/items"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--per-client", type=int, default=50)
    args = parser.parse_args()
    if args.store.endswith(".duckdb"):
        Path(args.store).unlink(missing_ok=True)
    with open_store(args.store) as store:
        build_city(store)
    folder = Path(tempfile.mkdtemp())
    with cim_serve(args.store, folder, folder / "server.log", env={"CIM_WRITE_TOKEN": TOKEN}) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            for n in range(16):
                body = {"type": "Feature", "id": f"bench-{n}", "geometry": None, "properties": {}}
                http.post(
                    "/collections/storey/items", json=body, headers=HEADERS | {"Content-Type": "application/json"}
                )
            times = []
            for i in range(args.sequential):
                started = time.perf_counter()
                answer = http.patch(f"{ITEMS}/b1", json={"properties": {"status": f"s{i}"}}, headers=HEADERS)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
        done = [0] * 16

        def client(n: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as own:
                for i in range(args.per_client):
                    patch = {"properties": {"status": f"s{i}"}}
                    if own.patch(f"/collections/storey/items/bench-{n}", json=patch, headers=HEADERS).is_success:
                        done[n] += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    p50, p95 = statistics.median(times) * 1000, statistics.quantiles(times, n=20)[-1] * 1000
    print(f"sequential PATCH: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({args.sequential} requests)")
    print(f"16 clients: {sum(done)}/{16 * args.per_client} PATCHes in {seconds:.2f} s = {sum(done) / seconds:.0f}/s")


if __name__ == "__main__":
    main()
