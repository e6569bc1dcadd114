"""Several servers sharing one MQTT subscription ($share/<group>/<topic>) on one PostgreSQL store, against a real
Mosquitto and a real PostgreSQL: the broker's handling of the members (checked, as cim/iot/mqtt.py documents it),
each reading stored exactly once, live states and alerts reaching the clients of every server, and a server killed
with SIGKILL mid-stream losing nothing once it is back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import psycopg
import pytest
import websockets

from cim.iot import sensor_asset
from cim.iot.mqtt import MqttStatus
from cim.iot.spool import spool_path_for
from cim.model import AssetBatch
from cim.settings import MqttSettings
from cim.store import open_store
from tests.faults import free_port, wait_for_port
from tests.iot.conftest import Broker

ROOT = Path(__file__).resolve().parents[2]
GROUP = "cim"
SENSORS = 200
THRESHOLD = 90.0

pytestmark = [pytest.mark.mqtt]


# --- the broker's behaviour with shared subscriptions (what cim/iot/mqtt.py documents) ---
def member(port: int, client_id: str, got: list[str]) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = lambda _c, _u, message: got.append(message.payload.decode())
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(f"$share/{GROUP}/cim/+/state", qos=1)
    assert subscribed.wait(5)
    return client


def publish(port: int, messages: list[tuple[str, str]], *, pause_every: int = 0, pause: float = 0.0) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = []
        for i, (topic, payload) in enumerate(messages, 1):
            infos.append(client.publish(topic, payload, qos=1))
            if pause_every and i % pause_every == 0:
                time.sleep(pause)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()


def until(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


def test_mosquitto_keeps_an_offline_members_share_for_it(broker: Broker) -> None:
    """Round-robin over every session of the group, offline ones included: an absent member's share waits in its
    session (it is not given to the others) and comes when it reconnects with its client id."""
    a: list[str] = []
    b: list[str] = []
    one, two = member(broker.port, "member-a", a), member(broker.port, "member-b", b)
    publish(broker.port, [(f"cim/s{i % 7}/state", str(i)) for i in range(20)])
    until(lambda: len(a) + len(b) == 20, what="20 messages")
    assert len(a) == len(b) == 10  # dealt out one by one, whatever the topic
    one.loop_stop()
    one.disconnect()  # away, its persistent session stays
    a.clear()
    b.clear()
    publish(broker.port, [(f"cim/s{i % 7}/state", str(i)) for i in range(100, 120)])
    time.sleep(0.5)
    assert len(b) == 10  # the other half is not handed to the member online ...
    one = member(broker.port, "member-a", a)
    until(lambda: len(a) == 10, what="the absent member's share")  # ... it waited for the absent one
    for client in (one, two):
        client.loop_stop()
        client.disconnect()


def test_the_share_group_is_the_subscription_and_never_part_of_the_sensor_id() -> None:
    status = MqttStatus(url="mqtt://x", topic="cim/+/state", client_id="c", share_group="city")
    assert status.subscription == "$share/city/cim/+/state"
    assert MqttStatus(url="mqtt://x", topic="cim/+/state", client_id="c").subscription == "cim/+/state"
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="SHARE_GROUP"):
            MqttSettings(share_group=bad)
    url = "postgresql://u@db/cim?schema=city"
    assert spool_path_for(url, client_id="cim-h-8001-x") != spool_path_for(url, client_id="cim-h-8002-x")


# --- two cim serve processes on one PostGIS schema ---
class Server:
    """``cim serve`` in a subprocess on a fixed port (so a restart keeps its client id, session and spool)."""

    def __init__(self, store_url: str, workdir: Path, broker_url: str, name: str) -> None:
        self.store_url = store_url
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CIM_HOST": "127.0.0.1",
            "CIM_MQTT_URL": broker_url,
            "CIM_MQTT_SHARE_GROUP": GROUP,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.workdir / "tiles").mkdir(exist_ok=True)
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cim",
                    "serve",
                    "--store",
                    self.store_url,
                    "--tiles",
                    "tiles",
                    "--port",
                    f"{self.port}",
                ],
                cwd=self.workdir,  # its spool goes to data/ here
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_for_port(self.port, timeout=60, alive=self.process, what=f"cim serve ({self.log})")
        until(lambda: (self.stats().get("mqtt") or {}).get("connected"), what="MQTT connected")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/iot/stats", timeout=10).json())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def servers(postgis_schema_url: str, broker: Broker, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    with open_store(postgis_schema_url) as store:
        sensors = [
            sensor_asset(id=f"s{i:03d}", parent_id=None, quantity="water_level", unit="m", thresholds={"above": 90})
            for i in range(SENSORS)
        ]
        store.upsert_assets(AssetBatch.from_assets(sensors))
    pair = (
        Server(postgis_schema_url, tmp_path, broker.url, "one"),
        Server(postgis_schema_url, tmp_path, broker.url, "two"),
    )
    try:
        for server in pair:
            server.start()
        yield pair
    finally:
        for server in pair:
            server.stop()


def readings(n: int) -> list[tuple[str, str]]:
    """n readings over the sensors, each (sensor, time) once; the last one of every tenth sensor is above 90."""
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n):
        sensor = i % SENSORS
        last = i >= n - SENSORS
        value = 95.0 if last and sensor % 10 == 0 else float(i % 80)
        out.append(
            (
                f"cim/s{sensor:03d}/state",
                json.dumps({"value": value, "time": (start + timedelta(milliseconds=i)).isoformat()}),
            )
        )
    return out


def expected_state(messages: list[tuple[str, str]]) -> dict[str, float]:
    return {topic.split("/")[1]: json.loads(payload)["value"] for topic, payload in messages}


def table_counts(store_url: str) -> tuple[int, int, dict[str, float]]:
    conninfo, schema = store_url.split("?schema=")
    with psycopg.connect(conninfo, autocommit=True) as con:
        rows, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT (sensor_id, time)) FROM {schema}.readings"
        ).fetchone() or (0, 0)
        state = dict(con.execute(f"SELECT sensor_id, value FROM {schema}.sensor_state").fetchall())
    return int(rows), int(distinct), state


class LiveWatcher:
    """A WebSocket client of one server, in a thread: the newest state of each sensor and every alert it got."""

    def __init__(self, base: str) -> None:
        self.url = base.replace("http://", "ws://") + "/iot/live"
        self.states: dict[str, float] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self.connected.wait(10)

    async def _run(self) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            self.connected.set()
            while not self._stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                self.states.update({s["sensor_id"]: s["value"] for s in message["states"]})
                self.alerts.update({a["id"]: a for a in message["alerts"]})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.postgis
def test_two_servers_share_the_ingest_store_each_reading_once_and_relay_live_changes(
    servers: tuple[Server, Server], broker: Broker, postgis_schema_url: str
) -> None:
    one, two = servers
    n = 5000
    messages = readings(n)
    watcher = LiveWatcher(one.base)
    try:
        publish(broker.port, messages)
        until(lambda: table_counts(postgis_schema_url)[0] >= n, timeout=60, what=f"{n} readings stored")
        time.sleep(0.5)  # anything more would be a duplicate
        rows, distinct, state = table_counts(postgis_schema_url)
        assert rows == distinct == n
        assert state == expected_state(messages)
        first, second = one.stats(), two.stats()
        assert first["accepted"] > 0 and second["accepted"] > 0  # both took part
        assert first["accepted"] + second["accepted"] == n
        assert first["mqtt"]["client_id"] != second["mqtt"]["client_id"]
        # the clients of server one see every sensor's last state, half of them ingested by server two
        until(lambda: watcher.states == expected_state(messages), timeout=15, what="every state on server one")
        opened = {f"s{i:03d}" for i in range(0, SENSORS, 10)}
        until(lambda: {a["sensor_id"] for a in watcher.alerts.values() if a["open"]} == opened, what="alerts")
        assert first["live_relay"]["connected"] and first["live_relay"]["received"] > 0
        assert second["live_relay"]["received"] > 0
    finally:
        watcher.close()


@pytest.mark.postgis
def test_a_server_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    servers: tuple[Server, Server], broker: Broker, postgis_schema_url: str
) -> None:
    _, two = servers
    n = 5000
    messages = readings(n)
    publisher = threading.Thread(
        target=publish, args=(broker.port, messages), kwargs={"pause_every": 250, "pause": 0.1}
    )
    publisher.start()
    until(lambda: two.stats()["accepted"] > 500, what="server two ingesting")
    two.kill()  # SIGKILL: QoS-1 messages in flight unacknowledged, a spool not yet written to the store
    publisher.join(120)  # the publishing goes on: server two's share waits in its session
    rows_while_down = table_counts(postgis_schema_url)[0]
    assert rows_while_down < n
    two.start()  # same port: same client id, session and spool
    until(lambda: table_counts(postgis_schema_url)[0] >= n, timeout=60, what=f"{n} readings stored")
    time.sleep(1.0)
    rows, distinct, state = table_counts(postgis_schema_url)
    assert rows == distinct == n
    assert state == expected_state(messages)


# --- each reading once: the windows a crash leaves, made on purpose ---
@pytest.mark.postgis
def test_a_spool_replayed_after_the_store_committed_it_stores_nothing_twice(
    postgis_schema_url: str, tmp_path: Path
) -> None:
    """A crash between the store's commit and the spool's delete: the next start replays readings the store holds."""
    from cim.iot import IotService
    from cim.iot.spool import Spool
    from cim.model import Reading
    from tests.iot.conftest import declare_sensors, fast_options

    t0 = datetime.now(UTC) - timedelta(minutes=5)
    batch = [Reading(sensor_id="wl-1", time=t0 + timedelta(seconds=i), value=float(i)) for i in range(50)]
    with open_store(postgis_schema_url) as store:
        declare_sensors(store)
        store.append_readings(batch[:30])  # committed to the store …
        spool = Spool(tmp_path / "spool.sqlite")
        spool.append(batch)  # … and still in the spool, with 20 more that never reached the store
        spool.close()

        async def restart() -> None:
            service = IotService(store, MqttSettings(), options=fast_options(), spool_path=tmp_path / "spool.sqlite")
            await service.start()
            await service.stop()

        asyncio.run(restart())
        assert [r.value for r in store.readings("wl-1", newest_first=False)] == [float(i) for i in range(50)]


@pytest.mark.postgis
def test_a_redelivered_message_is_stored_once(postgis_schema_url: str, broker: Broker, tmp_path: Path) -> None:
    """A QoS-1 message handed over again (its PUBACK lost): the same sensor and time, stored once."""
    from cim.iot import IotService
    from tests.iot.conftest import declare_sensors, fast_options

    with open_store(postgis_schema_url) as store:
        declare_sensors(store)
        payload = json.dumps({"value": 0.5, "time": datetime.now(UTC).isoformat()})

        async def twice() -> int:
            service = IotService(
                store, MqttSettings(url=broker.url), options=fast_options(), spool_path=tmp_path / "spool.sqlite"
            )
            await service.start()
            try:
                service.ingest_message("cim/wl-1/state", payload.encode())
                service.commit()
                await service.flush()
                service.ingest_message("cim/wl-1/state", payload.encode())  # the broker's second delivery
                service.commit()
                await service.flush()
                return service.stored
            finally:
                await service.stop()

        assert asyncio.run(twice()) == 2  # both taken in …
        assert len(store.readings("wl-1")) == 1  # … one stored


def test_cim_serve_refuses_a_share_group_that_is_not_a_plain_name(tmp_path: Path) -> None:
    (tmp_path / "tiles").mkdir()
    command = ["serve", "--store", str(tmp_path / "c.duckdb"), "--tiles", str(tmp_path / "tiles")]
    done = subprocess.run(
        [sys.executable, "-m", "cim", *command, "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-share-group", "city/one"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "CIM_MQTT_SHARE_GROUP 'city/one' must be a non-empty name without '/'" in done.stderr
