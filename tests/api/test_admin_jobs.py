"""The admin API in-process (TestClient): writes disabled without a token, a shapefile sent with its parts, a job
stopped by shutdown, and how the CLI finds a server beside the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point

from cim.api import create_app
from cim.api.client import announce, find_server, sidecar_for
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store

AUTH = {"Authorization": "Bearer t"}


def app_settings(tmp_path: Path, token: str | None = "t") -> AppSettings:
    (tmp_path / "tiles").mkdir(exist_ok=True)
    return AppSettings(
        store=StoreSettings(store=str(tmp_path / "city.duckdb")),
        server=ServerSettings(tiles_dir=tmp_path / "tiles", write_token=token),
    )


def wait(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = client.get(f"/admin/jobs/{job['id']}", headers=AUTH).json()
    return job


def test_a_server_without_a_write_token_takes_no_uploads(tmp_path: Path) -> None:
    with TestClient(create_app(app_settings(tmp_path, token=None))) as client:
        refused = client.post("/admin/uploads", params={"name": "a.geojson"}, content=b"{}", headers=AUTH)
        assert refused.status_code == 403 and "CIM_WRITE_TOKEN" in refused.json()["description"]
        assert client.get("/admin/info").json()["assets"] == {}


def test_a_shapefile_goes_in_with_its_parts_sent_beside_it(tmp_path: Path) -> None:
    layer = tmp_path / "data" / "hydrants.shp"
    layer.parent.mkdir()
    gpd.GeoDataFrame({"name": ["h1", "h2"]}, geometry=[Point(121.5, 31.2), Point(121.51, 31.21)], crs=4326).to_file(
        layer
    )
    with TestClient(create_app(app_settings(tmp_path))) as client:
        main = client.post("/admin/uploads", params={"name": layer.name}, content=layer.read_bytes(), headers=AUTH)
        for part in sorted(layer.parent.glob("hydrants.*")):
            if part != layer:
                sent = client.post(
                    "/admin/uploads", params={"name": part.name, "beside": main.json()["id"]},
                    content=part.read_bytes(), headers=AUTH,
                )  # fmt: skip
                assert sent.status_code == 201, sent.text
        twice = client.post(
            "/admin/uploads", params={"name": "hydrants.dbf", "beside": main.json()["id"]}, content=b"x", headers=AUTH
        )
        assert twice.status_code == 400
        files = [{"upload": main.json()["id"], "label": "data/hydrants.shp"}]
        job = client.post("/admin/jobs", json={"action": "ingest", "kind": "hydrant", "files": files}, headers=AUTH)
        done = wait(client, job.json())
        assert done["state"] == "done" and done["result"]["assets"] == {"hydrant": 2}
        assert done["result"]["files"][0]["path"] == "data/hydrants.shp"
        assert client.get("/admin/info").json()["assets"] == {"hydrant": 2}


def test_shutdown_stops_a_running_ingest_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    points = tmp_path / "many.geojson"
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [121 + i * 1e-5, 31.2]}}
        for i in range(60_000)
    ]
    points.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    app = create_app(app_settings(tmp_path))
    with TestClient(app) as client:
        sent = client.post("/admin/uploads", params={"name": points.name}, content=points.read_bytes(), headers=AUTH)
        files = [{"upload": sent.json()["id"], "label": "many.geojson"}]
        job = client.post("/admin/jobs", json={"action": "ingest", "kind": "hydrant", "files": files}, headers=AUTH)
        state = job.json()
        while state["state"] == "queued":
            state = client.get(f"/admin/jobs/{state['id']}", headers=AUTH).json()
    # the lifespan's end stopped the job at its next step: its transaction rolled back
    assert app.state.admin_jobs.join(120)
    with open_store(str(tmp_path / "city.duckdb")) as store:
        assert store.count_by_kind() in ({}, {"hydrant": 60_000})  # stopped, or done just before the stop


def test_the_cli_finds_a_live_server_beside_the_store_and_ignores_a_dead_one(tmp_path: Path) -> None:
    store = str(tmp_path / "city.duckdb")
    assert find_server(store, server=None, token=None) is None
    with announce(store, host="0.0.0.0", port=8123, tiles_dir=tmp_path):
        found = find_server(store, server=None, token="x")
        assert found is not None and found.url == "http://127.0.0.1:8123" and found.pid == os.getpid()
        assert found.tiles_dir == tmp_path.resolve()
    sidecar = sidecar_for(store)
    assert sidecar is not None and not sidecar.exists()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    sidecar.write_text(json.dumps({"url": "http://127.0.0.1:8123", "pid": int(finished.stdout)}))
    assert find_server(store, server=None, token=None) is None  # its server is gone: work locally
    assert sidecar_for("postgresql://u@h/db") is None
    explicit = find_server("postgresql://u@h/db", server="http://cim.example:8000/", token="x")
    assert explicit is not None and explicit.url == "http://cim.example:8000"
    with pytest.raises(Exception, match="must be a URL"):
        find_server(store, server="cim.example:8000", token=None)


def test_a_preview_during_an_ingest_job_draws_without_the_mesh_file_the_job_is_writing(tmp_path: Path) -> None:
    from cim.render import open_meshes_for
    from cim.store.meshes import MeshStore, mesh_path_for

    store = str(tmp_path / "city.duckdb")
    with MeshStore(mesh_path_for(store)):  # as a job holds it: DuckDB opens a file one way at a time in a process
        assert open_meshes_for(store) is None
    reader = open_meshes_for(store)
    assert reader is not None
    reader.close()


def test_a_bad_ingest_option_is_a_400_naming_the_clients_mapping_file_and_keeps_the_upload(tmp_path: Path) -> None:
    with TestClient(create_app(app_settings(tmp_path))) as client:
        sent = client.post("/admin/uploads", params={"name": "a.geojson"}, content=b"{}", headers=AUTH).json()
        files = [{"upload": sent["id"], "label": "a.geojson"}]
        for options, message in (
            ({"kind": "spaceship"}, "spaceship"),
            ({"preset": "nope"}, "nope"),
            ({"kind": "park", "crs": "EPSG:999999"}, "EPSG:999999"),
            ({"mapping": "kind = [", "mapping_label": "maps/parks.toml"}, "maps/parks.toml"),
            ({"kind": "park", "preset": "osm-parks"}, "at most one"),
        ):
            refused = client.post("/admin/jobs", json={"action": "ingest", "files": files, **options}, headers=AUTH)
            assert refused.status_code == 400, (options, refused.text)
            assert message in refused.json()["description"] and "/tmp" not in refused.text
        accepted = client.post("/admin/jobs", json={"action": "ingest", "files": files, "kind": "park"}, headers=AUTH)
        assert accepted.status_code == 202
