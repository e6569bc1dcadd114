"""The history routes: a sensor's readings newest first (``order=asc`` oldest first) and ``GET /iot/series`` over the
rollups, by sensors or by area, with hostile windows and steps answered 400 naming what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point, box

from cim.iot import sensor_asset
from cim.model import Asset, AssetBatch, Kind, Reading
from cim.store import Store
from tests.iot.conftest import build_app, declare_sensors, eventually, running

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    declare_sensors(store)
    store.upsert_assets(
        AssetBatch.from_assets(
            [
                Asset(id="area:PD", kind=Kind.DISTRICT, geom=box(121.4, 31.1, 121.6, 31.3), props={"code": "PD"}),
                Asset(id="area:JA", kind=Kind.DISTRICT, geom=box(121.0, 31.1, 121.2, 31.3), props={"code": "JA"}),
                sensor_asset(id="m-1", parent_id=None, quantity="energy", unit="kWh", geom=Point(121.45, 31.2)),
                sensor_asset(id="m-2", parent_id=None, quantity="energy", unit="kWh", geom=Point(121.55, 31.2)),
                sensor_asset(id="m-3", parent_id=None, quantity="energy", unit="kWh", geom=Point(121.1, 31.2)),
            ]
        )
    )
    readings = [
        Reading(sensor_id=sensor, time=HOUR + timedelta(minutes=15 * q), value=float(i + q))
        for i, sensor in enumerate(("m-1", "m-2", "m-3"), start=1)
        for q in range(8)
    ]
    store.append_readings(readings)
    with TestClient(build_app(store)) as test_client:
        yield test_client


def test_readings_are_newest_first_unless_asked_for_the_other_order(client: TestClient) -> None:
    newest = client.get("/iot/sensors/m-1/readings", params={"limit": 3}).json()["readings"]
    assert [r["value"] for r in newest] == [8.0, 7.0, 6.0]
    oldest = client.get("/iot/sensors/m-1/readings", params={"limit": 3, "order": "asc"}).json()["readings"]
    assert [r["value"] for r in oldest] == [1.0, 2.0, 3.0]
    assert client.get("/iot/sensors/m-1/readings", params={"order": "sideways"}).status_code in (400, 422)


def test_a_series_of_sensors_sums_them_per_bucket_or_gives_one_each(client: TestClient) -> None:
    window = {"from": HOUR.isoformat(), "to": (HOUR + timedelta(hours=2)).isoformat(), "step": "1h"}
    summed = client.get("/iot/series", params={**window, "sensor_id": ["m-1", "m-2"]})
    assert summed.status_code == 200, summed.text
    body = summed.json()
    assert body["step"] == "1h" and body["per_sensor"] is False
    # m-1 has 1..4 then 5..8, m-2 2..5 then 6..9 in the two hours
    assert [(p["n"], p["min"], p["max"], p["sum"]) for p in body["points"]] == [
        (8, 1.0, 5.0, 24.0),
        (8, 5.0, 9.0, 56.0),
    ]
    assert body["points"][0]["mean"] == 3.0 and body["points"][0]["bucket"] == HOUR.isoformat()
    each = client.get("/iot/series", params={**window, "sensor_id": ["m-1", "m-2"], "per_sensor": True}).json()
    assert [(p["sensor_id"], p["sum"]) for p in each["points"]] == [("m-1", 10.0), ("m-2", 14.0), ("m-1", 26.0),
                                                                    ("m-2", 30.0)]  # fmt: skip


def test_a_series_of_an_area_sums_its_sensors_and_picks_the_step_by_the_window(client: TestClient) -> None:
    window = {"from": (HOUR - timedelta(days=1)).isoformat(), "to": (HOUR + timedelta(days=1)).isoformat()}
    pudong = client.get("/iot/series", params={**window, "area": "PD"}).json()
    assert pudong["step"] == "1m"  # 2 days
    assert sum(p["n"] for p in pudong["points"]) == 16 and sum(p["sum"] for p in pudong["points"]) == 80
    by_day = client.get("/iot/series", params={"from": "2020-01-01T00:00:00Z", "area": "JA"}).json()
    assert by_day["step"] == "1d" and sum(p["sum"] for p in by_day["points"]) == sum(range(3, 11))
    assert client.get("/iot/series", params={**window, "area": "nowhere"}).status_code == 404
    assert client.get("/iot/series", params={**window, "sensor_id": "nobody"}).status_code == 404


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"area": "PD", "from": "1926-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "buckets, more than 10,000"),
        ({"area": "PD", "step": "1m", "from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "525,600"),
        ({"area": "PD", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from must be before to"),
        ({"area": "PD", "from": "2026-01-01T00:00:00"}, "RFC 3339 time with a zone"),
        ({"area": "PD", "to": "0001-01-01T00:00:00+01:00"}, "outside the years 1–9999 in UTC"),
        ({"from": "2026-01-01T00:00:00Z"}, "name sensors"),
        ({"area": "PD", "to": "0001-01-01T00:01:00Z"}, "too early for the default window"),
    ],
)
def test_a_hostile_series_is_a_400_naming_the_problem(client: TestClient, params: dict[str, str], message: str) -> None:
    answer = client.get("/iot/series", params=params)
    assert answer.status_code == 400, answer.text
    assert message in answer.text


@pytest.mark.parametrize("until", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_readings_window_outside_the_calendar_in_utc_is_a_400(client: TestClient, until: str) -> None:
    answer = client.get("/iot/sensors/sensor-1/readings", params={"from": "2000-01-01T00:00:00Z", "to": until})
    assert answer.status_code == 400, answer.text
    assert "parameter to=" in answer.text and "outside the years 1–9999 in UTC" in answer.text


def test_an_unknown_step_is_refused(client: TestClient) -> None:
    answer = client.get("/iot/series", params={"area": "PD", "step": "5m"})
    assert answer.status_code in (400, 422) and "step" in answer.text


@pytest.mark.anyio
async def test_the_iot_service_drops_history_past_its_retention_from_its_housekeeping(store: Store) -> None:
    declare_sensors(store)
    old = datetime.now(UTC) - timedelta(days=40)
    store.append_readings([Reading(sensor_id="wl-1", time=old, value=0.5)])
    async with running(store, retention_interval=0.1) as iot:
        await eventually(lambda: store.readings("wl-1") == [])
        again = await iot.apply_retention()  # nothing left to drop
        assert (
            again["readings"]
            == again["readings_1m"]
            == again["readings_1h"]
            == again.get("readings_partitions", 0)
            == 0
        )
    hourly = store.reading_series(["wl-1"], start=old - timedelta(hours=1), end=old + timedelta(hours=1), step="1h")
    assert [p.sum for p in hourly] == [0.5]  # the hour rollup stays two years
