"""Read-only requests answered from a PostgreSQL streaming replica (``CIM_STORE_READ_URL``), writes from the primary.

Which requests read: ``GET`` and ``HEAD`` (:func:`cim.api.deps.get_store`); every other method, and every service
that writes (IoT ingest, cases, jobs), holds the primary. A request that must see its own write at once (a
streaming replica replays the primary's WAL some milliseconds later: a ``POST`` followed by a ``GET`` may read the
state before it) sends :data:`PRIMARY_HEADER` ``: primary`` and is answered by the primary.

When the replica is down: :class:`ReadRouting` asks it every ``probe_interval`` seconds (``SELECT 1``) and, while it
does not answer, sends reads to the primary; a read already sent to it when it went down is made again on the
primary (:class:`FallbackStore`), so a client sees neither a 503 nor a gap, only the primary's load. Once the
replica answers again, reads go back to it. ``/ready`` does not fail for it (the server answers all the same).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from starlette.concurrency import run_in_threadpool

from cim.errors import StoreError, StoreTimeout, StoreUnavailable
from cim.store import Store, open_store

log = logging.getLogger("cim.api.replica")

#: A request header asking for the primary: ``CIM-Read-From: primary`` (read your own write at once).
PRIMARY_HEADER = "cim-read-from"
#: Seconds between probes of the replica.
PROBE_INTERVAL_S = 0.5


class FallbackStore:
    """The replica's store for one request, whose calls go to the primary from the first one the replica cannot
    answer: it is down, or the call writes (a GET may refresh a derived table, e.g. the lift register, which a
    standby refuses), or its replay cancelled the read. From then on the request stays on the primary, so it never
    mixes what the primary just wrote with the replica's older state."""

    def __init__(self, routing: ReadRouting) -> None:
        self._routing = routing
        self._store: Store = routing.replica

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # the queries check what kind of store they read (isinstance): the replica's
        return type(self._routing.replica)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or self._store is self._routing.primary:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except StoreTimeout:
                raise  # as slow on the primary: not made twice
            except StoreUnavailable:
                self._routing.mark_down("a read failed on it")
            except StoreError as exc:
                if not _replica_refused(exc):
                    raise
                self._routing.standby_refusals += 1
            self._store = self._routing.primary
            return getattr(self._store, name)(*args, **kwargs)

        return call


def _replica_refused(exc: BaseException) -> bool:
    """A write refused by the standby, or a read its replay cancelled (both answer on the primary)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in ("ReadOnlySqlTransaction", "SerializationFailure", "UndefinedTable"):
            return True
        seen = seen.__cause__ or seen.__context__
    return any(
        word in str(exc) for word in ("ReadOnlySqlTransaction", "read-only transaction", "conflict with recovery")
    )


class ReadRouting:
    """The primary store, the replica's, and whether the replica answers (probed in the background)."""

    def __init__(self, primary: Store, replica: Store, *, probe_interval: float = PROBE_INTERVAL_S) -> None:
        self.primary = primary
        self.replica = replica
        self.probe_interval = probe_interval
        self.replica_up = True
        self.fallbacks = 0  # times the replica was found down
        self.standby_refusals = 0  # calls the standby refused (writes, cancelled reads), made on the primary

    @classmethod
    async def open(cls, primary: Store, replica_url: str) -> ReadRouting:
        """Open the replica (read-only: no schema upgrade is tried on a standby)."""
        replica = await run_in_threadpool(open_store, replica_url, upgrade=False)
        return cls(primary, replica)

    def for_read(self) -> Store:
        """The store a read-only request gets: the replica while it answers, else the primary."""
        return cast(Store, FallbackStore(self)) if self.replica_up else self.primary

    def mark_down(self, why: str) -> None:
        if self.replica_up:
            self.replica_up = False
            self.fallbacks += 1
            log.warning("the read replica does not answer (%s): reads go to the primary", why)

    async def watch(self) -> None:
        """Probe the replica until cancelled, moving reads off it and back."""
        while True:
            try:
                await asyncio.wait_for(run_in_threadpool(self.replica.ping), timeout=max(self.probe_interval * 4, 2))
            except (StoreUnavailable, TimeoutError) as exc:
                self.mark_down(type(exc).__name__)
            except Exception as exc:
                self.mark_down(type(exc).__name__)
            else:
                if not self.replica_up:
                    log.info("the read replica answers again: reads go to it")
                self.replica_up = True
            await asyncio.sleep(self.probe_interval)

    def close(self) -> None:
        self.replica.close()
