"""Live changes relayed between the servers on one PostgreSQL store, over PostgreSQL's LISTEN/NOTIFY.

Several ``cim serve`` processes on one PostGIS store share the MQTT ingest (a share group, :mod:`cim.iot.mqtt`), so
each ingests only part of the readings; a viewer connected to any of them must still see every change. Each server's
:class:`LiveRelay` collects what its own :class:`~cim.iot.live.LiveHub` publishes — states, alerts, case changes —
coalesced the way the hub coalesces them (the newest state of each sensor, the newest version of each alert and
case), and every ``interval`` sends it on one channel per store schema (``cim_live_<schema>``), as notifications of
at most :data:`MAX_PAYLOAD` bytes (PostgreSQL refuses a payload of 8,000 bytes or more), all of a tick in one
statement. Every server LISTENs on the channel and hands what the others sent to ``on_remote``; its own
notifications, tagged with its ``origin``, it ignores. The listening session is named after the channel
(``application_name``), so a server counts the others listening (every :data:`PEER_CHECK_S`); alone, it encodes and
sends nothing.

Rules: in a share group the broker deals a sensor's readings to any member, so each server's rule engine sees part
of them. :func:`apply_remote` keeps the servers' open alerts and last-seen times in step — an alert one server opened
is closed by whichever server sees the sensor recover, and no server raises a stale alert for a sensor another hears
from — but only as fast as the relay: two servers may open an alert on one condition within the same tick (two
rows), and a reading evaluated before another server's alert arrived does not close it (the sensor's next does).

A notification reads ``{"o": origin, "states": [state …], "alerts": [alert …], "cases": [case change …]}``, each
item as in the WebSocket's ``update`` message (:mod:`cim.iot.live`).

Delivery is best effort, as the live push itself is: PostgreSQL delivers notifications to the sessions listening
when they commit. While a relay is disconnected (the database restarts, its backend is terminated) what it would
send keeps coalescing and goes out on reconnection; what the others sent meanwhile is not seen (a viewer's snapshot
on reconnection, and the next change of each sensor, catch up). It reconnects with back-off from ``min_backoff`` to
``max_backoff`` seconds; :meth:`LiveRelay.stats` counts connections, notifications sent and received, and
reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import socket
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from cim.errors import CimError
from cim.iot.live import LiveHub, alert_dict, reading_json
from cim.iot.rules import RuleEngine
from cim.iot.spool import redact
from cim.model import Alert, Reading

log = logging.getLogger(__name__)

#: Largest notification payload sent, in bytes (PostgreSQL's limit is 8,000; some room for the envelope).
MAX_PAYLOAD = 7_900
CONNECT_TIMEOUT_S = 5
#: Seconds between counts of the other servers listening (a server that starts is relayed to within this).
PEER_CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class RemoteChanges:
    """What another server's hub published in one tick (one notification), items as the WebSocket sends them."""

    origin: str
    states: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)


def channel_for(schema: str) -> str:
    """The channel of a store schema; a name that would pass PostgreSQL's 63 bytes is shortened with a digest.

    >>> channel_for("shanghai"), channel_for("s" * 60)[:20], len(channel_for("s" * 60))
    ('cim_live_shanghai', 'cim_live_ssssssssss_', 40)
    """
    name = f"cim_live_{schema}"
    if len(name) <= 63:
        return name
    return f"cim_live_{schema[:10]}_{hashlib.sha256(schema.encode()).hexdigest()[:20]}"


def conninfo_and_schema(store_url: str) -> tuple[str, str]:
    """(libpq URL, schema) of a PostgreSQL store URL (``?schema=`` is the store's own parameter).

    >>> conninfo_and_schema("postgresql://u@db:5432/cim?schema=shanghai&sslmode=require")
    ('postgresql://u@db:5432/cim?sslmode=require', 'shanghai')
    """
    parts = urlsplit(store_url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    return urlunsplit(parts._replace(query=urlencode(query))), schema


def chunked(origin: str, states: list[str], alerts: list[str], cases: list[str]) -> Iterator[str]:
    """Notification payloads of at most :data:`MAX_PAYLOAD` bytes holding the items (JSON texts, ASCII: json.dumps
    escapes the rest) in order. An item too large for any payload is left out (the caller counts it).

    >>> [json.loads(p)["states"] for p in chunked("p1", ['{"a": 1}', '{"b": 2}'], [], [])]
    [[{'a': 1}, {'b': 2}]]
    >>> len(list(chunked("p1", ['"' + "x" * 3000 + '"'] * 5, [], [])))
    3
    """
    head = '{"o": ' + json.dumps(origin)
    kinds = (("states", states), ("alerts", alerts), ("cases", cases))
    current: dict[str, list[str]] = {name: [] for name, _ in kinds}
    size = len(head) + 1

    def payload() -> str:
        parts = [f'"{name}": [' + ", ".join(items) + "]" for name, items in current.items() if items]
        return head + ", " + ", ".join(parts) + "}"

    for name, items in kinds:
        for text in items:
            cost = len(text) + len(name) + 8  # the item, its comma, and maybe its list's name and brackets
            if len(head) + cost + 1 > MAX_PAYLOAD:
                continue
            if size + cost > MAX_PAYLOAD:
                yield payload()
                current = {n: [] for n, _ in kinds}
                size = len(head) + 1
            current[name].append(text)
            size += cost
    if any(current.values()):
        yield payload()


class LiveRelay:
    """Relays this server's live changes to the other servers on the store at ``store_url``, and theirs to
    ``on_remote``. ``await run()`` until cancelled; ``offer_*`` never wait."""

    def __init__(
        self,
        store_url: str,
        *,
        on_remote: Callable[[RemoteChanges], object],
        interval: float = 0.05,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        origin: str | None = None,
    ) -> None:
        self._conninfo, schema = conninfo_and_schema(store_url)
        self.channel = channel_for(schema)
        self.origin = origin or f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{os.urandom(3).hex()}"
        self.on_remote = on_remote
        self.interval = interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.states: dict[str, Reading] = {}
        self.alerts: dict[str, Alert] = {}
        self.cases: dict[str, str] = {}
        self._unsent: list[str] = []  # payloads of a tick whose sending failed: first on reconnection
        self._wake = asyncio.Event()
        self.connected = False
        self.connects = 0
        self.reconnects = 0
        self.sent = 0  # notifications
        self.received = 0  # notifications of the other servers
        self.oversize = 0  # items larger than a notification, not relayed
        self.bad = 0  # notifications that could not be read
        self.last_error: str | None = None
        self.listener_pid: int | None = None  # the backend of the listening connection
        self.peers = 0  # other servers listening on the channel, as last counted
        self._peers_counted = 0.0

    # --- out (on the event loop, never waits) ---
    def offer_state(self, reading: Reading) -> None:
        self.states[reading.sensor_id] = reading
        self._wake.set()

    def offer_alert(self, alert: Alert) -> None:
        self.alerts[alert.id] = alert
        self._wake.set()

    def offer_case(self, change: dict[str, Any]) -> None:
        self.cases[str(change["id"])] = json.dumps(change, default=str)
        self._wake.set()

    def _take_payloads(self) -> list[str]:
        states, self.states = self.states, {}
        alerts, self.alerts = self.alerts, {}
        cases, self.cases = self.cases, {}
        items = (
            [reading_json(r) for r in states.values()],
            [json.dumps(alert_dict(a)) for a in alerts.values()],
            list(cases.values()),
        )
        largest = MAX_PAYLOAD - len(self.origin) - 40  # what fits beside the envelope
        fitting = tuple([text for text in group if len(text) <= largest] for group in items)
        self.oversize += sum(map(len, items)) - sum(map(len, fitting))
        return list(chunked(self.origin, *fitting))

    # --- the connection ---
    async def run(self) -> None:
        """Connect, listen and send until cancelled; reconnect with back-off when the connection is lost."""
        backoff = self.min_backoff
        while True:
            try:
                await self._session()
            except (psycopg.Error, OSError) as exc:
                self.last_error = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            if self.connected:
                backoff = self.min_backoff
            self.connected = False
            self.reconnects += 1
            log.warning("live relay on %s — %s; reconnecting in %.2f s", self.channel, self.last_error, backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.0))
            backoff = min(backoff * 2, self.max_backoff)

    async def _connect(self, application_name: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name=application_name
        )

    async def _session(self) -> None:
        # the listening session is named after the channel, so a server can tell whether any other listens
        async with await self._connect(self.channel) as listener, await self._connect("cim_live_sender") as sender:
            await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.listener_pid = listener.info.backend_pid
            self.connected = True
            self.connects += 1
            self.last_error = None
            log.info("live relay listening on %s as %s", self.channel, self.origin)
            receiving = asyncio.create_task(self._receive(listener))
            try:
                await self._send(sender, receiving)
            finally:
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, psycopg.Error, OSError):
                    await receiving

    async def _receive(self, listener: psycopg.AsyncConnection[Any]) -> None:
        async for notify in listener.notifies():
            self._deliver(notify.payload)

    def _deliver(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin = message["o"]
        except (ValueError, KeyError, TypeError):
            self.bad += 1
            return
        if origin == self.origin:
            return
        self.received += 1
        changes = RemoteChanges(
            origin=str(origin),
            states=message.get("states", []),
            alerts=message.get("alerts", []),
            cases=message.get("cases", []),
        )
        try:
            self.on_remote(changes)
        except Exception:  # another server's odd message must not stop the relay
            self.bad += 1
            log.exception("live relay: a change from %s could not be applied", origin)

    async def _count_peers(self, sender: psycopg.AsyncConnection[Any]) -> int:
        """Other servers listening on the channel (sessions named after it), counted at most every
        :data:`PEER_CHECK_S` seconds: with none, a tick's changes are dropped unencoded (a lone server pays nothing)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._peers_counted >= PEER_CHECK_S:
            cursor = await sender.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND pid <> %s "
                "AND datname = current_database()",
                [self.channel, self.listener_pid],
            )
            row = await cursor.fetchone()
            self.peers = int(row[0]) if row else 0
            self._peers_counted = loop.time()
        return self.peers

    async def _send(self, sender: psycopg.AsyncConnection[Any], receiving: asyncio.Task[None]) -> None:
        """Every ``interval`` while there are changes: all of them in one statement; until the listener fails."""
        statement = "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"
        self._peers_counted = 0.0
        while True:
            if not self._unsent:
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({wake, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if receiving.done():
                    wake.cancel()
                    receiving.result()  # the listener's error, if it failed
                    raise psycopg.OperationalError("the listening connection ended")
                await asyncio.sleep(self.interval)  # let the tick's changes gather
                self._wake.clear()
                if not await self._count_peers(sender):
                    self.states, self.alerts, self.cases = {}, {}, {}
                    continue
                self._unsent = self._take_payloads()
            if self._unsent:
                await sender.execute(statement, [self.channel, self._unsent])
                self.sent += len(self._unsent)
                self._unsent = []

    def stats(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "origin": self.origin,
            "connected": self.connected,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "sent": self.sent,
            "received": self.received,
            "peers": self.peers,
            "oversize": self.oversize,
            "bad": self.bad,
            "last_error": self.last_error,
        }


def apply_remote(
    changes: RemoteChanges,
    *,
    latest: MutableMapping[str, Reading],
    sensors: Mapping[str, object],
    engine: RuleEngine,
    hub: LiveHub,
) -> None:
    """What another server on the store ingested, applied to this one: its states move the ``latest`` state (when
    newer) and the sensors' last-seen times (so no stale alert here for a sensor another server hears from); its
    alerts join or leave the engine's open ones (so whichever server sees a sensor recover closes its alert); all of
    it goes to this server's live clients. Nothing of it is stored or relayed again: its server does that."""
    now = datetime.now(UTC)
    states: dict[str, str] = {}
    for item in changes.states:
        try:
            reading = Reading(
                sensor_id=item["sensor_id"],
                time=datetime.fromisoformat(item["time"]),
                value=item.get("value"),
                status=item.get("status"),
            )
        except (KeyError, TypeError, ValueError, CimError):
            continue
        current = latest.get(reading.sensor_id)
        if current is not None and reading.time < current.time:
            # older than what this server already pushed (its own newer reading overtook the relay): pushed now, it
            # would move every client of this server back to a stale state until the sensor's next reading
            continue
        if reading.sensor_id in sensors:
            latest[reading.sensor_id] = reading
            engine.last_seen[reading.sensor_id] = now
        states[reading.sensor_id] = json.dumps(item)
    alerts: dict[str, str] = {}
    for item in changes.alerts:
        with contextlib.suppress(KeyError, TypeError, ValueError, CimError):
            adopt_alert(engine, item)
            alerts[str(item["id"])] = json.dumps(item)
    cases = {str(item["id"]): json.dumps(item) for item in changes.cases if isinstance(item, dict) and "id" in item}
    hub.publish_remote(states, alerts, cases)


def adopt_alert(engine: RuleEngine, item: dict[str, Any]) -> None:
    """Another server's alert change (as :func:`~cim.iot.live.alert_dict` gives it) into ``engine``'s open alerts,
    keyed by rule family and asset as the engine keys them (:meth:`RuleEngine.adopt`); its server saves it."""
    closed_at = item.get("closed_at")
    details = item.get("details")
    alert = Alert(
        id=item["id"],
        rule=item["rule"],
        sensor_id=item["sensor_id"],
        asset_id=item.get("asset_id"),
        opened_at=datetime.fromisoformat(item["opened_at"]),
        closed_at=datetime.fromisoformat(closed_at) if closed_at else None,
        severity=item.get("severity", "warning"),
        message=item.get("message", ""),
        value=item.get("value"),
        details={k: v for k, v in details.items() if v is not None} if isinstance(details, dict) else {},
    )
    engine.adopt(alert)
