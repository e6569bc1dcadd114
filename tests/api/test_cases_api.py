"""The case API as its clients use it, on both stores: the hotline's app reporting, units acting with their own
tokens, the command centre, QGIS reading the OGC collection, the wall reading heat and assessment, and hostile
input. The city is the case tests' small one (tests/cases/conftest.py): real area assets, lifts with sensors, units.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client
from fastapi.testclient import TestClient
from PIL import Image

from cim.api import create_app
from cim.cases.config import area_tree, build_units, config_json, save_table
from cim.model import AssetBatch, Kind
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store
from cim.store.case_rows import set_unit_token
from tests.api.conftest import cim_serve
from tests.cases.conftest import UNITS, area_assets, city_assets

TOKEN = "centre-token"
UNIT_TOKENS = {"team-south": "south-token", "lift-310104": "xuhui-token", "lift-310101": "huangpu-token"}
RULES = [{"id": "lift", "quantity": "lift_status", "category": "lift_fault"}]
CENTRE = {"Authorization": f"Bearer {TOKEN}"}


def unit(unit_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {UNIT_TOKENS[unit_id]}"}


def png(size: int = 8) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def case_city(store_url: str) -> str:
    with open_store(store_url) as store:
        store.upsert_assets(AssetBatch.from_assets(area_assets() + city_assets()))
        save_table(store, build_units(UNITS, area_tree(store)), config=config_json(RULES))
        # the lifts' sensors raise an alert on a fault, as the demo's do
        watched = [replace(a, props={**a.props, "thresholds": {"status": ["fault"]}}) for a in city_assets()]
        store.upsert_assets(AssetBatch.from_assets([a for a in watched if a.kind is Kind.SENSOR]))
        for unit_id, token in UNIT_TOKENS.items():
            set_unit_token(store, unit_id, hashlib.sha256(token.encode()).hexdigest())
    return store_url


@pytest.fixture
def client(case_city: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = AppSettings(
        store=StoreSettings(store=case_city),
        server=ServerSettings(tiles_dir=tmp_path, write_token=TOKEN),
        live=True,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def report(client: TestClient, **body: Any) -> dict[str, Any]:
    body = {"category": "lift_fault", "lon": 121.42, "lat": 31.15, "title": "lift stuck", **body}
    answer = client.post("/cases", json=body, headers=CENTRE)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def act(client: TestClient, case_id: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return client.post(f"/cases/{case_id}/transitions", json=body, headers=headers)


def test_a_reported_case_is_located_filed_and_dispatched_with_no_human_step(client: TestClient) -> None:
    case = report(client)
    p = case["properties"]
    assert (p["state"], p["unit_id"], p["dispatched_by_machine"]) == ("dispatched", "team-south", True)
    assert (p["grid_cell"], p["street"], p["district"]) == ("310101001001", "310101001", "310101")
    assert [e["action"] for e in case["timeline"]] == ["report", "file", "dispatch"]
    assert p["allowed_actions"] == ["accept", "return"]
    assert case["geometry"] == {"type": "Point", "coordinates": [121.42, 31.15]}


def test_units_act_on_their_own_cases_only_and_the_loop_closes(client: TestClient) -> None:
    case_id = report(client)["id"]
    refused = act(client, case_id, unit("lift-310104"), action="accept")
    assert refused.status_code == 403 and "team-south" in refused.json()["description"]
    assert act(client, case_id, unit("team-south"), action="accept", actor="Wang").status_code == 200
    handled = act(
        client, case_id, unit("team-south"), action="handle", note="freed", photos=[{"name": "a", "data": png()}]
    )
    assert handled.status_code == 200, handled.text
    assert act(client, case_id, unit("team-south"), action="verify").status_code == 403  # the centre verifies
    for action in ("verify", "close"):
        assert act(client, case_id, CENTRE, action=action).status_code == 200
    detail = client.get(f"/cases/{case_id}").json()
    assert detail["properties"]["state"] == "closed" and detail["properties"]["resolution"] == "resolved"
    steps = detail["timeline"]
    assert [e["action"] for e in steps] == ["report", "file", "dispatch", "accept", "handle", "verify", "close"]
    assert steps[3]["actor"] == "Wang" and steps[3]["unit_id"] == "team-south"
    photo = client.get(steps[4]["photos"][0])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"


def test_a_transition_not_allowed_or_on_a_stale_version_is_a_409_naming_what_is(client: TestClient) -> None:
    case_id = report(client)["id"]
    wrong = act(client, case_id, CENTRE, action="close")
    assert wrong.status_code == 409
    assert wrong.json()["allowed"] == ["accept", "return"] and wrong.json()["current"]["state"] == "dispatched"
    stale = act(client, case_id, CENTRE, action="accept", version=1)
    assert stale.status_code == 409 and stale.json()["current"]["version"] == 3
    assert act(client, case_id, CENTRE, action="return").status_code == 400  # a return needs its reason


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"category": "dragons"}, 400, "category"),
        ({"lon": 10.0, "lat": 10.0}, 400, "10"),  # outside every area: refused, not stored at city level
        ({"lon": None, "lat": None, "asset_id": "lift:404"}, 404, "lift:404"),
        ({"photos": [{"name": "note.jpg", "data": base64.b64encode(b"not an image").decode()}]}, 400, "note.jpg"),
        ({"photos": [{"name": "x", "data": "%%%"}]}, 400, "base64"),
        ({"severity": "apocalyptic"}, 400, "severity"),
        ({"lon": "east"}, 400, "lon"),
    ],
)
def test_bad_reports_are_refused_by_name_and_nothing_is_stored(
    client: TestClient, body: dict[str, Any], status: int, names: str
) -> None:
    full = {"category": "lift_fault", "lon": 121.42, "lat": 31.15, **body}
    answer = client.post("/cases", json=full, headers=CENTRE)
    assert answer.status_code == status, answer.text
    assert names in answer.json()["description"]
    assert client.get("/cases").json()["numberMatched"] == 0


def test_writes_need_a_token(client: TestClient) -> None:
    assert client.post("/cases", json={"category": "lift_fault"}).status_code == 401
    assert client.post("/cases", json={"category": "lift_fault"}, headers=unit("team-south")).status_code == 401
    case_id = report(client)["id"]
    assert act(client, case_id, {}, action="accept").status_code == 401
    assert act(client, case_id, {"Authorization": "Bearer nobody"}, action="accept").status_code == 401
    assert client.post("/cases", content=b"{not json", headers=CENTRE).status_code == 400


def test_lists_filter_by_state_category_area_unit_and_bbox(client: TestClient) -> None:
    south = report(client)["id"]
    xuhui = report(client, lon=121.55, lat=31.2)["id"]
    act(client, xuhui, CENTRE, action="accept")

    def ids(**params: Any) -> set[str]:
        answer = client.get("/cases", params=params).json()
        assert answer["numberMatched"] == len(answer["features"])
        return {f["id"] for f in answer["features"]}

    assert ids() == {south, xuhui}
    assert ids(state="in_progress") == {xuhui}
    assert (
        ids(area="310101") == {south} and ids(area="310101001001") == {south} and ids(area="310000") == {south, xuhui}
    )
    assert ids(unit="team-south") == {south}
    assert ids(bbox="121.5,31.1,121.6,31.3") == {xuhui}
    assert ids(category="gas_leak") == set()
    assert ids(overdue="true") == set()
    assert client.get("/cases", params={"state": "lost"}).status_code == 400
    assert client.get("/cases", params={"bbox": "1,2,3"}).status_code == 400


def test_cases_are_an_ogc_collection_with_number_matched(client: TestClient) -> None:
    report(client)
    report(client, lon=121.55, lat=31.2)
    assert "cases" in [c["id"] for c in client.get("/collections").json()["collections"]]
    page = client.get("/collections/cases/items", params={"limit": 1}).json()
    assert page["numberMatched"] == 2 and page["numberReturned"] == 1
    assert any(link["rel"] == "next" for link in page["links"])
    assert client.get("/collections/cases/items", params={"district": "310104"}).json()["numberMatched"] == 1
    assert (
        client.get("/collections/cases/items", params={"datetime": "2000-01-01/2000-12-31"}).json()["numberMatched"]
        == 0
    )
    assert "state" in client.get("/collections/cases/queryables").json()["properties"]
    as_csv = client.get("/collections/cases/items", params={"f": "csv", "geometry": "lonlat"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 3 and "lon" in lines[0].split(",") and "121.55" in as_csv.text
    one = page["features"][0]["id"]
    html = client.get(f"/collections/cases/items/{one}", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and one in html.text
    assert client.get("/collections/cases/items", params={"geometry": "null"}).status_code == 400
    for path in ("/collections/cases/items", f"/collections/cases/items/{one}"):  # as_of is the assets' history
        refused = client.get(path, params={"as_of": "2026-01-01"})
        assert refused.status_code == 400 and refused.json()["what"].startswith("as_of")
        assert "GET /cases/{id}" in refused.json()["why"]


def test_heat_and_assessment_by_level(client: TestClient) -> None:
    report(client)
    report(client, lon=121.43, lat=31.16)
    report(client, lon=121.55, lat=31.2)
    heat = client.get("/cases/heat", params={"level": "grid_cell"}).json()
    assert heat["counts"] == {"310101001001": 2, "310104001001": 1}
    rows = client.get("/indicators/cases", params={"level": "district"}).json()["rows"]
    by_code = {r["code"]: r for r in rows}
    assert by_code["310101"]["opened"] == 2 and by_code["310101"]["name"] == "黄浦区"
    assert by_code["310104"]["dispatched_by_machine"] == 1
    assert client.get("/indicators/cases", params={"level": "planet"}).status_code == 400
    assert client.get("/indicators/cases", params={"period": "2026-13"}).status_code == 400


def test_an_alert_becomes_a_dispatched_case_and_goes_out_live(case_city: str, tmp_path: Path) -> None:
    """A lift reports a fault: its sensor's rule opens an alert, the machine opens, files and dispatches a case to
    the unit for its place, and the change reaches a WebSocket client — with no human step."""
    with cim_serve(case_city, tmp_path, tmp_path / "server.log", env={"CIM_WRITE_TOKEN": TOKEN}) as base:
        with websockets.sync.client.connect(base.replace("http", "ws", 1) + "/iot/live") as socket:
            json.loads(socket.recv(timeout=30))  # the snapshot
            posted = httpx.post(
                f"{base}/iot/readings", json={"sensor_id": "s-lift-4", "status": "fault"}, headers=CENTRE
            )
            assert posted.status_code == 202
            change = None
            deadline = time.monotonic() + 30
            while change is None and time.monotonic() < deadline:
                message = json.loads(socket.recv(timeout=30))
                change = next((c for c in message.get("cases", []) if c["state"] == "dispatched"), None)
        assert change is not None and change["category"] == "lift_fault"
        case = httpx.get(f"{base}/cases/{change['id']}").json()
    p = case["properties"]
    assert (p["source"], p["unit_id"], p["street"]) == ("sensor", "lift-310101", "310101002")
    assert p["alert_ids"] and p["asset_ids"] == ["lift:4"] and p["dispatched_by_machine"]


def test_fifty_clients_acting_on_one_case_get_one_success_and_the_rest_409(case_city: str, tmp_path: Path) -> None:
    with cim_serve(case_city, tmp_path, tmp_path / "server.log", env={"CIM_WRITE_TOKEN": TOKEN}) as base:
        with httpx.Client(base_url=base, headers=CENTRE) as http:
            created = http.post("/cases", json={"category": "lift_fault", "lon": 121.42, "lat": 31.15})
            case_id, version = created.json()["id"], created.json()["properties"]["version"]

        async def race() -> list[int]:
            async with httpx.AsyncClient(base_url=base, headers=CENTRE, timeout=60) as http:
                body = {"action": "accept", "version": version}
                answers = await asyncio.gather(
                    *(http.post(f"/cases/{case_id}/transitions", json=body) for _ in range(50))
                )
                return [a.status_code for a in answers]

        statuses = asyncio.run(race())
        assert sorted(set(statuses)) == [200, 409] and statuses.count(200) == 1
        detail = httpx.get(f"{base}/cases/{case_id}").json()
    assert [e["seq"] for e in detail["timeline"]] == [1, 2, 3, 4]
    assert detail["properties"]["version"] == 4 and detail["properties"]["state"] == "in_progress"
