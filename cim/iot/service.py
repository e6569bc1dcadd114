"""The IoT service: sensors, latest state, batched history, rules and alerts, live push — one object the app's
lifespan starts and stops.

Everything that changes state runs on the event loop, synchronously and without awaiting, so a reading moves the
latest state, the rules and the live push in one step. The store is reached only from a single worker thread (it is
blocking, and one DuckDB connection serves one statement at a time): readings and alert changes are buffered and
written every ``flush_interval`` seconds or ``flush_size`` readings, one transaction per batch. A flush that fails
keeps its batch and retries; past ``max_backlog`` buffered readings the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as clock
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from cim.errors import CimError, NotFound
from cim.iot.live import LiveHub
from cim.iot.mqtt import MqttStatus, run_subscriber
from cim.iot.payload import (
    FUTURE_TOLERANCE,
    MAX_PAYLOAD_BYTES,
    Dropped,
    DropReason,
    decode_payload,
    parse_reading,
    sensor_of_topic,
)
from cim.iot.rules import Rule, RuleEngine
from cim.iot.sensors import Sensor, load_sensors
from cim.model import Reading
from cim.settings import MqttSettings
from cim.store import Store
from cim.store.base import Alert

log = logging.getLogger(__name__)
#: Topics whose sensor id is remembered (one per sensor is the norm; the bound keeps junk topics from growing it).
TOPIC_CACHE_SIZE = 200_000
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class IotOptions:
    """Tuning of the service; the defaults suit a city demo on 2 cores."""

    client_id: str = "cim-iot"
    flush_interval: float = 0.25
    flush_size: int = 20_000
    max_backlog: int = 2_000_000
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    future_tolerance: timedelta = FUTURE_TOLERANCE
    stale_check_interval: float = 1.0
    sensor_refresh_interval: float = 30.0
    live_min_interval: float = 0.05
    min_backoff: float = 0.2
    max_backoff: float = 10.0


class IotService:
    """Live sensor state for one store. ``await start()`` in the lifespan, ``await stop()`` at its end."""

    def __init__(
        self,
        store: Store,
        mqtt: MqttSettings | None = None,
        *,
        write_token: str | None = None,
        rules: Iterable[Rule] = (),
        options: IotOptions | None = None,
    ) -> None:
        self.store = store
        self.mqtt = mqtt or MqttSettings()
        self.write_token = write_token
        self.options = options or IotOptions()
        self.engine = RuleEngine(rules)
        self.hub = LiveHub(min_interval=self.options.live_min_interval)
        self.sensors: dict[str, Sensor] = {}
        self.latest: dict[str, Reading] = {}
        self.received = 0
        self.accepted = 0
        self.stored = 0
        self.flushes = 0
        self.flush_failures = 0
        self.dropped: Counter[str] = Counter()
        self.mqtt_status: MqttStatus | None = None
        self._pending: list[Reading] = []
        self._topic_sensor: dict[str, str | None] = {}  # topic → sensor id: splitting it cost 6% of the ingest
        self._pending_alerts: dict[str, Alert] = {}
        self._flushing: list[Reading] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-iot-store")
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_lock = asyncio.Lock()
        self._wake_flush = asyncio.Event()
        self._started_at = datetime.now(UTC)
        self._started_clock = clock.monotonic()

    # --- lifecycle ---
    async def start(self) -> None:
        """Load sensors, latest states and open alerts from the store; start the MQTT subscriber (when a broker URL
        is set), the flusher and the stale-data checker."""
        self._started_at = datetime.now(UTC)
        self._started_clock = clock.monotonic()
        await self.reload_sensors()
        self.latest = await self._in_store(self.store.latest_states)
        open_alerts = await self._in_store(self.store.alerts, open_only=True)
        self.engine.restore(open_alerts, {sid: r.time for sid, r in self.latest.items()})
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="cim-iot-flush"))
        self._tasks.append(asyncio.create_task(self._housekeeping_loop(), name="cim-iot-housekeeping"))
        if self.mqtt.url:
            self.mqtt_status = MqttStatus(url=self.mqtt.url, topic=self.mqtt.topic, client_id=self.options.client_id)
            self._tasks.append(
                asyncio.create_task(
                    run_subscriber(
                        self.mqtt_status,
                        self.ingest_message,
                        min_backoff=self.options.min_backoff,
                        max_backoff=self.options.max_backoff,
                    ),
                    name="cim-iot-mqtt",
                )
            )

    async def stop(self) -> None:
        """Stop the subscriber and the loops, close the live clients, and write what is still buffered."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.hub.close()
        try:
            await self.flush()
        finally:
            self._executor.shutdown(wait=True)

    async def reload_sensors(self) -> None:
        """Read the sensors again from the store (sensors declared after the start become known)."""
        self.sensors = await self._in_store(load_sensors, self.store)
        self.engine.set_sensors(self.sensors)

    # --- ingest (on the event loop, never waits) ---
    def ingest_message(self, topic: str, payload: bytes) -> bool:
        """One MQTT message; a bad one is counted by reason and dropped. True when accepted."""
        self.received += 1
        try:
            sensor_id = self._topic_sensor[topic]
        except KeyError:
            sensor_id = sensor_of_topic(topic, self.mqtt.topic)
            if len(self._topic_sensor) < TOPIC_CACHE_SIZE:
                self._topic_sensor[topic] = sensor_id
        try:
            if sensor_id is None:
                raise Dropped(DropReason.BAD_TOPIC, f"topic {topic!r}", f"does not match {self.mqtt.topic!r}")
            obj = decode_payload(payload, max_bytes=self.options.max_payload_bytes)
            now = datetime.now(UTC)
            self._accept(self._parse(sensor_id, obj, now), now)
        except Dropped as exc:
            self.dropped[exc.reason] += 1
            return False
        return True

    def ingest_items(self, items: Sequence[Any]) -> tuple[int, dict[str, int], list[str]]:
        """Readings posted over HTTP, each ``{"sensor_id", "value", "time", "status"}``: (accepted, dropped per
        reason, the first few messages of the drops)."""
        now = datetime.now(UTC)
        accepted = 0
        dropped: Counter[str] = Counter()
        messages: list[str] = []
        for item in items:
            self.received += 1
            try:
                sensor_id = item.get("sensor_id") if isinstance(item, dict) else None
                if not isinstance(sensor_id, str) or not sensor_id:
                    raise Dropped(DropReason.WRONG_TYPE, "reading", "needs a sensor_id string")
                self._accept(self._parse(sensor_id, item, now), now)
                accepted += 1
            except Dropped as exc:
                dropped[exc.reason] += 1
                if len(messages) < 5:
                    messages.append(str(exc))
        self.dropped.update(dropped)
        return accepted, dict(dropped), messages

    def _parse(self, sensor_id: str, obj: Any, now: datetime) -> Reading:
        if sensor_id not in self.sensors:
            raise Dropped(DropReason.UNKNOWN_SENSOR, f"sensor {sensor_id!r}", "is not a sensor asset in the store")
        return parse_reading(sensor_id, obj, now=now, future_tolerance=self.options.future_tolerance)

    def _accept(self, reading: Reading, now: datetime) -> None:
        if len(self._pending) >= self.options.max_backlog:
            del self._pending[: len(self._pending) // 10]
            self.dropped[DropReason.STORE_BACKLOG] += self.options.max_backlog // 10
        self.accepted += 1
        self._pending.append(reading)
        if len(self._pending) >= self.options.flush_size:
            self._wake_flush.set()
        current = self.latest.get(reading.sensor_id)
        if current is not None and reading.time < current.time:
            return  # a late arrival goes to the history but moves neither the state nor the rules
        self.latest[reading.sensor_id] = reading
        self.hub.publish_state(reading)
        for alert in self.engine.evaluate(reading, seen_at=now):
            self._alert_changed(alert)

    def _alert_changed(self, alert: Alert) -> None:
        self._pending_alerts[alert.id] = alert
        self.hub.publish_alert(alert)
        log.info("alert %s %s", "opened" if alert.is_open else "closed", alert.message)

    # --- store ---
    async def flush(self) -> int:
        """Write the buffered readings and alert changes, one transaction each. Returns the readings written."""
        async with self._flush_lock:
            batch, self._pending = self._pending, []
            alerts, self._pending_alerts = self._pending_alerts, {}
            if not batch and not alerts:
                return 0
            self._flushing = batch
            try:
                if batch:
                    await self._in_store(self.store.append_readings, batch)
                if alerts:
                    await self._in_store(self.store.save_alerts, list(alerts.values()))
            except CimError as exc:
                self.flush_failures += 1
                log.error("cannot write %d readings: %s; kept for the next try", len(batch), exc)
                self._pending[:0] = batch
                for alert_id, alert in alerts.items():
                    self._pending_alerts.setdefault(alert_id, alert)
                return 0
            finally:
                self._flushing = []
            self.stored += len(batch)
            self.flushes += 1
            return len(batch)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_flush.wait(), self.options.flush_interval)
            self._wake_flush.clear()
            # shielded: stop() cancels this loop, and a write cut off half-way would lose its batch
            await asyncio.shield(self.flush())

    async def _housekeeping_loop(self) -> None:
        last_refresh = clock.monotonic()
        while True:
            await asyncio.sleep(self.options.stale_check_interval)
            for alert in self.engine.check_stale(datetime.now(UTC), started=self._started_at):
                self._alert_changed(alert)
            if clock.monotonic() - last_refresh >= self.options.sensor_refresh_interval:
                last_refresh = clock.monotonic()
                try:
                    await self.reload_sensors()
                except CimError as exc:
                    log.error("cannot reload sensors: %s", exc)

    async def _in_store(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    # --- queries ---
    def sensor(self, sensor_id: str) -> Sensor:
        try:
            return self.sensors[sensor_id]
        except KeyError:
            raise NotFound(f"sensor {sensor_id!r}", "is not a sensor asset in the store") from None

    async def readings(
        self, sensor_id: str, *, start: datetime | None = None, end: datetime | None = None, limit: int | None = None
    ) -> list[Reading]:
        """A sensor's history in time order: the store's and what is still buffered."""
        self.sensor(sensor_id)
        buffered = [
            r
            for r in (*self._flushing, *self._pending)
            if r.sensor_id == sensor_id and (start is None or r.time >= start) and (end is None or r.time < end)
        ]
        stored = await self._in_store(self.store.readings, sensor_id, start=start, end=end, limit=limit)
        merged = sorted({(r.time, r.value, r.status): r for r in (*stored, *buffered)}.values(), key=lambda r: r.time)
        return merged[:limit] if limit is not None else merged

    def open_alerts(self) -> list[Alert]:
        return sorted(self.engine.open.values(), key=lambda a: (a.opened_at, a.id), reverse=True)

    async def alerts(
        self, *, open_only: bool = False, sensor_id: str | None = None, limit: int | None = None
    ) -> list[Alert]:
        if open_only and sensor_id is None:
            found = self.open_alerts()
            return found[:limit] if limit is not None else found
        await self.flush()
        return await self._in_store(self.store.alerts, open_only=open_only, sensor_id=sensor_id, limit=limit)

    def stats(self) -> dict[str, Any]:
        elapsed = max(clock.monotonic() - self._started_clock, 1e-9)
        mqtt = None
        if self.mqtt_status is not None:
            s = self.mqtt_status
            mqtt = {
                "url": s.url,
                "topic": s.topic,
                "client_id": s.client_id,
                "connected": s.connected,
                "connects": s.connects,
                "disconnects": s.disconnects,
                "last_error": s.last_error,
            }
        return {
            "sensors": len(self.sensors),
            "sensors_reporting": len(self.latest),
            "received": self.received,
            "accepted": self.accepted,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
            "stored": self.stored,
            "buffered": len(self._pending) + len(self._flushing),
            "flushes": self.flushes,
            "flush_failures": self.flush_failures,
            "open_alerts": len(self.engine.open),
            "live_clients": len(self.hub.clients),
            "uptime_s": round(elapsed, 3),
            "mqtt": mqtt,
        }
