"""Cases: every problem found in the city, from report to close, as plain values and one pure state machine.

Shanghai's fine-grained urban management runs a closed loop (发现 → 立案 → 派遣 → 处置 → 核查 → 结案): a problem is
found (a sensor alert, a rule, a hotline call, an inspector, by hand), filed, dispatched to the unit responsible for
its place and kind, handled, verified and closed. A :class:`Case` holds where that loop stands; each step is a
:class:`CaseEvent` in an append-only log chained by hashes, so a rewritten step shows.

States and the actions between them (:data:`TRANSITIONS`)::

    reported ─file→ filed ─dispatch→ dispatched ─accept→ in_progress ─handle→ handled ─verify→ verified ─close→ closed
    reported, filed ─dismiss→ closed (resolution "dismissed": not a case for the city, 不予立案)
    dispatched, in_progress ─return→ filed (the unit sends it back: not ours / wrong place, 退回)
    handled ─reject→ in_progress (verification failed, 核查不通过)
    closed ─reopen→ filed (the problem came back, 重新立案)
    reported, filed, dispatched ─clear→ closed (resolution "cleared": the machine's alert cleared before anyone acted)

Events that change no state: ``escalate`` (past the deadline, one level up: street → district → city), ``join``
(another alert of the same problem joined the case), ``note``.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
>>> case = new_case(id="C1", category="gas_leak", source=CaseSource.SENSOR, severity=Severity.CRITICAL, at=t)
>>> case.state, case.deadline.isoformat()
(<CaseState.REPORTED: 'reported'>, '2026-11-03T08:15:00+00:00')
>>> case, event = apply_action(case, Action.FILE, actor="machine", at=t)
>>> str(event.from_state), str(event.to_state), case.version
('reported', 'filed', 2)
>>> allowed_actions(case.state)
('dispatch', 'dismiss')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cim.errors import Conflict, InvalidInput


class CaseState(StrEnum):
    REPORTED = "reported"
    FILED = "filed"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"


OPEN_STATES: frozenset[CaseState] = frozenset(CaseState) - {CaseState.CLOSED}


class Action(StrEnum):
    FILE = "file"
    DISMISS = "dismiss"
    DISPATCH = "dispatch"
    ACCEPT = "accept"
    RETURN = "return"
    HANDLE = "handle"
    VERIFY = "verify"
    REJECT = "reject"
    CLOSE = "close"
    REOPEN = "reopen"
    CLEAR = "clear"
    ESCALATE = "escalate"
    JOIN = "join"
    NOTE = "note"
    REPORT = "report"  # the first event of every case: it was reported


#: state → action → next state. The order of each state's actions is the order they are offered in.
TRANSITIONS: Mapping[CaseState, Mapping[Action, CaseState]] = {
    CaseState.REPORTED: {
        Action.FILE: CaseState.FILED,
        Action.DISMISS: CaseState.CLOSED,
        Action.CLEAR: CaseState.CLOSED,
    },
    CaseState.FILED: {
        Action.DISPATCH: CaseState.DISPATCHED,
        Action.DISMISS: CaseState.CLOSED,
        Action.CLEAR: CaseState.CLOSED,
    },
    CaseState.DISPATCHED: {
        Action.ACCEPT: CaseState.IN_PROGRESS,
        Action.RETURN: CaseState.FILED,
        Action.CLEAR: CaseState.CLOSED,
    },
    CaseState.IN_PROGRESS: {Action.HANDLE: CaseState.HANDLED, Action.RETURN: CaseState.FILED},
    CaseState.HANDLED: {Action.VERIFY: CaseState.VERIFIED, Action.REJECT: CaseState.IN_PROGRESS},
    CaseState.VERIFIED: {Action.CLOSE: CaseState.CLOSED},
    CaseState.CLOSED: {Action.REOPEN: CaseState.FILED},
}
#: Events recorded on an open case without changing its state.
STATELESS_ACTIONS: frozenset[Action] = frozenset({Action.ESCALATE, Action.JOIN, Action.NOTE})
#: What the responsible unit does; every other action is the command centre's (or the machine's).
UNIT_ACTIONS: frozenset[Action] = frozenset({Action.ACCEPT, Action.RETURN, Action.HANDLE, Action.NOTE})
#: Only the machine clears a case (its alert cleared) and escalates one (its deadline passed).
MACHINE_ACTIONS: frozenset[Action] = frozenset({Action.CLEAR, Action.ESCALATE, Action.JOIN})
#: Actions a person must explain.
NOTE_REQUIRED: frozenset[Action] = frozenset({Action.RETURN, Action.REJECT, Action.REOPEN, Action.DISMISS})


class CaseSource(StrEnum):
    SENSOR = "sensor"  # an IoT alert
    RULE = "rule"  # a model rule (a query that found something)
    HOTLINE = "hotline"  # a citizens' call (12345)
    INSPECTOR = "inspector"  # a grid inspector's report (网格监督员)
    MANUAL = "manual"  # entered by the command centre


class Severity(StrEnum):
    NORMAL = "normal"  # 一般
    URGENT = "urgent"  # 紧急
    CRITICAL = "critical"  # 特急


#: A severity's share of the category's deadline.
SEVERITY_FACTOR: Mapping[Severity, float] = {Severity.NORMAL: 1.0, Severity.URGENT: 0.5, Severity.CRITICAL: 0.25}


class Resolution(StrEnum):
    RESOLVED = "resolved"
    DISMISSED = "dismissed"
    CLEARED = "cleared"


class AreaLevel(StrEnum):
    """The administrative levels a case is governed and assessed at, top first."""

    CITY = "city"
    DISTRICT = "district"
    STREET = "street"  # street or town (街道/镇)
    GRID_CELL = "grid_cell"


#: Escalation goes one level up at a time and stops at the city.
ESCALATES_TO: Mapping[AreaLevel, AreaLevel] = {
    AreaLevel.GRID_CELL: AreaLevel.STREET,
    AreaLevel.STREET: AreaLevel.DISTRICT,
    AreaLevel.DISTRICT: AreaLevel.CITY,
}


@dataclass(frozen=True, slots=True)
class Category:
    """One kind of problem. ``code`` follows the two-level layout of GB/T 30428.2-2013 (digital city management:
    parts 部件 ``P`` and events 事件 ``E``, a major class and a minor one); the major classes are the standard's,
    the minor numbers ours."""

    id: str
    code: str
    zh: str
    en: str
    hours: float  # time to handle a normal case, from its report


CATEGORIES: tuple[Category, ...] = (
    Category("manhole_cover", "P0101", "井盖缺损", "manhole cover missing or broken", 4.0),
    Category("street_light_out", "P0102", "路灯不亮", "street light out", 24.0),
    Category("lift_fault", "P0601", "电梯故障", "lift fault", 4.0),
    Category("overflowing_bin", "E0101", "垃圾满溢", "overflowing bin", 4.0),
    Category("gas_leak", "E0401", "燃气泄漏", "gas leak or pressure fault", 1.0),
    Category("pipe_burst", "E0402", "供水管爆裂", "water main burst", 2.0),
    Category("waterlogging", "E0403", "道路积水", "waterlogging", 2.0),
    Category("illegal_parking", "E0501", "违章停车", "illegal parking", 2.0),
    Category("other", "E0601", "其他事件", "other problem", 72.0),
)
CATEGORY_BY_ID: Mapping[str, Category] = {c.id: c for c in CATEGORIES}


def category(value: str) -> Category:
    """The category with this id or code, or an error listing them."""
    for c in CATEGORIES:
        if value in (c.id, c.code):
            return c
    known = ", ".join(f"{c.id} ({c.code})" for c in CATEGORIES)
    raise InvalidInput(f"category {value!r}", f"is not a case category; known: {known}")


def deadline_for(category_id: str, severity: Severity, reported_at: datetime, *, scale: float = 1.0) -> datetime:
    """When a case must be handled by. ``scale`` shrinks every deadline alike (the demo runs a day in minutes)."""
    hours = category(category_id).hours * SEVERITY_FACTOR[Severity(severity)] * scale
    return reported_at + timedelta(hours=hours)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One problem and where its loop stands. Milestone times are kept on the case (the log holds every step) so
    assessment reads one row per case. ``version`` counts its events: a change names the version it read."""

    id: str
    category: str
    source: CaseSource
    severity: Severity
    state: CaseState = CaseState.REPORTED
    resolution: Resolution | None = None
    title: str = ""
    description: str = ""
    reporter: str | None = None
    lon: float | None = None
    lat: float | None = None
    grid_cell: str | None = None  # area codes (the area assets' ``props.code``)
    street: str | None = None
    district: str | None = None
    asset_ids: tuple[str, ...] = ()
    alert_ids: tuple[str, ...] = ()
    unit_id: str | None = None
    level: AreaLevel = AreaLevel.STREET  # who oversees it now: escalation moves it up
    reported_at: datetime
    deadline: datetime
    filed_at: datetime | None = None
    dispatched_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    dispatched_by_machine: bool = False
    reopened: int = 0
    version: int = 1
    updated_at: datetime | None = None
    last_hash: str = ""

    def __post_init__(self) -> None:
        category(self.category)
        if self.reported_at.tzinfo is None:
            raise InvalidInput(f"case {self.id!r}", "reported_at has no time zone")
        if (self.lon is None) != (self.lat is None):
            raise InvalidInput(f"case {self.id!r}", "a location needs both lon and lat")
        if self.lon is not None and self.lat is not None and not (-180 <= self.lon <= 180 and -90 <= self.lat <= 90):
            raise InvalidInput(f"case {self.id!r} location", f"({self.lon}, {self.lat}) is not a lon/lat")

    @property
    def is_open(self) -> bool:
        return self.state is not CaseState.CLOSED

    def overdue(self, now: datetime) -> bool:
        """Open past its deadline, or handled after it."""
        if self.handled_at is not None:
            return self.handled_at > self.deadline
        return self.is_open and now > self.deadline


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseEvent:
    """One step in a case's log. ``seq`` counts from 1 per case; ``hash`` chains it to the step before, so the
    log cannot be rewritten unseen (:func:`event_hash`)."""

    case_id: str
    seq: int
    action: Action
    from_state: CaseState | None
    to_state: CaseState
    actor: str
    unit_id: str | None = None  # the unit the actor spoke for; None for the command centre and the machine
    at: datetime
    note: str = ""
    photos: tuple[str, ...] = ()  # photo ids (sha256 of the bytes)
    data: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"unit": …} for dispatch, {"level": …} escalate
    prev_hash: str = ""
    hash: str = ""


def event_hash(event: CaseEvent) -> str:
    """sha256 over the previous hash and the event's fields, in a fixed JSON spelling."""
    body = {
        "case_id": event.case_id,
        "seq": event.seq,
        "action": str(event.action),
        "from": None if event.from_state is None else str(event.from_state),
        "to": str(event.to_state),
        "actor": event.actor,
        "unit": event.unit_id,
        "at": event.at.isoformat(),
        "note": event.note,
        "photos": list(event.photos),
        "data": dict(event.data),
        "prev": event.prev_hash,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def allowed_actions(state: CaseState) -> tuple[str, ...]:
    """The actions a person may take from ``state`` (the machine's own ``clear`` left out)."""
    return tuple(str(a) for a in TRANSITIONS[state] if a not in MACHINE_ACTIONS)


def new_case(
    *,
    id: str,
    category: str,
    source: CaseSource,
    severity: Severity,
    at: datetime,
    actor: str = "machine",
    deadline_scale: float = 1.0,
    **fields: Any,
) -> Case:
    """A case just reported (state ``reported``, version 1). Its first event is :func:`report_event`."""
    sev = Severity(severity)
    return Case(
        id=id,
        category=category,
        source=CaseSource(source),
        severity=sev,
        reported_at=at,
        deadline=deadline_for(category, sev, at, scale=deadline_scale),
        updated_at=at,
        reporter=fields.pop("reporter", actor),
        **fields,
    )


def report_event(case: Case, *, actor: str, note: str = "", photos: tuple[str, ...] = ()) -> tuple[Case, CaseEvent]:
    """The case's first event, and the case carrying its hash."""
    event = CaseEvent(
        case_id=case.id,
        seq=1,
        action=Action.REPORT,
        from_state=None,
        to_state=case.state,
        actor=actor,
        at=case.reported_at,
        note=note,
        photos=photos,
        data={"source": str(case.source), "category": case.category, "severity": str(case.severity)},
    )
    event = replace(event, hash=event_hash(event))
    return replace(case, last_hash=event.hash), event


def apply_action(
    case: Case,
    action: Action | str,
    *,
    actor: str,
    at: datetime,
    note: str = "",
    unit_id: str | None = None,
    photos: tuple[str, ...] = (),
    data: Mapping[str, Any] | None = None,
    by_machine: bool = False,
) -> tuple[Case, CaseEvent]:
    """The case after ``action`` and the event recording it, or :class:`~cim.errors.Conflict` naming the actions
    allowed from the current state. Who may act is the caller's check (:data:`UNIT_ACTIONS`); what the action
    needs is checked here: ``dispatch`` a unit (``data["unit"]``), ``escalate`` a level below the city."""
    try:
        act = Action(action)
    except ValueError:
        known = ", ".join(a.value for a in Action if a is not Action.REPORT)
        raise InvalidInput(f"action {action!r}", f"is not a case action; known: {known}") from None
    data = dict(data or {})
    changes: dict[str, Any] = {}
    if act in STATELESS_ACTIONS:
        if not case.is_open and act is not Action.NOTE:
            raise Conflict(f"case {case.id}", f"is closed: {act} applies to open cases", allowed=("reopen",))
        to_state = case.state
        if act is Action.ESCALATE:
            if case.level not in ESCALATES_TO:
                raise Conflict(f"case {case.id}", "is already overseen by the city: it cannot escalate further")
            changes["level"] = ESCALATES_TO[case.level]
            data["level"] = str(changes["level"])
        elif act is Action.JOIN:
            alert = data.get("alert_id")
            if alert and alert not in case.alert_ids:
                changes["alert_ids"] = (*case.alert_ids, str(alert))
            asset = data.get("asset_id")
            if asset and asset not in case.asset_ids:
                changes["asset_ids"] = (*case.asset_ids, str(asset))
    else:
        nexts = TRANSITIONS[case.state]
        if act not in nexts:
            raise Conflict(
                f"case {case.id} action {act}",
                f"is not allowed from state {case.state}; allowed: {', '.join(allowed_actions(case.state)) or 'none'}",
                allowed=allowed_actions(case.state),
                current={"state": str(case.state), "version": case.version},
            )
        to_state = nexts[act]
        changes.update(_milestones(case, act, at, data, by_machine))
    if act in NOTE_REQUIRED and not note.strip():
        raise InvalidInput(f"note of action {act}", "is required: say why")
    event = CaseEvent(
        case_id=case.id,
        seq=case.version + 1,
        action=act,
        from_state=case.state,
        to_state=to_state,
        actor=actor,
        unit_id=unit_id,
        at=at,
        note=note,
        photos=photos,
        data=data,
        prev_hash=case.last_hash,
    )
    event = replace(event, hash=event_hash(event))
    updated = replace(case, state=to_state, version=case.version + 1, updated_at=at, last_hash=event.hash, **changes)
    return updated, event


def _milestones(case: Case, act: Action, at: datetime, data: dict[str, Any], by_machine: bool) -> dict[str, Any]:
    """What the action sets on the case besides its state."""
    if act is Action.FILE:
        return {"filed_at": case.filed_at or at}
    if act is Action.DISPATCH:
        unit = data.get("unit")
        if not unit:
            raise InvalidInput("dispatch unit", "is required: name the unit the case goes to")
        changes: dict[str, Any] = {
            "unit_id": str(unit),
            "dispatched_at": case.dispatched_at or at,
            "dispatched_by_machine": by_machine,
        }
        if data.get("level"):  # the unit's level: a district's gas company answers at the district level
            changes["level"] = AreaLevel(data["level"])
        return changes
    if act is Action.RETURN:
        return {"unit_id": None}
    if act is Action.HANDLE:
        return {"handled_at": at}
    if act is Action.REJECT:
        return {"handled_at": None}
    if act is Action.CLOSE:
        return {"closed_at": at, "resolution": Resolution.RESOLVED}
    if act is Action.DISMISS:
        return {"closed_at": at, "resolution": Resolution.DISMISSED}
    if act is Action.CLEAR:
        return {"closed_at": at, "resolution": Resolution.CLEARED}
    if act is Action.REOPEN:
        return {
            "closed_at": None,
            "resolution": None,
            "handled_at": None,
            "unit_id": None,
            "reopened": case.reopened + 1,
        }
    return {}


def verify_chain(events: list[CaseEvent]) -> str | None:
    """None when the events form an unbroken chain from seq 1; else what is wrong, for ``cim cases verify``."""
    prev = ""
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return f"event {event.seq} where {expected_seq} was expected"
        if event.prev_hash != prev or event_hash(event) != event.hash:
            return f"event {event.seq} ({event.action}) was changed after it was written"
        prev = event.hash
    return None
