"""The MQTT side of the ingest: one subscriber with a persistent session that reconnects with back-off.

The session is persistent (MQTT 3.1.1 ``clean_session=False`` and a fixed client id), and the subscription is QoS 1,
so while the server is away the broker queues what the sensors publish and hands it over on reconnection. paho
acknowledges a message (PUBACK) once it has handed it to this process; from there the service holds it in memory
until its next flush to the store (``flush_interval``), so a *crash* of the server can lose at most that window —
a broker restart or a network drop loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt

from cim.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(slots=True)
class MqttStatus:
    url: str
    topic: str
    client_id: str
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """(host, port) of ``mqtt://host[:port]``.

    >>> parse_mqtt_url("mqtt://127.0.0.1:1884")
    ('127.0.0.1', 1884)
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise InvalidInput(f"MQTT URL {url!r}", "must read mqtt://HOST[:PORT] (TLS and websockets are not supported)")
    return parts.hostname, parts.port or 1883


async def run_subscriber(
    status: MqttStatus,
    on_message: Callable[[str, bytes], object],
    *,
    min_backoff: float = 0.2,
    max_backoff: float = 10.0,
) -> None:
    """Subscribe to ``status.topic`` and hand every message to ``on_message`` until cancelled; reconnect on failure
    with exponential back-off."""
    host, port = parse_mqtt_url(status.url)
    backoff = min_backoff
    while True:
        try:
            async with aiomqtt.Client(
                host,
                port,
                identifier=status.client_id,
                clean_session=False,
                protocol=aiomqtt.ProtocolVersion.V311,
                keepalive=15,
                timeout=5,
            ) as client:
                await client.subscribe(status.topic, qos=1)
                status.connected = True
                status.connects += 1
                status.last_error = None
                backoff = min_backoff
                log.info("MQTT connected to %s, subscribed to %s", status.url, status.topic)
                async for message in client.messages:
                    payload = message.payload
                    if not isinstance(payload, bytes | bytearray):
                        payload = b"" if payload is None else str(payload).encode()
                    on_message(message.topic.value, bytes(payload))
        except aiomqtt.MqttError as exc:
            if status.connected:
                status.disconnects += 1
            status.connected = False
            status.last_error = str(exc)
            log.warning("MQTT %s: %s; retrying in %.1f s", status.url, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
        finally:
            status.connected = False
