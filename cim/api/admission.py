"""Admission control: a bounded number of requests at work, a bounded queue, and a clear 503 beyond it.

A server on 2 cores answers a few hundred data requests a second. Past that, letting every request in only makes
all of them slow, piles up memory, and starves the worker threads (FastAPI runs each sync handler in one of
anyio's 40). So at most ``max_active`` HTTP requests are at work at once; up to ``max_waiting`` more wait in
arrival order, each for at most ``wait_timeout`` seconds; anything beyond gets ``503`` with ``Retry-After`` at
once, which well-behaved clients (GDAL, QGIS, browsers' fetch with retries) wait out.

The probes (``/health``, ``/ready``) and WebSockets are never held back: an operator must see a busy server as
busy, not as dead.

>>> limits = AdmissionLimits(max_active=2, max_waiting=4, wait_timeout=1.0)
>>> limits.max_active
2
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

#: Paths answered whatever the load.
EXEMPT_PATHS = frozenset({"/health", "/ready"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionLimits:
    """``max_active`` requests at work, ``max_waiting`` queued for at most ``wait_timeout`` seconds."""

    max_active: int = 32
    max_waiting: int = 1024
    wait_timeout: float = 10.0
    retry_after_s: int = 1


class AdmissionControl:
    """ASGI middleware applying :class:`AdmissionLimits` to HTTP requests; counts what it refused."""

    def __init__(self, app: ASGIApp, limits: AdmissionLimits) -> None:
        self.app = app
        self.limits = limits
        self.active = 0
        self.waiting = 0
        self.refused = 0
        self._turns: deque[asyncio.Future[None]] = deque()  # the waiters, first come first served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        # plain asyncio and no cancel scope on the common path: anyio's cost ~8% of a loaded server's time (py-spy)
        if self.active < self.limits.max_active and not self.waiting:
            self.active += 1
        elif not await self._wait_for_slot(send):
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait_for_slot(self, send: Send) -> bool:
        """Queue for a slot: True once one is handed over, False when refused (the 503 is sent)."""
        if self.waiting >= self.limits.max_waiting:
            await self._refuse(send, f"{self.waiting} requests are already waiting")
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        self.waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.limits.wait_timeout)
        except TimeoutError:
            if turn.done():  # handed a slot just as the wait ran out: take it
                return True
            self._give_up(turn)
            await self._refuse(send, f"no request could start within {self.limits.wait_timeout:g} s")
            return False
        except BaseException:  # the client went away while it waited
            if turn.done():
                self._release()  # the slot it was handed goes on to the next
            else:
                self._give_up(turn)
            raise
        return True

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        turn.cancel()  # left in the queue; _release skips it
        self.waiting -= 1

    def _release(self) -> None:
        """A request ended: its slot goes to the longest waiter still waiting, or back to the pool."""
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                self.waiting -= 1
                turn.set_result(None)
                return
        self.active -= 1

    async def _refuse(self, send: Send, why: str) -> None:
        self.refused += 1
        body = orjson.dumps(
            {
                "code": "ServiceUnavailable",
                "description": f"server — is busy: {why}; try again in {self.limits.retry_after_s} s",
                "what": "server",
                "why": f"is busy: {why}",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.limits.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
