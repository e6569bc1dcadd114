"""A simulator that publishes realistic readings for the sensors in a store, so the demo has live data and alerts.

- ``water_level`` sensors replay the real daily discharge of the Choptank River (USGS gauge 01491000, 1999–2011,
  ``../shared/data/timeseries/ChoptankRiverFlow.txt``) as the water level at a drainage point, one day per reading,
  each sensor from its own starting day: level = 0.25 m · √(Q / m³ s⁻¹), a square-root rating curve that puts the
  median at 0.4 m and about 4 % of days above 1 m (a flooded underpass).
- ``lift_status`` sensors walk a Markov chain running → fault / maintenance → running (faults are rare, repairs
  take a while).
- ``gas_pressure`` sensors (kPa, medium-pressure mains around 300 kPa) drift with noise and now and then lose
  pressure for a few readings (a leak or a regulator fault).
- any other quantity gets a bounded random walk.

Readings go to ``cim/<sensor-id>/state`` at QoS 1 as ``{"value", "status", "time"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
from shapely.geometry import Point

from cim.errors import CimError, InvalidInput
from cim.iot.mqtt import parse_mqtt_url
from cim.iot.sensors import Sensor, load_sensors, sensor_asset
from cim.model import Asset, AssetBatch, Kind
from cim.store import AssetQuery, Store

if TYPE_CHECKING:
    from cim.iot.service import IotService

CHOPTANK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "timeseries" / "ChoptankRiverFlow.txt"
LIFT_STEPS = {
    "running": (("fault", 0.01), ("maintenance", 0.004)),
    "fault": (("running", 0.08),),
    "maintenance": (("running", 0.05),),
}


def read_discharge(path: Path = CHOPTANK) -> list[float]:
    """The daily mean discharges (m³/s) of a USGS tab-separated ``date  Qdaily`` file."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InvalidInput(f"series {path}", f"cannot be read: {exc.strerror}") from None
    values = []
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip():
            values.append(float(parts[1]))
    if not values:
        raise InvalidInput(f"series {path}", "holds no values")
    return values


def water_level(discharge: float) -> float:
    """Water level (m) at a drainage point for a river discharge (m³/s): 0.25 · √Q.

    >>> water_level(16.0)
    1.0
    """
    return round(0.25 * max(discharge, 0.0) ** 0.5, 3)


@dataclass(slots=True)
class _Generator:
    sensor: Sensor
    rng: random.Random
    series: list[float]
    position: int = 0
    status: str = "running"
    value: float = 300.0
    leak_left: int = 0

    def next(self) -> tuple[float | None, str | None]:
        quantity = self.sensor.quantity
        if quantity == "water_level":
            self.position = (self.position + 1) % len(self.series)
            return water_level(self.series[self.position]), None
        if quantity == "lift_status":
            for target, chance in LIFT_STEPS[self.status]:
                if self.rng.random() < chance:
                    self.status = target
                    break
            return None, self.status
        if quantity == "gas_pressure":
            if self.leak_left == 0 and self.rng.random() < 0.005:
                self.leak_left = self.rng.randint(3, 12)
            if self.leak_left:
                self.leak_left -= 1
                return round(self.rng.uniform(120.0, 190.0), 1), "low"
            self.value = min(max(self.value + self.rng.gauss(0, 3) + (300.0 - self.value) * 0.05, 230.0), 370.0)
            return round(self.value, 1), "ok"
        self.value = self.value + self.rng.gauss(0, 1)
        return round(self.value, 3), None


@dataclass(slots=True)
class SimulationSummary:
    sensors: dict[str, int] = field(default_factory=dict)
    published: int = 0
    seconds: float = 0.0


def declare_demo_sensors(store: Store, *, per_kind: int = 5) -> list[Asset]:
    """Sensors on the store's assets: lift status on lifts, gas pressure on gas mains, water level on drainage or
    water nodes (else pipes), each with thresholds, up to ``per_kind`` of each. Assets missing from the store are
    made up around People's Square, Shanghai, so the demo runs on an empty store too."""
    made: list[Asset] = []
    parents: list[Asset] = []

    def pick(query: AssetQuery, kind: Kind, prefix: str, **fields: object) -> list[str]:
        found = store.find_assets(AssetQuery(kinds=query.kinds, where=query.where, limit=per_kind))
        while len(found) < per_kind:
            n = len(found)
            asset = Asset(id=f"demo-{prefix}-{n}", kind=kind, geom=Point(121.47 + n * 0.002, 31.23), **fields)  # type: ignore[arg-type]
            parents.append(asset)
            found.append(asset)
        return [a.id for a in found]

    for lift in pick(AssetQuery(kinds=(Kind.LIFT,)), Kind.LIFT, "lift"):
        made.append(
            sensor_asset(
                id=f"{lift}.status",
                parent_id=lift,
                quantity="lift_status",
                thresholds={"status": ["fault"], "severity": "critical"},
            )
        )
    for pipe in pick(AssetQuery(kinds=(Kind.PIPE,), where={"network": "gas"}), Kind.PIPE, "gas", network="gas"):
        made.append(
            sensor_asset(
                id=f"{pipe}.pressure",
                parent_id=pipe,
                quantity="gas_pressure",
                unit="kPa",
                thresholds={"below": 200.0, "above": 400.0, "severity": "critical"},
            )
        )
    for node in pick(AssetQuery(kinds=(Kind.NODE,)), Kind.NODE, "drain", network="drainage"):
        made.append(
            sensor_asset(
                id=f"{node}.level",
                parent_id=node,
                quantity="water_level",
                unit="m",
                thresholds={"above": 1.0, "stale_s": 600},
            )
        )
    store.upsert_assets(AssetBatch.from_assets(parents + made))
    return made


async def simulate(
    *,
    broker: str,
    store: Store,
    rate: float = 10.0,
    duration: float | None = None,
    seed: int = 1,
    series: Path = CHOPTANK,
    on_publish: Callable[[int], None] | None = None,
) -> SimulationSummary:
    """Publish ``rate`` readings a second in all, round-robin over the store's sensors, for ``duration`` seconds
    (or until cancelled)."""
    if rate <= 0:
        raise InvalidInput(f"rate {rate}", "must be above 0 readings a second")
    sensors = load_sensors(store)
    if not sensors:
        raise InvalidInput(f"store {store.url}", "has no sensors; declare some, or run with --demo-sensors")
    rng = random.Random(seed)
    discharge = read_discharge(series)
    generators = [
        _Generator(sensor=s, rng=random.Random(rng.random()), series=discharge, position=rng.randrange(len(discharge)))
        for s in sorted(sensors.values(), key=lambda s: s.id)
    ]
    summary = SimulationSummary()
    for g in generators:
        summary.sensors[g.sensor.quantity or "other"] = summary.sensors.get(g.sensor.quantity or "other", 0) + 1
    host, port = parse_mqtt_url(broker)
    started = time.monotonic()
    try:
        await _publish(
            client_args=(host, port, seed),
            generators=generators,
            rate=rate,
            duration=duration,
            summary=summary,
            on_publish=on_publish,
        )
    except aiomqtt.MqttError as exc:
        raise CimError(f"MQTT broker {broker}", f"cannot be reached or dropped the connection: {exc}") from None
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


async def _publish(
    *,
    client_args: tuple[str, int, int],
    generators: list[_Generator],
    rate: float,
    duration: float | None,
    summary: SimulationSummary,
    on_publish: Callable[[int], None] | None,
) -> None:
    host, port, seed = client_args
    tick = 0.05 if rate >= 20 else 1.0 / rate
    started = time.monotonic()
    index = 0
    quiet = logging.getLogger("cim.iot.simulate.mqtt")
    quiet.setLevel(logging.ERROR)  # aiomqtt warns about every batch of more than 10 publishes in flight
    async with aiomqtt.Client(
        host, port, identifier=f"cim-simulator-{seed}", max_inflight_messages=1000, logger=quiet
    ) as client:
        while duration is None or time.monotonic() - started < duration:
            # as many as the rate owes by now, so a slow tick is caught up by the next one
            count = min(int(rate * (time.monotonic() - started + tick)) - summary.published, max(int(rate), 1))
            now = datetime.now(UTC).isoformat()
            batch, index = _next_readings(generators, index, count)
            sends = [
                client.publish(
                    f"cim/{sensor_id}/state", json.dumps({"value": value, "status": status, "time": now}), qos=1
                )
                for sensor_id, value, status in batch
            ]
            await asyncio.gather(*sends)
            summary.published += len(sends)
            if on_publish is not None and sends:
                on_publish(len(sends))
            await asyncio.sleep(tick)


async def simulate_in_process(
    service: IotService, *, rate: float = 10.0, duration: float | None = None, seed: int = 1
) -> SimulationSummary:
    """The same readings as :func:`simulate`, handed to a running :class:`IotService` through its HTTP ingest path
    (``ingest_items``, what ``POST /iot/readings`` calls) — for a demo with no broker."""
    if rate <= 0:
        raise InvalidInput(f"rate {rate}", "must be above 0 readings a second")
    rng = random.Random(seed)
    discharge = read_discharge()
    generators = [
        _Generator(sensor=s, rng=random.Random(rng.random()), series=discharge, position=rng.randrange(len(discharge)))
        for s in sorted(service.sensors.values(), key=lambda s: s.id)
    ]
    summary = SimulationSummary()
    if not generators:
        return summary
    started = time.monotonic()
    index = 0
    while duration is None or time.monotonic() - started < duration:
        owed = min(int(rate * (time.monotonic() - started + 1.0)) - summary.published, max(int(rate), 1))
        now = datetime.now(UTC).isoformat()
        batch, index = _next_readings(generators, index, owed)
        items = [{"sensor_id": i, "value": value, "status": status, "time": now} for i, value, status in batch]
        if items:
            service.ingest_items(items)
            summary.published += len(items)
        await asyncio.sleep(1.0)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _next_readings(
    generators: list[_Generator], index: int, count: int
) -> tuple[list[tuple[str, float | None, str | None]], int]:
    """The next ``count`` readings, round-robin over the sensors from ``index``; and the index to go on from."""
    batch = []
    for _ in range(max(count, 0)):
        g = generators[index % len(generators)]
        index += 1
        value, status = g.next()
        batch.append((g.sensor.id, value, status))
    return batch, index
