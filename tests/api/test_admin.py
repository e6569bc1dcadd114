"""Ingest, build and info while serving: through a real ``cim serve`` that holds the DuckDB store, never by opening
the busy file — from the CLI (which finds the server beside the store) and over ``/admin`` directly."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cim.store import open_store
from tests.api.city import build_city
from tests.api.conftest import cim_serve
from tests.tiling.checks import check_all

TOKEN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The server's upload limit in these tests.
MAX_UPLOAD = 3_000_000


@pytest.fixture
def served(tmp_path: Path, tiles_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """``cim serve`` with a write token over a small city in a DuckDB file: (base URL, store path)."""
    store = tmp_path / "city.duckdb"
    with open_store(str(store)) as opened:
        build_city(opened)
    monkeypatch.setenv("CIM_WRITE_TOKEN", TOKEN)
    monkeypatch.setenv("CIM_ADMIN_MAX_UPLOAD_BYTES", str(MAX_UPLOAD))
    monkeypatch.setenv("CIM_ADMIN_MAX_QUEUED_JOBS", "1")
    with cim_serve(str(store), tiles_dir, tmp_path / "server.log") as base:
        yield base, store


@pytest.fixture(scope="module")
def blocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GeoJSON layer of 40,000 building footprints: an ingest of several seconds."""
    path = tmp_path_factory.mktemp("blocks") / "blocks.geojson"
    side = 200
    features = []
    for i in range(40_000):
        x, y = 121.40 + (i % side) * 0.0005, 31.15 + (i // side) * 0.0005
        ring = [[x, y], [x + 0.0003, y], [x + 0.0003, y + 0.0003], [x, y + 0.0003], [x, y]]
        geometry = {"type": "Polygon", "coordinates": [ring]}
        features.append({"type": "Feature", "id": i, "properties": {"name": f"b{i}"}, "geometry": geometry})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def cim(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CIM_WRITE_TOKEN", "CIM_SERVER")}
    if token is not None:
        env["CIM_WRITE_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=300, env=env)


def counts(base: str) -> dict[str, int]:
    assets: dict[str, int] = httpx.get(f"{base}/admin/info").json()["assets"]
    return assets


def upload(base: str, path: Path, name: str | None = None, headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(
        f"{base}/admin/uploads", params={"name": name or path.name}, content=path.read_bytes(), headers=headers
    )


def run_job(base: str, spec: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    created = httpx.post(f"{base}/admin/jobs", json=spec, headers=AUTH)
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = created.json()
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = httpx.get(f"{base}/admin/jobs/{job['id']}", headers=AUTH).json()
    return job


class Reader:
    """GET requests in a loop on another thread while a test writes: their latencies and any failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = client.get(self.url)
                self.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(0.02)


def test_cim_ingest_of_geojson_and_ifc_goes_through_the_server_while_it_serves_reads(
    served: tuple[str, Path], data_dir: Path
) -> None:
    base, store = served
    shelters = data_dir / "gis" / "TRANS_BusShelters.geojson"
    house = data_dir / "ifc" / "IfcOpenHouse_IFC4.ifc"
    assert store.with_name("city.server.json").is_file()
    before = counts(base)
    with Reader(f"{base}/collections/building/items?limit=10") as reader:
        result = cim(
            "ingest", str(shelters), str(house), "--kind", "transit_stop", "--place", "121.5,31.2,4",
            "--store", str(store), "--json",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    first, second = summary["files"]
    assert first["path"] == str(shelters) and first["ok"] and first["assets"] == {"transit_stop": 68}
    assert second["path"] == str(house) and second["ok"] and second["georeference"]["method"] == "placement"
    assert summary["assets"]["transit_stop"] == 68 and summary["assets"]["building"] == 1
    assert reader.latencies and not reader.failures
    items = httpx.get(f"{base}/collections/transit_stop/items", params={"limit": 1000}).json()
    assert len(items["features"]) == before["transit_stop"] + 68
    assert sum(str(f["properties"]["source"]).startswith("TRANS_BusShelters.geojson:") for f in items["features"]) == 68
    elements = httpx.get(f"{base}/collections/element/items", params={"limit": 1000}).json()
    assert len(elements["features"]) == summary["assets"]["element"] > 0


def test_cim_ingest_valid_from_goes_to_the_server_and_dates_the_ingest(
    served: tuple[str, Path], data_dir: Path
) -> None:
    _, store = served
    shelters = data_dir / "gis" / "TRANS_BusShelters.geojson"
    result = cim("ingest", str(shelters), "--kind", "transit_stop", "--valid-from", "2024-05-01", "--store", str(store))
    assert result.returncode == 0, result.stderr
    # dated 2024-05-01 by the server: an earlier date for the same source is refused, naming that change
    earlier = cim(
        "ingest", str(shelters), "--kind", "transit_stop", "--valid-from", "2023-01-01", "--store", str(store), "--json"
    )
    assert earlier.returncode == 2, earlier.stderr
    error = json.loads(earlier.stdout)["files"][0]["error"]
    assert "before the latest recorded change" in error and "2024-05-01T00:00:00+00:00" in error, error


def test_cim_build_while_serving_swaps_in_tiles_the_server_then_serves(
    served: tuple[str, Path], tiles_dir: Path, data_dir: Path
) -> None:
    base, store = served
    hydrants = data_dir / "gis" / "TRANS_BusShelters.geojson"
    assert cim("ingest", str(hydrants), "--kind", "transit_stop", "--store", str(store)).returncode == 0
    first = cim("build", "--out", str(tiles_dir / "live"), "--store", str(store), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["tilesets"]["points"]["features"] == 68
    tileset = httpx.get(f"{base}/tiles/live/tileset.json")
    assert tileset.status_code == 200 and tileset.json()["asset"]["version"] == "1.1"
    version = (tiles_dir / "live").resolve()
    house = data_dir / "ifc" / "IfcOpenHouse_IFC4.ifc"
    assert cim("ingest", str(house), "--place", "121.5,31.2,4", "--store", str(store)).returncode == 0
    with Reader(f"{base}/tiles/live/tileset.json") as reader:
        second = cim("build", "--out", str(tiles_dir / "live"), "--store", str(store))
    assert second.returncode == 0, second.stderr
    assert "bim" in second.stdout and not reader.failures  # every read during the swap found a whole tileset
    assert (tiles_dir / "live").resolve() != version
    root = httpx.get(f"{base}/tiles/live/tileset.json").json()
    uris = json.dumps(root)
    assert "bim" in uris
    check_all(tiles_dir / "live")  # and loaders.gl loads it (the server holds the store: no store comparison)
    plain = cim("build", "--out", str(tiles_dir / "live"), "--store", str(store), "--compress", "none")
    assert plain.returncode == 0, plain.stderr
    assert json.loads((tiles_dir / "live" / "build.json").read_text())["compress"] == "none"  # the job was told
    implicit = cim("build", "--out", str(tiles_dir / "live"), "--store", str(store), "--implicit")
    assert implicit.returncode == 0, implicit.stderr
    assert "implicitTiling" in httpx.get(f"{base}/tiles/live/points/tileset.json").json()["root"]  # served implicit
    assert httpx.get(f"{base}/tiles/live/points/subtrees/0/0/0.subtree").content[:4] == b"subt"


def test_cim_info_while_serving_prints_what_a_local_run_prints(served: tuple[str, Path], tmp_path: Path) -> None:
    _, store = served
    remote = cim("info", "--store", str(store), "--json", token=None)  # a read needs no token
    assert remote.returncode == 0, remote.stderr
    copy = tmp_path / "copy.duckdb"
    with open_store(str(copy)) as opened:
        build_city(opened)
    local = json.loads(cim("info", "--store", str(copy), "--json").stdout)
    assert json.loads(remote.stdout) == {**local, "store": str(store)}


def test_writes_without_the_token_are_refused_and_store_nothing(
    served: tuple[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    base, store = served
    before = counts(base)
    shelters = data_dir / "gis" / "TRANS_BusShelters.geojson"
    assert upload(base, shelters, headers={}).status_code == 401
    assert upload(base, shelters, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{base}/admin/jobs", json={"action": "build", "tileset": "x"}).status_code == 401
    assert httpx.get(f"{base}/admin/jobs/whatever").status_code == 401
    missing = cim("ingest", str(shelters), "--kind", "transit_stop", "--store", str(store), token=None)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "CIM_WRITE_TOKEN" in missing.stderr and missing.stderr.startswith("error: store served by cim serve at")
    wrong = cim("ingest", str(shelters), "--kind", "transit_stop", "--store", str(store), token="wrong")
    assert wrong.returncode == 2 and "refused the write token" in wrong.stderr
    assert counts(base) == before


def test_hostile_uploads_and_jobs_are_refused_clearly_and_change_nothing(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = served
    before = counts(base)
    big = tmp_path / "big.geojson"
    big.write_bytes(b" " * (MAX_UPLOAD + 1))
    too_large = upload(base, big)
    assert too_large.status_code == 413 and "big.geojson" in too_large.json()["description"]
    for name in ("../escape.geojson", ".hidden", "a/b.geojson", ""):
        assert httpx.post(f"{base}/admin/uploads", params={"name": name}, content=b"{}", headers=AUTH).status_code in (
            400,
            422,
        )
    bad_jobs = [
        {"action": "ingest", "files": [{"upload": "nope", "label": "x.geojson"}], "kind": "park"},
        {"action": "ingest", "files": []},
        {"action": "build", "tileset": "../../etc"},
        {"action": "build", "tileset": ".hidden"},
        {"action": "explode"},
        {"action": "ingest", "files": "x"},
    ]
    for spec in bad_jobs:
        refused = httpx.post(f"{base}/admin/jobs", json=spec, headers=AUTH)
        assert refused.status_code in (400, 404), (spec, refused.text)
        assert " — " in refused.json()["description"]
    assert httpx.post(f"{base}/admin/jobs", content=b"{not json", headers=AUTH).status_code == 400
    garbage = tmp_path / "roads.geojson"
    garbage.write_bytes(b"\x00\x01 this is not GeoJSON" * 100)
    sent = upload(base, garbage)
    assert sent.status_code == 201
    job = run_job(
        base, {"action": "ingest", "kind": "road", "files": [{"upload": sent.json()["id"], "label": "roads.geojson"}]}
    )
    entry = job["result"]["files"][0]
    assert not entry["ok"] and entry["error"].startswith("file roads.geojson — ")
    assert "/tmp" not in json.dumps(job) and "cim-uploads" not in json.dumps(job)
    assert counts(base) == before


def test_a_file_over_the_servers_limit_is_refused_before_it_is_sent(served: tuple[str, Path], blocks: Path) -> None:
    base, store = served
    sent = httpx.post(f"{base}/admin/uploads", params={"name": blocks.name}, content=blocks.read_bytes(), headers=AUTH)
    assert sent.status_code == 413
    result = cim("ingest", str(blocks), "--kind", "building", "--store", str(store), "--json")
    assert result.returncode == 2 and "the server takes 3,000,000 at most" in result.stderr
    assert json.loads(result.stdout)["files"][0]["error"].endswith("(CIM_ADMIN_MAX_UPLOAD_BYTES)")
    assert "building" not in counts(base) or counts(base)["building"] == 3


def test_reads_stay_fast_during_a_long_ingest(
    tmp_path: Path, tiles_dir: Path, blocks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "city.duckdb"
    with open_store(str(store)) as opened:
        build_city(opened)
    monkeypatch.setenv("CIM_WRITE_TOKEN", TOKEN)
    monkeypatch.setenv("CIM_ADMIN_MAX_QUEUED_JOBS", "1")
    with cim_serve(str(store), tiles_dir, tmp_path / "server.log") as base:
        with Reader(f"{base}/collections/building/items?limit=10") as reader:
            time.sleep(1.0)
            idle = list(reader.latencies)
            sent = upload(base, blocks).json()
            created = httpx.post(
                f"{base}/admin/jobs",
                json={"action": "ingest", "kind": "building", "files": [{"upload": sent["id"], "label": "blocks"}]},
                headers=AUTH,
            ).json()
            queued = httpx.post(f"{base}/admin/jobs", json={"action": "build", "tileset": "after"}, headers=AUTH)
            full = httpx.post(f"{base}/admin/jobs", json={"action": "build", "tileset": "after"}, headers=AUTH)
            mark = len(reader.latencies)
            job = created
            while job["state"] in ("queued", "running"):
                time.sleep(0.1)
                job = httpx.get(f"{base}/admin/jobs/{created['id']}", headers=AUTH).json()
            during = reader.latencies[mark:]
        assert job["state"] == "done", job
        assert job["result"]["assets"] == {"building": 40_000}
        assert queued.status_code == 202
        assert full.status_code == 503 and full.headers["retry-after"].isdigit()
        assert not reader.failures and len(during) >= 10
        figures = {
            "idle_median_ms": round(statistics.median(idle) * 1000, 1),
            "ingest_median_ms": round(statistics.median(during) * 1000, 1),
            "ingest_max_ms": round(max(during) * 1000, 1),
            "ingest_s": round(job["finished"] - job["started"], 1),
            "reads_during_ingest": len(during),
        }
        print(f"\nread latency while ingesting 40,000 buildings: {figures}")
        assert statistics.median(during) < 0.5 and max(during) < 2.0, figures
        assert counts(base)["building"] == 40_003


def test_a_server_killed_mid_ingest_leaves_the_store_intact(
    tmp_path: Path, tiles_dir: Path, blocks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "city.duckdb"
    with open_store(str(store)) as opened:
        build_city(opened)
        before = opened.count_by_kind()
    monkeypatch.setenv("CIM_WRITE_TOKEN", TOKEN)
    log = tmp_path / "server.log"
    with cim_serve(str(store), tiles_dir, log) as base:
        pid = json.loads(store.with_name("city.server.json").read_text())["pid"]
        ingest = subprocess.Popen(
            [sys.executable, "-m", "cim", "ingest", str(blocks), "--kind", "building", "--store", str(store)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CIM_WRITE_TOKEN": TOKEN},
        )  # fmt: skip
        while httpx.get(f"{base}/admin/info").json()["jobs"]["running"] == 0:
            assert ingest.poll() is None, ingest.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # inside the ingest
        os.kill(pid, signal.SIGKILL)
        _, err = ingest.communicate(timeout=60)
    assert ingest.returncode == 2
    assert err.splitlines()[-1].startswith("error: ingest job — the server at http://127.0.0.1:")
    assert "stopped answering before the job ended" in err
    assert store.with_name("city.server.json").is_file()  # left behind by the kill, and ignored: its pid is dead
    with open_store(str(store)) as opened:
        assert opened.count_by_kind() == before
    with cim_serve(str(store), tiles_dir, tmp_path / "again.log") as base:
        assert counts(base) == before
        again = cim("ingest", str(blocks), "--kind", "building", "--store", str(store), "--json")
        assert again.returncode == 0, again.stderr
        assert counts(base)["building"] == before["building"] + 40_000
