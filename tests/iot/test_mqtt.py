"""The buffered socket under paho: small reads from one large read, writes of a loop turn in one send."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from cim.iot.mqtt import BufferedSocket

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
