"""The simulator: normal readings inside the thresholds on daily curves, faults at real-world rates in simulated
time whatever the publish rate, water that floods only on the river series' flood days, and readings that reach
the store through a real broker and the HTTP ingest path."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cim.iot.behaviours import (
    DEFAULT_SERIES_START,
    FLOODED_AT_RECORD,
    SHANGHAI,
    Clock,
    FaultRates,
    GasPressure,
    RiverSeries,
    WaterLevel,
    demand,
)
from cim.iot.sensors import Sensor
from cim.iot.simulate import Simulation, declare_demo_sensors, read_discharge, simulate
from cim.store import Store
from cim.synth.networks import GAS_CLASSES, GAS_MIN_DURATION_S
from tests.iot.conftest import Broker, eventually, running

NO_FAULTS = FaultRates(lift_faults_per_day=0, lift_maintenance_every_days=0, gas_excursions_per_day=0)
DRY_WEEK = datetime(2000, 7, 1, tzinfo=UTC)  # no flood day within a week of it (checked below)
T0 = datetime(2026, 5, 1, tzinfo=SHANGHAI).timestamp()


def gas_sensor(i: int, pressure_class: str) -> Sensor:
    c = GAS_CLASSES[pressure_class]
    thresholds = {
        "below": c.below,
        "above": c.above,
        "unit": c.unit,
        "deadband": c.deadband,
        "min_duration_s": GAS_MIN_DURATION_S,
    }
    return Sensor(
        id=f"gp-{pressure_class}-{i}", quantity="gas_pressure", unit=c.unit, thresholds=thresholds, nominal=c.nominal
    )


def sensors(n: int = 10) -> list[Sensor]:
    made = [gas_sensor(i, c) for c in GAS_CLASSES for i in range(n)]
    made += [
        Sensor(id=f"wl-{i}", quantity="water_level", unit="m", thresholds={"above": 1.5 + i / n}, nominal=0.3)
        for i in range(n)
    ]
    made += [Sensor(id=f"lift-{i}", quantity="lift_status", thresholds={"status": ["fault"]}) for i in range(n)]
    made += [Sensor(id=f"t-{i}", quantity="temperature", unit="°C", thresholds={"above": 40.0}) for i in range(n)]
    return made


def out_of_range(sensor: Sensor, value: float | None, status: str | None) -> bool:
    t = sensor.thresholds
    if status is not None and status in (t.get("status") or []):
        return True
    if value is None:
        return False
    return (t.get("above") is not None and value > t["above"]) or (t.get("below") is not None and value < t["below"])


def run(simulation: Simulation, *, hours: float, step_s: float, per_step: int) -> list[tuple[Any, ...]]:
    """Every reading the simulation publishes over ``hours`` of simulated time, asked every ``step_s`` real
    seconds for ``per_step`` round-robin readings."""
    clock = simulation.clock
    steps = int(hours * 3600 / clock.speedup / step_s)
    return [r for k in range(1, steps + 1) for r in simulation.due(clock.real_start + k * step_s, per_step)]


def test_the_choptank_series_is_read_whole() -> None:
    discharge = read_discharge()
    assert len(discharge) == 4383 and discharge[0] == pytest.approx(3.029902561)
    series = RiverSeries.read()
    assert series.first_day.isoformat() == "1999-10-01"
    assert 40 <= len(series.flood_days()) <= 50  # the top 1 % of 4,383 days
    assert series.at(datetime(2011, 8, 28, 12, tzinfo=UTC)) == pytest.approx(max(discharge))  # Irene
    assert not {DRY_WEEK.date() + timedelta(days=d) for d in range(-1, 9)} & series.flood_days()


def test_normal_readings_stay_inside_the_thresholds_with_margin() -> None:
    made = sensors()
    by_id = {s.id: s for s in made}
    simulation = Simulation(made, speedup=3600, series_start=DRY_WEEK, rates=NO_FAULTS, real_start=0.0, sim_start=T0)
    readings = run(simulation, hours=7 * 24, step_s=1.0, per_step=50)
    assert len(readings) >= 7 * 24 * 50
    for sensor_id, value, unit, status, _ in readings:
        sensor = by_id[sensor_id]
        assert not out_of_range(sensor, value, status), (sensor_id, value, status)
        assert unit == sensor.unit or value is None
        band = sensor.thresholds.get("deadband") or 0.0
        if value is not None and sensor.thresholds.get("below") is not None:
            assert sensor.thresholds["below"] + band < value < sensor.thresholds["above"] - band
    assert {r[3] for r in readings if by_id[r[0]].quantity == "lift_status"} == {"running"}


def test_gas_pressure_dips_at_the_cooking_peaks_shanghai_time() -> None:
    assert demand(18.0) == 1.0 and demand(3.0) < 0.15 and demand(7.0) > 0.4 and demand(11.5) > 0.5
    gas = GasPressure(gas_sensor(0, "low"), 1, T0, NO_FAULTS)
    night = [gas.reading(T0 + 3 * 3600 + k)[0] for k in range(50)]  # 03:00 in Shanghai
    dinner = [gas.reading(T0 + 18 * 3600 + k)[0] for k in range(50)]  # 18:00
    assert sum(dinner) / 50 < 0.95 * sum(night) / 50  # type: ignore[arg-type]


def test_fault_rates_do_not_depend_on_the_publish_rate() -> None:
    lifts = [Sensor(id=f"lift-{i:04d}", quantity="lift_status", thresholds={"status": ["fault"]}) for i in range(1000)]
    gas = [gas_sensor(i, "medium_a") for i in range(2000)]
    seen = []
    for per_step in (2, 200):
        simulation = Simulation(lifts + gas, speedup=3600, real_start=0.0, sim_start=T0)
        readings = run(simulation, hours=30 * 24, step_s=1.0, per_step=per_step)
        faults, excursions, repairs = _episodes(readings, {s.id: s for s in lifts + gas})
        seen.append((faults, excursions))
        assert 60 <= faults <= 125  # 1,000 lifts × 30 days × 3/1000 a day = 90
        assert 35 <= excursions <= 90  # 2,000 sensors × 30 days × 1/1000 a day = 60
        assert all(3600 <= r <= 4 * 3600 + 1 for r in repairs)
    assert seen[0] == seen[1]  # the same faults at 2 or 200 readings a second


def _episodes(readings: list[tuple[Any, ...]], by_id: dict[str, Sensor]) -> tuple[int, int, list[float]]:
    state: dict[str, bool] = {}
    began: dict[str, float] = {}
    counts: Counter[str] = Counter()
    repairs = []
    for sensor_id, value, _, status, at in readings:
        bad = out_of_range(by_id[sensor_id], value, status)
        if bad and not state.get(sensor_id):
            counts[by_id[sensor_id].quantity or ""] += 1
            began[sensor_id] = at
        if not bad and state.get(sensor_id) and by_id[sensor_id].quantity == "lift_status":
            repairs.append((at - began[sensor_id]) * 3600)  # real seconds × speedup
        state[sensor_id] = bad
    return counts["lift_status"], counts["gas_pressure"], repairs


def test_waterlogging_only_on_the_series_flood_days() -> None:
    series = RiverSeries.read()
    clock = Clock(real_start=0.0, sim_start=0.0, speedup=1.0, series_start=datetime(1999, 10, 1, tzinfo=UTC))
    chambers = [
        WaterLevel(
            Sensor(id=f"wl-{i}", quantity="water_level", unit="m", thresholds={"above": 2.0}, nominal=0.3),
            1,
            series,
            clock,
        )
        for i in range(40)
    ]
    flood_days = series.flood_days()
    flooded_days = set()
    for hours in range(0, len(series.discharge) * 24, 6):
        when = clock.series_time(hours * 3600.0)
        for chamber in chambers:
            value, _ = chamber.reading(hours * 3600.0)
            if value is not None and value > 2.0:
                assert series.at(when) > series.flood, when
                near = {when.date() + timedelta(days=d) for d in (-1, 0, 1)}
                assert near & flood_days, when
                flooded_days.add(when.date())
    assert flooded_days and len(flooded_days) <= 3 * len(flood_days)
    irene = Clock(real_start=0.0, sim_start=0.0, series_start=datetime(2011, 8, 28, 12, tzinfo=UTC))
    many = [
        WaterLevel(
            Sensor(id=f"wl-{i}", quantity="water_level", unit="m", thresholds={"above": 2.0}, nominal=0.3),
            1,
            series,
            irene,
        )
        for i in range(1000)
    ]
    share = sum((w.reading(0.0)[0] or 0) > 2.0 for w in many) / len(many)
    assert FLOODED_AT_RECORD * 0.7 < share < FLOODED_AT_RECORD * 1.3  # at the record flood


def test_the_demo_starts_the_morning_before_the_record_flood() -> None:
    series = RiverSeries.read()
    assert series.at(DEFAULT_SERIES_START) < series.flood < series.at(DEFAULT_SERIES_START + timedelta(hours=8))


def test_a_speedup_of_zero_is_refused() -> None:
    from cim.errors import InvalidInput

    with pytest.raises(InvalidInput, match="speedup"):
        Simulation([], speedup=0)


@pytest.mark.mqtt
@pytest.mark.anyio
async def test_simulated_readings_reach_the_store_and_open_alerts(store: Store, broker: Broker) -> None:
    sensors = declare_demo_sensors(store, per_kind=4)
    assert len(sensors) == 12 and all(s.parent_id for s in sensors)
    gas = next(s for s in sensors if s.props["quantity"] == "gas_pressure")
    assert gas.props["unit"] == "kPa" and gas.props["nominal"] == 300.0
    rates = FaultRates(lift_faults_per_day=50, gas_excursions_per_day=200)  # many, to see some in 2 s
    async with running(store, broker.url) as iot:
        summary = await simulate(
            broker=broker.url, store=store, rate=1000, duration=2.0, seed=7, speedup=3600, rates=rates
        )
        await eventually(lambda: iot.accepted == summary.published)
        await iot.flush()
        assert summary.sensors == {"gas_pressure": 4, "lift_status": 4, "water_level": 4}
        assert summary.published >= 1500 and not iot.dropped
    rules = {a.rule.split(":")[-1] for a in store.alerts()}
    assert "status" in rules, rules  # a lift fault
    # gas excursions were published, but at ×3600 each lasts well under a second of reading times: shorter than the
    # rule's minimum duration, so none opened an alert
    band = gas.props["thresholds"]
    outside = [
        r.value
        for s in sensors
        if s.props["quantity"] == "gas_pressure"
        for r in store.readings(s.id)
        if r.value is not None and not band["below"] <= r.value <= band["above"]
    ]
    assert outside and not rules & {"above", "below"}, rules
    statuses = {s.status for s in store.latest_states().values()}
    assert statuses & {"running", "fault", "maintenance"}
    assert len(store.readings("demo-drain-0.level")) >= 100


@pytest.mark.anyio
async def test_with_no_broker_the_simulator_feeds_the_http_ingest_path(store: Store) -> None:
    from cim.iot.simulate import simulate_in_process

    declare_demo_sensors(store, per_kind=3)
    async with running(store) as iot:  # no broker URL: what `cim demo` does when none answers
        summary = await simulate_in_process(iot, rate=200, duration=2.5, seed=3)
        assert summary.published >= 200 and iot.accepted == summary.published and not iot.dropped
        await iot.flush()
    assert len(store.latest_states()) == 9
    assert sum(len(store.readings(s)) for s in store.latest_states()) == summary.published
    assert not store.alerts()  # real-time faults: none in 2.5 s
    assert math.isfinite(summary.seconds)
