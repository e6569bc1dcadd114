"""The simulator against a real broker and the ingest: real river data as water levels, and alerts that happen."""

from __future__ import annotations

import pytest

from cim.iot.simulate import declare_demo_sensors, read_discharge, simulate, water_level
from cim.store import Store
from tests.iot.conftest import Broker, eventually, running

pytestmark = [pytest.mark.mqtt, pytest.mark.anyio]


def test_the_choptank_series_is_read_whole(data_dir: object) -> None:
    discharge = read_discharge()
    assert len(discharge) == 4383 and discharge[0] == pytest.approx(3.029902561)
    levels = [water_level(q) for q in discharge]
    assert 0.3 < sorted(levels)[len(levels) // 2] < 0.5 and 0.01 < sum(v > 1.0 for v in levels) / len(levels) < 0.1


async def test_simulated_readings_reach_the_store_and_open_alerts(store: Store, broker: Broker) -> None:
    sensors = declare_demo_sensors(store, per_kind=4)
    assert len(sensors) == 12 and all(s.parent_id for s in sensors)
    async with running(store, broker.url) as iot:
        summary = await simulate(broker=broker.url, store=store, rate=1000, duration=2.0, seed=7)
        await eventually(lambda: iot.accepted == summary.published)
        await iot.flush()
        assert summary.sensors == {"gas_pressure": 4, "lift_status": 4, "water_level": 4}
        assert summary.published >= 1500 and not iot.dropped
    rules = {a.rule.split(":")[-1] for a in store.alerts()}
    assert {"above", "status"} <= rules, rules  # water over 1 m at a drainage point, a lift fault
    statuses = {s.status for s in store.latest_states().values()}
    assert statuses & {"running", "fault", "maintenance"}
    assert len(store.readings("demo-drain-0.level")) >= 100


async def test_with_no_broker_the_simulator_feeds_the_http_ingest_path(store: Store) -> None:
    from cim.iot.simulate import simulate_in_process

    declare_demo_sensors(store, per_kind=3)
    async with running(store) as iot:  # no broker URL: what `cim demo` does when none answers
        summary = await simulate_in_process(iot, rate=200, duration=2.5, seed=3)
        assert summary.published >= 200 and iot.accepted == summary.published and not iot.dropped
        await iot.flush()
    assert len(store.latest_states()) == 9
    assert sum(len(store.readings(s)) for s in store.latest_states()) == summary.published
