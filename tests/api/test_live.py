"""A live ``cim serve``: GDAL's OGC API client reads it, raw traversal requests are refused, the CLI agrees."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tests.api.city import AREA, AS_OF
from tests.conftest import missing_service


def _ogrinfo() -> str:
    path = shutil.which("ogrinfo")
    if path is None:
        missing_service("ogrinfo (Debian package gdal-bin) is not installed")
    assert path is not None
    return path


def test_gdal_lists_the_collections_and_reads_features_with_a_filter(live_server: tuple[str, Path]) -> None:
    ogrinfo = _ogrinfo()
    base, log = live_server
    listing = subprocess.run([ogrinfo, "-ro", f"OAPIF:{base}"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    for kind in ("building", "pipe", "lift", "park"):
        assert f": {kind}" in listing.stdout
    read = subprocess.run(
        [ogrinfo, "-ro", "-q", f"OAPIF:{base}", "pipe", "-where", "network = 'water'"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert read.returncode == 0, read.stderr
    assert "water-1" in read.stdout and "gas-cross" not in read.stdout
    assert read.stdout.count("OGRFeature(pipe)") == 1
    assert "GET /collections/pipe/items" in log.read_text()  # read from this server (GDAL 3.6 filters client-side)


def test_raw_traversal_requests_are_refused_by_the_live_server(live_server: tuple[str, Path]) -> None:
    base, _ = live_server
    netloc = urlsplit(base).netloc
    for path in ("/tiles/../secret.txt", "/tiles/city/../../secret.txt", "/tiles/%2e%2e/secret.txt"):
        con = http.client.HTTPConnection(netloc, timeout=10)
        con.request("GET", path)
        response = con.getresponse()
        body = response.read().decode()
        assert response.status in (400, 404), (path, response.status)
        assert "not for the web" not in body
        con.close()
    with urllib.request.urlopen(f"{base}/tiles/city/tileset.json") as ok:
        assert json.load(ok)["asset"]["version"] == "1.1"


def test_cli_queries_print_the_same_json_as_the_api(city_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

    west, south, east, north = AREA
    area = tmp_path / "area.geojson"
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    area.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}))

    def cli(*args: str) -> object:
        done = subprocess.run([sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    lifts = cli("query", "old-lifts", "--store", city_url, "--years", "15", "--as-of", AS_OF.isoformat(), "--json")
    pipes = cli("query", "buried-pipes", "--store", city_url, "--network", "gas", "--area", str(area), "--json")
    near = cli(
        "query",
        "within-distance",
        "--store",
        city_url,
        "--kind",
        "transit_stop",
        "--near",
        "park",
        "--distance",
        "50",
        "--json",
    )
    bad = subprocess.run(
        [sys.executable, "-m", "cim", "query", "old-lifts", "--store", city_url, "--as-of", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: --as-of 'nope' — ")
    settings = AppSettings(store=StoreSettings(store=city_url), server=ServerSettings(tiles_dir=tmp_path))
    with TestClient(create_app(settings)) as client:
        assert client.get("/queries/old-lifts", params={"as_of": AS_OF.isoformat()}).json() == lifts
        assert client.post("/queries/buried-pipes?network=gas", content=area.read_text()).json() == pipes
        params = {"kind": "transit_stop", "near": "park", "distance": 50}
        assert client.get("/queries/within-distance", params=params).json() == near
