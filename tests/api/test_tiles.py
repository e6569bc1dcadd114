"""``/tiles``: content types, ETag and 304, gzip for JSON, and no way out of the tiles folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


def test_tileset_json_is_gzipped_cached_and_revalidated(client: TestClient, tiles_dir: Path) -> None:
    response = client.get("/tiles/city/tileset.json", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-encoding"] == "gzip"
    assert "max-age" in response.headers["cache-control"]
    assert response.json()["asset"]["version"] == "1.1"  # httpx decodes the gzip body
    etag = response.headers["etag"]
    again = client.get("/tiles/city/tileset.json", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    plain = client.get("/tiles/city/tileset.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != etag
    assert plain.content == (tiles_dir / "city" / "tileset.json").read_bytes()
    assert len(gzip.compress(plain.content)) < len(plain.content)


def test_glb_has_its_type_and_a_rebuilt_file_gets_a_new_etag(client: TestClient, tiles_dir: Path) -> None:
    first = client.get("/tiles/city/0.glb", headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-type"] == "model/gltf-binary"
    assert "content-encoding" not in first.headers
    assert first.content == (tiles_dir / "city" / "0.glb").read_bytes()
    (tiles_dir / "city" / "0.glb").write_bytes(b"glTF-rebuilt")
    second = client.get("/tiles/city/0.glb", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.content == b"glTF-rebuilt"
    head = client.head("/tiles/city/0.glb")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(b"glTF-rebuilt"))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tiles/city/%2e%2e/%2e%2e/secret.txt", 400),
        ("/tiles/%2E%2E/secret.txt", 400),
        ("/tiles/city/..%2f..%2fsecret.txt", 400),
        ("/tiles/%2fetc%2fpasswd", 400),
        ("/tiles//etc/passwd", 400),
        ("/tiles/city/escape.json", 404),  # a symlink out of the folder
        ("/tiles/city/nope.json", 404),
        ("/tiles/city", 404),  # a folder is not a file
        ("/tiles/city/%00.json", 400),
    ],
)
def test_nothing_outside_the_tiles_folder_is_served(client: TestClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "not for the web" not in response.text
    assert response.json()["description"]
