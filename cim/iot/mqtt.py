"""The MQTT side of the ingest: one subscriber with a persistent session that reconnects with back-off.

The session is persistent (MQTT 3.1.1 ``clean_session=False`` and a fixed client id), and the subscription is QoS 1,
so while the server is away the broker queues what the sensors publish and hands it over on reconnection. paho
acknowledges a message (PUBACK) once it has handed it to this process; from there the service holds it in memory
until its next flush to the store (``flush_interval``), so a *crash* of the server can lose at most that window —
a broker restart or a network drop loses nothing.

aiomqtt (over paho) is extended here, not replaced, because a plain ``async for message in client.messages`` loop
drains a Mosquitto queue far slower than ``mosquitto_sub`` does. A profile of that loop (``cProfile``, 100,000
QoS-1 messages, bench/iot_bench.py's broker) put 21% of the time in ``socket.send`` — paho writes every 4-byte PUBACK
with a system call of its own, and each wakes the broker — and most of the rest in event-loop turns: paho reads one
packet per reader callback with three or four ``recv`` calls (command byte, each length byte, body), and aiomqtt
then copies each message into its own type, puts it on an ``asyncio.Queue`` and starts a task per message to get it
back. :class:`IngestClient` keeps aiomqtt's connection handling and paho's protocol, and changes three things:

* paho's socket is a :class:`BufferedSocket`: reads come from a 64 KiB buffer, and aiomqtt's reader callback keeps
  parsing while that buffer holds bytes (its ``pending()`` hook, meant for TLS), so one callback handles everything
  the kernel had;
* the PUBACKs paho queues during one event-loop turn leave in one ``send`` at the end of it;
* each message goes straight to ``on_message`` inside paho's callback, on the event loop, before paho acknowledges
  it — no copy, no queue, no task.

The before/after figures are in bench/iot_bench.py's output (it runs a plain aiomqtt loop, this client with a no-op
callback, ``mosquitto_sub`` and the whole service side by side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as paho

from cim.errors import InvalidInput

log = logging.getLogger(__name__)

#: Bytes read from the broker's socket at a time (paho asks for 1 to a few bytes per call).
READ_BUFFER_BYTES = 64 * 1024
#: Seconds to wait for the broker's SUBACK (it may queue behind the session's backlog).
SUBSCRIBE_TIMEOUT = 60.0


@dataclass(slots=True)
class MqttStatus:
    url: str
    topic: str
    client_id: str
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None
    callback_errors: int = 0


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """(host, port) of ``mqtt://host[:port]``.

    >>> parse_mqtt_url("mqtt://127.0.0.1:1884")
    ('127.0.0.1', 1884)
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise InvalidInput(f"MQTT URL {url!r}", "must read mqtt://HOST[:PORT] (TLS and websockets are not supported)")
    return parts.hostname, parts.port or 1883


class BufferedSocket:
    """A connected, non-blocking TCP socket as paho uses it, with a read buffer and writes gathered per loop turn.

    Reads: ``recv(n)`` serves from a buffer filled by one ``recv`` of :data:`READ_BUFFER_BYTES`; ``pending()`` says
    how much is buffered (aiomqtt's reader callback calls paho again while it is not zero). The kernel is read at
    most once per event-loop turn (a second read in the same turn answers ``BlockingIOError``, and the level-
    triggered reader fires again next turn), so a burst of a million queued messages is handled 64 KiB at a time
    between the other tasks — the flush, the live push, HTTP — instead of in one callback. End of stream and
    ``BlockingIOError`` pass through unchanged, as paho expects.

    Writes made on the event loop's thread are appended to a buffer that one ``send`` empties at the end of the
    loop turn (``call_soon``), so the PUBACKs of a burst leave together; a partial send retries shortly after, and a
    failed one is raised to paho on its next ``recv`` or ``send`` (the broker then re-delivers what it did not see
    acknowledged: QoS 1 is at least once). ``close()`` sends what is still buffered first, so a clean disconnect
    acknowledges everything handled. Writes from another thread (none in aiomqtt today) go straight out.
    """

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        self._sock = sock
        self._loop = loop
        self._loop_thread = loop_thread
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        self._flush_scheduled = False
        self._error: OSError | None = None
        self._read_this_turn = False

    def recv(self, size: int) -> bytes:
        if self._error is not None:
            raise self._error
        start = self._rpos
        if start >= len(self._rbuf):
            if self._read_this_turn:  # one read of the kernel per loop turn, so a long burst cannot starve the loop
                raise BlockingIOError
            if threading.get_ident() == self._loop_thread:
                self._read_this_turn = True
                self._loop.call_soon(self._next_turn)
            data = self._sock.recv(max(size, READ_BUFFER_BYTES))
            if len(data) <= size:
                return bytes(data)
            self._rbuf, start = data, 0
        end = min(start + size, len(self._rbuf))
        self._rpos = end
        return self._rbuf[start:end]

    def _next_turn(self) -> None:
        self._read_this_turn = False

    def pending(self) -> int:
        return len(self._rbuf) - self._rpos

    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self._error is not None:
            raise self._error
        if threading.get_ident() != self._loop_thread:
            return int(self._sock.send(data))
        self._wbuf += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return len(data)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._wbuf or self._error is not None:
            return
        try:
            sent = self._sock.send(self._wbuf)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._error = exc
            self._wbuf.clear()
            return
        del self._wbuf[:sent]
        if self._wbuf:
            self._flush_scheduled = True
            self._loop.call_later(0.001, self._flush)

    def close(self) -> None:
        if self._wbuf and self._error is None:
            with contextlib.suppress(OSError):
                self._sock.send(self._wbuf)
            self._wbuf.clear()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:  # fileno, setblocking, setsockopt … of the socket itself
        return getattr(self._sock, name)


class IngestClient(aiomqtt.Client):
    """An :class:`aiomqtt.Client` that hands each received message to ``on_message(topic, payload)`` at once, on
    the event loop, instead of queueing it for ``client.messages``, over a :class:`BufferedSocket`.

    ``on_message`` must not block and should not raise (an exception is logged and counted in ``status``; the
    message is still acknowledged). Iterating ``client.messages`` still ends with :class:`aiomqtt.MqttError` when
    the connection is lost, which is how :func:`run_subscriber` waits.
    """

    def __init__(
        self, *args: Any, on_message: Callable[[str, bytes], object], status: MqttStatus, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._deliver = on_message
        self._status = status
        loop, thread = asyncio.get_running_loop(), threading.get_ident()
        protocol = self._client
        create_socket = protocol._create_socket
        # paho builds its socket in _create_socket() on each (re)connect; wrap what it builds
        protocol._create_socket = lambda: BufferedSocket(create_socket(), loop, thread)  # type: ignore[method-assign]

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            payload = message.payload
            self._deliver(message.topic, payload if isinstance(payload, bytes) else bytes(payload))
        except Exception:
            self._status.callback_errors += 1
            log.exception("MQTT message on %r could not be handled", message.topic)


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
            async with IngestClient(
                host,
                port,
                identifier=status.client_id,
                clean_session=False,
                protocol=aiomqtt.ProtocolVersion.V311,
                keepalive=15,
                timeout=5,
                on_message=on_message,
                status=status,
            ) as client:
                # a persistent session's backlog starts flowing before the SUBACK and is ingested as it comes, so the
                # SUBACK may wait behind many messages: give it longer than a plain request
                await client.subscribe(status.topic, qos=1, timeout=SUBSCRIBE_TIMEOUT)
                status.connected = True
                status.connects += 1
                status.last_error = None
                backoff = min_backoff
                log.info("MQTT connected to %s, subscribed to %s", status.url, status.topic)
                async for _ in client.messages:  # never yields: IngestClient delivers; this ends on disconnection
                    pass
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
