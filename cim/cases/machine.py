"""Machine dispatch: alerts in, cases out — opened, joined or cleared with no human step.

Everything here is synchronous and runs on the case service's one store thread (:mod:`cim.cases.service`), so a
batch sees the store as the previous batch left it. For each batch of alert changes (:meth:`Machine.run`):

- an **opening** alert that a case rule selects (:mod:`cim.cases.rules`) and that no case holds yet is located
  through its sensor's watched asset (the asset's areas, its point) and then **joins** an open case of the same
  asset, or of the same category within the rule's ``join_distance_m`` and ``join_window_s`` (a ``join`` event),
  or else opens a case: ``report`` → ``file`` → ``dispatch`` to the unit the table names, all by ``machine``. An alert
  a case already holds is skipped, so an alert delivered twice makes one case. A category with no unit there leaves
  the case filed, for the command centre.
- a **closing** alert clears (``clear``, resolution ``cleared``) the case it belongs to when the machine opened it,
  no person has acted on it yet (it is reported, filed or dispatched and every event is the machine's) and none of
  its alerts is still open.

A sensor outside every area still gets its case, at the city level (its area codes empty): an alert is never lost.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cim.cases.dispatch import DispatchTable, Unit
from cim.cases.rules import CaseRule, rule_for
from cim.errors import Conflict
from cim.model import Alert, Kind
from cim.model.cases import (
    CATEGORY_BY_ID,
    Action,
    Case,
    CaseEvent,
    CaseSource,
    CaseState,
    apply_action,
    new_case,
    report_event,
)
from cim.store import AssetQuery, Store
from cim.store import cases as case_store
from cim.store.areas import areas_of_assets

log = logging.getLogger(__name__)
MACHINE = "machine"
#: States in which a machine case may still be cleared by its alert (no person took it up).
CLEARABLE: frozenset[CaseState] = frozenset({CaseState.REPORTED, CaseState.FILED, CaseState.DISPATCHED})
EARTH_RADIUS_M = 6_371_008.8
#: A sensor id the store did not know is looked up again after this many seconds (sensors declared meanwhile).
SENSOR_MISS_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class SensorInfo:
    id: str
    quantity: str | None
    asset_id: str  # the watched asset (the sensor itself when it watches nothing)
    lon: float | None
    lat: float | None


@dataclass(slots=True)
class Change:
    """One case change of a batch, for the publish callback."""

    case: Case
    action: str


@dataclass(slots=True)
class BatchResult:
    changes: list[Change] = field(default_factory=list)
    opened: int = 0
    joined: int = 0
    cleared: int = 0
    skipped: int = 0  # alerts no rule selects, or already held by a case
    conflicts: int = 0


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def case_id_for(alert_id: str, at: datetime) -> str:
    """A machine case's id: the day and a digest of the alert that opened it (the same alert, the same id)."""
    return f"C{at:%Y%m%d}-{hashlib.sha256(alert_id.encode()).hexdigest()[:10]}"


def untouched_by_people(events: Sequence[CaseEvent]) -> bool:
    return all(e.actor == MACHINE for e in events)


class Machine:
    """Machine dispatch over one store; see the module docstring. Not thread-safe: one store thread drives it."""

    def __init__(
        self,
        store: Store,
        *,
        table: Callable[[], DispatchTable | None],
        rules: Sequence[CaseRule],
        clock: Callable[[], datetime],
        deadline_scale: float = 1.0,
    ) -> None:
        self.store = store
        self.table = table
        self.rules = list(rules)
        self.clock = clock
        self.deadline_scale = deadline_scale
        self.sensors: dict[str, SensorInfo | None] = {}
        self._missed_at: dict[str, float] = {}  # sensor id → when the store did not know it (monotonic)
        self.open_alerts: set[str] = set()  # ids of alerts seen open and not yet closed
        #: new cases of the batch being run, stored together at its end (:meth:`_store_pending`)
        self._pending: dict[str, tuple[Case, list[CaseEvent]]] = {}

    # --- sensors ---
    def sensor_infos(self, sensor_ids: Iterable[str]) -> dict[str, SensorInfo]:
        """Sensors by id (read from the store on first sight; one that is not a sensor asset maps to nothing)."""
        wanted = list(sensor_ids)
        now = time.monotonic()
        missing = sorted(
            {s for s in wanted if s not in self.sensors or now - self._missed_at.get(s, now) > SENSOR_MISS_TTL_S}
        )
        for start in range(0, len(missing), 1000):
            chunk = missing[start : start + 1000]
            found = {a.id: a for a in self.store.find_assets(AssetQuery(ids=chunk, kinds=(Kind.SENSOR,)))}
            parent_ids = sorted({a.parent_id for a in found.values() if a.parent_id})
            parents = {p.id: p for p in self.store.find_assets(AssetQuery(ids=parent_ids))} if parent_ids else {}
            for sid in chunk:
                asset = found.get(sid)
                if asset is None:
                    self.sensors[sid] = None
                    self._missed_at[sid] = now
                    continue
                self._missed_at.pop(sid, None)
                watched = parents.get(asset.parent_id or "", asset)
                geom = watched.geom if watched.geom is not None else asset.geom
                point = geom.representative_point() if geom is not None and not geom.is_empty else None
                quantity = asset.props.get("quantity")
                self.sensors[sid] = SensorInfo(
                    id=sid,
                    quantity=None if quantity is None else str(quantity),
                    asset_id=watched.id,
                    lon=point.x if point is not None else None,
                    lat=point.y if point is not None else None,
                )
        return {s: info for s in wanted if (info := self.sensors.get(s)) is not None}

    # --- one batch ---
    def run(self, alerts: Sequence[Alert]) -> BatchResult:
        """One batch of alert changes in arrival order (an alert opened and closed within it is opened, then
        closed)."""
        result = BatchResult()
        opening: dict[str, Alert] = {}
        closing: dict[str, Alert] = {}
        for alert in alerts:
            if alert.is_open:
                opening.setdefault(alert.id, alert)
            else:
                closing[alert.id] = alert
        self.open_alerts.update(opening)
        self.open_alerts.difference_update(closing)
        if opening:
            self._open(list(opening.values()), result)
        if closing:
            self._close(list(closing.values()), result)
        return result

    def _open(self, alerts: list[Alert], result: BatchResult) -> None:
        held = case_store.cases_of_alerts(self.store, [a.id for a in alerts])
        sensors = self.sensor_infos(a.sensor_id for a in alerts)
        todo: list[tuple[Alert, SensorInfo, CaseRule]] = []
        for alert in alerts:
            info = sensors.get(alert.sensor_id)
            rule = (
                rule_for(self.rules, quantity=info.quantity, rule_id=alert.rule, severity=alert.severity)
                if info is not None
                else None
            )
            if alert.id in held or info is None or rule is None:
                result.skipped += 1
                continue
            todo.append((alert, info, rule))
        if not todo:
            return
        self._pending = {}
        assets = sorted({info.asset_id for _, info, _ in todo})
        areas = areas_of_assets(self.store, assets)
        by_asset = case_store.open_cases_of_assets(self.store, assets)
        touched: dict[str, Case] = {}  # cases opened or joined in this batch, newest state
        for alert, info, rule in todo:
            target = self._joinable(alert, info, rule, by_asset, touched)
            if target is not None:
                self._join(target, alert, info, result, touched, by_asset)
            else:
                case = self._create(alert, info, rule, areas.get(info.asset_id), result)
                if case is not None:
                    touched[case.id] = case
                    by_asset.setdefault(info.asset_id, case)
        self._store_pending(result)

    def _store_pending(self, result: BatchResult) -> None:
        """The batch's new cases (with the alerts that joined them meanwhile) in one transaction; when another
        process holds one of their alerts or ids, one by one, skipping the one refused."""
        pending, self._pending = list(self._pending.values()), {}
        if not pending:
            return
        try:
            case_store.insert_cases(self.store, pending)
            stored = pending
        except Conflict:
            stored = []
            for case, events in pending:
                try:
                    case_store.insert_case(self.store, case, events)
                    stored.append((case, events))
                except Conflict as exc:  # another process took an alert of it meanwhile
                    log.info("case %s — not stored: %s", case.id, exc.why)
                    result.opened -= 1
                    result.skipped += 1
        for case, events in stored:
            result.changes.append(Change(case, str(events[-1].action)))

    def _joinable(
        self,
        alert: Alert,
        info: SensorInfo,
        rule: CaseRule,
        by_asset: dict[str, Case],
        touched: dict[str, Case],
    ) -> Case | None:
        same_asset = by_asset.get(info.asset_id)
        if same_asset is not None and same_asset.is_open:
            return touched.get(same_asset.id, same_asset)
        if info.lon is None or info.lat is None or rule.join_distance_m <= 0:
            return None
        since = alert.opened_at - timedelta(seconds=rule.join_window_s)
        for case in touched.values():  # opened earlier in this batch: not in the store's answer below
            if (
                case.is_open
                and case.category == rule.category
                and case.lon is not None
                and case.lat is not None
                and case.reported_at >= since
                and distance_m(info.lon, info.lat, case.lon, case.lat) <= rule.join_distance_m
            ):
                return case
        near = case_store.open_cases_near(
            self.store,
            category=rule.category,
            lon=info.lon,
            lat=info.lat,
            distance_m=rule.join_distance_m,
            since=since,
        )
        if not near:
            return None
        nearest = min(near, key=lambda c: distance_m(info.lon or 0, info.lat or 0, c.lon or 0, c.lat or 0))
        return touched.get(nearest.id, nearest)

    def _join(
        self,
        case: Case,
        alert: Alert,
        info: SensorInfo,
        result: BatchResult,
        touched: dict[str, Case],
        by_asset: dict[str, Case],
    ) -> None:
        data = {"alert_id": alert.id, "asset_id": info.asset_id, "sensor_id": alert.sensor_id}
        if case.id in self._pending:  # opened earlier in this batch, not stored yet: joined in memory
            updated, event = apply_action(case, Action.JOIN, actor=MACHINE, at=self._now(alert), data=data)
            self._pending[case.id] = (updated, [*self._pending[case.id][1], event])
            touched[updated.id] = updated
            by_asset[info.asset_id] = updated
            result.joined += 1
            return
        for attempt in range(3):
            updated, event = apply_action(case, Action.JOIN, actor=MACHINE, at=self._now(alert), data=data)
            try:
                case_store.apply_event(self.store, updated, event, expected_version=case.version, alert_ids=(alert.id,))
            except Conflict:
                if attempt == 2:
                    result.conflicts += 1
                    log.error("alert %s — could not join case %s: it keeps changing", alert.id, case.id)
                    return
                fresh = case_store.get_case(self.store, case.id)
                if not fresh.is_open:
                    self._create_after_conflict(alert, info, result, touched)
                    return
                case = fresh
                continue
            touched[updated.id] = updated
            by_asset[info.asset_id] = updated
            result.joined += 1
            result.changes.append(Change(updated, str(Action.JOIN)))
            return

    def _create_after_conflict(
        self, alert: Alert, info: SensorInfo, result: BatchResult, touched: dict[str, Case]
    ) -> None:
        rule = rule_for(self.rules, quantity=info.quantity, rule_id=alert.rule, severity=alert.severity)
        if rule is not None:
            areas = areas_of_assets(self.store, [info.asset_id])
            case = self._create(alert, info, rule, areas.get(info.asset_id), result)
            if case is not None:
                touched[case.id] = case

    def _create(self, alert: Alert, info: SensorInfo, rule: CaseRule, areas: Any, result: BatchResult) -> Case | None:
        label = CATEGORY_BY_ID[rule.category]
        case = new_case(
            id=case_id_for(alert.id, alert.opened_at),
            category=rule.category,
            source=CaseSource.SENSOR,
            severity=rule.case_severity(alert.severity),
            at=alert.opened_at,
            actor=MACHINE,
            deadline_scale=self.deadline_scale,
            title=f"{label.zh} {label.en}: {watched_name(alert)}",
            description=alert.message,
            lon=info.lon,
            lat=info.lat,
            grid_cell=getattr(areas, "grid_cell", None),
            street=getattr(areas, "street", None),
            district=getattr(areas, "district", None),
            asset_ids=(info.asset_id,),
            alert_ids=(alert.id,),
        )
        case, events = machine_steps(case, self.table(), at=self._now(alert), note=f"alert {alert.id}")
        self._pending[case.id] = (case, events)  # stored with the rest of the batch's new cases
        result.opened += 1
        return case

    def _close(self, alerts: list[Alert], result: BatchResult) -> None:
        held = case_store.cases_of_alerts(self.store, [a.id for a in alerts])
        for case_id in sorted(set(held.values())):
            case = case_store.get_case(self.store, case_id)
            if case.state not in CLEARABLE or case.source is not CaseSource.SENSOR:
                continue
            if any(a in self.open_alerts for a in case.alert_ids):
                continue
            events = case_store.case_events(self.store, case_id)
            if not untouched_by_people(events):
                continue
            closed_by = next((a for a in alerts if held.get(a.id) == case_id), None)
            at = max(self.clock(), closed_by.closed_at) if closed_by and closed_by.closed_at else self.clock()
            updated, event = apply_action(
                case, Action.CLEAR, actor=MACHINE, at=at, note="every alert of the case cleared"
            )
            try:
                case_store.apply_event(self.store, updated, event, expected_version=case.version)
            except Conflict:  # a person acted meanwhile: the case is theirs now
                result.conflicts += 1
                continue
            result.cleared += 1
            result.changes.append(Change(updated, str(Action.CLEAR)))

    def _now(self, alert: Alert) -> datetime:
        return max(self.clock(), alert.opened_at)


def machine_steps(
    case: Case,
    table: DispatchTable | None,
    *,
    at: datetime,
    note: str = "",
    actor: str = MACHINE,
    photos: tuple[str, ...] = (),
) -> tuple[Case, list[CaseEvent]]:
    """A new case's first steps: report (by ``actor``), file, and dispatch to the unit the table names (by machine).
    Without a unit for its category and place the case stays filed, for the command centre."""
    case, first = report_event(case, actor=actor, note=note, photos=photos)
    case, filed = apply_action(case, Action.FILE, actor=MACHINE, at=max(at, case.reported_at))
    events = [first, filed]
    unit = table.unit_for(case.category, (case.grid_cell, case.street, case.district)) if table else None
    if unit is not None:
        case, dispatched = dispatch_step(case, unit, at=max(at, case.reported_at), actor=MACHINE, by_machine=True)
        events.append(dispatched)
    return case, events


def dispatch_step(
    case: Case, unit: Unit, *, at: datetime, actor: str, by_machine: bool, note: str = ""
) -> tuple[Case, CaseEvent]:
    return apply_action(
        case,
        Action.DISPATCH,
        actor=actor,
        at=at,
        note=note,
        data={"unit": unit.id, "level": str(unit.level)},
        by_machine=by_machine,
    )


def watched_name(alert: Alert) -> str:
    """What a case title calls the asset of an alert: its name, else its id without the layer's prefix."""
    name = alert.details.get("asset_name")
    return str(name) if name else (alert.asset_id or alert.sensor_id).rsplit(":", 1)[-1]
