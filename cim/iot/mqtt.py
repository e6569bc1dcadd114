"""The MQTT side of the ingest: one subscriber with a persistent session that reconnects with back-off.

The session is persistent (MQTT 3.1.1 ``clean_session=False`` and a client id stable across restarts, see
:func:`client_id_for`), and the subscription is QoS 1, so while the server is away the broker queues what the
sensors publish and hands it over on reconnection. A message is acknowledged (PUBACK) only after ``on_turn`` — the
service's commit to its write-ahead spool — has returned: the messages of one event-loop turn are delivered, the
spool commits them in one transaction, then their PUBACKs leave together. When the service cannot take more
(``can_take`` false, or :class:`Backpressure` raised from ``on_message``) or the spool cannot be written, nothing more
is acknowledged and the connection is dropped; the broker keeps the unacknowledged messages for the session and
hands them over again when the subscriber is back (it waits until there is room).

Reconnection retries every :data:`RECONNECT_MIN` … :data:`RECONNECT_MAX` seconds (well under a second after the
broker is back), because a broker queues only so much for an absent session.

Broker settings a deployment needs (Mosquitto, ``mosquitto.conf``): ``persistence true`` with a
``persistence_location`` (the session and its queue survive a broker restart; set ``autosave_interval`` low, e.g.
``autosave_interval 10``, or the queue since the last save is lost if the broker itself crashes); a
``max_queued_messages`` that holds what the sensors send during the longest outage of this server to cover (stock:
1000, i.e. one second at 1,000 readings/s — the demo sets 0, unlimited, with ``max_queued_bytes`` as the bound);
``max_inflight_messages 100`` or more. Credentials: ``mqtt://user:password@host`` or ``CIM_MQTT_USERNAME`` /
``CIM_MQTT_PASSWORD``; TLS: ``mqtts://host[:8883]`` with ``CIM_MQTT_CA_FILE`` for a private CA. The password never
appears in the stats or the logs.

Shared subscriptions (``CIM_MQTT_SHARE_GROUP``, ``cim serve --mqtt-share-group``): the servers of one group each
subscribe to ``$share/<group>/<topic>`` and the broker hands each message to one of them, so several processes on
one PostgreSQL store divide the ingest. Topics received never carry the prefix: the sensor id is read with the plain
filter. Each server keeps its own persistent session (its own client id, stable across its restarts:
:func:`client_id_for` with its HTTP port, or ``CIM_MQTT_CLIENT_ID``) and its own write-ahead spool. What Mosquitto
2.0 does with them (tested against 2.0.11 over MQTT 3.1.1, which this client speaks, and MQTT 5 with a session
expiry; tests/iot/test_shared_subscription.py):

* it deals the messages out round-robin, message by message, over *every* session subscribed to the group — the
  offline ones too: a member that is away (crashed, restarting) keeps getting its share, queued in its session, and
  none of it goes to the members still online. It gets them when it reconnects with the same client id; the
  messages sent to it but not acknowledged when it died (PUBACK not sent) are sent to it again then. So a member
  that crashed must come back under the same client id (a restart of the same ``cim serve``), or its session be
  ended (connect once with that id and a clean session), or its share waits there — and past
  ``max_queued_messages`` (stock: 1000) the broker drops the newest of them. A deployment that shares a subscription
  sets ``max_queued_messages 0`` with a ``max_queued_bytes`` bound, as below, and restarts a dead member.
* a message is stored once per group, whichever member gets it; a redelivery goes to the same session, so the store
  need only ignore a reading it already holds (PostgreSQL: readings are unique per sensor and time).

aiomqtt (over paho) is extended here, not replaced, because a plain ``async for message in client.messages`` loop
drains a Mosquitto queue far slower than ``mosquitto_sub`` does. A profile of that loop (``cProfile``, 100,000
QoS-1 messages, bench/iot_bench.py's broker) put 21% of the time in ``socket.send`` — paho writes every 4-byte PUBACK
with a system call of its own, and each wakes the broker — and most of the rest in event-loop turns: paho reads one
packet per reader callback with three or four ``recv`` calls (command byte, each length byte, body), and aiomqtt
then copies each message into its own type, puts it on an ``asyncio.Queue`` and starts a task per message to get it
back. :class:`IngestClient` keeps aiomqtt's connection handling and paho's protocol, and changes these things:

* paho's socket is a :class:`BufferedSocket`: reads come from a 64 KiB buffer, and aiomqtt's reader callback keeps
  parsing while that buffer holds bytes (its ``pending()`` hook, meant for TLS), so one callback handles everything
  the kernel had;
* the PUBACKs paho queues during one event-loop turn leave in one ``send`` at the end of it;
* each message goes straight to ``on_message`` inside paho's callback, on the event loop, before paho acknowledges
  it — no copy, no queue, no task;
* the packets already whole in that buffer are taken in one piece each and handed to paho's packet handler (paho's
  reader takes a packet in three or four ``recv`` calls, one ``loop_read`` per packet), and a PUBLISH of MQTT 3.1.1
  at QoS 0 or 1 is decoded in a few slices, delivered and acknowledged without paho's ``MQTTMessage``, its two debug
  log records, its topic matcher and its locks. A second profile (after the changes above) had these at about half
  of the service's drain time. Whatever else comes (QoS 2, MQTT 5, a malformed packet, a topic that is not UTF-8,
  a packet split across reads) takes paho's own path.

The before/after figures are in bench/iot_bench.py's output (it runs a plain aiomqtt loop, this client with a no-op
callback, ``mosquitto_sub`` and the whole service side by side). The private parts of paho and aiomqtt used here are
listed and checked in tests/iot/test_paho_seam.py, and pyproject.toml pins both to the releases tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.exception import MalformedPacket

from cim.iot.broker import Backpressure, Broker, client_id_for, parse_mqtt_url
from cim.iot.spool import redact
from cim.settings import MqttSettings

__all__ = ["Backpressure", "Broker", "IngestClient", "MqttStatus", "client_id_for", "parse_mqtt_url", "run_subscriber"]

log = logging.getLogger(__name__)

#: Bytes read from the broker's socket at a time (paho asks for 1 to a few bytes per call).
READ_BUFFER_BYTES = 64 * 1024
#: Seconds to wait for the broker's SUBACK (it may queue behind the session's backlog).
SUBSCRIBE_TIMEOUT = 60.0
#: Seconds between reconnection attempts: from the first to the longest (a refused connection costs little).
RECONNECT_MIN = 0.05
RECONNECT_MAX = 0.3


@dataclass(slots=True)
class MqttStatus:
    url: str
    topic: str  # the filter the sensor id is read with (what received topics match)
    client_id: str
    share_group: str | None = None
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None
    callback_errors: int = 0
    refusals: int = 0  # connections dropped because the ingest could not take (or make durable) more

    @property
    def subscription(self) -> str:
        """The filter subscribed to: ``$share/<group>/<topic>`` in a share group, else the topic filter.

        >>> MqttStatus(url="", topic="cim/+/state", client_id="c", share_group="cim").subscription
        '$share/cim/cim/+/state'
        """
        return f"$share/{self.share_group}/{self.topic}" if self.share_group else self.topic


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

    def take_packet(self) -> tuple[int, bytes] | None:
        """(command byte, body) of the next MQTT packet when it is whole in the buffer, taken out of it; else None
        (nothing is taken: paho then reads it piecewise, as it would have)."""
        buf, start = self._rbuf, self._rpos
        size = len(buf)
        pos, length, shift = start + 1, 0, 0
        while True:  # the remaining length: 1 to 4 bytes of 7 bits, least significant first
            if pos >= size or shift > 21:
                return None
            byte = buf[pos]
            pos += 1
            length |= (byte & 127) << shift
            shift += 7
            if not byte & 128:
                break
        end = pos + length
        if end > size:
            return None
        self._rpos = end
        return buf[start], buf[pos:end]

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


def _in_packet(command: int, packet: bytes | bytearray) -> Any:
    """paho's record of the packet being read (``Client._in_packet``), complete."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(packet),
        "packet": packet,
        "to_process": 0,
        "pos": 0,
    }


class IngestClient(aiomqtt.Client):
    """An :class:`aiomqtt.Client` that hands each received message to ``on_message(topic, payload)`` at once, on
    the event loop, instead of queueing it for ``client.messages``, over a :class:`BufferedSocket`.

    ``on_message`` must not block. It may raise :class:`Backpressure`: that message is not acknowledged and the
    connection is dropped (the broker hands it over again later); any other exception is logged and counted in
    ``status``, and the message is acknowledged (it is a bad message, not a full server). ``on_turn`` runs before any
    PUBACK leaves — once per event-loop turn for the messages of that turn — and makes them durable; when it raises,
    none of them is acknowledged and the connection is dropped. Iterating ``client.messages`` still ends with
    :class:`aiomqtt.MqttError` when the connection is lost, which is how :func:`run_subscriber` waits.
    """

    def __init__(
        self,
        *args: Any,
        on_message: Callable[[str, bytes], object],
        status: MqttStatus,
        on_turn: Callable[[], object] = lambda: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._deliver = on_message
        self._on_turn = on_turn
        self._status = status
        self._acks: list[int] = []
        self._refusing = False
        self._refused = asyncio.Event()
        self._loop = loop = asyncio.get_running_loop()
        thread = threading.get_ident()
        protocol = self._client
        create_socket = protocol._create_socket

        def buffered() -> Any:  # TLS keeps paho's own socket: an SSL socket holds decrypted bytes of its own
            sock = create_socket()
            return sock if isinstance(sock, ssl.SSLSocket) else BufferedSocket(sock, loop, thread)

        # paho builds its socket in _create_socket() on each (re)connect; wrap what it builds
        protocol._create_socket = buffered  # type: ignore[method-assign]
        self._paho_handle_publish = protocol._handle_publish
        protocol._handle_publish = self._handle_publish  # type: ignore[method-assign]
        self._paho_packet_read = protocol._packet_read
        protocol._packet_read = self._packet_read  # type: ignore[method-assign]

    def _packet_read(self) -> paho.MQTTErrorCode:
        """paho's packet reader, for the packets already whole in the :class:`BufferedSocket`: each is handed to
        paho's ``_packet_handle`` as paho's reader would (its ``_in_packet``), all of them in one call; paho's reader
        reads the rest as before (it takes a packet byte by byte, three or four calls each, and is called once per
        packet by ``loop_read``). A packet split across reads, or paho half-way through one, is left to paho."""
        protocol = self._client
        sock = protocol._sock
        if protocol._in_packet["command"] or not isinstance(sock, BufferedSocket):
            return self._paho_packet_read()
        buffered = sock  # (mypy narrows sock back to paho's type at each ``protocol._sock is sock``)
        rc = paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        handled = False
        while protocol._sock is sock and rc == paho.MQTTErrorCode.MQTT_ERR_SUCCESS:
            whole = buffered.take_packet()
            if whole is None:
                break
            handled = True
            command, body = whole
            protocol._in_packet = _in_packet(command, body if command & 0xF0 == paho.PUBLISH else bytearray(body))
            try:
                rc = protocol._packet_handle()
            except MalformedPacket as exc:
                log.debug("malformed MQTT packet: %s", exc)
                rc = paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
            protocol._in_packet = _in_packet(0, bytearray())
        if handled:
            with protocol._msgtime_mutex:
                protocol._last_bytes_received = paho.time_func()
            if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS or protocol._sock is not sock:
                return rc
        return self._paho_packet_read()

    def _handle_publish(self) -> paho.MQTTErrorCode:
        """paho's PUBLISH handler, lean for the case of every message here: MQTT 3.1.1, QoS 0 or 1, automatic
        acknowledgement, no per-topic callbacks. paho's own builds an ``MQTTMessage``, formats two debug log
        records, decodes the topic three times and takes two locks per message — about a third of the time of a
        drain (cProfile, bench/iot_bench.py). Anything else (QoS 2, MQTT 5, a malformed packet, a topic that is
        not UTF-8) goes to paho's handler unchanged, so its checks and errors stay paho's."""
        protocol = self._client
        header = protocol._in_packet["command"]
        packet = protocol._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if qos > 1 or protocol._protocol == paho.MQTTv5 or protocol._manual_ack or len(packet) < 2:
            return self._paho_handle_publish()
        end = 2 + ((packet[0] << 8) | packet[1])
        body = end + 2 if qos else end
        if end == 2 or body > len(packet):
            return self._paho_handle_publish()
        try:
            topic = packet[2:end].decode()
        except UnicodeDecodeError:
            return self._paho_handle_publish()
        if self._refusing:
            return paho.MQTTErrorCode.MQTT_ERR_SUCCESS  # neither handled nor acknowledged: the broker keeps it
        try:
            self._deliver(topic, bytes(packet[body:]))
        except Backpressure as exc:
            self._commit_and_ack()  # those before it in this turn: durable and acknowledged, not handed over again
            self._refuse(exc)
            return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        except Exception:
            self._status.callback_errors += 1
            log.exception("MQTT message on %r could not be handled", topic)
        if qos == 0:
            return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        if not self._acks:
            self._loop.call_soon(self._commit_and_ack)
        self._acks.append((packet[end] << 8) | packet[end + 1])
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _commit_and_ack(self) -> None:
        """At the end of a loop turn: the turn's messages made durable (``on_turn``), then their PUBACKs queued —
        they leave in one ``send`` (:class:`BufferedSocket`)."""
        acks, self._acks = self._acks, []
        protocol = self._client
        if self._refusing or protocol._sock is None:
            return  # the connection is gone: the broker hands these over again
        try:
            self._on_turn()
        except Exception as exc:
            self._refuse(exc)
            return
        sock = protocol._sock
        if isinstance(sock, BufferedSocket):  # the 4-byte PUBACKs straight into the turn's one send
            with contextlib.suppress(OSError):
                sock.send(b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in acks))
            return
        for mid in acks:
            protocol._send_command_with_mid(paho.PUBACK, mid, False)

    async def until_refused(self, waiting: Coroutine[Any, Any, object]) -> None:
        """Await ``waiting``, or raise :class:`aiomqtt.MqttError` as soon as this client refuses to take more (a
        SUBACK or the end of the message stream may not come after the connection was dropped)."""
        work = asyncio.ensure_future(waiting)
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait({work, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, refused):
                if not task.done():
                    task.cancel()
        if not work.done() or work.cancelled():
            raise aiomqtt.MqttError("the ingest refused more messages; they stay with the broker")
        work.result()

    def _refuse(self, exc: Exception) -> None:
        """Acknowledge nothing more and drop the connection; the broker keeps the rest for the session."""
        if self._refusing:
            return
        self._refusing = True
        self._refused.set()
        self._acks.clear()
        self._status.refusals += 1
        # from now on paho acknowledges nothing (its own path checks this flag; ours checks _refusing); the
        # subscriber disconnects cleanly (until_refused) and the broker keeps the unacknowledged for the session
        self._client._manual_ack = True
        log.warning("MQTT ingest — pausing, unacknowledged messages stay with the broker: %s", redact(str(exc)))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """paho's own path (a packet split across reads, QoS 2 …): paho acknowledges when this returns, so the
        message is made durable here, at once."""
        if self._refusing:
            return  # not handled, and (manual acknowledgement on) not acknowledged
        try:
            payload = message.payload
            self._deliver(message.topic, payload if isinstance(payload, bytes) else bytes(payload))
        except Backpressure as exc:
            self._commit_and_ack()
            self._refuse(exc)
            return
        except Exception:
            self._status.callback_errors += 1
            log.exception("MQTT message on %r could not be handled", message.topic)
        try:
            self._on_turn()
        except Exception as exc:
            self._refuse(exc)


async def _until_disconnected(client: IngestClient) -> None:
    async for _ in client.messages:  # never yields: IngestClient delivers; this ends on disconnection
        pass


async def run_subscriber(
    status: MqttStatus,
    on_message: Callable[[str, bytes], object],
    *,
    on_turn: Callable[[], object] = lambda: None,
    can_take: Callable[[], bool] = lambda: True,
    settings: MqttSettings | None = None,
    min_backoff: float = RECONNECT_MIN,
    max_backoff: float = RECONNECT_MAX,
) -> None:
    """Subscribe to ``status.subscription`` and hand every message to ``on_message`` until cancelled (``on_turn``
    makes a turn's messages durable before they are acknowledged); reconnect on failure with exponential back-off, with
    jitter, and only while ``can_take()``."""
    broker = Broker.of(status.url, settings)
    shown = redact(status.url)
    backoff = min_backoff
    failures = 0
    while True:
        while not can_take():  # the backlog is full: let the broker keep the messages until there is room
            await asyncio.sleep(min_backoff)
        try:
            async with IngestClient(
                broker.host,
                broker.port,
                **broker.client_options(),
                identifier=status.client_id,
                clean_session=False,
                protocol=aiomqtt.ProtocolVersion.V311,
                keepalive=15,
                timeout=5,
                on_message=on_message,
                on_turn=on_turn,
                status=status,
            ) as client:
                # a persistent session's backlog starts flowing before the SUBACK and is ingested as it comes, so the
                # SUBACK may wait behind many messages: give it longer than a plain request
                await client.until_refused(client.subscribe(status.subscription, qos=1, timeout=SUBSCRIBE_TIMEOUT))
                status.connected = True
                status.connects += 1
                status.last_error = None
                backoff = min_backoff
                log.info("MQTT connected to %s as %s, subscribed to %s", shown, status.client_id, status.subscription)
                await client.until_refused(_until_disconnected(client))
        except aiomqtt.MqttError as exc:
            if status.connected:
                status.disconnects += 1
            status.connected = False
            status.last_error = redact(str(exc))
            failures = failures + 1 if backoff >= max_backoff else 0
            # every attempt is logged while the back-off grows, then one in 100 (an outage of hours stays readable)
            level = logging.WARNING if failures % 100 == 0 else logging.DEBUG
            log.log(level, "MQTT %s — %s; retrying in %.2f s", shown, status.last_error, backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.0))
            backoff = min(backoff * 2, max_backoff)
        finally:
            status.connected = False
