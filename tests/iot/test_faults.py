"""The fault suite of the IoT ingest: database restart, broker restart (stock settings), server kill -9.

Each test runs private PostgreSQL / Mosquitto / ``cim serve`` processes (tests/faults.py) — never the shared ones —
counts what was acknowledged against what is in the store afterwards, and prints its figures (run with ``-s``):
``FAULT <name>: acked N, lost 0, recovery X s``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest

from cim.iot import IotService
from cim.iot.mqtt import RECONNECT_MAX, RECONNECT_MIN, parse_mqtt_url
from cim.store import Store, open_store
from tests.faults import (
    PrivateMosquitto,
    PrivatePostgres,
    ServerProcess,
    private_mosquitto,
    private_postgres,
)
from tests.iot.conftest import TOKEN, declare_sensors, eventually, iot_app, running, serve_iot

__all__ = ["private_mosquitto", "private_postgres"]  # fixtures, imported for pytest

pytestmark = [pytest.mark.mqtt, pytest.mark.anyio]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def body(value: float) -> str:
    return json.dumps({"value": value, "time": datetime.now(UTC).isoformat()})


def stored_values(store: Store, sensor_id: str) -> set[float]:
    return {r.value for r in store.readings(sensor_id) if r.value is not None}


async def all_in(iot: IotService, sensor_id: str, values: set[float]) -> bool:
    return values <= {r.value for r in await iot.readings(sensor_id)}


class Sensors:
    """A fleet of QoS-1 sensors as the field has them: paho, a persistent session, its own reconnection, and every
    message not yet acknowledged by the broker sent again after a reconnection. Counts what the broker acked."""

    def __init__(self, url: str, client_id: str, topic: str = "cim/wl-1/state") -> None:
        host, port = parse_mqtt_url(url)
        self.topic = topic
        self.acked: set[float] = set()
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._mids: dict[int, float] = {}
        self._early: set[int] = set()
        self.client.on_publish = self._on_publish
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_publish(self, client: object, userdata: object, mid: int, *args: object) -> None:
        with self._lock:  # (never held while calling paho: paho holds its own lock when it calls this)
            value = self._mids.pop(mid, None)
            if value is None:
                self._early.add(mid)  # acknowledged before publish() had noted the mid
            else:
                self.acked.add(value)

    def publish(self, value: float) -> None:
        info = self.client.publish(self.topic, body(value), qos=1)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.acked.add(value)
            else:
                self._mids[info.mid] = value

    def unacked(self) -> int:
        with self._lock:
            return len(self._mids)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def publish_at(sensors: Sensors, rate: float, seconds: float, start: int = 0) -> int:
    """Publish ``rate`` readings a second for ``seconds`` (values start, start+1 …); how many were published."""
    sent, began = 0, time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        for _ in range(int(elapsed * rate) - sent):
            sensors.publish(float(start + sent))
            sent += 1
        await asyncio.sleep(0.005)
    return sent


async def test_a_database_restart_loses_no_reading_acknowledged_over_http_or_mqtt(
    private_postgres: PrivatePostgres, private_mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    url = private_postgres.store_url("faults")
    with open_store(url) as setup:
        declare_sensors(setup)
    store = open_store(url)
    http_acked: set[float] = set()
    sensors = Sensors(private_mosquitto.url, "fault-db-sensors")
    stop = asyncio.Event()
    async with running(store, private_mosquitto.url, spool=tmp_path / "spool.sqlite") as iot:
        app = iot_app()
        serve_iot(app, iot)

        async def poster() -> None:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cim") as client:
                for batch in itertools.count():
                    if stop.is_set():
                        return
                    values = [float(batch * 10 + k) for k in range(10)]
                    items = [{"sensor_id": "gp-1", "value": v, "time": datetime.now(UTC).isoformat()} for v in values]
                    answer = await client.post("/iot/readings", json=items, headers=AUTH)
                    if answer.status_code == 202:
                        http_acked.update(values)
                    await asyncio.sleep(0.02)

        async def publisher() -> None:
            start = 0
            while not stop.is_set():
                start += await publish_at(sensors, 200, 0.25, start)

        tasks = [asyncio.create_task(poster()), asyncio.create_task(publisher())]
        await eventually(lambda: iot.stored >= 200)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(1.5)  # readings keep coming while the database is down
        await eventually(lambda: iot.flush_failures > 0)
        await asyncio.to_thread(private_postgres.start)
        back, flushes = time.monotonic(), iot.flushes
        await eventually(lambda: iot.flushes > flushes, timeout=30)
        recovery = time.monotonic() - back
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        await eventually(lambda: sensors.unacked() == 0, timeout=30)
        await eventually(lambda: all_in(iot, "wl-1", sensors.acked), timeout=30)
        await iot.flush()
        stats = iot.stats()
    sensors.close()
    iot.store.close()
    with open_store(url) as check:
        lost_http = http_acked - stored_values(check, "gp-1")
        lost_mqtt = sensors.acked - stored_values(check, "wl-1")
    print(
        f"\nFAULT database restart: acked {len(http_acked):,} over HTTP and {len(sensors.acked):,} over MQTT, "
        f"lost {len(lost_http)} + {len(lost_mqtt)}, flush_failures {stats['flush_failures']}, "
        f"recovery {recovery:.2f} s after the database was back"
    )
    assert not lost_http and not lost_mqtt
    assert stats["flush_failures"] > 0 and stats["spool_depth"] == 0
    assert recovery < 5.0


async def test_a_broker_restart_with_stock_settings_at_1000_readings_a_second_loses_none(
    private_mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    """Mosquitto as Debian ships it (``max_queued_messages 1000``, persistence) restarted while a QoS-1 fleet sends
    1,000 readings a second: the fleet re-sends what the broker had not acknowledged, this server reconnects within
    a fraction of a second (before the fleet's backlog overflows the broker's queue), and nothing is lost."""
    store = open_store(str(tmp_path / "city.duckdb"))
    declare_sensors(store)
    sensors = Sensors(private_mosquitto.url, "fault-broker-sensors")
    # the server's own reconnection timing (the other tests' fixture retries more slowly): the broker keeps only
    # 1,000 messages for a session that is away, so how soon it is back is what this test is about
    async with running(
        store,
        private_mosquitto.url,
        spool=tmp_path / "spool.sqlite",
        min_backoff=RECONNECT_MIN,
        max_backoff=RECONNECT_MAX,
    ) as iot:
        publishing = asyncio.create_task(publish_at(sensors, 1000, 5.0))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(private_mosquitto.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_mosquitto.start)
        back = time.monotonic()
        assert iot.mqtt_status is not None
        await eventually(lambda: iot.mqtt_status is not None and iot.mqtt_status.connected, timeout=10)
        reconnect = time.monotonic() - back
        sent = await publishing
        await eventually(lambda: sensors.unacked() == 0, timeout=30)
        await eventually(lambda: all_in(iot, "wl-1", sensors.acked), timeout=30)
        await iot.flush()
    sensors.close()
    lost = sensors.acked - stored_values(store, "wl-1")
    store.close()
    print(
        f"\nFAULT broker restart (stock settings): published {sent:,} at 1,000/s, acked {len(sensors.acked):,}, "
        f"lost {len(lost)}, reconnected {reconnect:.2f} s after the broker was back"
    )
    assert not lost
    assert len(sensors.acked) == sent
    assert reconnect < 1.0


def http_sender(base: str, stop: threading.Event, acked: set[float]) -> None:
    """POST readings of gp-1 until ``stop``; a 202's readings go into ``acked`` (a refused or cut-off request's
    do not: the sender keeps them)."""
    with httpx.Client(base_url=base, headers=AUTH, timeout=5) as client:
        for batch in itertools.count():
            if stop.is_set():
                return
            values = [float(batch * 20 + k) for k in range(20)]
            items = [{"sensor_id": "gp-1", "value": v, "time": datetime.now(UTC).isoformat()} for v in values]
            try:
                if client.post("/iot/readings", json=items).status_code == 202:
                    acked.update(values)
            except httpx.HTTPError:
                time.sleep(0.1)  # the server is down: retry later with new readings
            time.sleep(0.005)


async def test_a_server_killed_during_ingest_and_flushes_loses_no_acknowledged_reading(tmp_path: Path) -> None:
    """``cim serve`` killed with SIGKILL twice while HTTP and MQTT readings pour in and flushes run (every 0.25 s):
    after the restart every reading acknowledged (202, or PUBACK to the fleet) is in the store."""
    (tmp_path / "mosquitto").mkdir()
    # as a deployment must: a queue that holds what the sensors send while this server restarts (stock: 1000)
    private_mosquitto = PrivateMosquitto(tmp_path / "mosquitto", extra="max_queued_messages 100000\n")
    private_mosquitto.start()
    path = tmp_path / "city.duckdb"
    with open_store(str(path)) as setup:
        declare_sensors(setup)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    server = ServerProcess(
        store=str(path),
        tiles=tiles,
        mqtt=private_mosquitto.url,
        env={"CIM_WRITE_TOKEN": TOKEN, "CIM_IOT_SPOOL": str(tmp_path / "spool.sqlite")},
        log=tmp_path / "serve.log",
    )
    server.env.pop("CIM_MQTT_CLIENT_ID", None)  # the default id: the same after each restart, so the session resumes
    http_acked: set[float] = set()
    stop = threading.Event()
    sensors = Sensors(private_mosquitto.url, "fault-kill-sensors")
    try:
        await asyncio.to_thread(server.start)
        sender = threading.Thread(target=http_sender, args=(server.url, stop, http_acked))
        sender.start()
        publishing = asyncio.create_task(publish_at(sensors, 300, 6.0))
        for _ in range(2):
            await asyncio.sleep(1.5)
            killed_with = len(http_acked)
            server.kill()
            await asyncio.to_thread(server.start)
            assert killed_with > 0
        sent = await publishing
        stop.set()
        await asyncio.to_thread(sender.join)
        await eventually(lambda: sensors.unacked() == 0, timeout=30)

        async def drained() -> bool:
            async with httpx.AsyncClient(base_url=server.url) as client:
                stats = (await client.get("/iot/stats")).json()
            last.update(stats)
            return bool(stats["spool_depth"] == 0 and stats["buffered"] == 0)

        last: dict[str, object] = {}
        await asyncio.sleep(1.0)
        try:
            await eventually(drained, timeout=30)
        except AssertionError:
            raise AssertionError(f"the restarted server did not drain its spool: {last}") from None
        await asyncio.to_thread(server.stop)
    finally:
        stop.set()
        sensors.close()
        server.kill()
        private_mosquitto.stop()
    with open_store(str(path)) as check:
        lost_http = http_acked - stored_values(check, "gp-1")
        lost_mqtt = sensors.acked - stored_values(check, "wl-1")
    print(
        f"\nFAULT server kill -9 (twice): acked {len(http_acked):,} over HTTP and {len(sensors.acked):,} of {sent:,} "
        f"over MQTT, lost {len(lost_http)} + {len(lost_mqtt)}"
    )
    assert not lost_http and not lost_mqtt
