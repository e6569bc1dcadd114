"""The IoT routes in a small app that mounts the router: HTTP ingest with a token, history, stats, alerts, and the
live WebSocket with a real client over a real uvicorn server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.publish as mqtt_publish
import pytest
import uvicorn
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from cim.store import Store
from tests.faults import free_port
from tests.iot.conftest import TOKEN, Broker, build_app, declare_sensors

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# a day ago, to the minute: readings more than a year old are dropped (too_old), so no fixed date
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    declare_sensors(store)
    with TestClient(build_app(store)) as test_client:
        yield test_client


def test_posting_readings_needs_the_write_token(client: TestClient) -> None:
    body = {"sensor_id": "wl-1", "value": 0.5}
    assert client.post("/iot/readings", json=body).status_code == 401
    assert client.post("/iot/readings", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/iot/readings", json=body, headers=AUTH).status_code == 202


def test_a_posted_batch_is_history_and_bad_items_are_counted(client: TestClient) -> None:
    batch = [{"sensor_id": "wl-1", "value": 0.1 * i, "time": (T0 + timedelta(minutes=i)).isoformat()} for i in range(5)]
    batch += [{"sensor_id": "wl-1", "value": "x"}, {"sensor_id": "nobody", "value": 1.0}]
    answer = client.post("/iot/readings", json={"readings": batch}, headers=AUTH)
    assert answer.status_code == 202
    assert answer.json()["accepted"] == 5 and answer.json()["dropped"] == {"wrong_type": 1, "unknown_sensor": 1}
    window = {"from": (T0 + timedelta(minutes=1)).isoformat(), "to": (T0 + timedelta(minutes=3)).isoformat()}
    history = client.get("/iot/sensors/wl-1/readings", params=window).json()
    assert history["unit"] == "m" and [r["value"] for r in history["readings"]] == pytest.approx([0.2, 0.1])
    oldest_first = client.get("/iot/sensors/wl-1/readings", params={**window, "order": "asc"}).json()
    assert [r["value"] for r in oldest_first["readings"]] == pytest.approx([0.1, 0.2])
    stats = client.get("/iot/stats").json()
    assert stats["accepted"] == 5 and stats["dropped"] == {"unknown_sensor": 1, "wrong_type": 1}


def test_unknown_sensors_and_all_bad_bodies_are_client_errors(client: TestClient) -> None:
    assert client.get("/iot/sensors/nobody/readings").status_code == 404
    nan = '{"sensor_id": "wl-1", "value": NaN}'
    answer = client.post("/iot/readings", content=nan, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400 and "wl-1" in answer.json()["description"]
    assert client.get("/iot/sensors/wl-1/readings", params={"from": "2026-05-01T00:00:00"}).status_code == 400


def test_alerts_list_open_ones_and_all(client: TestClient) -> None:
    post = [
        {"sensor_id": "gp-1", "value": 150.0, "time": T0.isoformat()},
        {"sensor_id": "wl-1", "value": 1.4, "time": T0.isoformat()},
        {"sensor_id": "wl-1", "value": 0.4, "time": (T0 + timedelta(minutes=1)).isoformat()},
    ]
    client.post("/iot/readings", json=post, headers=AUTH)
    assert [a["sensor_id"] for a in client.get("/alerts", params={"open": "true"}).json()] == ["gp-1"]
    every = client.get("/alerts").json()
    closed = next(a for a in every if a["sensor_id"] == "wl-1")
    assert len(every) == 2 and closed["closed_at"] == (T0 + timedelta(minutes=1)).isoformat() and not closed["open"]
    assert [a["sensor_id"] for a in client.get("/alerts", params={"open": "false"}).json()] == ["wl-1"]
    assert [a["sensor_id"] for a in client.get("/alerts", params={"asset_id": "gas-1"}).json()] == ["gp-1"]
    assert closed["asset_id"] == "node-1" and closed["details"]["sensors"] == ["wl-1"]
    assert closed["details"]["threshold"] == 1.0 and closed["details"]["unit"] == "m"


@pytest.mark.mqtt
def test_the_live_socket_pushes_state_and_alerts_to_every_client(store: Store, broker: Broker) -> None:
    declare_sensors(store)
    with serving(build_app(store, mqtt_url=broker.url)) as base:
        wait_until(lambda: httpx.get(f"{base}/iot/stats").json()["mqtt"]["connected"])
        ws_url = base.replace("http", "ws") + "/iot/live"
        with connect(ws_url, open_timeout=5) as first, connect(ws_url, open_timeout=5) as second:
            for ws in (first, second):
                assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
            mqtt_publish.single(
                "cim/wl-1/state", json.dumps({"value": 1.25}), qos=1, hostname="127.0.0.1", port=broker.port
            )
            for ws in (first, second):
                states, alerts = receive_until(ws, lambda s, a: bool(s) and bool(a))
                assert states["wl-1"]["value"] == 1.25
                assert alerts[0]["sensor_id"] == "wl-1" and alerts[0]["open"]


def receive_until(
    ws: object, done: object, timeout: float = 5.0
) -> tuple[dict[str, dict[str, object]], list[dict[str, object]]]:
    states: dict[str, dict[str, object]] = {}
    alerts: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while not done(states, alerts):  # type: ignore[operator]
        message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))  # type: ignore[attr-defined]
        states.update({s["sensor_id"]: s for s in message["states"]})
        alerts += message["alerts"]
    return states, alerts


class serving:  # a context manager used like a function
    """The app on a real uvicorn server in a thread, at http://127.0.0.1:<port>."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
