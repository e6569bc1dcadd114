"""A real QGIS (Debian's ``qgis`` + ``python3-qgis``, 3.22, headless) against a live ``cim serve`` on each store: each
collection loads as an OGC API – Features layer with the store's count and geometry type, filters keep the right
features and those QGIS sends reach the server, and a feature edited through Part 4 reads back changed.

QGIS runs under Debian's Python (:mod:`tests.api.qgis_client`, see there what 3.22 can and cannot do); between it
and the server stands a small proxy that counts the requests and the features each answer carries, so "reaches the
server" is measured: a filtered layer transfers only the features it keeps.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from cim.model import Kind
from cim.store import AssetQuery, open_store
from tests.api.conftest import cim_serve
from tests.conftest import missing_service

DEBIAN_PYTHON = "/usr/bin/python3"
CLIENT = Path(__file__).with_name("qgis_client.py")
TOKEN = "qgis-test-token"


@pytest.fixture(scope="session")
def qgis_python() -> str:
    """Debian's Python with QGIS's bindings; skipped (failed under CI) when QGIS is not installed."""
    try:
        found = subprocess.run([DEBIAN_PYTHON, "-c", "import qgis.core"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing_service(f"{DEBIAN_PYTHON} cannot run: {exc}")
    if found.returncode != 0:
        missing_service("QGIS is not installed (apt-get install qgis python3-qgis; scripts/test does it)")
    return DEBIAN_PYTHON


@dataclass
class City:
    """What the store holds, read before the server takes it: per collection its ids and geometry types."""

    ids: dict[str, list[str]]
    geometry_types: dict[str, set[str]]
    tall: list[str]  # buildings with more than 15 storeys
    recent_lifts: list[str]  # lifts installed on or after 2010-01-01


@pytest.fixture
def city(city_url: str) -> City:
    with open_store(city_url) as store:
        assets = store.find_assets(AssetQuery())
    ids: dict[str, list[str]] = {}
    types: dict[str, set[str]] = {}
    for asset in assets:
        ids.setdefault(asset.kind.value, []).append(asset.id)
        types.setdefault(asset.kind.value, set())
        if asset.geom is not None:
            types[asset.kind.value].add(asset.geom.geom_type)
    tall = [a.id for a in assets if a.kind is Kind.BUILDING and (a.storeys or 0) > 15]
    recent = [a.id for a in assets if a.kind is Kind.LIFT and a.install_date and a.install_date.year >= 2010]
    return City({k: sorted(v) for k, v in ids.items()}, types, sorted(tall), sorted(recent))


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    features: int  # features in the answer (a FeatureCollection's, 1 for a Feature, else 0)


@dataclass
class CountingProxy:
    """Forwards every request to the server and notes what went by."""

    upstream: str
    exchanges: list[Exchange] = field(default_factory=list)
    url: str = ""

    def items_requests(self, collection: str) -> list[Exchange]:
        return [e for e in self.exchanges if urlsplit(e.path).path == f"/collections/{collection}/items"]

    def forget(self) -> None:
        self.exchanges.clear()


@pytest.fixture
def served(city: City, city_url: str, tiles_dir: Path, tmp_path: Path) -> Iterator[CountingProxy]:
    """``cim serve`` with a write token over the city (after ``city`` has read it), behind a counting proxy."""
    with cim_serve(city_url, tiles_dir, tmp_path / "server.log", env={"CIM_WRITE_TOKEN": TOKEN}) as base:
        proxy = CountingProxy(upstream=base)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(proxy))
        proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield proxy
        finally:
            server.shutdown()
            server.server_close()


def _handler_for(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(proxy.upstream)

    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "accept-encoding")}
            # the Host QGIS used stays: the server's links then point back through the proxy
            connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                raw = answer.read()
                status, reply_headers = answer.status, answer.getheaders()
            finally:
                connection.close()
            proxy.exchanges.append(Exchange(self.command, self.path, status, _features_in(raw)))
            self.send_response(status)
            for name, value in reply_headers:
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Forward


def _features_in(raw: bytes) -> int:
    try:
        body = json.loads(raw)
    except ValueError:
        return 0
    if isinstance(body, dict) and isinstance(body.get("features"), list):
        return len(body["features"])
    return 1 if isinstance(body, dict) and body.get("type") == "Feature" else 0


def run_qgis(python: str, base: str, tasks: list[dict[str, Any]], home: Path) -> list[dict[str, Any]]:
    """The tasks run by QGIS (:mod:`tests.api.qgis_client`): one result each."""
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),  # QGIS writes its profile here, not into the user's
        "XDG_RUNTIME_DIR": str(home),
        "QT_QPA_PLATFORM": "offscreen",
        "LANG": "C.UTF-8",
    }
    done = subprocess.run(
        [python, str(CLIENT), json.dumps({"base": base, "tasks": tasks})],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _qgis_geometry(types: set[str]) -> str:
    """The geometry type QGIS should show for a collection whose features have ``types``."""
    if not types:
        return "NoGeometry"
    assert len(types) == 1, f"the test city mixes geometry types in one collection: {types}"
    return types.pop()


def test_each_collection_opens_in_qgis_with_the_store_count_and_geometry(
    qgis_python: str, city: City, served: CountingProxy, tmp_path: Path
) -> None:
    collections = sorted(city.ids)
    results = run_qgis(qgis_python, served.url, [{"op": "load", "collection": c} for c in collections], tmp_path / "q")
    for collection, seen in zip(collections, results, strict=True):
        assert seen["valid"], f"QGIS cannot open {collection}"
        assert seen["ids"] == city.ids[collection], collection
        assert seen["geometry"] == _qgis_geometry(set(city.geometry_types[collection])), collection
    counted = {c: seen["feature_count"] for c, seen in zip(collections, results, strict=True)}
    assert counted == {c: len(ids) for c, ids in city.ids.items()}  # QGIS shows 0 for pages without numberMatched


def test_a_filter_keeps_the_right_features_and_what_qgis_sends_reaches_the_server(
    qgis_python: str, city: City, served: CountingProxy, tmp_path: Path
) -> None:
    tasks = [
        # a QgsFeatureRequest expression: right features (QGIS 3.22 evaluates it itself)
        {"op": "select", "collection": "building", "expression": '"storeys" > 15'},
        # a CQL2 filter in the layer's URL: sent with every request, the server keeps the features
        {"op": "select", "collection": "building", "params": {"filter": "storeys > 15", "filter-lang": "cql2-text"}},
        # a subset string comparing a date field: QGIS sends it as datetime=
        {"op": "select", "collection": "lift", "subset": "\"install_date\" >= '2010-01-01'"},
    ]
    request_filter, url_filter, date_subset = run_qgis(qgis_python, served.url, tasks, tmp_path / "q")
    assert request_filter["ids"] == city.tall
    assert url_filter["ids"] == city.tall
    assert date_subset["ids"] == city.recent_lifts

    buildings = served.items_requests("building")
    filtered = [e for e in buildings if "filter=" in e.path]
    assert filtered and all(e.status == 200 for e in filtered)
    # every items page of the filtered layer came through the filter: no page carried a building it does not keep
    assert all(e.features <= len(city.tall) for e in filtered)
    assert max(e.features for e in filtered) == len(city.tall)
    lifts = [e for e in served.items_requests("lift") if "datetime=" in unquote(e.path)]
    assert lifts and max(e.features for e in lifts) == len(city.recent_lifts) < len(city.ids["lift"])


def test_a_feature_edited_through_part_4_reads_back_in_qgis(
    qgis_python: str, city: City, served: CountingProxy, tmp_path: Path
) -> None:
    target = city.ids["building"][0]
    task = {"op": "edit", "collection": "building", "id": target, "field": "name", "value": "塔楼 QGIS", "token": TOKEN}
    (edited,) = run_qgis(qgis_python, served.url, [task], tmp_path / "q")
    assert edited.get("read_status", 200) == 200, edited
    assert edited["without_token"] == 401, edited
    assert edited["with_token"] in (200, 204), edited
    assert edited["read_back"] == "塔楼 QGIS"
    puts = [e for e in served.exchanges if e.method == "PUT"]
    assert [e.status for e in puts] == [401, edited["with_token"]]
