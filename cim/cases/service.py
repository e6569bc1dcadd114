"""The case service: one object the app's lifespan starts and stops, like the IoT service.

It reaches the store from one worker thread of its own (blocking calls; one DuckDB connection serves one statement
at a time), so machine dispatch, people's steps and escalation are serialised there; the store's version check
(``apply_event(expected_version=…)``) keeps other processes from losing an update.

- :meth:`CaseService.on_alert` is called on the event loop for every alert change and never waits: it buffers.
  A background task takes the buffer every ``batch_interval`` (≤ 100 ms) or as soon as ``batch_size`` alerts wait,
  and runs it through :class:`~cim.cases.machine.Machine` (open, join, clear). A batch that fails is kept and
  retried with back-off.
- :meth:`CaseService.escalate_overdue` runs every ``escalate_interval`` seconds on the injectable ``clock``.
- :meth:`CaseService.start` recovers: alerts still open in the store's ``alerts`` table that no case holds get
  their cases then — an alert buffered here when the process died is not lost (the IoT service wrote it first).
- ``publish`` (optional) receives each case change as a small dict (:func:`change_dict`) for the live WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from cim.cases import reading
from cim.cases.config import area_tree, load_table, read_case_config, unit_of_row
from cim.cases.dispatch import AreaLike, DispatchTable, Unit
from cim.cases.escalation import Escalator
from cim.cases.machine import BatchResult, Machine
from cim.cases.photos import Photo
from cim.cases.rules import CaseRule
from cim.cases.steps import CaseDraft, act, report
from cim.errors import NotFound
from cim.model import Alert
from cim.model.cases import Case, CaseEvent
from cim.store import Store
from cim.store import cases as case_store
from cim.store.areas import asset_areas

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
Publish = Callable[[dict[str, Any]], None]
#: Per-alert latencies kept for the p99 in :meth:`CaseService.stats`.
LATENCY_WINDOW = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseServiceOptions:
    batch_interval: float = 0.05  # seconds between batches of alerts (the target is ≤ 1 s alert → dispatched case)
    batch_size: int = 500  # a batch starts at once when this many alerts wait
    escalate_interval: float = 5.0
    min_backoff: float = 0.05
    max_backoff: float = 2.0
    recovery_chunk: int = 1000
    deadline_scale: float | None = None  # None: the one ``cim run`` kept in the store (1 when none)


def change_dict(case: Case, action: str) -> dict[str, Any]:
    """What the live push says of one case change."""
    return {
        "id": case.id,
        "state": str(case.state),
        "category": case.category,
        "severity": str(case.severity),
        "unit_id": case.unit_id,
        "district": case.district,
        "lon": case.lon,
        "lat": case.lat,
        "version": case.version,
        "action": action,
    }


class CaseService:
    """Cases for one store; see the module docstring. ``rules`` None: the rules ``cim run`` kept beside the store
    (:func:`~cim.cases.config.read_case_config`), else none (no alert opens a case)."""

    def __init__(
        self,
        store: Store,
        *,
        rules: Sequence[CaseRule] | None = None,
        publish: Publish | None = None,
        clock: Callable[[], datetime] | None = None,
        options: CaseServiceOptions | None = None,
        reader: Store | None = None,
    ) -> None:
        """``reader``: a store connection that serves many threads at once (the API's) for the reads, so a list or
        a case's page never waits behind the machine's writes on the service's one store thread."""
        self.store = store
        self._reader = reader
        self.publish = publish
        self.clock = clock or (lambda: datetime.now(UTC))
        self.options = options or CaseServiceOptions()
        self._given_rules = None if rules is None else list(rules)
        self._rules: list[CaseRule] = []
        self.deadline_scale = 1.0
        self.table: DispatchTable | None = None
        self.tree: dict[str, AreaLike] = {}
        self.machine: Machine | None = None
        self.escalator = Escalator(store, units=lambda: self.units)
        self._buffer: list[tuple[Alert, float]] = []
        self._inflight = 0  # alerts of the batch being processed
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._backoff = 0.0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.counts = {"opened": 0, "joined": 0, "cleared": 0, "escalated": 0, "skipped": 0, "conflicts": 0}
        self.batches = 0
        self.batch_failures = 0
        self.recovered = 0
        self.last_batch_s = 0.0

    @property
    def units(self) -> Mapping[str, Unit]:
        return self.table.units if self.table is not None else {}

    @property
    def rules(self) -> list[CaseRule]:
        return list(self._rules or [])

    # --- lifecycle ---
    async def start(self, *, background: bool = True, recover: bool = True) -> None:
        """Load units, the dispatch table, the area tree and the case rules; give open alerts without a case their
        cases (``recover=False``: not — a command that only reads or takes one step is no place for machine
        dispatch, the server does it when it starts); start the batch and escalation loops (``background=False``:
        no loops — tests drive :meth:`process_pending` and :meth:`escalate_overdue` by hand)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-cases-store")
        await self._in_store(self._load)
        open_alerts = await self._in_store(self.store.alerts, open=True)
        machine = self.machine
        assert machine is not None
        machine.open_alerts.update(a.id for a in open_alerts)
        if recover:
            await self._recover(open_alerts)
        if background:
            self._tasks.append(asyncio.create_task(self._batch_loop(), name="cim-cases-batches"))
            self._tasks.append(asyncio.create_task(self._escalate_loop(), name="cim-cases-escalation"))

    def _load(self) -> None:
        self.tree = area_tree(self.store)
        if self.tree:  # every asset's areas, built now (1–2 s after an ingest) rather than under the first alerts
            asset_areas(self.store)
        self.table = load_table(self.store, self.tree)
        config = read_case_config(self.store)
        stored = list(config.rules) if config is not None else []
        self._rules = self._given_rules if self._given_rules is not None else stored
        scale = self.options.deadline_scale
        self.deadline_scale = scale if scale is not None else (config.deadline_scale if config is not None else 1.0)
        if not self._rules:
            log.warning("cases — no case rules: alerts open no case (declare [[case_rules]] and run the pipeline)")
        self.machine = Machine(
            self.store,
            table=lambda: self.table,
            rules=self._rules,
            clock=self.clock,
            deadline_scale=self.deadline_scale,
        )

    async def _recover(self, open_alerts: Sequence[Alert]) -> None:
        alerts = sorted(open_alerts, key=lambda a: (a.opened_at, a.id))
        for start in range(0, len(alerts), self.options.recovery_chunk):
            chunk = alerts[start : start + self.options.recovery_chunk]
            held = await self._in_store(case_store.cases_of_alerts, self.store, [a.id for a in chunk])
            missing = [a for a in chunk if a.id not in held]
            if not missing:
                continue
            machine = self.machine
            assert machine is not None
            result = await self._in_store(machine.run, missing)
            self.recovered += result.opened + result.joined
            self._account(result)
        if self.recovered:
            log.warning("cases — %d open alerts had no case after a restart: given one now", self.recovered)

    async def stop(self) -> None:
        """Stop the loops, process what is still buffered, release the store thread."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            if self._executor is not None and self._buffer:
                await self.process_pending()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def reload(self) -> None:
        """Read units, areas and rules again (after ``cim run`` changed them)."""
        await self._in_store(self._load)

    # --- alerts (on the event loop, never waits) ---
    def on_alert(self, alert: Alert) -> None:
        self._buffer.append((alert, time.monotonic()))
        if len(self._buffer) >= self.options.batch_size:
            self._wake.set()

    async def process_pending(self) -> BatchResult | None:
        """Run the buffered alerts through the machine now; None when nothing waited or the batch failed (kept)."""
        async with self._batch_lock:
            batch, self._buffer = self._buffer, []
            if not batch:
                return None
            self._inflight = len(batch)
            machine = self.machine
            assert machine is not None, "start the case service first"
            started = time.perf_counter()
            try:
                result = await self._in_store(machine.run, [a for a, _ in batch])
            except Exception as exc:  # kept and retried: an alert is never dropped
                self._inflight = 0
                self._buffer[:0] = batch
                self.batch_failures += 1
                self._backoff = min(max(self._backoff * 2, self.options.min_backoff), self.options.max_backoff)
                log.error("cases — a batch of %d alerts failed (%s: %s); retrying", len(batch), type(exc).__name__, exc)
                return None
            self._backoff = 0.0
            self._inflight = 0
            done = time.monotonic()
            self._latencies.extend(done - seen for _, seen in batch)
            self.last_batch_s = time.perf_counter() - started
            self.batches += 1
            self._account(result)
            return result

    def _account(self, result: BatchResult) -> None:
        for key in ("opened", "joined", "cleared", "skipped", "conflicts"):
            self.counts[key] += getattr(result, key)
        for change in result.changes:
            self._publish(change.case, change.action)

    async def _batch_loop(self) -> None:
        while True:
            if not self._buffer:  # alerts that came in during the last batch go at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.options.batch_interval)
            self._wake.clear()
            await asyncio.shield(self.process_pending())
            if self._backoff:
                await asyncio.sleep(self._backoff)

    # --- escalation ---
    async def escalate_overdue(self) -> list[Case]:
        """Escalate the open cases due at ``clock()``; returns them as they are now."""
        now = self.clock()
        changed = await self._in_store(self.escalator.run, now)
        self.counts["escalated"] += len(changed)
        for case, event in changed:
            self._publish(case, str(event.action))
        return [case for case, _ in changed]

    async def _escalate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.escalate_interval)
            try:
                await asyncio.shield(self.escalate_overdue())
            except Exception as exc:  # the next round tries again
                log.error("cases — escalation failed (%s: %s)", type(exc).__name__, exc)

    # --- people ---
    async def report(self, draft: CaseDraft, *, actor: str) -> tuple[Case, list[CaseEvent]]:
        """A case reported by a person or an app (``POST /cases``): located, filed and dispatched by the table."""
        case, events = await self._in_store(
            report,
            self.store,
            self.table,
            draft,
            actor=actor,
            now=self.clock(),
            has_areas=bool(self.tree),
            deadline_scale=self.deadline_scale,
        )
        self._publish(case, str(events[-1].action))
        return case, events

    async def act(
        self,
        case_id: str,
        action: str,
        *,
        actor: str,
        unit_id: str | None = None,
        note: str = "",
        version: int | None = None,
        photos: Sequence[Photo | bytes] = (),
        data: Mapping[str, Any] | None = None,
    ) -> tuple[Case, CaseEvent]:
        """One step on a case (``POST /cases/{id}/transitions``); see :func:`cim.cases.steps.act`."""
        case, event = await self._in_store(
            act,
            self.store,
            self.table,
            case_id,
            action,
            actor=actor,
            unit_id=unit_id,
            now=self.clock(),
            note=note,
            version=version,
            photos=photos,
            data=data,
        )
        self._publish(case, str(event.action))
        return case, event

    # --- what the API reads besides cases (cim.cases.reading) ---
    async def heat(self, level: str) -> tuple[dict[str, int], dict[str, int]]:
        """Open cases per area of ``level``, and the overdue ones among them (the heat layer)."""
        return await self._read(reading.heat, self.reader, level, self.clock())

    async def assets_of(self, case: Case) -> list[dict[str, Any]]:
        return await self._read(reading.assets_of, self.reader, case)

    async def photo(self, case_id: str, photo_id: str) -> tuple[str, bytes]:
        return await self._read(reading.photo, self.reader, case_id, photo_id)

    async def assess(
        self, *, level: str, start: datetime, end: datetime, parent: str | None = None
    ) -> list[dict[str, Any]]:
        """The assessment per area or unit over [start, end), each row named (areas and units)."""
        names = {code: (a.name, a.name_en) for code, a in self.tree.items()}
        names |= {u.id: (u.name, u.name_en) for u in self.units.values()}
        return await self._read(
            reading.assessment, self.reader, names, level=level, start=start, end=end, parent=parent
        )

    async def verify_logs(self) -> tuple[int, dict[str, str]]:
        return await self._read(reading.verify_logs, self.reader)

    async def get(self, case_id: str) -> tuple[Case, list[CaseEvent]]:
        def both() -> tuple[Case, list[CaseEvent]]:
            return case_store.get_case(self.reader, case_id), list(case_store.case_events(self.reader, case_id))

        return await self._read(both)

    async def list(self, filter: case_store.CaseFilter) -> tuple[list[Case], int | None]:
        """Cases a ``cim.store.cases.CaseFilter`` selects, and how many match in all (None: not counted)."""
        cases, matched = await self._read(case_store.list_cases, self.reader, filter)
        return list(cases), matched

    # --- unit tokens ---
    async def issue_unit_token(self, unit_id: str) -> str:
        """A new API token for a unit (only its sha256 is stored; an earlier token stops working)."""
        if unit_id not in self.units:
            known = ", ".join(sorted(self.units)[:20]) or "none"
            raise NotFound(f"unit {unit_id!r}", f"is not a unit; known: {known}")
        token = secrets.token_urlsafe(32)
        await self._in_store(case_store.set_unit_token, self.store, unit_id, _digest(token))
        return token

    async def unit_for_token(self, token: str) -> Unit | None:
        if not token:
            return None
        row = await self._read(case_store.unit_by_token_hash, self.reader, _digest(token))
        return None if row is None else unit_of_row(row)

    # --- plumbing ---
    def _publish(self, case: Case, action: str) -> None:
        if self.publish is None:
            return
        try:
            self.publish(change_dict(case, action))
        except Exception as exc:  # a push that fails must not fail the step
            log.error("cases — publishing case %s failed (%s: %s)", case.id, type(exc).__name__, exc)

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A read: on the reader's threads when the service has one (many at once, never queued behind the
        machine's writes), else on the store thread."""
        if self._reader is None:
            return await self._in_store(fn, *args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    @property
    def reader(self) -> Store:
        """Where reads go: the reader given (the API's store), else the service's own store."""
        return self._reader if self._reader is not None else self.store

    async def _in_store(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            raise RuntimeError("the case service is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def stats(self) -> dict[str, Any]:
        latencies = sorted(self._latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
        return {
            "opened_by_machine": self.counts["opened"],
            "joined": self.counts["joined"],
            "cleared": self.counts["cleared"],
            "escalated": self.counts["escalated"],
            "skipped": self.counts["skipped"],
            "conflicts": self.counts["conflicts"],
            "recovered": self.recovered,
            "queue": len(self._buffer) + self._inflight,
            "batches": self.batches,
            "batch_failures": self.batch_failures,
            "last_batch_ms": round(self.last_batch_s * 1000, 3),
            "alert_latency_p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "units": len(self.units),
            "rules": len(self.rules),
        }


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
