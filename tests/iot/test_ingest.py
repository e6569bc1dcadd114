"""MQTT ingest against a real Mosquitto, on both stores: state, history, alerts, bad payloads, restarts."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest

from cim.iot import IotService
from cim.iot.mqtt import parse_mqtt_url
from cim.store import Store, open_store
from tests.iot.conftest import Broker, declare_sensors, eventually, running

pytestmark = [pytest.mark.mqtt, pytest.mark.anyio]


async def publish(url: str, messages: list[tuple[str, bytes | str]], client_id: str = "test-pub") -> None:
    """Publish at QoS 1; each publish returns once the broker acknowledged it."""
    host, port = parse_mqtt_url(url)
    async with aiomqtt.Client(host, port, identifier=client_id) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def reading(value: float | None = None, *, status: str | None = None, at: datetime | None = None) -> str:
    body: dict[str, object] = {"time": (at or datetime.now(UTC)).isoformat()}
    if value is not None:
        body["value"] = value
    if status is not None:
        body["status"] = status
    return json.dumps(body)


async def test_a_published_reading_becomes_latest_state_and_history(store: Store, system_broker_url: str) -> None:
    declare_sensors(store)
    t0 = datetime.now(UTC).replace(microsecond=0)
    async with running(store, system_broker_url) as iot:
        await publish(
            system_broker_url,
            [("cim/wl-1/state", reading(0.4 + i / 10, at=t0 + timedelta(seconds=i))) for i in range(3)],
        )
        await eventually(lambda: iot.stored == 3)
        assert iot.latest["wl-1"].value == pytest.approx(0.6)
        assert iot.latest["wl-1"].time == t0 + timedelta(seconds=2)
    assert [r.value for r in store.readings("wl-1", newest_first=False)] == pytest.approx([0.4, 0.5, 0.6])
    assert store.latest_states()["wl-1"].value == pytest.approx(0.6)


async def test_alerts_open_and_close_with_times_and_are_stored(store: Store, broker: Broker) -> None:
    declare_sensors(store)
    t0 = datetime.now(UTC).replace(microsecond=0)
    async with running(store, broker.url) as iot:
        await publish(
            broker.url,
            [
                ("cim/wl-1/state", reading(0.8, at=t0)),
                ("cim/wl-1/state", reading(1.3, at=t0 + timedelta(seconds=1))),  # opens
                ("cim/lift-1-status/state", reading(status="fault", at=t0)),  # opens
                ("cim/wl-1/state", reading(1.5, at=t0 + timedelta(seconds=2))),  # still open, no new alert
                ("cim/wl-1/state", reading(0.9, at=t0 + timedelta(seconds=3))),  # closes
            ],
        )
        await eventually(lambda: iot.accepted == 5)
        assert [a.sensor_id for a in iot.open_alerts()] == ["lift-1-status"]
        await iot.flush()
    stored = {a.sensor_id: a for a in store.alerts()}
    assert len(store.alerts()) == 2
    water = stored["wl-1"]
    assert (water.opened_at, water.closed_at, water.value) == (
        t0 + timedelta(seconds=1),
        t0 + timedelta(seconds=3),
        1.3,
    )
    assert stored["lift-1-status"].is_open and "fault" in stored["lift-1-status"].message


async def test_no_data_for_too_long_opens_an_alert_and_a_reading_closes_it(store: Store, broker: Broker) -> None:
    declare_sensors(store)
    from cim.iot.rules import Condition, Rule

    stale = Rule(id="silent", condition=Condition.STALE, threshold=0.3, quantity="gas_pressure")
    async with running(store, broker.url) as iot:
        iot.engine._global.append(stale)
        await iot.reload_sensors()
        await eventually(lambda: any(a.rule == "silent" for a in iot.open_alerts()))
        await publish(broker.url, [("cim/gp-1/state", reading(300.0))])
        await eventually(lambda: not any(a.rule == "silent" for a in iot.open_alerts()))
        await iot.flush()
    closed = [a for a in store.alerts() if a.rule == "silent"]
    assert closed and closed[0].closed_at is not None and closed[0].sensor_id == "gp-1"


async def test_bad_payloads_are_counted_per_reason_and_ingest_goes_on(store: Store, broker: Broker) -> None:
    declare_sensors(store)
    future = datetime.now(UTC) + timedelta(days=2)
    bad: list[tuple[str, bytes | str]] = [
        ("cim/wl-1/state", b"\xff\xfe not json"),
        ("cim/wl-1/state", "{'value': 1}"),
        ("cim/wl-1/state", json.dumps({"value": "high"})),
        ("cim/wl-1/state", json.dumps([1, 2])),
        ("cim/wl-1/state", '{"value": NaN}'),
        ("cim/wl-1/state", json.dumps({"value": 0.5, "time": future.isoformat()})),
        ("cim/ghost/state", json.dumps({"value": 0.5})),
        ("cim/wl-1/state", b"{" + b" " * (10 * 1024 * 1024) + b"}"),  # 10 MB
        ("cim/wl-1/state", json.dumps({"value": 0.5, "time": "yesterday"})),
    ]
    async with running(store, broker.url) as iot:
        await publish(broker.url, [*bad, ("cim/wl-1/state", reading(0.7))])
        await eventually(lambda: iot.received == len(bad) + 1)
        assert iot.stats()["dropped"] == {
            "bad_time": 1,
            "not_finite": 1,
            "future_time": 1,
            "not_json": 2,
            "too_large": 1,
            "unknown_sensor": 1,
            "wrong_type": 2,
        }
        assert iot.accepted == 1 and iot.latest["wl-1"].value == 0.7
        assert iot.mqtt_status is not None and iot.mqtt_status.disconnects == 0


async def test_a_broker_restart_loses_no_acknowledged_reading(store: Store, broker: Broker) -> None:
    declare_sensors(store)
    acked: list[float] = []
    host, port = parse_mqtt_url(broker.url)

    async def publisher(total: int) -> None:
        i = 0
        while i < total:
            try:
                async with aiomqtt.Client(host, port, identifier="restart-pub", timeout=2) as client:
                    while i < total:
                        await client.publish("cim/wl-1/state", reading(float(i)), qos=1)
                        acked.append(float(i))
                        i += 1
                        await asyncio.sleep(0.002)
            except aiomqtt.MqttError:
                i += 1  # that one was not acknowledged: the sensor gives it up
                await asyncio.sleep(0.1)

    async with running(store, broker.url, min_backoff=0.5, max_backoff=1.0) as iot:
        task = asyncio.create_task(publisher(600))
        await eventually(lambda: len(acked) >= 150)
        await asyncio.to_thread(broker.stop)
        await eventually(lambda: iot.mqtt_status is not None and not iot.mqtt_status.connected)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(task, 60)
        await eventually(lambda: iot.mqtt_status is not None and iot.mqtt_status.connects >= 2)
        # through the service (its store thread): the store's one connection must not be used from two threads
        await eventually(lambda: all_acked(iot, set(acked)), timeout=20)
        assert iot.mqtt_status is not None and iot.mqtt_status.disconnects >= 1
    missing = set(acked) - stored_values(store)
    assert not missing, f"{len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:5]}"
    assert len(acked) >= 550


async def all_acked(iot: IotService, acked: set[float]) -> bool:
    return acked <= {r.value for r in await iot.readings("wl-1")}


def stored_values(store: Store) -> set[float]:
    return {r.value for r in store.readings("wl-1") if r.value is not None}


async def test_a_server_restart_restores_latest_state_and_open_alerts(store_url: str, broker: Broker) -> None:
    with open_store(store_url) as store:
        declare_sensors(store)
        async with running(store, broker.url) as iot:
            await publish(broker.url, [("cim/wl-1/state", reading(1.7)), ("cim/gp-1/state", reading(250.0))])
            await eventually(lambda: iot.accepted == 2 and len(iot.open_alerts()) == 1)
    with open_store(store_url) as store:
        async with running(store, broker.url) as iot:
            assert iot.latest["wl-1"].value == 1.7 and iot.latest["gp-1"].value == 250.0
            assert [a.sensor_id for a in iot.open_alerts()] == ["wl-1"]
            await publish(broker.url, [("cim/wl-1/state", reading(0.2))])  # the restored alert closes
            await eventually(lambda: not iot.open_alerts())
        assert store.alerts(open=True) == [] and len(store.alerts()) == 1


async def test_readings_in_other_units_are_converted_and_another_dimension_is_counted(
    store: Store, system_broker_url: str
) -> None:
    """Over the real broker into a kPa sensor: Pa, MPa and bar converted, a bare number taken as kPa, °C dropped as
    wrong_unit and a time 20 years ago as too_old — both counted in /iot/stats."""
    from fastapi.testclient import TestClient

    from tests.iot.conftest import build_app

    declare_sensors(store)
    now = datetime.now(UTC).replace(microsecond=0)
    sent = [
        {"value": 250_000, "unit": "Pa", "time": (now - timedelta(seconds=5)).isoformat()},
        {"value": 0.26, "unit": "MPa", "time": (now - timedelta(seconds=4)).isoformat()},
        {"value": 2.7, "unit": "bar", "time": (now - timedelta(seconds=3)).isoformat()},
        {"value": 20.0, "unit": "°C", "time": (now - timedelta(seconds=2)).isoformat()},
        {"value": 280.0, "time": (now - timedelta(days=365 * 20)).isoformat()},
    ]
    messages: list[tuple[str, bytes | str]] = [("cim/gp-1/state", json.dumps(body)) for body in sent]
    messages.append(("cim/gp-1/state", "290.5"))  # a bare number: a value in kPa, now
    with TestClient(build_app(store, mqtt_url=system_broker_url)) as client:
        iot = client.app.state.resources.iot  # type: ignore[attr-defined]
        await eventually(lambda: iot.mqtt_status is not None and iot.mqtt_status.connected)
        await publish(system_broker_url, messages, client_id="units-pub")
        await eventually(lambda: iot.received >= len(messages))
        stats = client.get("/iot/stats").json()
        assert stats["dropped"] == {"too_old": 1, "wrong_unit": 1} and stats["accepted"] == 4
        assert stats["rule_unit_mismatches"] == 0
        await eventually(lambda: iot.stored == 4)
        history = client.get("/iot/sensors/gp-1/readings").json()["readings"]
    assert sorted(r["value"] for r in history) == pytest.approx([250.0, 260.0, 270.0, 290.5])


async def test_a_10_khz_flood_hovering_at_a_threshold_opens_one_alert(store: Store) -> None:
    """20,000 readings 100 µs apart alternating around the threshold: with a deadband one alert opens and stays
    open; with a minimum duration none opens; ingest keeps its pace."""
    from cim.iot.sensors import sensor_asset
    from cim.model import AssetBatch

    declare_sensors(store)
    store.upsert_assets(
        AssetBatch.from_assets(
            [
                sensor_asset(
                    id="gp-db",
                    parent_id="gas-1",
                    quantity="gas_pressure",
                    unit="kPa",
                    thresholds={"above": 3.5, "deadband": 0.3, "severity": "critical"},
                ),
                sensor_asset(
                    id="gp-md",
                    parent_id="node-1",
                    quantity="gas_pressure",
                    unit="kPa",
                    thresholds={"above": 3.5, "min_duration_s": 0.5},
                ),
            ]
        )
    )
    start = datetime.now(UTC) - timedelta(seconds=3)
    async with running(store) as iot:
        began = time.perf_counter()
        for sensor in ("gp-db", "gp-md"):
            for i in range(20_000):
                at = (start + timedelta(microseconds=100 * i)).isoformat()
                iot.ingest_message(f"cim/{sensor}/state", b'{"value": %.1f, "time": "%s"}' % (
                    3.4 if i % 2 else 3.6, at.encode()))  # fmt: skip
            iot.commit()
        rate = 40_000 / (time.perf_counter() - began)
        assert iot.accepted == 40_000 and not iot.dropped
        await iot.flush()
    alerts = store.alerts()
    assert [(a.sensor_id, a.is_open, a.opened_at) for a in alerts] == [("gp-db", True, start)]
    assert rate > 10_000, f"{rate:,.0f} readings/s"
