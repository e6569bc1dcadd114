"""``/queries/...`` and ``/assets/{id}``: the same answers as the library, as JSON."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.api.deps import require_write_token
from cim.settings import AppSettings
from tests.api.city import AREA, AS_OF


def test_old_lifts(client: TestClient) -> None:
    body = client.get("/queries/old-lifts", params={"years": 15, "as_of": AS_OF.isoformat()}).json()
    assert set(body) == {"buildings", "unknown_age", "without_building"}
    assert [(b["id"], [lift["id"] for lift in b["lifts"]]) for b in body["buildings"]] == [
        ("b1", ["lift-1b", "lift-1a"])  # oldest first
    ]
    assert set(body["buildings"][0]) == {"id", "name", "lon", "lat", "lifts"}
    assert set(body["buildings"][0]["lifts"][0]) == {"id", "install_date", "age_years"}
    assert body["unknown_age"] == [{"id": "lift-2b", "building_id": "b2"}]
    younger = client.get("/queries/old-lifts", params={"years": 5, "as_of": AS_OF.isoformat()}).json()
    assert [b["id"] for b in younger["buildings"]] == ["b1", "b2", "b3"]


def test_buried_pipes_by_bbox_and_by_posted_polygon(client: TestClient) -> None:
    by_bbox = client.get("/queries/buried-pipes", params={"network": "gas", "bbox": ",".join(map(str, AREA))})
    assert by_bbox.status_code == 200, by_bbox.text
    body = by_bbox.json()
    assert [p["id"] for p in body["pipes"]] == ["gas-cross", "gas-depth-only", "gas-inside"]
    assert set(body["pipes"][0]) == {"id", "network", "install_date", "depth_m", "diameter_mm", "length_in_area_m"}
    west, south, east, north = AREA
    polygon = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    posted = client.post(
        "/queries/buried-pipes", json={"area": polygon, "network": "gas", "older_than": 30, "as_of": AS_OF.isoformat()}
    )
    assert [p["id"] for p in posted.json()["pipes"]] == ["gas-cross"]
    feature = client.post("/queries/buried-pipes?network=gas", json={"type": "Feature", "geometry": polygon})
    assert feature.json()["total_length_m"] == body["total_length_m"]


def test_within_distance(client: TestClient) -> None:
    body = client.get(
        "/queries/within-distance", params={"kind": "transit_stop", "near": "park", "distance": 50}
    ).json()
    assert [(a["id"], a["near_id"]) for a in body["assets"]] == [("stop-near", "park-1")]
    beyond = client.get(
        "/queries/within-distance", params={"kind": "transit_stop", "near": "park", "distance": 50, "beyond": True}
    ).json()
    assert [a["id"] for a in beyond["assets"]] == ["stop-far"]


def test_asset_detail(client: TestClient) -> None:
    body = client.get("/assets/lift-1b").json()
    assert body["asset"]["id"] == "lift-1b"
    assert [p["id"] for p in body["parents"]] == ["b1-s1", "b1"]
    assert body["alerts"] == [] and body["latest_state"] == {}
    lift = client.get("/assets/lift-1a").json()
    assert lift["latest_state"]["sensor-1"]["value"] == 2.0
    assert [c["id"] for c in lift["children"]] == ["sensor-1"]
    assert client.get("/assets/nope").status_code == 404


def test_extra_routers_and_alert_hook_plug_in_and_writes_need_the_token(settings: AppSettings) -> None:
    router = APIRouter(prefix="/iot")

    @router.post("/ping", dependencies=[__import__("fastapi").Depends(require_write_token)])
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    def alerts(asset_id: str) -> list[dict[str, object]]:
        return [{"asset": asset_id, "rule": "door open"}] if asset_id == "lift-1a" else []

    no_token = TestClient(create_app(settings, routers=[router]))
    with no_token:
        assert no_token.post("/iot/ping").status_code == 403
    server = settings.server.model_copy(update={"write_token": "s3cret"})
    with TestClient(create_app(settings.model_copy(update={"server": server}), routers=[router], alerts=alerts)) as c:
        assert c.post("/iot/ping").status_code == 401
        assert c.post("/iot/ping", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/iot/ping", headers={"Authorization": "Bearer s3cret"}).json() == {"ok": "yes"}
        assert c.get("/assets/lift-1a").json()["alerts"] == [{"asset": "lift-1a", "rule": "door open"}]
