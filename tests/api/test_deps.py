"""Many clients at once, as in the field: a real ``cim serve`` on each store, hit by more concurrent requests than it
has worker threads. Once, 41 simultaneous asset requests deadlocked the server for good (issue 19)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cim.api.admission import AdmissionControl, AdmissionLimits
from tests.api.conftest import cim_serve, free_port

#: More than anyio's 40 worker threads and the server's 32 active requests.
CLIENTS = 120
PATHS = (
    "/assets/b1",
    "/assets/lift-1a",
    "/collections/building/items?bbox=121.5,31.23,121.51,31.24&limit=5",
    "/collections/pipe/items?filter=network%3D%27gas%27",
    "/queries/old-lifts?years=15",
    "/indicators",
    "/tiles/city/tileset.json",
)


def _hammer(base: str, rounds: int) -> list[int]:
    def one(n: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as http:
            return http.get(PATHS[n % len(PATHS)]).status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS * rounds)))


def test_more_concurrent_requests_than_threads_are_all_answered_and_the_server_still_serves(
    live_server: tuple[str, Path],
) -> None:
    base, log = live_server
    statuses = _hammer(base, rounds=2)
    assert statuses.count(200) == len(statuses), f"{sorted(set(statuses))}: {log.read_text()[-2000:]}"
    with httpx.Client(base_url=base, timeout=5) as http:  # and afterwards it is not stuck
        assert http.get("/assets/b2").status_code == 200
        assert http.get("/ready").json()["status"] == "ready"


def test_a_full_queue_answers_503_with_retry_after_at_once(
    city_url: str, tiles_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIM_MAX_ACTIVE_REQUESTS", "1")
    monkeypatch.setenv("CIM_MAX_WAITING_REQUESTS", "2")
    with cim_serve(city_url, tiles_dir, tmp_path / "server.log") as base:
        statuses = _hammer(base, rounds=1)
        busy = statuses.count(503)
        assert statuses.count(200) + busy == len(statuses)
        assert busy > 0
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.get("/health").json() == {"status": "ok"}  # probes are never held back
            assert http.get("/assets/b2").status_code == 200


def test_a_refused_request_says_why_and_when_to_come_back() -> None:

    async def never_called(scope: object, receive: object, send: object) -> None:
        raise AssertionError("a refused request reached the app")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    control = AdmissionControl(never_called, AdmissionLimits(max_active=1, max_waiting=0, wait_timeout=0.01))

    async def scenario() -> None:
        control.active = 1  # one request at work
        await control({"type": "http", "path": "/assets/x"}, None, send)  # type: ignore[arg-type]

    asyncio.run(scenario())
    start = sent[0]
    assert start["status"] == 503
    headers = dict(start["headers"])  # type: ignore[arg-type]
    assert headers[b"retry-after"] == b"1"
    assert b"is busy" in sent[1]["body"]  # type: ignore[operator]
    assert control.refused == 1


def test_sigterm_stops_a_busy_server_within_five_seconds(city_url: str, tiles_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cim", "serve", "--store", city_url, "--tiles", str(tiles_dir), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CIM_HOST": "127.0.0.1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
        with ThreadPoolExecutor(CLIENTS) as pool:
            load = [pool.submit(_safe_get, base + PATHS[n % len(PATHS)]) for n in range(CLIENTS * 3)]
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            process.wait(timeout=15)
            stopped_in = time.monotonic() - started
            for future in load:
                future.result()
        assert stopped_in <= 5.0, f"stopped in {stopped_in:.1f} s"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _safe_get(url: str) -> int:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.HTTPError:
        return 0


def test_waiters_start_in_arrival_order_and_none_leaks_a_slot_when_it_gives_up_or_goes_away() -> None:
    started: list[str] = []
    gates: dict[str, asyncio.Event] = {}

    async def app(scope: dict[str, str], receive: object, send: object) -> None:
        started.append(scope["path"])
        await gates.setdefault(scope["path"], asyncio.Event()).wait()

    async def ignore(message: object) -> None:
        return None

    control = AdmissionControl(app, AdmissionLimits(max_active=1, max_waiting=10, wait_timeout=0.3))  # type: ignore[arg-type]

    def request(path: str) -> asyncio.Task[None]:
        return asyncio.ensure_future(control({"type": "http", "path": path}, None, ignore))  # type: ignore[arg-type]

    async def scenario() -> None:
        first = request("/a")
        await asyncio.sleep(0.01)
        second, gone, third = request("/b"), request("/gone"), request("/c")
        await asyncio.sleep(0.01)
        gone.cancel()  # its client went away while it waited
        await asyncio.sleep(0.01)
        assert (control.active, control.waiting) == (1, 2)
        gates.setdefault("/a", asyncio.Event()).set()
        await first
        await asyncio.sleep(0.01)
        assert started == ["/a", "/b"]
        gates.setdefault("/b", asyncio.Event()).set()
        await second
        await asyncio.sleep(0.01)
        assert started == ["/a", "/b", "/c"]
        timed_out = request("/late")  # waits behind /c longer than 0.3 s: refused
        await asyncio.sleep(0.5)
        assert timed_out.done() and control.refused == 1
        gates.setdefault("/c", asyncio.Event()).set()
        await third
        assert started == ["/a", "/b", "/c"]
        assert (control.active, control.waiting) == (0, 0)

    asyncio.run(scenario())
