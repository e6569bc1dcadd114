"""A simulator that publishes believable readings for the sensors in a store, so the demo has live data and the
alerts a command centre would see on an ordinary day (:mod:`cim.iot.behaviours` says how each quantity behaves).

Normal readings stay inside each sensor's thresholds around its nominal, following a daily curve in Shanghai time;
faults happen at real-world rates in *simulated* time, never per reading, so publishing faster or slower changes
how often a sensor is read, not how often things break. When a sensor's state changes (a lift stops, a gas main
loses pressure) the simulator publishes at once, as a real device reports on alarm; the rest is read round-robin at
``rate`` readings a second in all.

``speedup`` compresses time: ``speedup=60`` runs a simulated hour in a real minute (fault rates, repair times, the
daily curve and the river series all run 60 times faster), while readings keep real time stamps. ``cim demo`` uses
60, so in ten minutes it lives through ten hours; ``cim simulate`` defaults to 1.

- ``water_level`` sensors replay the real daily discharge of the Choptank River (USGS gauge 01491000, 1999–2011,
  ``../shared/data/timeseries/ChoptankRiverFlow.txt``) from ``series_start`` (default: the morning before its
  record flood, Hurricane Irene on 28 Aug 2011, replayed as a typhoon rainstorm), one series hour per simulated
  hour; a drainage chamber floods only on the series' flood days. (The instantaneous-values file next to it,
  ``usgs_nwis_iv_01491000_01645000.json``, holds one hour of 2019 — too short to replay.)
- ``lift_status``: running, a few faults a day per thousand lifts repaired in 1–4 h, fortnightly maintenance.
- ``gas_pressure``: the class's nominal (kPa, or MPa on sub-high trunk mains) dipping at the cooking peaks; now
  and then (about once a day per thousand sensors) a leak or a regulator fault for a few minutes.

Readings go to ``cim/<sensor-id>/state`` at QoS 1 as ``{"value", "unit", "status", "time"}``.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
from shapely.geometry import Point

from cim.errors import CimError, InvalidInput
from cim.iot.behaviours import (
    CHOPTANK,
    DEFAULT_SERIES_START,
    Behaviour,
    Clock,
    FaultRates,
    RiverSeries,
    behaviour_of,
    read_discharge,
)
from cim.iot.mqtt import parse_mqtt_url
from cim.iot.sensors import Sensor, load_sensors, sensor_asset
from cim.model import Asset, AssetBatch, Kind
from cim.store import AssetQuery, Store

if TYPE_CHECKING:
    from cim.iot.service import IotService

__all__ = [
    "CHOPTANK",
    "FaultRates",
    "Simulation",
    "SimulationSummary",
    "declare_demo_sensors",
    "read_discharge",
    "simulate",
    "simulate_in_process",
]

#: (sensor id, value, unit, status, real Unix time) of one simulated reading
SimReading = tuple[str, float | None, str | None, str | None, float]


class Simulation:
    """The sensors' behaviours on one clock. :meth:`due` gives what to publish at a real moment: every state change
    since the last call (stamped with the moment it happened), then ``count`` readings round-robin."""

    def __init__(
        self,
        sensors: Iterable[Sensor],
        *,
        seed: int = 1,
        speedup: float = 1.0,
        series_start: datetime | None = None,
        series: RiverSeries | None = None,
        rates: FaultRates | None = None,
        real_start: float | None = None,
        sim_start: float | None = None,
    ) -> None:
        if not speedup > 0:
            raise InvalidInput(f"speedup {speedup}", "must be above 0 (1 is real time)")
        real = time.time() if real_start is None else real_start
        self.clock = Clock(
            real_start=real,
            sim_start=real if sim_start is None else sim_start,
            speedup=speedup,
            series_start=series_start or DEFAULT_SERIES_START,
        )
        river = series or RiverSeries.read()
        self.behaviours: list[Behaviour] = [
            behaviour_of(s, seed=seed, clock=self.clock, series=river, rates=rates or FaultRates())
            for s in sorted(sensors, key=lambda s: s.id)
        ]
        self._index = 0
        self._last_real: float | None = None
        self._changes: list[tuple[float, int]] = []
        for i, b in enumerate(self.behaviours):
            self._push(i, b.next_change(self.clock.sim_start))

    def _push(self, i: int, when: float) -> None:
        if when != float("inf"):
            heapq.heappush(self._changes, (when, i))

    def due(self, real: float, count: int) -> list[SimReading]:
        clock = self.clock
        now = clock.sim(real)
        batch: list[SimReading] = []
        while self._changes and self._changes[0][0] <= now:
            when, i = heapq.heappop(self._changes)
            b = self.behaviours[i]
            value, status = b.reading(when)
            at = clock.real_start + (when - clock.sim_start) / clock.speedup
            batch.append((b.sensor.id, value, b.sensor.unit if value is not None else None, status, at))
            self._push(i, b.next_change(when))
        if self.behaviours and count > 0:
            # spread over the time since the last call, as a round robin reads them: a sensor read twice in one
            # call gets two times (a store keeps one reading per sensor and time)
            last = min(self._last_real if self._last_real is not None else real, real)
            step = (real - last) / count if real > last else 0.001
            for k in range(count):
                b = self.behaviours[self._index % len(self.behaviours)]
                self._index += 1
                value, status = b.reading(now)
                at = real - (count - 1 - k) * step
                batch.append((b.sensor.id, value, b.sensor.unit if value is not None else None, status, at))
        self._last_real = real
        return batch


def _payload(value: float | None, unit: str | None, status: str | None, at: float) -> dict[str, Any]:
    body: dict[str, Any] = {"value": value, "status": status, "time": datetime.fromtimestamp(at, UTC).isoformat()}
    if unit is not None:
        body["unit"] = unit
    return body


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
    from cim.synth.networks import GAS_CLASSES, GAS_MIN_DURATION_S

    gas = GAS_CLASSES["medium_a"]
    for pipe in pick(AssetQuery(kinds=(Kind.PIPE,), where={"network": "gas"}), Kind.PIPE, "gas", network="gas"):
        asset = sensor_asset(
            id=f"{pipe}.pressure",
            parent_id=pipe,
            quantity="gas_pressure",
            unit=gas.unit,
            thresholds={
                "below": gas.below,
                "above": gas.above,
                "severity": "critical",
                "deadband": gas.deadband,
                "min_duration_s": GAS_MIN_DURATION_S,
            },
        )
        made.append(replace(asset, props={**asset.props, "nominal": gas.nominal}))
    for node in pick(AssetQuery(kinds=(Kind.NODE,)), Kind.NODE, "drain", network="drainage"):
        made.append(
            sensor_asset(
                id=f"{node}.level",
                parent_id=node,
                quantity="water_level",
                unit="m",
                thresholds={"above": 1.0, "stale_s": 600, "deadband": 0.05, "min_duration_s": 60},
            )
        )
    made = [replace(a, props={**a.props, "nominal": 0.3}) if a.id.endswith(".level") else a for a in made]
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
    speedup: float = 1.0,
    series_start: datetime | None = None,
    rates: FaultRates | None = None,
    on_publish: Callable[[int], None] | None = None,
) -> SimulationSummary:
    """Publish ``rate`` readings a second in all, round-robin over the store's sensors, and every state change as
    it happens, for ``duration`` seconds (or until cancelled)."""
    if rate <= 0:
        raise InvalidInput(f"rate {rate}", "must be above 0 readings a second")
    sensors = load_sensors(store)
    if not sensors:
        raise InvalidInput(f"store {store.url}", "has no sensors; declare some, or run with --demo-sensors")
    simulation = Simulation(
        sensors.values(),
        seed=seed,
        speedup=speedup,
        series_start=series_start,
        series=RiverSeries.read(series),
        rates=rates,
    )
    summary = SimulationSummary()
    for b in simulation.behaviours:
        summary.sensors[b.sensor.quantity or "other"] = summary.sensors.get(b.sensor.quantity or "other", 0) + 1
    host, port = parse_mqtt_url(broker)
    started = time.monotonic()
    try:
        await _publish(
            client_args=(host, port, seed),
            simulation=simulation,
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
    simulation: Simulation,
    rate: float,
    duration: float | None,
    summary: SimulationSummary,
    on_publish: Callable[[int], None] | None,
) -> None:
    host, port, seed = client_args
    tick = 0.05 if rate >= 20 else 1.0 / rate
    started = time.monotonic()
    read = 0
    quiet = logging.getLogger("cim.iot.simulate.mqtt")
    quiet.setLevel(logging.ERROR)  # aiomqtt warns about every batch of more than 10 publishes in flight
    async with aiomqtt.Client(
        host, port, identifier=f"cim-simulator-{seed}", max_inflight_messages=1000, logger=quiet
    ) as client:
        while duration is None or time.monotonic() - started < duration:
            # as many as the rate owes by now, so a slow tick is caught up by the next one
            count = min(int(rate * (time.monotonic() - started + tick)) - read, max(int(rate), 1))
            batch = simulation.due(time.time(), count)
            read += max(count, 0)
            sends = [
                client.publish(f"cim/{sensor_id}/state", json.dumps(_payload(value, unit, status, at)), qos=1)
                for sensor_id, value, unit, status, at in batch
            ]
            await asyncio.gather(*sends)
            summary.published += len(sends)
            if on_publish is not None and sends:
                on_publish(len(sends))
            await asyncio.sleep(tick)


async def simulate_in_process(
    service: IotService,
    *,
    rate: float = 10.0,
    duration: float | None = None,
    seed: int = 1,
    speedup: float = 1.0,
    series_start: datetime | None = None,
    rates: FaultRates | None = None,
) -> SimulationSummary:
    """The same readings as :func:`simulate`, handed to a running :class:`IotService` through its HTTP ingest path
    (``ingest_items``, what ``POST /iot/readings`` calls) — for a demo with no broker."""
    if rate <= 0:
        raise InvalidInput(f"rate {rate}", "must be above 0 readings a second")
    summary = SimulationSummary()
    if not service.sensors:
        return summary
    simulation = Simulation(
        service.sensors.values(), seed=seed, speedup=speedup, series_start=series_start, rates=rates
    )
    started = time.monotonic()
    read = 0
    while duration is None or time.monotonic() - started < duration:
        owed = min(int(rate * (time.monotonic() - started + 1.0)) - read, max(int(rate), 1))
        batch = simulation.due(time.time(), owed)
        read += max(owed, 0)
        items = [
            {"sensor_id": sensor_id, **_payload(value, unit, status, at)}
            for sensor_id, value, unit, status, at in batch
        ]
        if items:
            service.ingest_items(items)
            summary.published += len(items)
        await asyncio.sleep(1.0)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
