"""``cim serve --workers 2`` on one PostGIS schema with a streaming replica for reads, all real: uvicorn's worker
processes sharing one port, PostgreSQL's LISTEN/NOTIFY between them, a hot standby made with ``pg_basebackup``.

Any worker answers any request (concurrent reads and writes, each write once); a live event raised on either
worker reaches WebSocket clients of both; reads go to the replica (shown by pausing its replay) unless a client asks
for the primary; the replica stopped mid-run costs no failed read; a DuckDB store with 2 workers is refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from cim.store import open_store
from tests.api.city import build_city
from tests.faults import free_port, stop_pid, wait_for_port
from tests.replica import Replica

pytestmark = [pytest.mark.postgis]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "workers-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRIMARY = {"CIM-Read-From": "primary"}
ITEMS = "/collections/building/items"
CIM_SERVE = (sys.executable, "-m", "cim", "serve")
WORKERS = ("--workers", "2", "--read-url")


def until(condition: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def replica() -> Iterator[Replica]:
    made = Replica()
    try:
        made.start()
        yield made
    finally:
        made.destroy()


@dataclass
class Workers:
    base: str
    store_url: str
    replica_url: str
    process: subprocess.Popen[bytes]

    def origin(self) -> str:
        """The worker that answered (each names itself in /iot/stats as its live relay does)."""
        return str(httpx.get(f"{self.base}/iot/stats", timeout=10).json()["live_relay"]["origin"])


@pytest.fixture(scope="module")
def workers(postgres_url: str, replica: Replica, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """One server for the module (its start costs ~10 s of two processes' imports on 2 cores): the tests write
    assets of their own ids and compare counts before and after."""
    schema = "t_" + uuid.uuid4().hex[:12]
    store_url = f"{postgres_url}?schema={schema}"
    with open_store(store_url) as store:
        build_city(store)
    replica_url = f"{replica.url(postgres_url.rsplit('/', 1)[1])}?schema={schema}"
    tmp_path = tmp_path_factory.mktemp("workers")
    (tmp_path / "tiles").mkdir()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*CIM_SERVE, "--store", store_url, "--tiles", "tiles", "--port", str(port), *WORKERS, replica_url],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "CIM_HOST": "127.0.0.1", "CIM_WRITE_TOKEN": TOKEN},
        )
    try:
        wait_for_port(port, timeout=60, alive=process, what=f"cim serve --workers 2 ({log})")
        running = Workers(f"http://127.0.0.1:{port}", store_url, replica_url, process)
        seen: set[str] = set()
        until(lambda: seen.add(running.origin()) or len(seen) == 2, what=f"both workers answering ({log})")
        yield running
    finally:
        stop_pid(process, timeout=15)
        with psycopg.connect(postgres_url, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def building(ident: str, name: str) -> dict[str, Any]:
    x, y = 121.52 + int(ident.rsplit("-", 1)[1]) * 0.001, 31.25
    ring = [[x, y], [x + 0.0004, y], [x + 0.0004, y + 0.0004], [x, y + 0.0004], [x, y]]
    return {
        "type": "Feature",
        "id": ident,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"name": name, "height_m": 20},
    }


def test_two_workers_answer_concurrent_reads_and_writes_each_write_once(workers: Workers) -> None:
    before = httpx.get(f"{workers.base}{ITEMS}", params={"limit": 1000}, headers=PRIMARY).json()["numberMatched"]
    origins: set[str] = set()

    def client(i: int) -> list[str]:
        answers = []
        with httpx.Client(base_url=workers.base, timeout=30) as http:
            answers.append(http.post(ITEMS, json=building(f"w-{i}", f"new {i}"), headers=AUTH))
            for _ in range(3):
                answers.append(http.get(ITEMS, params={"limit": 5}))
                answers.append(http.get("/queries/old-lifts", params={"years": 15}))
            patch = http.patch(
                f"{ITEMS}/w-{i}",
                json={"properties": {"name": f"renamed {i}"}},
                headers={**AUTH, "Content-Type": "application/merge-patch+json"},
            )
            answers.append(patch)
            origins.add(http.get("/iot/stats").json()["live_relay"]["origin"])
        return [
            f"{a.request.method} {a.status_code} {a.text[:200]}" for a in answers if a.status_code not in (200, 201)
        ]

    with ThreadPoolExecutor(16) as pool:
        failed = [s for answers in pool.map(client, range(40)) for s in answers]
    assert not failed, failed[:5]
    assert len(origins) == 2  # both workers took part
    after = httpx.get(f"{workers.base}{ITEMS}", params={"limit": 1000}, headers=PRIMARY).json()
    assert after["numberMatched"] == before + 40
    names = {f["id"]: f["properties"]["name"] for f in after["features"] if f["id"].startswith("w-")}
    assert names == {f"w-{i}": f"renamed {i}" for i in range(40)}
    conninfo, schema = workers.store_url.split("?schema=")
    with psycopg.connect(conninfo) as con:  # each write recorded once in the history, whichever worker took it
        versions = con.execute(
            f"SELECT count(*), count(DISTINCT id) FROM {schema}.asset_versions WHERE id LIKE 'w-%%'"
        ).fetchone()
    assert versions == (80, 40)


async def _live_clients(base: str, count: int) -> tuple[dict[str, list[Any]], list[Any]]:
    """WebSocket clients until both workers have some: their connections by the worker that took them."""
    by_worker: dict[str, list[Any]] = {}
    opened = []
    for _ in range(count):
        ws = await websockets.connect(base.replace("http://", "ws://") + "/iot/live", max_size=None)
        opened.append(ws)
        json.loads(await ws.recv())  # the snapshot
        by_worker.setdefault(ws.response.headers["cim-server"], []).append(ws)
        if len(by_worker) == 2 and all(len(v) >= 2 for v in by_worker.values()):
            break
    return by_worker, opened


async def _states_until(ws: Any, wanted: dict[str, float], timeout: float) -> dict[str, float]:
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while not wanted.items() <= got.items() and time.monotonic() < deadline:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except TimeoutError:
            continue
        got.update({s["sensor_id"]: s["value"] for s in message.get("states", [])})
    return got


def test_a_live_event_raised_on_either_worker_reaches_clients_of_both(workers: Workers) -> None:
    async def run() -> None:
        by_worker, opened = await _live_clients(workers.base, 40)
        assert len(by_worker) == 2, "40 connections all went to one worker"
        try:
            start = datetime.now(UTC) - timedelta(minutes=5)
            sent: dict[str, float] = {}
            raised_on: set[str] = set()
            async with httpx.AsyncClient(base_url=workers.base, timeout=10) as http:
                for i in range(40):  # each on a fresh connection: the workers share the socket's accepts
                    value = 10.0 + i
                    at = (start + timedelta(seconds=i)).isoformat()
                    answer = await http.post(
                        "/iot/readings",
                        json={"sensor_id": "sensor-1", "value": value, "time": at},
                        headers={**AUTH, "Connection": "close"},
                    )
                    assert answer.status_code == 202, answer.text
                    sent = {"sensor-1": value}
                    stats = (await http.get("/iot/stats", headers={"Connection": "close"})).json()
                    if stats["accepted"]:
                        raised_on.add(stats["live_relay"]["origin"])
                    if len(raised_on) == 2 and i >= 4:
                        break
            assert len(raised_on) == 2, "the readings did not reach both workers"
            # every client, of either worker, ends at the last state, whichever worker took it
            finals = await asyncio.gather(*(_states_until(ws, sent, 15) for v in by_worker.values() for ws in v))
            assert all(final.get("sensor-1") == sent["sensor-1"] for final in finals), finals
        finally:
            await asyncio.gather(*(ws.close() for ws in opened))

    asyncio.run(run())


def _replay(replica_url: str, what: str) -> None:
    with psycopg.connect(replica_url.split("?schema=")[0], autocommit=True) as con:
        con.execute(f"SELECT pg_wal_replay_{what}()")


def test_reads_come_from_the_replica_and_a_client_may_ask_for_the_primary(workers: Workers) -> None:
    _replay(workers.replica_url, "pause")  # the replica lags from here on, as it may for a moment in the field
    try:
        with httpx.Client(base_url=workers.base, timeout=10) as http:
            assert http.post(ITEMS, json=building("lag-1", "written"), headers=AUTH).status_code == 201
            for _ in range(6):  # whichever worker answers: the replica has not seen it, the primary has
                assert http.get(f"{ITEMS}/lag-1", headers={"Connection": "close"}).status_code == 404
                assert http.get(f"{ITEMS}/lag-1", headers={**PRIMARY, "Connection": "close"}).status_code == 200
            _replay(workers.replica_url, "resume")
            until(lambda: http.get(f"{ITEMS}/lag-1").status_code == 200, timeout=10, what="the replica catching up")
    finally:
        _replay(workers.replica_url, "resume")


def test_reads_go_on_from_the_primary_when_the_replica_stops(workers: Workers, replica: Replica) -> None:
    """The module's last test with the replica: it stays stopped (the fixture removes it)."""
    stop = time.monotonic() + 6.0
    statuses: list[int] = []

    def reader() -> None:
        with httpx.Client(base_url=workers.base, timeout=30) as http:
            while time.monotonic() < stop:
                statuses.append(http.get(ITEMS, params={"limit": 5}).status_code)

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(reader) for _ in range(4)]
        time.sleep(1.0)
        replica.stop()
        for future in running:
            future.result()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    # a write's follow-up read now comes from the primary, without asking
    with httpx.Client(base_url=workers.base, timeout=10) as http:
        assert http.post(ITEMS, json=building("down-1", "written"), headers=AUTH).status_code == 201
        assert http.get(f"{ITEMS}/down-1").status_code == 200


def test_two_workers_on_a_duckdb_store_are_refused_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "tiles").mkdir()
    done = subprocess.run(
        [*CIM_SERVE, "--store", str(tmp_path / "c.duckdb"), "--tiles", str(tmp_path / "tiles"), "--workers", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers 2" in done.stderr and "needs a PostgreSQL store" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "c.duckdb").exists()
