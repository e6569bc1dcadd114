"""The data API across a database restart, on a private PostgreSQL (tests/faults.py), never the shared one: requests
answer 503 with Retry-After while it is down (never hang), /ready names the store, and requests succeed again soon
after it is back. Prints ``FAULT api-postgres-restart: …`` (run with ``-s``)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from cim.store import open_store
from tests.api.city import build_city
from tests.api.conftest import cim_serve
from tests.faults import PrivatePostgres, private_postgres

__all__ = ["private_postgres"]  # the fixture, imported for pytest

PATHS = ("/assets/b1", "/collections/building/items?limit=5", "/queries/old-lifts?years=15", "/indicators")


def test_requests_recover_within_two_seconds_of_a_database_restart(
    private_postgres: PrivatePostgres, tiles_dir: Path, tmp_path: Path
) -> None:
    store_url = private_postgres.store_url("apifault")
    with open_store(store_url) as store:
        build_city(store)
    with cim_serve(store_url, tiles_dir, tmp_path / "server.log") as base, httpx.Client(base_url=base) as http:
        assert all(http.get(path).status_code == 200 for path in PATHS)

        private_postgres.stop()
        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:  # many clients at once while it is down
            down = list(pool.map(lambda n: http.get(PATHS[n % len(PATHS)], timeout=30), range(40)))
        assert time.monotonic() - started < 15  # refused promptly, not hung
        assert {r.status_code for r in down} <= {200, 503}  # a cached answer (indicators) may still be given
        refused = [r for r in down if r.status_code == 503]
        assert len(refused) >= len(down) // 2 and all(r.headers["retry-after"] for r in refused)
        assert all("postgres@" not in r.text and "127.0.0.1" not in r.text for r in refused)  # nothing internal
        ready = http.get("/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["down"] == ["store"]

        private_postgres.start()
        back = time.monotonic()
        while http.get("/assets/b1", timeout=30).status_code != 200:
            assert time.monotonic() - back < 10, "requests did not recover"
            time.sleep(0.05)
        recovered_in = time.monotonic() - back
        assert all(http.get(path, timeout=30).status_code == 200 for path in PATHS)
        assert http.get("/ready").json()["status"] == "ready"

        private_postgres.restart()  # a quick restart: the pool's connections all die at once
        after = [http.get(PATHS[n % len(PATHS)], timeout=30).status_code for n in range(8)]
    print(
        f"FAULT api-postgres-restart: recovered {recovered_in:.2f} s after the database was back; after a quick "
        f"restart {after.count(200)}/{len(after)} requests answered 200"
    )
    assert recovered_in <= 2.0
    assert after.count(200) == len(after)
