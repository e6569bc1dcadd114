"""Fan-out of state and alert changes to WebSocket clients, coalesced per client.

Publishing is a dict assignment and never waits. Every ``min_interval`` what changed is built into one message,
encoded once for all clients. A client still busy sending the previous one (a slow client) merges the changes into
a backlog of its own that keeps only the newest state of each sensor and the newest version of each alert, so it
costs memory bounded by the number of sensors and never blocks the ingest or the other clients. Messages read:

``{"type": "update", "states": [{"sensor_id", "time", "value", "status"} …], "alerts": [{alert} …],
"cases": [{case change} …]}`` — ``cases`` only when some case changed (:meth:`LiveHub.publish_case`).

With several servers on one PostgreSQL store, a hub's ``relay`` (:class:`cim.iot.relay.LiveRelay`) also gets every
change published here, for the other servers' clients, and :meth:`LiveHub.publish_remote` takes theirs.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cim.model import Alert, Reading

if TYPE_CHECKING:
    from cim.iot.relay import LiveRelay


def reading_json(reading: Reading) -> str:
    return json.dumps(
        {
            "sensor_id": reading.sensor_id,
            "time": reading.time.isoformat(),
            "value": reading.value,
            "status": reading.status,
        }
    )


#: The keys of an alert's ``details`` as the API gives them (cim.api.schemas.AlertDetailsOut), None when absent.
ALERT_DETAIL_KEYS = ("quantity", "unit", "threshold", "condition", "status", "asset_name", "street", "district",
                     "message_zh")  # fmt: skip


def alert_dict(alert: Alert) -> dict[str, Any]:
    """An alert as the API and the live push give it: times to the second, in UTC, every detail key present."""
    details: dict[str, Any] = {key: alert.details.get(key) for key in ALERT_DETAIL_KEYS}
    sensors = alert.details.get("sensors")
    details["sensors"] = [str(s) for s in sensors] if isinstance(sensors, list) else [alert.sensor_id]
    return {
        "id": alert.id,
        "rule": alert.rule,
        "sensor_id": alert.sensor_id,
        "asset_id": alert.asset_id,
        "severity": alert.severity,
        "message": alert.message,
        "value": alert.value,
        "opened_at": _second(alert.opened_at),
        "closed_at": _second(alert.closed_at) if alert.closed_at else None,
        "open": alert.is_open,
        "details": details,
    }


def _second(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


class LiveClient:
    """One connected viewer: at most one shared message waiting, plus a coalesced backlog while it is slow."""

    def __init__(self) -> None:
        self.shared: str | None = None
        self.states: dict[str, str] = {}
        self.alerts: dict[str, str] = {}
        self.cases: dict[str, str] = {}
        self.closed = False
        self.sending = False
        self.sent = 0
        self._wake = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def offer(
        self, text: str, states: dict[str, str], alerts: dict[str, str], cases: dict[str, str] | None = None
    ) -> None:
        """A tick's changes: as the shared message when the client is idle, else merged into its backlog."""
        if self.shared is None and not self.sending and not self._backlog():
            self.shared = text
        else:
            self.states.update(states)
            self.alerts.update(alerts)
            self.cases.update(cases or {})
        self._wake.set()

    async def next_message(self) -> str | None:
        """The next message to send, or None once the client is closed. Calling it again means the last one went."""
        self.sending = False
        while not self.closed and self.shared is None and not self._backlog():
            self._wake.clear()
            await self._wake.wait()
        if self.closed:
            return None
        self.sending = True
        self.sent += 1
        if self.shared is not None:
            text, self.shared = self.shared, None
            return text
        states, self.states = self.states, {}
        alerts, self.alerts = self.alerts, {}
        cases, self.cases = self.cases, {}
        return update_message(states, alerts, cases)

    def _backlog(self) -> bool:
        return bool(self.states or self.alerts or self.cases)


def update_message(states: dict[str, str], alerts: dict[str, str], cases: dict[str, str] | None = None) -> str:
    return (
        '{"type": "update", "states": ['
        + ", ".join(states.values())
        + '], "alerts": ['
        + ", ".join(alerts.values())
        + "]"
        + (', "cases": [' + ", ".join(cases.values()) + "]" if cases else "")
        + "}"
    )


class LiveHub:
    """The connected clients. :meth:`publish_state` and :meth:`publish_alert` only note the change; every
    ``min_interval`` the hub's task builds one message of what changed (encoded once) and offers it to every
    client: an idle client gets that message, a client still busy sending merges it into its own backlog."""

    def __init__(self, *, min_interval: float = 0.05) -> None:
        self.min_interval = min_interval
        self.clients: set[LiveClient] = set()
        self.ticks = 0
        self._states: dict[str, str] = {}
        self._alerts: dict[str, str] = {}
        self._cases: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.relay: LiveRelay | None = None  # the other servers' clients (PostgreSQL store), else None

    def connect(self) -> LiveClient:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cim-iot-live")
        client = LiveClient()
        self.clients.add(client)
        return client

    def disconnect(self, client: LiveClient) -> None:
        client.close()
        self.clients.discard(client)

    def publish_state(self, reading: Reading) -> None:
        if self.clients:
            self._states[reading.sensor_id] = reading_json(reading)
            self._wake.set()
        if self.relay is not None:
            self.relay.offer_state(reading)

    def publish_alert(self, alert: Alert) -> None:
        if self.clients:
            self._alerts[alert.id] = json.dumps(alert_dict(alert))
            self._wake.set()
        if self.relay is not None:
            self.relay.offer_alert(alert)

    def publish_case(self, change: dict[str, Any]) -> None:
        """A case changed (``change`` holds at least its ``id``): the newest change of each case goes out."""
        if self.clients:
            self._cases[str(change["id"])] = json.dumps(change, default=str)
            self._wake.set()
        if self.relay is not None:
            self.relay.offer_case(change)

    def publish_remote(self, states: dict[str, str], alerts: dict[str, str], cases: dict[str, str]) -> None:
        """Changes another server published (JSON texts by sensor, alert and case id): to this server's clients
        only, never relayed again."""
        if self.clients and (states or alerts or cases):
            self._states.update(states)
            self._alerts.update(alerts)
            self._cases.update(cases)
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.min_interval > 0:
                await asyncio.sleep(self.min_interval)  # let the burst gather
            self._wake.clear()
            states, self._states = self._states, {}
            alerts, self._alerts = self._alerts, {}
            cases, self._cases = self._cases, {}
            if not states and not alerts and not cases:
                continue
            self.ticks += 1
            text = update_message(states, alerts, cases)
            for client in self.clients:
                client.offer(text, states, alerts, cases)

    def close(self) -> None:
        for client in list(self.clients):
            self.disconnect(client)
        if self._task is not None:
            self._task.cancel()
