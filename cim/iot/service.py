"""The IoT service: sensors, latest state, batched history, rules and alerts, live push — one object the app's
lifespan starts and stops.

Everything that changes state runs on the event loop, synchronously and without awaiting, so a reading moves the
latest state, the rules and the live push in one step. The store is reached only from a single worker thread (it is
blocking, and one DuckDB connection serves one statement at a time): readings and alert changes are buffered and
written every ``flush_interval`` seconds or ``flush_size`` readings, one transaction per batch.

No acknowledged reading is lost. Accepted readings are committed to the write-ahead :class:`~cim.iot.spool.Spool`
(SQLite, WAL) before they are acknowledged: :meth:`IotService.commit` runs once per event-loop turn of MQTT input,
before that turn's PUBACKs leave, and at the end of each ``POST /iot/readings``, before its 202. The flusher writes
the spooled readings to the store and only then deletes them from the spool; at start the service replays what the
spool still holds (at least once: a crash between the store's commit and the spool's delete writes that batch
twice). A flush that fails, for whatever reason, is counted in ``flush_failures``, logged (without secrets) and
retried with back-off (the store reconnects by itself: PostGIS through its connection pool). Past
``max_backlog`` readings not yet in the store new readings are refused — HTTP 503, and over MQTT they are not
acknowledged (the broker keeps them for the session) — never dropped once acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time as clock
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from cim.errors import CimError, NotFound, StoreUnavailable
from cim.iot.live import LiveHub
from cim.iot.mqtt import RECONNECT_MAX, RECONNECT_MIN, Backpressure, MqttStatus, client_id_for, run_subscriber
from cim.iot.payload import (
    FUTURE_TOLERANCE,
    MAX_AGE,
    MAX_PAYLOAD_BYTES,
    Dropped,
    DropReason,
    decode_payload,
    parse_reading,
    sensor_of_topic,
)
from cim.iot.relay import LiveRelay, RemoteChanges, apply_remote
from cim.iot.rules import Rule, RuleEngine
from cim.iot.sensors import Sensor, load_sensors
from cim.iot.spool import DEFAULT_SYNCHRONOUS, Spool, redact, spool_path_for
from cim.model import Alert, Reading
from cim.settings import MqttSettings
from cim.store import Store

log = logging.getLogger(__name__)
#: Topics whose sensor id is remembered (one per sensor is the norm; the bound keeps junk topics from growing it).
TOPIC_CACHE_SIZE = 200_000
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class IotOptions:
    """Tuning of the service; the defaults suit a city demo on 2 cores."""

    client_id: str | None = None  # None: CIM_MQTT_CLIENT_ID, else derived from host name and store (client_id_for)
    flush_interval: float = 0.25
    flush_size: int = 20_000
    max_backlog: int = 1_000_000  # readings accepted but not yet in the store; past it new ones are refused
    flush_min_backoff: float = 0.05
    flush_max_backoff: float = 1.0
    spool_synchronous: str = DEFAULT_SYNCHRONOUS
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    future_tolerance: timedelta = FUTURE_TOLERANCE
    max_age: timedelta = MAX_AGE  # readings stamped further in the past are dropped (too_old)
    stale_check_interval: float = 1.0
    sensor_refresh_interval: float = 30.0
    retention_interval: float = 3600.0  # how often the history past its retention is dropped (Store.apply_retention)
    live_min_interval: float = 0.05
    min_backoff: float = RECONNECT_MIN  # MQTT reconnection
    max_backoff: float = RECONNECT_MAX


class IotService:
    """Live sensor state for one store. ``await start()`` in the lifespan, ``await stop()`` at its end."""

    def __init__(
        self,
        store: Store,
        mqtt: MqttSettings | None = None,
        *,
        rules: Iterable[Rule] = (),
        options: IotOptions | None = None,
        spool_path: str | Path | None = None,
        relay_url: str | None = None,
    ) -> None:
        """``spool_path``: the write-ahead spool (default beside the store, :func:`~cim.iot.spool.spool_path_for`; in
        a share group, one per client id). ``relay_url``: the PostgreSQL store's URL (with its credentials), to relay
        live changes to the other servers on it (:mod:`cim.iot.relay`); None: this server's clients only."""
        self.store = store
        self.mqtt = mqtt or MqttSettings()
        self.options = options or IotOptions()
        self.client_id = self._client_id()
        shared = self.client_id if self.mqtt.share_group else None
        self.spool_path = Path(spool_path) if spool_path is not None else spool_path_for(store.url, client_id=shared)
        self.spool: Spool | None = None
        self.engine = RuleEngine(rules)
        self.hub = LiveHub(min_interval=self.options.live_min_interval)
        self.relay: LiveRelay | None = None
        if relay_url is not None:
            self.relay = LiveRelay(
                relay_url, on_remote=self._on_remote, interval=max(self.options.live_min_interval, 0.01)
            )
            self.hub.relay = self.relay
        self.sensors: dict[str, Sensor] = {}
        self.latest: dict[str, Reading] = {}
        self.received = 0
        self.accepted = 0
        self.stored = 0
        self.flushes = 0
        self.flush_failures = 0
        self.dropped: Counter[str] = Counter()
        self.mqtt_status: MqttStatus | None = None
        self._unspooled: list[Reading] = []  # accepted, not yet in the spool (nor acknowledged)
        self._pending: list[Reading] = []  # in the spool, not yet in the store
        self._pending_upto = 0  # spool id of the last reading in _pending
        self._flush_backoff = 0.0
        self._topic_sensor: dict[str, str | None] = {}  # topic → sensor id: splitting it cost 6% of the ingest
        self._pending_alerts: dict[str, Alert] = {}
        #: Called on the event loop with every alert opened or closed (the case service listens: cim.api.app).
        self.alert_listeners: list[Callable[[Alert], None]] = []
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
        self.spool = Spool(self.spool_path, synchronous=self.options.spool_synchronous)
        self._pending, self._pending_upto = self.spool.load()
        if self._pending:
            log.warning("IoT spool — replaying %d readings not yet in the store", len(self._pending))
            await self.flush()
        await self.reload_sensors()
        self.latest = await self._in_store(self.store.latest_states)
        open_alerts = await self._in_store(self.store.alerts, open=True)
        self.engine.restore(open_alerts, {sid: r.time for sid, r in self.latest.items()})
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="cim-iot-flush"))
        self._tasks.append(asyncio.create_task(self._housekeeping_loop(), name="cim-iot-housekeeping"))
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="cim-iot-live-relay"))
        if self.mqtt.url:
            self.mqtt_status = MqttStatus(
                url=self.mqtt.url, topic=self.mqtt.topic, client_id=self.client_id, share_group=self.mqtt.share_group
            )
            self._tasks.append(
                asyncio.create_task(
                    run_subscriber(
                        self.mqtt_status,
                        self.ingest_message,
                        on_turn=self.commit,
                        can_take=self.has_room,
                        settings=self.mqtt,
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
            with contextlib.suppress(CimError):
                self.commit()
            await self.flush()
        finally:
            self._executor.shutdown(wait=True)
            if self.spool is not None:
                self.spool.close()

    def _client_id(self) -> str:
        """The MQTT client id: the options', else ``CIM_MQTT_CLIENT_ID``, else derived from host and store. In a share
        group the derived one gets the process id, so two servers on one host and store differ — but then a restarted
        server does not resume its session: a server of a group should be given its id (the app derives it from its
        HTTP port, which is both unique on the host and the same at each restart)."""
        if self.options.client_id or self.mqtt.client_id:
            return str(self.options.client_id or self.mqtt.client_id)
        derived = client_id_for(self.store.url)
        if self.mqtt.share_group:
            log.warning(
                "MQTT share group %s without a client id: using %s-%d", self.mqtt.share_group, derived, os.getpid()
            )
            return f"{derived}-{os.getpid()}"
        return derived

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
        if not self.has_room():
            raise Backpressure("IoT ingest", f"{self.options.max_backlog:,} readings wait for the store")
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
        reason, the first few messages of the drops). The accepted ones are in the spool when it returns; when the
        backlog is full or the spool cannot be written, :class:`Backpressure` is raised and nothing is accepted."""
        if not self.has_room(len(items)):
            raise Backpressure("IoT ingest", f"{self.options.max_backlog:,} readings wait for the store")
        now = datetime.now(UTC)
        mine = len(self._unspooled)  # this request's readings start here
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
        try:
            self.commit()
        except StoreUnavailable as exc:
            del self._unspooled[mine:]  # answered 503: the sender keeps them
            raise Backpressure("IoT ingest", f"the readings could not be made durable: {exc.why}") from None
        return accepted, dict(dropped), messages

    def _parse(self, sensor_id: str, obj: Any, now: datetime) -> Reading:
        sensor = self.sensors.get(sensor_id)
        if sensor is None:
            raise Dropped(DropReason.UNKNOWN_SENSOR, f"sensor {sensor_id!r}", "is not a sensor asset in the store")
        options = self.options
        return parse_reading(
            sensor_id,
            obj,
            now=now,
            future_tolerance=options.future_tolerance,
            max_age=options.max_age,
            unit=sensor.unit,
        )

    def has_room(self, readings: int = 1) -> bool:
        """Whether ``readings`` more fit under ``max_backlog`` (readings accepted but not yet in the store)."""
        return len(self._unspooled) + len(self._pending) + len(self._flushing) + readings <= self.options.max_backlog

    def commit(self) -> None:
        """Make the accepted readings durable in the spool, in one transaction; then they may be acknowledged.
        Raises :class:`~cim.errors.StoreUnavailable` when the spool cannot be written (nothing is acknowledged)."""
        batch = self._unspooled
        if not batch:
            return
        if self.spool is None:
            raise StoreUnavailable("IoT spool", "is not open: start the service first")
        self._pending_upto = self.spool.append(batch)
        self._unspooled = []
        self._pending += batch
        if len(self._pending) >= self.options.flush_size:
            self._wake_flush.set()

    def _accept(self, reading: Reading, now: datetime) -> None:
        self.accepted += 1
        self._unspooled.append(reading)
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
        for listener in self.alert_listeners:
            try:
                listener(alert)
            except Exception:  # a listener's bug must not stop the readings
                log.exception("alert listener failed on %s", alert.id)
        log.info("alert %s %s", "opened" if alert.is_open else "closed", alert.message)

    # --- store ---
    async def flush(self) -> int:
        """Write the buffered readings and alert changes, one transaction each. Returns the readings written."""
        async with self._flush_lock:
            batch, self._pending = self._pending, []
            upto = self._pending_upto
            alerts, self._pending_alerts = self._pending_alerts, {}
            if not batch and not alerts:
                return 0
            self._flushing = batch
            try:
                if batch:
                    await self._in_store(self.store.append_readings, batch)
                    if self.spool is not None:
                        self.spool.delete_upto(upto)
                    self._flushing = []
                    self.stored += len(batch)
                if alerts:
                    await self._in_store(self.store.save_alerts, list(alerts.values()))
            except Exception as exc:  # whatever the driver raises: nothing acknowledged may be dropped silently
                self.flush_failures += 1
                self._pending[:0] = self._flushing
                for alert_id, alert in alerts.items():
                    self._pending_alerts.setdefault(alert_id, alert)
                self._flush_backoff = min(
                    max(self._flush_backoff * 2, self.options.flush_min_backoff), self.options.flush_max_backoff
                )
                log.error(
                    "IoT flush of %d readings — failed (%s: %s); kept in the spool, retrying in %.2f s",
                    len(self._flushing),
                    type(exc).__name__,
                    redact(str(exc).strip().splitlines()[-1] if str(exc).strip() else ""),
                    self._flush_backoff,
                )
                return 0
            finally:
                self._flushing = []
            if self._flush_backoff:
                log.info("IoT flush — the store takes readings again")
            self._flush_backoff = 0.0
            self.flushes += 1
            return len(batch)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_flush.wait(), self.options.flush_interval)
            self._wake_flush.clear()
            # shielded: stop() cancels this loop, and a write cut off half-way would lose its batch
            await asyncio.shield(self.flush())
            if self._flush_backoff:
                await asyncio.sleep(self._flush_backoff)

    async def _housekeeping_loop(self) -> None:
        last_refresh = clock.monotonic()
        last_retention = clock.monotonic()  # first after one interval: a short run leaves old history alone
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
            if clock.monotonic() - last_retention >= self.options.retention_interval:
                last_retention = clock.monotonic()
                await self.apply_retention()

    async def apply_retention(self) -> dict[str, int]:
        """Drop the history past the store's retention (what went, per table); a failure is logged, not raised: the
        next hour tries again."""
        try:
            dropped = await self._in_store(self.store.apply_retention, datetime.now(UTC))
        except CimError as exc:
            log.error("cannot apply the history's retention: %s", exc)
            return {}
        if any(dropped.values()):
            log.info("history retention dropped %s", ", ".join(f"{n:,} {what}" for what, n in dropped.items() if n))
        return dropped

    async def _in_store(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    # --- the other servers on the store ---
    def _on_remote(self, changes: RemoteChanges) -> None:
        """What another server on the store ingested, into this one's latest state, open alerts and live clients."""
        apply_remote(changes, latest=self.latest, sensors=self.sensors, engine=self.engine, hub=self.hub)

    # --- queries ---
    def sensor(self, sensor_id: str) -> Sensor:
        try:
            return self.sensors[sensor_id]
        except KeyError:
            raise NotFound(f"sensor {sensor_id!r}", "is not a sensor asset in the store") from None

    async def readings(
        self,
        sensor_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Reading]:
        """A sensor's history, newest first unless ``newest_first=False``: the store's and what is still buffered
        (the first ``limit`` of each, merged in that order and cut to ``limit``)."""
        self.sensor(sensor_id)
        buffered = [
            r
            for r in (*self._flushing, *self._pending, *self._unspooled)
            if r.sensor_id == sensor_id and (start is None or r.time >= start) and (end is None or r.time < end)
        ]
        stored = await self._in_store(
            self.store.readings, sensor_id, start=start, end=end, limit=limit, newest_first=newest_first
        )
        unique = {(r.time, r.value, r.status): r for r in (*stored, *buffered)}.values()
        merged = sorted(unique, key=lambda r: r.time, reverse=newest_first)
        return merged[:limit] if limit is not None else merged

    def open_alerts(self) -> list[Alert]:
        return sorted(self.engine.open.values(), key=lambda a: (a.opened_at, a.id), reverse=True)

    async def alerts(
        self,
        *,
        open: bool | None = None,
        sensor_id: str | None = None,
        asset_id: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Alerts newest first: all (``open=None``), the open ones or the closed ones; of a sensor, of an asset."""
        if open and sensor_id is None and asset_id is None:
            found = self.open_alerts()
            return found[:limit] if limit is not None else found
        await self.flush()
        return await self._in_store(self.store.alerts, open=open, sensor_id=sensor_id, asset_id=asset_id, limit=limit)

    @property
    def flushes_failing(self) -> bool:
        """Whether the last write of readings to the store failed (they wait in the spool; it is retried)."""
        return self._flush_backoff > 0

    def stats(self) -> dict[str, Any]:
        elapsed = max(clock.monotonic() - self._started_clock, 1e-9)
        mqtt = None
        if self.mqtt_status is not None:
            s = self.mqtt_status
            mqtt = {
                "url": redact(s.url),
                "topic": s.topic,
                "client_id": s.client_id,
                "subscription": s.subscription,
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
            "buffered": len(self._pending) + len(self._flushing) + len(self._unspooled),
            "spool_depth": self.spool.depth() if self.spool is not None else 0,
            "flushes": self.flushes,
            "flush_failures": self.flush_failures,
            "open_alerts": len(self.engine.open),
            "rule_unit_mismatches": self.engine.unit_mismatches,
            "live_clients": len(self.hub.clients),
            "uptime_s": round(elapsed, 3),
            "mqtt": mqtt,
            "live_relay": self.relay.stats() if self.relay is not None else None,
        }
