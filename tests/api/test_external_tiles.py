"""``/tiles/<city>/external/<name>/…``: the files of a tileset mounted beside the city (cim/api/mounted.py) — from its
folder (ETag, 304, gzip as the city's own; no way out of the folder; a vanished folder a clear 404) or proxied from
a server on this machine (a stopped server a clear 502) — in-process and from ``cim serve`` after a restart, where
a second client (loaders.gl) follows the root into the mount and places its content where the transform says.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyproj
import pytest
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.tiling.external import MountSpec, mount_tilesets, place_matrix
from tests.api.conftest import cim_serve
from tests.tiling.external_tilesets import made_once
from tests.tiling.second_client import run_reader


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = made_once(tmp_path_factory)
    return {"third": made["third"], "city": made["neighbour"]}


@pytest.fixture
def tiles(made: dict[str, Path], tmp_path: Path) -> Path:
    """A tiles folder with a built city and the third-party tileset mounted beside it as "mesh"."""
    root = tmp_path / "tiles"
    shutil.copytree(made["city"].resolve(), root / "city")
    third = Path(shutil.copytree(made["third"], tmp_path / "third"))
    (tmp_path / "secret.glb").write_bytes(b"glTF not for the web")
    summary = mount_tilesets(
        root / "city", [MountSpec("mesh", path=third, matrix=tuple(place_matrix(121.5, 31.23, 0)))]
    )
    assert summary.mounted == ["mesh"], summary
    return root


@pytest.fixture
def client(tiles: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = AppSettings(
        store=StoreSettings(store=str(tmp_path / "s.duckdb")), server=ServerSettings(tiles_dir=tiles)
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_mounted_folder_is_served_with_etags_and_gzip(client: TestClient, tiles: Path) -> None:
    third = tiles.parent / "third"
    response = client.get("/tiles/city/external/mesh/tileset.json", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == (third / "tileset.json").read_bytes()
    again = client.get(
        "/tiles/city/external/mesh/tileset.json",
        headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304 and again.content == b""
    glb = client.get("/tiles/city/external/mesh/sphere.glb")
    assert glb.headers["content-type"] == "model/gltf-binary" and glb.content == (third / "sphere.glb").read_bytes()
    assert client.get("/tiles/city/external/mesh/column.b3dm").content[:4] == b"b3dm"
    # the root names it; the record of the mounts (server paths) is not served
    root = client.get("/tiles/city/tileset.json").json()
    assert "external/mesh/tileset.json" in [c["content"]["uri"] for c in root["root"]["children"]]
    assert client.get("/tiles/city/.mounts.json").status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tiles/city/external/mesh/../../../secret.glb", 404),  # normalised by the client or refused
        ("/tiles/city/external/mesh/%2E%2E/secret.glb", 400),
        ("/tiles/city/external/mesh/..%2Fsecret.glb", 400),
        ("/tiles/city/external/mesh/link.glb", 404),  # a symlink out of the mounted folder
        ("/tiles/city/external/mesh/nope.glb", 404),
        ("/tiles/city/external/other/tileset.json", 404),  # not mounted
    ],
)
def test_nothing_outside_a_mounted_folder_is_served(client: TestClient, tiles: Path, path: str, status: int) -> None:
    (tiles.parent / "third" / "link.glb").symlink_to(tiles.parent / "secret.glb")
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "not for the web" not in response.text and str(tiles.parent) not in response.text
    assert response.json()["description"]


def test_a_vanished_folder_answers_a_clear_404(client: TestClient, tiles: Path) -> None:
    assert client.get("/tiles/city/external/mesh/tileset.json").status_code == 200
    shutil.rmtree(tiles.parent / "third")
    response = client.get("/tiles/city/external/mesh/tileset.json")
    assert response.status_code == 404
    body = response.json()
    assert body["what"] == 'external tileset "mesh"'
    assert "its folder is no longer there" in body["why"] and str(tiles.parent) not in response.text


@pytest.fixture
def local_server(made: dict[str, Path]) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    """A plain web server on 127.0.0.1 serving the third-party tileset's folder (as a city's mesh server would)."""
    handler = functools.partial(_Quiet, directory=str(made["third"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tileset.json", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_url_mount_is_proxied_and_a_stopped_server_is_a_clear_502(
    client: TestClient, tiles: Path, made: dict[str, Path], local_server: tuple[str, http.server.ThreadingHTTPServer]
) -> None:
    url, server = local_server
    summary = mount_tilesets(tiles / "city", [MountSpec("remote", url=url, title="Remote mesh")], keep_others=True)
    assert summary.mounted == ["remote"], summary
    uris = [c["content"]["uri"] for c in client.get("/tiles/city/tileset.json").json()["root"]["children"]]
    assert {"external/mesh/tileset.json", "external/remote/tileset.json"} <= set(uris)
    response = client.get("/tiles/city/external/remote/sphere.glb")
    assert response.status_code == 200 and response.content == (made["third"] / "sphere.glb").read_bytes()
    assert response.headers["content-type"] == "model/gltf-binary"
    again = client.get("/tiles/city/external/remote/sphere.glb", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/tiles/city/external/remote/nope.glb").status_code == 404
    server.shutdown()
    server.server_close()
    response = client.get("/tiles/city/external/remote/tileset.json")
    assert response.status_code == 502, response.text
    assert response.json()["what"] == 'external tileset "remote"'
    assert "does not answer" in response.json()["why"] and str(server.server_address[1]) not in response.text


def test_a_url_mount_of_a_stopped_server_is_refused_on_mount(tiles: Path) -> None:
    summary = mount_tilesets(tiles / "city", [MountSpec("remote", url="http://127.0.0.1:9/t/tileset.json")])
    assert len(summary.errors) == 1 and summary.errors[0].startswith('tileset "remote" tileset.json — cannot be read')


def test_cim_serve_finds_the_mounts_after_a_restart(tiles: Path, tmp_path: Path) -> None:
    for restart in range(2):  # two server processes: the mounts are read from the tiles folder, not remembered
        with cim_serve(str(tmp_path / "s.duckdb"), tiles, tmp_path / "serve.log") as base, httpx.Client() as http:
            first = http.get(f"{base}/tiles/city/external/mesh/sphere.glb")
            assert first.status_code == 200 and first.content[:4] == b"glTF"
            second = http.get(
                f"{base}/tiles/city/external/mesh/sphere.glb", headers={"If-None-Match": first.headers["etag"]}
            )
            assert second.status_code == 304
            if restart:
                continue
            # a second client (loaders.gl) follows the root into the mount, loads its glb and b3dm, and puts the
            # sphere where the mount's transform says: 120 m above (121.5, 31.23, 0)
            status, report = run_reader(f"{base}/tiles/city/tileset.json", features=0)
            assert status == 0, report["errors"][:3]
            contents = {c["uri"].rpartition("external/")[2]: c for c in report["contents"]}
            assert {"mesh/sphere.glb", "mesh/column.b3dm"} <= set(contents), sorted(contents)
            low, high = np.asarray(contents["mesh/sphere.glb"]["ecefBounds"], np.float64)
            expected = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(
                121.5, 31.23, 120
            )
            assert np.linalg.norm((low + high) / 2 - np.asarray(expected)) < 1.0


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Sends every request off this machine."""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://example.com/tileset.json")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_redirect_off_this_machine_is_refused(tiles: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tileset.json"
        summary = mount_tilesets(tiles / "city", [MountSpec("away", url=url)])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert summary.errors == [
        'tileset "away" tileset.json — cannot be read: its server redirected it off this machine '
        "(host 'example.com' is not this machine; only localhost, 127.0.0.1 or ::1)"
    ]


class _Gzipped(http.server.SimpleHTTPRequestHandler):
    """Serves a tileset stored gzipped (``3d-tiles-tools gzip``) as such servers do: Content-Encoding: gzip."""

    def end_headers(self) -> None:
        self.send_header("Content-Encoding", "gzip")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_gzipped_tileset_is_refused_from_a_folder_and_read_from_a_server(
    client: TestClient, tiles: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    from tests.tiling.external_tilesets import tiles_tools

    tiles_tools("gzip", "-i", str(made["third"]), "-o", str(tmp_path / "gzipped"), cwd=tmp_path)
    summary = mount_tilesets(tiles / "city", [MountSpec("packed", path=tmp_path / "gzipped")], keep_others=True)
    assert summary.errors == [
        'tileset "packed" tileset.json — is gzipped as a file; ungzip the tileset first (3d-tiles-tools ungzip)'
    ]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Gzipped, directory=str(tmp_path / "gzipped"))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tileset.json"
        summary = mount_tilesets(tiles / "city", [MountSpec("packed", url=url)], keep_others=True)
        assert summary.mounted == ["packed"], summary
        served = client.get("/tiles/city/external/packed/sphere.glb", headers={"Accept-Encoding": "identity"})
        assert served.status_code == 200 and served.content == (made["third"] / "sphere.glb").read_bytes()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
