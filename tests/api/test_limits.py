"""Limits a live ``cim serve`` enforces before parsing: a request head over 64 KiB is refused with 431 by the HTTP
protocol, the write token is checked before a body is read, a body over the limit is refused by its declared length
and while it streams; a 405 names the allowed methods; ``/iot/live`` refuses foreign origins and missing tokens."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cim.api.deps import MAX_BODY_BYTES
from cim.store import open_store
from tests.api.city import build_city
from tests.api.conftest import cim_serve

WRITE_TOKEN = "write-secret"
WS_TOKEN = "live-secret"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``cim serve`` with a write token, a live token and one foreign origin allowed: (host, port)."""
    folder = tmp_path_factory.mktemp("guarded")
    store_url = str(folder / "city.duckdb")
    with open_store(store_url) as store:
        build_city(store)
    (folder / "tiles" / "city").mkdir(parents=True)
    (folder / "tiles" / "city" / "tileset.json").write_text('{"asset": {"version": "1.1"}}')
    env = {
        "CIM_WRITE_TOKEN": WRITE_TOKEN,
        "CIM_WS_TOKEN": WS_TOKEN,
        "CIM_WS_ORIGINS": '["https://wall.example"]',
    }
    with cim_serve(store_url, folder / "tiles", folder / "server.log", env=env) as base:
        parts = urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port


def _exchange(address: tuple[str, int], head: bytes, body: bytes = b"", *, timeout: float = 5) -> bytes:
    """Send ``head`` (and ``body``), then read the answer until the server closes or ``timeout``."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(head + body)
        return _read(s, timeout)


def _read(s: socket.socket, timeout: float) -> bytes:
    answer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        answer += chunk
        if b"\r\n\r\n" in answer and b"content-length: " in answer.lower():
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                break
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_a_request_head_over_64_kib_is_refused_with_431(guarded: tuple[str, int]) -> None:
    big = b"GET /conformance HTTP/1.1\r\nHost: cim\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    assert _status(_exchange(guarded, big)) == 431
    many = b"GET /conformance HTTP/1.1\r\nHost: cim\r\n" + b"".join(
        b"X-%d: %s\r\n" % (i, b"b" * 60) for i in range(2000)
    )
    assert _status(_exchange(guarded, many + b"\r\n")) == 431
    long_url = b"GET /tiles/" + b"c" * 70_000 + b" HTTP/1.1\r\nHost: cim\r\n\r\n"
    assert _status(_exchange(guarded, long_url)) == 431
    usual = b"GET /conformance HTTP/1.1\r\nHost: cim\r\nX-Some: " + b"d" * 8000 + b"\r\nConnection: close\r\n\r\n"
    assert _status(_exchange(guarded, usual)) == 200


def test_the_token_is_checked_before_the_body_is_read(guarded: tuple[str, int]) -> None:
    # 50 MB announced, not a byte sent: the answer comes at once, so nothing waited for the body
    head = b"POST /iot/readings HTTP/1.1\r\nHost: cim\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n"
    started = time.monotonic()
    assert _status(_exchange(guarded, head + b"\r\n")) == 401
    wrong = head + b"Authorization: Bearer nope\r\n\r\n"
    assert _status(_exchange(guarded, wrong)) == 401
    assert time.monotonic() - started < 4


def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_read(guarded: tuple[str, int]) -> None:
    for path in (b"/iot/readings", b"/queries/buried-pipes"):
        head = b"POST %s HTTP/1.1\r\nHost: cim\r\nAuthorization: Bearer %s\r\nContent-Length: 50000000\r\n\r\n" % (
            path,
            WRITE_TOKEN.encode(),
        )
        answer = _exchange(guarded, head)
        assert _status(answer) == 413, answer[:300]


def test_a_streamed_body_over_the_limit_is_refused_while_it_streams(guarded: tuple[str, int]) -> None:
    head = (
        b"POST /iot/readings HTTP/1.1\r\nHost: cim\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % WRITE_TOKEN.encode()
    )
    piece = b"[" + b" " * (256 * 1024 - 1)
    sent = 0
    with socket.create_connection(guarded, timeout=10) as s:
        s.sendall(head)
        while sent < 4 * MAX_BODY_BYTES:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                break
            sent += len(piece)
            piece = b" " * len(piece)
        answer = _read(s, 10)
    assert _status(answer) == 413, answer[:300]
    assert sent < 4 * MAX_BODY_BYTES


def test_a_405_names_the_allowed_methods_on_the_fast_path_and_in_the_app(guarded: tuple[str, int]) -> None:
    for request, allowed in (
        (b"DELETE /tiles/city/tileset.json", b"GET, HEAD"),
        (b"PUT /queries/buried-pipes", b"GET, POST"),
        (b"GET /iot/readings", b"POST"),
    ):
        answer = _exchange(guarded, request + b" HTTP/1.1\r\nHost: cim\r\nConnection: close\r\n\r\n")
        assert _status(answer) == 405
        assert b"\r\nallow: " + allowed + b"\r\n" in answer.lower().replace(allowed.lower(), allowed), answer[:400]


def _ws_status(guarded: tuple[str, int], query: str = "", **options: object) -> int:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    host, port = guarded
    try:
        with connect(f"ws://{host}:{port}/iot/live{query}", open_timeout=10, **options) as ws:  # type: ignore[arg-type]
            assert '"snapshot"' in str(ws.recv(timeout=10))
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


def test_the_live_socket_refuses_foreign_origins_and_clients_without_the_token(guarded: tuple[str, int]) -> None:
    host, port = guarded
    assert _ws_status(guarded, f"?token={WS_TOKEN}", origin="http://evil.example") == 403
    assert _ws_status(guarded, origin="https://wall.example") == 403  # no token
    assert _ws_status(guarded, "?token=wrong", origin="https://wall.example") == 403
    assert _ws_status(guarded, f"?token={WS_TOKEN}", origin="https://wall.example") == 101
    assert _ws_status(guarded, f"?token={WS_TOKEN}", origin=f"http://{host}:{port}") == 101  # same origin
    assert _ws_status(guarded, f"?token={WS_TOKEN}") == 101  # not a browser: no Origin
    offered = [f"token.{WS_TOKEN}", "cim-live"]
    assert _ws_status(guarded, origin="https://wall.example", subprotocols=offered) == 101


def test_the_live_socket_takes_the_cors_origins_by_default(city_url: str, tiles_dir: Path) -> None:
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

    server = ServerSettings(tiles_dir=tiles_dir, cors_origins=["https://ops.example"])
    settings = AppSettings(store=StoreSettings(store=city_url), server=server, live=True)
    with TestClient(create_app(settings)) as client:  # its WebSocket requests name the host testserver
        for origin in ("https://ops.example", "http://testserver"):
            with client.websocket_connect("/iot/live", headers={"origin": origin}) as ws:
                assert ws.receive_json()["type"] == "snapshot"
        for origin in ("https://ops.example.evil", "null", "http://testserver.evil"):
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                client.websocket_connect("/iot/live", headers={"origin": origin}),
            ):
                pass
            assert refused.value.code == 1008  # before the handshake: cim serve answers it 403
