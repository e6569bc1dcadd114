"""Rules micro-benchmark: readings through RuleEngine.evaluate, and messages through IotService.ingest_message
(decode, parse with the sensor's unit, latest state, rules, live push; no broker, no store writes).

    .venv/bin/python bench/rules_bench.py [--readings 1000000] [--units]

3,000 sensors (a third gas pressure in kPa with above/below/stale rules on pairs of sensors sharing a main, a third
water level, a third lift status), 100,000 distinct readings cycled; about one reading in 2,000 crosses a threshold.
``--units``: the gas readings are sent in Pa and converted. Rates are per second of this process's CPU time
(``time.process_time``), which other people's work on the same cores disturbs less than the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from cim.iot.rules import RuleEngine
from cim.iot.sensors import Sensor
from cim.iot.service import IotOptions, IotService
from cim.model import Reading
from cim.settings import MqttSettings

SENSORS = 3000


GAS = {"above": 3.5, "below": 1.0, "stale_s": 900, "severity": "critical"}


def sensors() -> dict[str, Sensor]:
    found: dict[str, Sensor] = {}
    for i in range(SENSORS):
        sid = f"s{i}"
        if i % 3 == 0:
            found[sid] = Sensor(id=sid, parent_id=f"pipe-{i // 6}", quantity="gas_pressure", unit="kPa",
                                thresholds=GAS)  # fmt: skip
        elif i % 3 == 1:
            found[sid] = Sensor(id=sid, parent_id=f"node-{i}", quantity="water_level", unit="m",
                                thresholds={"above": 1.5, "stale_s": 900, "severity": "critical"})  # fmt: skip
        else:
            found[sid] = Sensor(id=sid, parent_id=f"lift-{i}", quantity="lift_status",
                                thresholds={"status": ["fault"], "stale_s": 900})  # fmt: skip
    return found


def readings(known: dict[str, Sensor]) -> list[Reading]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for k in range(100_000):
        sid = f"s{k % SENSORS}"
        t = t0 + timedelta(milliseconds=k)
        quantity = known[sid].quantity
        if quantity == "lift_status":
            out.append(Reading(sensor_id=sid, time=t, status="fault" if k % 5000 == 2 else "ok"))
        elif quantity == "gas_pressure":
            out.append(Reading(sensor_id=sid, time=t, value=4.0 if k % 2000 == 3 else 2.0 + (k % 7) * 0.1))
        else:
            out.append(Reading(sensor_id=sid, time=t, value=0.3 + (k % 11) * 0.1))
    return out


def bench_engine(known: dict[str, Sensor], cycle: list[Reading], total: int) -> None:
    engine = RuleEngine()
    engine.set_sensors(known)
    changes = 0
    start = time.process_time()
    for _ in range(total // len(cycle)):
        for reading in cycle:
            changes += len(engine.evaluate(reading))
    cpu = time.process_time() - start
    print(f"RuleEngine.evaluate: {total:,} readings in {cpu:.2f} s CPU = {total / cpu:,.0f}/s ({changes:,} changes)")


class _NoStore:
    """The service's store, never reached: nothing is flushed during the bench."""

    url = "duckdb:///nowhere"


async def bench_service(known: dict[str, Sensor], cycle: list[Reading], total: int, units: bool) -> None:
    folder = tempfile.mkdtemp(prefix="cim-rules-bench-")
    service = IotService(
        _NoStore(),  # type: ignore[arg-type]
        MqttSettings(url=None),
        options=IotOptions(max_backlog=10**9),
        spool_path=Path(folder) / "spool.sqlite",
    )
    service.sensors = known
    service.engine.set_sensors(known)
    payloads = []
    for reading in cycle[: SENSORS * 10]:
        body: dict[str, Any] = {}  # no time: the time of arrival, so every message reaches the rules
        if reading.value is not None:
            body["value"] = reading.value
            if units and known[reading.sensor_id].unit == "kPa":
                body["value"], body["unit"] = reading.value * 1000, "Pa"
        if reading.status is not None:
            body["status"] = reading.status
        payloads.append((f"cim/{reading.sensor_id}/state", orjson.dumps(body)))
    sent = 0
    start = time.process_time()
    while sent < total:
        for topic, payload in payloads:
            service.ingest_message(topic, payload)
        sent += len(payloads)
        service._unspooled.clear()  # not spooled: the bench measures the event loop's part
    cpu = time.process_time() - start
    print(
        f"IotService.ingest_message{' (gas in Pa)' if units else ''}: {sent:,} messages in {cpu:.2f} s CPU = "
        f"{sent / cpu:,.0f}/s (accepted {service.accepted:,}, dropped {dict(service.dropped)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--units", action="store_true", help="send the gas readings in Pa")
    args = parser.parse_args()
    known = sensors()
    cycle = readings(known)
    bench_engine(known, cycle, args.readings)
    asyncio.run(bench_service(known, cycle, args.readings, args.units))


if __name__ == "__main__":
    main()
