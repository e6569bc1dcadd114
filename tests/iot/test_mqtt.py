"""The buffered socket under paho: small reads from one large read, writes of a loop turn in one send; whole packets
taken from the buffer and handed over without paho's message objects."""

from __future__ import annotations

import asyncio
import socket
import threading

import aiomqtt
import pytest

from cim.iot.mqtt import BufferedSocket, IngestClient, MqttStatus, parse_mqtt_url
from tests.iot.conftest import Broker, eventually

pytestmark = pytest.mark.anyio


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


async def test_small_reads_are_served_from_one_read_and_pending_counts_the_rest() -> None:
    raw, peer = pair()
    buffered = BufferedSocket(raw, asyncio.get_running_loop(), threading.get_ident())
    peer.sendall(b"\x30\x05hello\x40")
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 7
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(3) == b"\x40"  # a short read, as from a socket
    with pytest.raises(BlockingIOError):  # one read of the kernel per loop turn …
        buffered.recv(1)
    await asyncio.sleep(0)
    with pytest.raises(BlockingIOError):  # … and then the kernel's own answer: nothing there
        buffered.recv(1)
    peer.close()
    await asyncio.sleep(0)
    assert buffered.recv(1) == b""  # end of stream passes through
    buffered.close()


async def test_writes_of_one_loop_turn_leave_in_one_send_and_close_sends_the_rest() -> None:
    raw, peer = pair()
    buffered = BufferedSocket(raw, asyncio.get_running_loop(), threading.get_ident())
    for mid in range(3):
        assert buffered.send(bytes([0x40, 2, 0, mid])) == 4
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)  # nothing sent yet
    await asyncio.sleep(0)
    assert peer.recv(100) == b"\x40\x02\x00\x00\x40\x02\x00\x01\x40\x02\x00\x02"
    buffered.send(b"\xe0\x00")  # DISCONNECT, then paho closes the socket at once
    buffered.close()
    assert peer.recv(100) == b"\xe0\x00"
    peer.close()


async def test_take_packet_takes_only_whole_packets() -> None:
    raw, peer = pair()
    buffered = BufferedSocket(raw, asyncio.get_running_loop(), threading.get_ident())
    assert buffered.take_packet() is None  # it never reads the kernel itself
    big = b"x" * 200  # a remaining length of two bytes: 200 → 0xc8 0x01
    peer.sendall(b"\x30\x05hello" + b"\x32\xc8\x01" + big + b"\x40\x02\x00")  # the last packet is cut short
    assert buffered.recv(1) == b"\x30"  # paho's reader, a byte at a time, as it does after an empty buffer …
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.take_packet() == (0x32, big)  # … and the packets whole in the buffer, taken at once
    assert buffered.take_packet() is None  # a packet cut short stays for paho's reader, untouched
    assert buffered.pending() == 3
    assert buffered.recv(4) == b"\x40\x02\x00"
    raw.close()
    peer.close()


@pytest.mark.mqtt
async def test_ingest_client_delivers_qos_0_and_1_large_and_small_payloads(broker: Broker) -> None:
    """The lean PUBLISH path (whole packets from the buffer, no MQTTMessage) against the real broker: every
    message arrives once, in order, with its topic and payload, whatever its size (a 100 KiB payload spans reads)."""
    got: list[tuple[str, bytes]] = []
    status = MqttStatus(url=broker.url, topic="t/#", client_id="lean")
    host, port = parse_mqtt_url(broker.url)
    sent = [
        (f"t/{i}", bytes([65 + i % 26]) * size) for i, size in enumerate([0, 1, 127, 128, 16_383, 16_384, 100_000] * 3)
    ]
    async with IngestClient(
        host, port, identifier="lean", on_message=lambda t, p: got.append((t, p)), status=status
    ) as c:
        await c.subscribe("t/#", qos=1)
        async with aiomqtt.Client(host, port, identifier="lean-pub") as pub:
            for i, (topic, payload) in enumerate(sent):
                await pub.publish(topic, payload, qos=i % 2)
        await eventually(lambda: len(got) >= len(sent))
    assert got == sent
    assert status.callback_errors == 0
