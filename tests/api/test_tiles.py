"""``/tiles``: content types, ETag and 304, gzip for JSON, and no way out of the tiles folder.

Each test runs in-process (the FastAPI route) and against a live ``cim serve``, where a repeated GET or HEAD of a
cached file is answered by the protocol fast path (cim/api/fastpath.py) instead of the route.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.settings import AppSettings, ServerSettings, StoreSettings
from tests.api.conftest import cim_serve


@pytest.fixture(params=["in-process", "cim serve"])
def http(request: pytest.FixtureRequest, tiles_dir: Path, tmp_path: Path) -> Iterator[httpx.Client]:
    """A client of the app in-process, or of ``cim serve`` in a subprocess. Tiles need no city: an empty store."""
    store = str(tmp_path / "tiles.duckdb")
    if request.param == "in-process":
        settings = AppSettings(store=StoreSettings(store=store), server=ServerSettings(tiles_dir=tiles_dir))
        with TestClient(create_app(settings)) as client:
            yield client
    else:
        with cim_serve(store, tiles_dir, tmp_path / "server.log") as base, httpx.Client(base_url=base) as client:
            yield client


def test_tileset_json_is_gzipped_cached_and_revalidated(http: httpx.Client, tiles_dir: Path) -> None:
    response = http.get("/tiles/city/tileset.json", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-encoding"] == "gzip"
    assert "max-age" in response.headers["cache-control"]
    assert response.json()["asset"]["version"] == "1.1"  # httpx decodes the gzip body
    etag = response.headers["etag"]
    again = http.get("/tiles/city/tileset.json", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    plain = http.get("/tiles/city/tileset.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != etag
    assert plain.content == (tiles_dir / "city" / "tileset.json").read_bytes()
    assert len(gzip.compress(plain.content)) < len(plain.content)


def test_glb_has_its_type_and_a_rebuilt_file_gets_a_new_etag(http: httpx.Client, tiles_dir: Path) -> None:
    first = http.get("/tiles/city/0.glb", headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-type"] == "model/gltf-binary"
    assert first.headers["content-encoding"] == "gzip"  # glb is gzipped too (httpx decodes it)
    assert first.content == (tiles_dir / "city" / "0.glb").read_bytes()
    assert http.get("/tiles/city/0.glb").content == first.content  # cached
    (tiles_dir / "city" / "0.glb").write_bytes(b"glTF-rebuilt")
    second = http.get("/tiles/city/0.glb", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.content == b"glTF-rebuilt"
    head = http.head("/tiles/city/0.glb")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(b"glTF-rebuilt"))
    assert head.content == b""


def test_a_swapped_tileset_is_served_at_once(http: httpx.Client, tiles_dir: Path) -> None:
    """A build swaps the tileset's symlink to a new version folder and keeps the previous one: same path, same
    mtime and size, another file."""
    for version, body in (("1", b'{"v": 1}'), ("2", b'{"v": 2}')):
        (tiles_dir / ".versions" / version).mkdir(parents=True)
        (tiles_dir / ".versions" / version / "t.json").write_bytes(body)
        os.utime(tiles_dir / ".versions" / version / "t.json", ns=(10**18, 10**18))
    (tiles_dir / "swapped").symlink_to(".versions/1")
    assert http.get("/tiles/swapped/t.json").json() == {"v": 1}
    assert http.get("/tiles/swapped/t.json").json() == {"v": 1}  # cached
    (tiles_dir / "next").symlink_to(".versions/2")
    os.replace(tiles_dir / "next", tiles_dir / "swapped")
    assert http.get("/tiles/swapped/t.json").json() == {"v": 2}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tiles/city/%2e%2e/%2e%2e/secret.txt", 400),
        ("/tiles/%2E%2E/secret.txt", 400),
        ("/tiles/city/..%2f..%2fsecret.txt", 400),
        ("/tiles/city/%2e%2e/city/0.glb", 400),  # a cached file, reached through '..'
        ("/tiles/city/.%2e/city/tileset.json", 400),
        ("/tiles/%2fetc%2fpasswd", 400),
        ("/tiles//etc/passwd", 400),
        ("/tiles/city/escape.json", 404),  # a symlink out of the folder
        ("/tiles/city/.hidden.json", 404),
        ("/tiles/city/nope.json", 404),
        ("/tiles/city", 404),  # a folder is not a file
        ("/tiles/city/%00.json", 400),
    ],
)
def test_nothing_outside_the_tiles_folder_is_served(
    http: httpx.Client, tiles_dir: Path, path: str, status: int
) -> None:
    (tiles_dir / "city" / ".hidden.json").write_text("{}")
    for cached in ("/tiles/city/0.glb", "/tiles/city/tileset.json"):  # twice: the second from the cache
        assert http.get(cached).status_code == http.get(cached).status_code == 200
    response = http.get(path)
    assert response.status_code == status, response.text
    assert "not for the web" not in response.text
    assert response.json()["description"]


def test_the_fast_path_answers_as_the_route_does(tiles_dir: Path, tmp_path: Path) -> None:
    """A cached tile answered by ``cim serve``'s protocol and the same request through the app (a request with an
    ``Origin`` header always goes there): the same status, headers and body."""
    with cim_serve(str(tmp_path / "t.duckdb"), tiles_dir, tmp_path / "server.log") as base, httpx.Client() as client:
        etags = {}
        for path in ("/tiles/city/tileset.json", "/tiles/city/0.glb"):
            for encoding in ("gzip", "identity"):
                etags[path, encoding] = client.get(base + path, headers={"Accept-Encoding": encoding}).headers["etag"]
        for (path, encoding), etag in etags.items():
            for method, extra in (
                ("GET", {}),
                ("HEAD", {}),
                ("GET", {"If-None-Match": etag}),
                ("GET", {"If-None-Match": '"x", ' + etag}),
            ):
                headers = {"Accept-Encoding": encoding, **extra}
                fast = client.request(method, base + path, headers=headers)
                route = client.request(method, base + path, headers={**headers, "Origin": "http://elsewhere"})
                assert fast.status_code == route.status_code, (method, path, headers)
                assert _without_date(fast.headers) == _without_date(route.headers), (method, path, headers)
                assert fast.content == route.content


def test_pipelined_and_http10_requests_are_answered_in_order(tiles_dir: Path, tmp_path: Path) -> None:
    with cim_serve(str(tmp_path / "t.duckdb"), tiles_dir, tmp_path / "server.log") as base:
        httpx.get(base + "/tiles/city/0.glb")  # cached from now on
        host, port = urlsplit(base).hostname, urlsplit(base).port
        assert host is not None and port is not None
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(
                b"GET /tiles/city/0.glb HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /tiles/city/nope.json HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD /tiles/city/0.glb HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /tiles/city/0.glb HTTP/1.0\r\n\r\n"
            )
            received = _read_until_closed(sock)
        glb = (tiles_dir / "city" / "0.glb").read_bytes()
        assert re.findall(rb"HTTP/1\.1 (\d+) ", received) == [b"200", b"404", b"200", b"200"]
        assert received.count(glb) == 2 and received.count(b"connection: close") == 1


def _without_date(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.multi_items() if name != "date"]


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
