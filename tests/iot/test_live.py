"""The live hub: coalescing per client, and a slow client that blocks nobody."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from cim.iot.live import LiveHub, reading_json
from cim.iot.relay import RemoteChanges, apply_remote
from cim.iot.rules import RuleEngine
from cim.model import Reading

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def state(sensor: int, n: int) -> Reading:
    return Reading(sensor_id=f"s{sensor}", time=T0 + timedelta(seconds=n), value=float(n))


async def test_a_slow_client_keeps_only_the_newest_state_and_others_go_on() -> None:
    hub = LiveHub(min_interval=0.01)
    fast, slow = hub.connect(), hub.connect()
    first = await asyncio.wait_for(_publish_and_take(hub, fast, [state(1, 0)]), 2)
    assert json.loads(first)["states"][0]["sensor_id"] == "s1"
    assert await asyncio.wait_for(slow.next_message(), 2) is not None  # slow takes one message, then stalls
    received = 0
    for n in range(1, 200):  # a burst of 10 sensors × 20 readings while slow never asks again
        hub.publish_state(state(n % 10, n))
        if n % 20 == 0:
            await asyncio.sleep(0.02)
            while fast.shared is not None or fast.states:
                await asyncio.wait_for(fast.next_message(), 2)
                received += 1
    assert received >= 5  # the fast client was served all along
    await asyncio.sleep(0.05)
    assert len(slow.states) <= 10  # a backlog of the newest state per sensor, not of every reading
    backlog = json.loads(await asyncio.wait_for(slow.next_message(), 2))
    newest = {s["sensor_id"]: s["value"] for s in backlog["states"]}
    assert newest["s9"] == 199.0 and newest["s0"] == 190.0
    hub.close()


async def _publish_and_take(hub: LiveHub, client: object, readings: list[Reading]) -> str:
    for r in readings:
        hub.publish_state(r)
    message = await client.next_message()  # type: ignore[attr-defined]
    assert message is not None
    return str(message)


async def test_a_relayed_state_older_than_this_servers_own_does_not_move_its_clients_back() -> None:
    # another server's reading 1 arrives over the relay after this server pushed its own reading 2 (the relay's tick
    # is later than this server's): the clients keep reading 2
    hub = LiveHub(min_interval=0.01)
    client = hub.connect()
    own = state(1, 2)
    latest = {own.sensor_id: own}
    assert json.loads(await asyncio.wait_for(_publish_and_take(hub, client, [own]), 2))["states"][0]["value"] == 2.0
    older, newer = reading_json(state(1, 1)), reading_json(state(1, 3))
    engine = RuleEngine()
    apply_remote(RemoteChanges("other", states=[json.loads(older)]), latest=latest, sensors={}, engine=engine, hub=hub)
    await asyncio.sleep(0.1)  # the hub's ticks: what it was given has gone to the client
    apply_remote(RemoteChanges("other", states=[json.loads(newer)]), latest=latest, sensors={}, engine=engine, hub=hub)
    message = json.loads(await asyncio.wait_for(client.next_message(), 2))
    assert [s["value"] for s in message["states"]] == [3.0]
    hub.close()
