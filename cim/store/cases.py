"""The SQL of cases (:mod:`cim.model.cases`): their rows, their append-only logs, the alerts they hold, lists.

The case service (above the store) decides what happens to a case with the pure :func:`cim.model.cases.apply_action`
and hands the result here; this module writes it, one transaction per call, and refuses a change made on a version
of the case that is no longer the stored one (optimistic concurrency): ``UPDATE cases … WHERE id = ? AND version = ?
AND last_hash = ?`` changes one row or none, and none is :class:`~cim.errors.Conflict` carrying the stored version
and state. In PostgreSQL the second of two writers racing on one case waits for the first's row lock, then finds the
version moved on; a DuckDB file has one writer process, whose changes run one at a time.

The per-area counts of the heat layer live here too; the responsible units (:class:`UnitRow`) and the photos of
the log are :mod:`cim.store.case_units` (named here as well), the assessment figures :mod:`cim.store.assessment`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cim.errors import Conflict, InvalidInput, NotFound
from cim.geodesy import degrees_for
from cim.model.cases import (
    Action,
    AreaLevel,
    Case,
    CaseEvent,
    CaseSource,
    CaseState,
    Severity,
)
from cim.model.cases import category as find_category
from cim.store.base import BBox, Store
from cim.store.case_rows import (
    CASE_COLUMNS,
    EVENT_SELECT,
    MAX_PHOTO_BYTES,
    UnitRow,
    alert_case_times,
    case_values,
    check_chain,
    event_from_row,
    get_photo,
    insert_cases,
    insert_events,
    load_case_config,
    load_units,
    save_photo,
    save_units,
    select_cases,
    set_unit_token,
    unit_by_token_hash,
)
from cim.store.sql import Where
from cim.store.sqlstore import SqlStore, sql_store

#: The code of the whole city (Shanghai's GB/T 2260 code): an area filter naming it matches every case.
CITY_CODE = "310000"
#: A case list returns at most this many cases a page.
MAX_LIMIT = 10_000
#: The area columns of a case, smallest first.
AREA_COLUMNS: Mapping[str, str] = {"grid_cell": "grid_cell", "street": "street", "district": "district"}

__all__ = [
    "CITY_CODE", "MAX_LIMIT", "MAX_PHOTO_BYTES", "CaseFilter", "UnitRow", "alert_case_times", "alerts_without_case",
    "apply_event", "apply_events", "case_counts_by_area", "case_events", "case_where", "cases_of_alerts", "get_case",
    "get_photo", "insert_case", "insert_cases", "list_cases", "load_case_config", "load_units", "metres",
    "open_cases_near", "open_cases_of_assets", "overdue_cases", "save_photo", "save_units", "set_unit_token",
    "unit_by_token_hash",
]  # fmt: skip
_OPEN = "state <> 'closed'"


# --- cases and their logs ---
def insert_case(store: Store, case: Case, events: Sequence[CaseEvent], *, alert_ids: Sequence[str] = ()) -> None:
    """Store a new case, its first events (its report, and what the machine did at once: file, dispatch …) and the
    alerts it was opened from, in one transaction. The events must chain from seq 1 and end at the case's version
    and hash. The alerts claimed are ``case.alert_ids`` and ``alert_ids``. A case id already stored, or an alert
    already held by another case, is :class:`Conflict` (nothing stored)."""
    if not events:
        raise InvalidInput(f"case {case.id}", "needs its first event (its report)")
    check_chain(case, events, start=0)
    db = sql_store(store)
    p = db.dialect.param
    columns = [*CASE_COLUMNS, "geom"]
    with db.change(f"storing case {case.id}"):
        inserted = db.execute(
            f"INSERT INTO cases ({', '.join(columns)}) VALUES ({', '.join([p] * len(CASE_COLUMNS))}, "
            f"{db.dialect.geom_param()}) ON CONFLICT (id) DO NOTHING",
            case_values(case),
        )
        if inserted == 0:
            raise Conflict(f"case {case.id}", "already exists: a new case needs a new id")
        insert_events(db, events)
        _claim_alerts(db, case.id, [*case.alert_ids, *alert_ids], events[-1].at)


def apply_event(
    store: Store, case: Case, event: CaseEvent, *, expected_version: int, alert_ids: Sequence[str] = ()
) -> None:
    """Store one step of a case: the case as it is after it (``case``, whose version is ``expected_version + 1``),
    the event, and the alerts it joined (``alert_ids`` and a ``join`` event's ``data["alert_id"]``), in one
    transaction. :class:`Conflict` (with ``current`` = the stored
    version and state) when the stored case is no longer at ``expected_version`` (someone acted meanwhile) or an
    alert is held by another case; :class:`NotFound` when there is no such case."""
    if event.seq != expected_version + 1:
        raise InvalidInput(f"event {event.seq} of case {case.id}", f"does not follow version {expected_version}")
    check_chain(case, [event], start=expected_version)
    db = sql_store(store)
    with db.change(f"changing case {case.id}"):
        why = _apply_one(db, case, event, expected_version, [*alert_ids, *_joined(event)])
        if why is not None:
            raise why


def apply_events(store: Store, changes: Sequence[tuple[Case, CaseEvent, int]]) -> list[str]:
    """Store many cases' steps — (the case after, its event, the version it was read at) — in one transaction: the
    machine's rounds (escalations, clears, a batch of dispatches). A case changed meanwhile, or a ``join`` whose
    alert (``event.data["alert_id"]``) another case holds, is skipped, not failed: its id is returned and nothing
    of it is stored; the others are. Cases are written in id order, so two batches never wait on each other in a
    circle. A malformed change (an event that does not chain onto its case) fails the whole batch."""
    for case, event, expected in changes:
        if event.seq != expected + 1:
            raise InvalidInput(f"event {event.seq} of case {case.id}", f"does not follow version {expected}")
        check_chain(case, [event], start=expected)
    if len({case.id for case, _, _ in changes}) != len(changes):
        raise InvalidInput("apply_events changes", "name a case twice: one step per case a batch")
    if not changes:
        return []
    db = sql_store(store)
    skipped = []
    with db.change(f"changing {len(changes)} cases"):
        for case, event, expected in sorted(changes, key=lambda change: change[0].id):
            if _apply_one(db, case, event, expected, _joined(event)) is not None:
                skipped.append(case.id)
    return skipped


def get_case(store: Store, case_id: str) -> Case:
    """The stored case, or :class:`NotFound` naming the id."""
    db = sql_store(store)
    found = select_cases(db, Where(f"id = {db.dialect.param}", [case_id]))
    if not found:
        raise NotFound(f"case {case_id[:200]!r}", "is not in the store")
    return found[0]


def case_events(store: Store, case_id: str) -> list[CaseEvent]:
    """The case's log, oldest first; :class:`NotFound` when there is no such case."""
    db = sql_store(store)
    p = db.dialect.param
    rows = db.select(f"SELECT {EVENT_SELECT} FROM case_events WHERE case_id = {p} ORDER BY seq", [case_id])
    if rows.num_rows == 0:
        get_case(store, case_id)  # NotFound when there is no case; a case with no events cannot be stored
    return [event_from_row(row) for row in rows.to_pylist()]


def cases_of_alerts(store: Store, alert_ids: Sequence[str]) -> dict[str, str]:
    """alert id → the id of the case it opened or joined, for those of ``alert_ids`` a case holds."""
    if not alert_ids:
        return {}
    db = sql_store(store)
    keys = db.dialect.key_in("alert_id", list(dict.fromkeys(alert_ids)))
    rows = db.select(f"SELECT alert_id, case_id FROM case_alerts WHERE {keys.sql}", keys.params).to_pylist()
    return {row["alert_id"]: row["case_id"] for row in rows}


def alerts_without_case(store: Store, *, limit: int = 1000) -> list[str]:
    """Open alerts no case holds, oldest first: what recovery hands to machine dispatch again after a crash."""
    db = sql_store(store)
    sql = (
        "SELECT id FROM alerts a WHERE closed_at IS NULL AND NOT EXISTS "
        f"(SELECT 1 FROM case_alerts c WHERE c.alert_id = a.id) ORDER BY opened_at, id LIMIT {db.dialect.param}"
    )
    return db.select(sql, [_limit(limit)]).column("id").to_pylist()


# --- lists ---
@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFilter:
    """Which cases a list holds; every value is checked when the filter is made (:class:`InvalidInput` naming the
    parameter). ``area`` is a code at any level (a grid cell, street or district; :data:`CITY_CODE` is all);
    ``overdue`` True keeps the cases open past their deadline or handled after it (at ``now``, default the
    present), False the others; ``since``/``until`` bound ``reported_at`` (since ≤ t < until); ``bbox`` is
    (west, south, east, north) in lon/lat. ``count=False`` skips counting the matches."""

    states: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    area: str | None = None
    unit_id: str | None = None
    overdue: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    bbox: BBox | None = None
    source: str | None = None
    severities: tuple[str, ...] = ()
    districts: tuple[str, ...] = ()  # each area column by itself (the OGC collection's queryables)
    streets: tuple[str, ...] = ()
    grid_cells: tuple[str, ...] = ()
    limit: int = 100
    offset: int = 0
    now: datetime | None = None
    count: bool = True

    def __post_init__(self) -> None:
        for state in self.states:
            if state not in CaseState.__members__.values():
                raise InvalidInput(f"state {state!r}", f"is not a case state; known: {', '.join(CaseState)}")
        for value in self.categories:
            find_category(value)
        for value in self.severities:
            if value not in Severity.__members__.values():
                raise InvalidInput(f"severity {value!r}", f"is not a case severity; known: {', '.join(Severity)}")
        if self.source is not None and self.source not in CaseSource.__members__.values():
            raise InvalidInput(f"source {self.source!r}", f"is not a case source; known: {', '.join(CaseSource)}")
        for name in ("area", "unit_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 200):
                raise InvalidInput(f"{name} {str(value)[:200]!r}", "must be a code of 1 to 200 characters")
        for name in ("since", "until", "now"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise InvalidInput(name, f"{value!r} is not a time with a time zone")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput("since", f"{self.since.isoformat()} is not before until {self.until.isoformat()}")
        if self.bbox is not None:
            _check_bbox(self.bbox)
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit {self.limit!r}", f"must be a whole number from 1 to {MAX_LIMIT}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise InvalidInput(f"offset {self.offset!r}", "must be a whole number from 0")


def list_cases(store: Store, f: CaseFilter) -> tuple[list[Case], int | None]:
    """The page of cases ``f`` selects, newest report first (then id, descending), and how many match in all
    (None when ``f.count`` is False)."""
    db = sql_store(store)
    where = case_where(db, f)
    p = db.dialect.param
    page = select_cases(db, where, order="reported_at DESC, id DESC", tail=f" LIMIT {p} OFFSET {p}",
                         tail_params=[f.limit, f.offset])  # fmt: skip
    total = None
    if f.count:
        total = int(db.select(f"SELECT count(*) AS n FROM cases WHERE {where.sql}", where.params)["n"][0].as_py())
    return page, total


def case_where(db: SqlStore, f: CaseFilter) -> Where:
    """The WHERE clause of ``f`` over the ``cases`` table (also for OGC pages of cases)."""
    p = db.dialect.param
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (
        ("state", f.states),
        ("category", [find_category(c).id for c in f.categories]),
        ("severity", f.severities),
        ("district", f.districts),
        ("street", f.streets),
        ("grid_cell", f.grid_cells),
    ):
        if values:
            clauses.append(f"{column} IN ({', '.join([p] * len(values))})")
            params += [str(v) for v in values]
    if f.area is not None and f.area != CITY_CODE:
        clauses.append(f"(grid_cell = {p} OR street = {p} OR district = {p})")
        params += [f.area] * 3
    for column, value in (("unit_id", f.unit_id), ("source", f.source)):
        if value is not None:
            clauses.append(f"{column} = {p}")
            params.append(str(value))
    if f.since is not None:
        clauses.append(f"reported_at >= {p}")
        params.append(f.since)
    if f.until is not None:
        clauses.append(f"reported_at < {p}")
        params.append(f.until)
    if f.bbox is not None:
        inside = db.dialect.point_in_bbox(f.bbox)
        clauses.append(inside.sql)
        params += inside.params
    if f.overdue is not None:
        late = f"(CASE WHEN handled_at IS NOT NULL THEN handled_at > deadline ELSE {_OPEN} AND deadline < {p} END)"
        clauses.append(late if f.overdue else f"NOT {late}")
        params.append(f.now or datetime.now(UTC))
    return Where(" AND ".join(clauses) or "TRUE", params)


def open_cases_near(
    store: Store, *, category: str, lon: float, lat: float, distance_m: float, since: datetime
) -> list[Case]:
    """Open cases of ``category`` reported since ``since`` within ``distance_m`` metres of (lon, lat), nearest
    first: the cases a new alert of the same problem may join."""
    _check_bbox((lon, lat, lon, lat))
    if not math.isfinite(distance_m) or distance_m < 0:
        raise InvalidInput(f"distance {distance_m!r}", "must be a number of metres from 0")
    db = sql_store(store)
    p = db.dialect.param
    dlon, dlat = degrees_for(distance_m, lat)
    window = db.dialect.point_in_bbox((lon - dlon, lat - dlat, lon + dlon, lat + dlat))
    where = Where(
        f"{_OPEN} AND category = {p} AND reported_at >= {p} AND {window.sql}",
        [find_category(category).id, since, *window.params],
    )
    near = [(metres(lon, lat, c.lon, c.lat), c) for c in select_cases(db, where) if c.lon is not None]
    return [c for d, c in sorted(near, key=lambda pair: (pair[0], pair[1].id)) if d <= distance_m]


def open_cases_of_assets(store: Store, asset_ids: Sequence[str]) -> dict[str, Case]:
    """asset id → the open case involving it (the newest report, when several do), for those of ``asset_ids``
    an open case involves: the case a new alert on the same asset joins."""
    if not asset_ids:
        return {}
    db = sql_store(store)
    keys = db.dialect.key_in("a.asset_id", list(dict.fromkeys(asset_ids)))
    rows = db.select(
        f"SELECT a.asset_id, c.id FROM cases c, unnest(c.asset_ids) AS a(asset_id) WHERE c.{_OPEN} AND {keys.sql} "
        "ORDER BY c.reported_at, c.id",
        keys.params,
    ).to_pylist()
    holder = {row["asset_id"]: row["id"] for row in rows}  # the newest report last, so it wins
    if not holder:
        return {}
    by_id = {c.id: c for c in select_cases(db, db.dialect.key_in("id", sorted(set(holder.values()))))}
    return {asset: by_id[case_id] for asset, case_id in holder.items() if case_id in by_id}


def overdue_cases(store: Store, now: datetime, limit: int = 1000) -> list[Case]:
    """Open cases whose deadline passed before ``now`` and that can still escalate (overseen below the city),
    the oldest deadline first. Whether one escalated recently is the caller's to judge (its log says when)."""
    if now.tzinfo is None:
        raise InvalidInput("now", f"{now!r} is not a time with a time zone")
    db = sql_store(store)
    p = db.dialect.param
    where = Where(f"{_OPEN} AND deadline < {p} AND level <> 'city'", [now])
    return select_cases(db, where, order="deadline, id", tail=f" LIMIT {p}", tail_params=[_limit(limit)])


def case_counts_by_area(
    store: Store, level: str, *, open_only: bool = True, overdue_at: datetime | None = None
) -> dict[str, int]:
    """Area code → number of cases (open ones only by default; with ``overdue_at``, only those overdue then, as
    :class:`CaseFilter` ``overdue`` says) at ``level`` (grid_cell, street, district or city, which counts all under
    :data:`CITY_CODE`): the heat layer."""
    db = sql_store(store)
    selected = case_where(db, CaseFilter(overdue=True if overdue_at is not None else None, now=overdue_at))
    clauses = [selected.sql, *([_OPEN] if open_only else [])]
    if level == AreaLevel.CITY:
        sql = f"SELECT count(*) AS n FROM cases WHERE {' AND '.join(clauses)}"
        n = int(db.select(sql, selected.params)["n"][0].as_py())
        return {CITY_CODE: n} if n else {}
    column = _area_column(level)
    clauses.append(f"{column} IS NOT NULL")
    sql = f"SELECT {column} AS code, count(*) AS n FROM cases WHERE {' AND '.join(clauses)} GROUP BY {column}"
    return {row["code"]: int(row["n"]) for row in db.select(sql, selected.params).to_pylist()}


# --- helpers ---
def metres(lon1: float, lat1: float, lon2: float | None, lat2: float | None) -> float:
    """Great-circle distance in metres (haversine on the WGS84 mean radius; within 0.5 % of the spheroid)."""
    assert lon2 is not None and lat2 is not None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(min(1.0, a)))


def _area_column(level: str) -> str:
    if level not in AREA_COLUMNS:
        raise InvalidInput(f"level {level!r}", f"is not one of city, {', '.join(AREA_COLUMNS)}")
    return AREA_COLUMNS[level]


def _apply_one(db: SqlStore, case: Case, event: CaseEvent, expected: int, alert_ids: Sequence[str]) -> Conflict | None:
    """Inside a change: write one step, or return why it cannot be (having written nothing of it)."""
    p = db.dialect.param
    claimed, refused = _try_claim(db, case.id, alert_ids, event.at)
    if refused is not None:
        _unclaim(db, claimed)
        return refused
    *values, point = case_values(case)  # in CASE_COLUMNS order, id first, then the point's WKB
    sets = ", ".join(f"{c} = {p}" for c in CASE_COLUMNS[1:])
    changed = db.execute(
        f"UPDATE cases SET {sets}, geom = {db.dialect.geom_param()} WHERE id = {p} AND version = {p} "
        f"AND last_hash = {p}",
        [*values[1:], point, case.id, expected, event.prev_hash],
    )
    if changed == 0:
        _unclaim(db, claimed)
        rows = db.select(f"SELECT version, state FROM cases WHERE id = {p}", [case.id]).to_pylist()
        if not rows:
            raise NotFound(f"case {case.id[:200]!r}", "is not in the store")
        current = {"version": int(rows[0]["version"]), "state": rows[0]["state"]}
        return Conflict(
            f"case {case.id}",
            f"was changed meanwhile: it is at version {current['version']} ({current['state']}), not {expected}; "
            "read it again and retry",
            current=current,
        )
    insert_events(db, [event])
    return None


def _joined(event: CaseEvent) -> list[str]:
    """The alert a ``join`` event joined to its case."""
    return [str(event.data["alert_id"])] if event.action is Action.JOIN and event.data.get("alert_id") else []


def _claim_alerts(db: SqlStore, case_id: str, alert_ids: Sequence[str], at: datetime) -> None:
    _, refused = _try_claim(db, case_id, alert_ids, at)
    if refused is not None:
        raise refused


def _try_claim(db: SqlStore, case_id: str, alert_ids: Sequence[str], at: datetime) -> tuple[list[str], Conflict | None]:
    """Record the alerts as held by the case; (those newly recorded, the conflict of one another case holds)."""
    p = db.dialect.param
    claimed: list[str] = []
    for alert in dict.fromkeys(alert_ids):
        sql = f"INSERT INTO case_alerts VALUES ({p}, {p}, {p}) ON CONFLICT (alert_id) DO NOTHING"
        if db.execute(sql, [str(alert), case_id, at]) != 0:
            claimed.append(str(alert))
            continue
        holder = db.select(f"SELECT case_id FROM case_alerts WHERE alert_id = {p}", [str(alert)]).to_pylist()
        if holder and holder[0]["case_id"] != case_id:
            owner = holder[0]["case_id"]
            return claimed, Conflict(f"alert {alert}", f"already belongs to case {owner}", current={"case_id": owner})
    return claimed, None


def _unclaim(db: SqlStore, claimed: list[str]) -> None:
    """Take back alert claims made earlier in this transaction (a batch skipping the case)."""
    if claimed:
        keys = db.dialect.key_in("alert_id", claimed)
        db.execute(f"DELETE FROM case_alerts WHERE {keys.sql}", keys.params)


def _check_bbox(bbox: BBox) -> None:
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InvalidInput(f"bbox {bbox!r}", "must be four numbers: west, south, east, north") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)) or not (
        -180 <= west <= east <= 180 and -90 <= south <= north <= 90
    ):
        raise InvalidInput(f"bbox {bbox!r}", "must be west ≤ east in [-180, 180] and south ≤ north in [-90, 90]")


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit {limit!r}", f"must be a whole number from 1 to {MAX_LIMIT}")
    return limit
