"""Live changes relayed between two IoT services on one PostgreSQL schema (cim.iot.relay), against the real server:
what one ingests reaches the other's live clients, split into notifications under PostgreSQL's 8,000-byte limit;
a server ignores its own notifications; a LISTEN connection terminated, or PostgreSQL restarted, is made again and
delivers again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cim.iot import IotService, sensor_asset
from cim.iot.live import LiveClient
from cim.iot.relay import MAX_PAYLOAD, chunked
from cim.model import AssetBatch
from cim.settings import MqttSettings
from cim.store import open_store
from tests.faults import PrivatePostgres, private_postgres
from tests.iot.conftest import declare_sensors, eventually, fast_options

pytestmark = [pytest.mark.anyio, pytest.mark.postgis]
__all__ = ["private_postgres"]  # a fixture, imported for pytest


@asynccontextmanager
async def relayed_service(url: str, spool: Path) -> AsyncIterator[IotService]:
    store = open_store(url)
    service = IotService(store, MqttSettings(), options=fast_options(), spool_path=spool, relay_url=url)
    await service.start()
    try:
        await eventually(lambda: service.relay is not None and service.relay.connected)
        yield service
    finally:
        await service.stop()
        store.close()


@asynccontextmanager
async def two_servers(url: str, tmp_path: Path) -> AsyncIterator[tuple[IotService, IotService]]:
    with open_store(url) as store:
        declare_sensors(store)
        many = [sensor_asset(id=f"m{i:04d}", parent_id=None, quantity="water_level", unit="m") for i in range(600)]
        store.upsert_assets(AssetBatch.from_assets(many))
    async with (
        relayed_service(url, tmp_path / "one.sqlite") as one,
        relayed_service(url, tmp_path / "two.sqlite") as two,
    ):
        yield one, two


async def updates_until(client: LiveClient, wanted: set[str], timeout: float = 10.0) -> dict[str, Any]:
    """States and alerts the client gets until it has a state of every sensor in ``wanted``."""
    states: dict[str, Any] = {}
    alerts: dict[str, Any] = {}

    async def collect() -> None:
        while not wanted <= states.keys():
            text = await client.next_message()
            assert text is not None
            message = json.loads(text)
            states.update({s["sensor_id"]: s for s in message["states"]})
            alerts.update({a["id"]: a for a in message["alerts"]})

    await asyncio.wait_for(collect(), timeout)
    return {"states": states, "alerts": alerts}


def now_items(*items: tuple[str, object]) -> list[dict[str, object]]:
    time = datetime.now(UTC).isoformat()
    return [{"sensor_id": sid, "time": time, "status" if isinstance(v, str) else "value": v} for sid, v in items]


async def test_what_one_server_ingests_reaches_the_clients_of_the_other(
    postgis_schema_url: str, tmp_path: Path
) -> None:
    async with two_servers(postgis_schema_url, tmp_path) as (one, two):
        client = one.hub.connect()
        accepted, _, _ = two.ingest_items(now_items(("wl-1", 1.5), ("lift-1-status", "fault")))
        assert accepted == 2
        got = await updates_until(client, {"wl-1", "lift-1-status"})
        assert got["states"]["wl-1"]["value"] == 1.5
        assert {a["sensor_id"] for a in got["alerts"].values()} == {"wl-1", "lift-1-status"}
        # the other server's state and alerts are this one's too: its snapshot and its open alerts
        assert one.latest["wl-1"].value == 1.5
        assert {a.sensor_id for a in one.open_alerts()} == {"wl-1", "lift-1-status"}
        # the first server to see the sensor recover closes the alert the other opened
        later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        one.ingest_items([{"sensor_id": "wl-1", "time": later, "value": 0.2}])
        await eventually(lambda: all(a.sensor_id != "wl-1" for a in two.open_alerts()))
        await eventually(lambda: all(a.sensor_id != "wl-1" for a in one.open_alerts()))
        assert two.relay is not None and two.relay.received >= 1
        assert one.relay is not None and one.relay.received >= 1
        stats = one.stats()["live_relay"]
        assert stats["connected"] and stats["sent"] >= 1 and stats["received"] >= 1


async def test_a_large_tick_is_split_into_notifications_under_the_limit(
    postgis_schema_url: str, tmp_path: Path
) -> None:
    async with two_servers(postgis_schema_url, tmp_path) as (one, two):
        client = one.hub.connect()
        sensors = {f"m{i:04d}" for i in range(600)}
        two.ingest_items(now_items(*((sid, 0.5) for sid in sorted(sensors))))  # ~60 kB of states in one tick
        got = await updates_until(client, sensors)
        assert len(got["states"]) == 600
        assert two.relay is not None and two.relay.sent >= 8
        assert one.relay is not None and one.relay.received >= 8
        # nothing came back to the server that sent it
        assert two.relay.received == 0


def test_payloads_stay_under_postgresql_limit() -> None:
    states = [json.dumps({"sensor_id": f"s{i}", "value": i, "pad": "é" * 20}) for i in range(3000)]
    payloads = list(chunked("origin-1", states, ['{"id": "a"}'], []))
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    back = [s for p in payloads for s in json.loads(p).get("states", [])]
    assert len(back) == 3000 and sum(len(json.loads(p).get("alerts", [])) for p in payloads) == 1
    assert list(chunked("o", ["x" * 9000], [], [])) == []  # too large for any notification: left out


async def test_the_relay_reconnects_after_its_listening_connection_is_terminated(
    postgis_schema_url: str, postgres_url: str, tmp_path: Path
) -> None:
    async with two_servers(postgis_schema_url, tmp_path) as (one, two):
        assert one.relay is not None
        client = one.hub.connect()
        two.ingest_items(now_items(("wl-1", 0.3)))
        await updates_until(client, {"wl-1"})
        with psycopg.connect(postgres_url, autocommit=True) as con:
            killed = con.execute("SELECT pg_terminate_backend(%s)", [one.relay.listener_pid]).fetchall()
        assert killed == [(True,)]
        await eventually(lambda: one.relay is not None and one.relay.reconnects >= 1 and one.relay.connected)
        later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        two.ingest_items([{"sensor_id": "wl-1", "time": later, "value": 0.4}])
        got = await updates_until(client, {"wl-1"})
        assert got["states"]["wl-1"]["value"] == 0.4
        assert one.stats()["live_relay"]["reconnects"] >= 1


async def test_a_server_alone_on_its_store_relays_nothing(postgis_schema_url: str, tmp_path: Path) -> None:
    with open_store(postgis_schema_url) as store:
        declare_sensors(store)
    async with relayed_service(postgis_schema_url, tmp_path / "alone.sqlite") as alone:
        alone.ingest_items(now_items(("wl-1", 0.5)))
        await asyncio.sleep(0.3)
        assert alone.relay is not None and alone.relay.sent == 0 and alone.relay.peers == 0
        async with relayed_service(postgis_schema_url, tmp_path / "peer.sqlite") as peer:
            await asyncio.sleep(1.1)  # the next count of listeners finds the peer
            client = peer.hub.connect()
            alone.ingest_items(now_items(("wl-1", 0.7)))
            got = await updates_until(client, {"wl-1"})
            assert got["states"]["wl-1"]["value"] == 0.7 and alone.relay.peers == 1


async def test_case_changes_reach_the_clients_of_the_other_server(postgis_schema_url: str, tmp_path: Path) -> None:
    async with two_servers(postgis_schema_url, tmp_path) as (one, two):
        client = one.hub.connect()
        two.hub.publish_case({"id": 7, "state": "dispatched", "version": 3})
        text = await asyncio.wait_for(client.next_message(), 10)
        assert text is not None
        assert json.loads(text)["cases"] == [{"id": 7, "state": "dispatched", "version": 3}]


async def test_the_relay_comes_back_after_postgresql_restarts(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    url = private_postgres.store_url("relay")
    async with two_servers(url, tmp_path) as (one, two):
        assert one.relay is not None and two.relay is not None
        client = one.hub.connect()
        await asyncio.to_thread(private_postgres.restart)
        await eventually(lambda: one.relay is not None and one.relay.reconnects >= 1 and one.relay.connected, 20)
        await eventually(lambda: two.relay is not None and two.relay.reconnects >= 1 and two.relay.connected, 20)
        await asyncio.sleep(1.1)  # two's next count of listeners finds one again
        two.ingest_items(now_items(("wl-1", 0.6)))
        got = await updates_until(client, {"wl-1"})
        assert got["states"]["wl-1"]["value"] == 0.6
