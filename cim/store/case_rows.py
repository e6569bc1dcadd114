"""Rows of the case tables as values: cases and events read and written (for :mod:`cim.store.cases` and
:mod:`cim.store.assessment`), the responsible units of cases and the photos of their logs (named again by
:mod:`cim.store.cases`, where the service finds every function over the case tables)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import shapely

from cim.errors import Conflict, InvalidInput, NotFound, StoreError
from cim.model.cases import (
    Action,
    AreaLevel,
    Case,
    CaseEvent,
    CaseSource,
    CaseState,
    Resolution,
    Severity,
    event_hash,
    verify_chain,
)
from cim.store.base import Store
from cim.store.sql import Where
from cim.store.sqlstore import SqlStore, sql_store

#: Largest photo kept in the log.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
_LISTS = ("asset_ids", "alert_ids")
_ENUMS: Mapping[str, Any] = {
    "source": CaseSource,
    "severity": Severity,
    "state": CaseState,
    "resolution": Resolution,
    "level": AreaLevel,
}
#: The columns of ``cases`` read back into a :class:`Case` (``geom`` is derived from lon/lat when written).
CASE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Case))
EVENT_SELECT = (
    "case_id, seq, action, from_state, to_state, actor, unit_id, acted_at, at_offset_s, note, photos, "
    "CAST(data AS VARCHAR) AS data, prev_hash, hash"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitRow:
    """A responsible unit as stored: the case categories and area codes it answers for, the unit it reports to,
    its level, and the sha256 (hex) of its API token (None: it has none)."""

    id: str
    name: str
    name_en: str | None = None
    categories: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    reports_to: str | None = None
    level: str = AreaLevel.STREET
    token_hash: str | None = None
    props: Mapping[str, Any] = field(default_factory=dict)


_UNIT_COLUMNS = ("id", "name", "name_en", "categories", "areas", "reports_to", "level", "token_hash", "props")


#: The ``cim_meta`` key of the case configuration (the case rules and deadline scale ``cim run`` declared).
CASE_CONFIG_KEY = "case_config"


def save_units(store: Store, units: Sequence[UnitRow] | None, *, config: Mapping[str, Any] | None = None) -> int:
    """Replace every unit with ``units`` (None: leave the units as they are) — and, when given, the case
    configuration with ``config`` (JSON) — in one transaction. A unit kept (by id) keeps its token when its row
    names none. Ids must be unique and non-empty, levels known, token hashes sha256 hex."""
    seen: set[str] = set()
    for unit in units or ():
        if not unit.id or not unit.id.strip() or unit.id in seen:
            raise InvalidInput(f"unit id {unit.id!r}", "is empty or named twice")
        seen.add(unit.id)
        if unit.level not in AreaLevel.__members__.values():
            raise InvalidInput(f"unit {unit.id} level {unit.level!r}", f"is not one of {', '.join(AreaLevel)}")
        _check_token_hash(unit.token_hash)
    db = sql_store(store)
    p = db.dialect.param
    with db.change(f"saving {len(units or ())} units"):
        if units is not None:
            _replace_units(db, units)
        if config is not None:
            db.execute(
                f"INSERT INTO cim_meta VALUES ({p}, {p}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [CASE_CONFIG_KEY, json_text(config)],
            )
    return len(units or ())


def _replace_units(db: SqlStore, units: Sequence[UnitRow]) -> None:
    """Inside :func:`save_units`' transaction: every unit replaced, their tokens kept by id."""
    p = db.dialect.param
    kept = db.select("SELECT id, token_hash FROM units WHERE token_hash IS NOT NULL").to_pylist()
    tokens = {row["id"]: row["token_hash"] for row in kept}
    db.execute("DELETE FROM units")
    values = [p] * (len(_UNIT_COLUMNS) - 1) + [f"CAST({p} AS JSON)"]
    for unit in units:
        db.execute(
            f"INSERT INTO units ({', '.join(_UNIT_COLUMNS)}) VALUES ({', '.join(values)})",
            [unit.id, unit.name, unit.name_en, list(unit.categories), list(unit.areas), unit.reports_to,
             str(unit.level), unit.token_hash or tokens.get(unit.id), json_text(unit.props)],
        )  # fmt: skip


def load_case_config(store: Store) -> dict[str, Any] | None:
    """The case configuration :func:`save_units` kept, or None when none was declared."""
    db = sql_store(store)
    rows = db.select(f"SELECT value FROM cim_meta WHERE key = {db.dialect.param}", [CASE_CONFIG_KEY]).to_pylist()
    if not rows:
        return None
    try:
        value = json.loads(rows[0]["value"])
    except (TypeError, ValueError):
        raise StoreError("case configuration", "in cim_meta is not JSON; run the pipeline again") from None
    return value if isinstance(value, dict) else None


def load_units(store: Store) -> list[UnitRow]:
    """Every unit, by id."""
    return _select_units(sql_store(store), "TRUE", [])


def set_unit_token(store: Store, unit_id: str, token_hash: str | None) -> None:
    """Give the unit the token whose sha256 (hex) is ``token_hash`` (None: take its token away); NotFound when
    there is no such unit."""
    _check_token_hash(token_hash)
    db = sql_store(store)
    p = db.dialect.param
    with db.change(f"setting the token of unit {unit_id}"):
        if not db.select(f"SELECT id FROM units WHERE id = {p}", [unit_id]).num_rows:
            raise NotFound(f"unit {unit_id[:200]!r}", "is not a unit")
        db.execute(f"UPDATE units SET token_hash = {p} WHERE id = {p}", [token_hash, unit_id])


def unit_by_token_hash(store: Store, token_hash: str) -> UnitRow | None:
    """The unit whose token hashes to ``token_hash``, or None."""
    db = sql_store(store)
    found = _select_units(db, f"token_hash = {db.dialect.param}", [token_hash])
    return found[0] if found else None


# --- photos ---
def save_photo(store: Store, data: bytes, content_type: str, *, max_bytes: int = MAX_PHOTO_BYTES) -> str:
    """Keep a photo; its id is the sha256 (hex) of its bytes, so saving it again changes nothing. Refused when it is
    empty, larger than ``max_bytes`` or its content type is not an image's."""
    if not data:
        raise InvalidInput("photo", "is empty")
    if len(data) > max_bytes:
        raise InvalidInput("photo", f"is {len(data):,} bytes, more than the {max_bytes:,} a photo may have")
    if not content_type.startswith("image/") or len(content_type) > 100:
        raise InvalidInput(f"photo content type {content_type[:100]!r}", "is not an image's (image/…)")
    photo_id = hashlib.sha256(data).hexdigest()
    db = sql_store(store)
    p = db.dialect.param
    with db.change("saving a photo"):
        db.execute(
            f"INSERT INTO case_photos VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (id) DO NOTHING",
            [photo_id, content_type, bytes(data), len(data), datetime.now(UTC)],
        )
    return photo_id


def get_photo(store: Store, photo_id: str) -> tuple[str, bytes]:
    """(content type, bytes) of a photo, or NotFound naming the id."""
    db = sql_store(store)
    p = db.dialect.param
    rows = db.select(f"SELECT content_type, bytes FROM case_photos WHERE id = {p}", [photo_id]).to_pylist()
    if not rows:
        raise NotFound(f"photo {photo_id[:200]!r}", "is not in the store")
    return rows[0]["content_type"], bytes(rows[0]["bytes"])


def _select_units(db: SqlStore, where: str, params: Sequence[Any]) -> list[UnitRow]:
    columns = ", ".join(c if c != "props" else "CAST(props AS VARCHAR) AS props" for c in _UNIT_COLUMNS)
    rows = db.select(f"SELECT {columns} FROM units WHERE {where} ORDER BY id", params).to_pylist()
    return [
        UnitRow(**{**row, "categories": tuple(row["categories"]), "areas": tuple(row["areas"]),
                   "props": json.loads(row["props"]) if row["props"] else {}})
        for row in rows
    ]  # fmt: skip


def _check_token_hash(token_hash: str | None) -> None:
    if token_hash is not None and (len(token_hash) != 64 or any(c not in "0123456789abcdef" for c in token_hash)):
        raise InvalidInput("unit token hash", "must be a sha256 digest in lower-case hex (64 characters)")


# --- cases and events ---
def case_values(case: Case) -> list[Any]:
    values: list[Any] = []
    for name in CASE_COLUMNS:
        value = getattr(case, name)
        if name in _LISTS:
            value = list(value)
        elif name in _ENUMS and value is not None:
            value = str(value)
        values.append(value)
    point = None if case.lon is None or case.lat is None else shapely.to_wkb(shapely.Point(case.lon, case.lat))
    return [*values, point]


def select_cases(
    db: SqlStore, where: Where, *, order: str = "id", tail: str = "", tail_params: Sequence[Any] = ()
) -> list[Case]:
    sql = f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE {where.sql} ORDER BY {order}{tail}"
    return [case_from_row(row) for row in db.select(sql, [*where.params, *tail_params]).to_pylist()]


def case_from_row(row: dict[str, Any]) -> Case:
    for name, kind in _ENUMS.items():
        if row[name] is not None:
            row[name] = kind(row[name])
    for name in _LISTS:
        row[name] = tuple(row[name] or ())
    row["dispatched_by_machine"] = bool(row["dispatched_by_machine"])
    return Case(**row)


def event_from_row(row: dict[str, Any]) -> CaseEvent:
    at = row.pop("acted_at").astimezone(timezone(timedelta(seconds=row.pop("at_offset_s"))))
    return CaseEvent(
        **{k: v for k, v in row.items() if k not in ("action", "from_state", "to_state", "photos", "data")},
        at=at,
        action=Action(row["action"]),
        from_state=None if row["from_state"] is None else CaseState(row["from_state"]),
        to_state=CaseState(row["to_state"]),
        photos=tuple(row["photos"] or ()),
        data=json.loads(row["data"]) if row["data"] else {},
    )


def json_text(value: Mapping[str, Any]) -> str:
    """The JSON text a mapping is stored as: the spelling :func:`cim.model.cases.event_hash` reads it in."""
    return json.dumps(dict(value), sort_keys=True, ensure_ascii=False, default=str)


def insert_events(db: SqlStore, events: Sequence[CaseEvent]) -> None:
    """The events, a multi-row statement per 1,000 (one statement per event cost a case most of its insert)."""
    p = db.dialect.param
    row = f"({', '.join([p] * 11)}, CAST({p} AS JSON), {p}, {p})"
    values: list[Any] = []
    for event in events:
        if event.at.tzinfo is None or event.at.utcoffset() is None:
            raise InvalidInput(f"event {event.seq} of case {event.case_id}", "its time has no time zone")
        offset = event.at.utcoffset()
        assert offset is not None
        values.append(
            [event.case_id, event.seq, str(event.action), None if event.from_state is None else str(event.from_state),
             str(event.to_state), event.actor, event.unit_id, event.at, int(offset.total_seconds()), event.note,
             list(event.photos), json_text(event.data), event.prev_hash, event.hash]
        )  # fmt: skip
    for start in range(0, len(values), 1000):
        chunk = values[start : start + 1000]
        db.execute(
            "INSERT INTO case_events (case_id, seq, action, from_state, to_state, actor, unit_id, acted_at, "
            f"at_offset_s, note, photos, data, prev_hash, hash) VALUES {', '.join([row] * len(chunk))}",
            [value for event_values in chunk for value in event_values],
        )


def check_chain(case: Case, events: Sequence[CaseEvent], *, start: int) -> None:
    """The events follow version ``start`` of the case, each hashed right, and end at the case's version/hash."""
    for offset, event in enumerate(events, start=start + 1):
        if event.case_id != case.id or event.seq != offset or event_hash(event) != event.hash:
            raise InvalidInput(f"event {event.seq} of case {event.case_id}", f"is not step {offset} of case {case.id}")
    if start == 0 and (why := verify_chain(list(events))) is not None:
        raise InvalidInput(f"log of case {case.id}", why)
    last = events[-1]
    if case.version != last.seq or case.last_hash != last.hash or case.state is not CaseState(last.to_state):
        raise InvalidInput(f"case {case.id}", f"is not the case its event {last.seq} left (version, hash or state)")


#: New cases per statement of :func:`insert_cases` (PostgreSQL takes at most 65,535 parameters a statement).
INSERT_CHUNK = 200


def insert_cases(store: Store, new: Sequence[tuple[Case, Sequence[CaseEvent]]]) -> None:
    """Many new cases with their first events and the alerts in their ``alert_ids``, in one transaction and a few
    multi-row statements: the machine's batch of alerts costs one commit, not one per case (on DuckDB a case
    alone cost 10–30 ms, most of it statements and commit; see ``bench/cases_live_bench.py``). Any case id already
    stored or alert already held is :class:`Conflict` and nothing is stored: the caller stores them one by one."""
    if not new:
        return
    for case, events in new:
        if not events:
            raise InvalidInput(f"case {case.id}", "needs its first event (its report)")
        check_chain(case, events, start=0)
    db = sql_store(store)
    p = db.dialect.param
    columns = [*CASE_COLUMNS, "geom"]
    row = f"({', '.join([p] * len(CASE_COLUMNS))}, {db.dialect.geom_param()})"
    with db.change(f"storing {len(new)} cases"):
        for start in range(0, len(new), INSERT_CHUNK):
            chunk = new[start : start + INSERT_CHUNK]
            inserted = db.execute(
                f"INSERT INTO cases ({', '.join(columns)}) VALUES {', '.join([row] * len(chunk))} "
                "ON CONFLICT (id) DO NOTHING",
                [value for case, _ in chunk for value in case_values(case)],
            )
            if inserted not in (-1, len(chunk)):
                raise Conflict("new cases", "one of them exists already: store them one by one")
            insert_events(db, [e for _, events in chunk for e in events])
            claims = [(a, case.id, events[-1].at) for case, events in chunk for a in dict.fromkeys(case.alert_ids)]
            if claims:
                claimed = db.execute(
                    f"INSERT INTO case_alerts VALUES {', '.join([f'({p}, {p}, {p})'] * len(claims))} "
                    "ON CONFLICT (alert_id) DO NOTHING",
                    [value for claim in claims for value in claim],
                )
                if claimed not in (-1, len(claims)):
                    raise Conflict("new cases", "another case holds one of their alerts: store them one by one")


def alert_case_times(store: Store, alert_ids: Sequence[str]) -> dict[str, tuple[str, datetime]]:
    """Alert id → (the case holding it, when it was put in that case) for those of ``alert_ids`` a case holds."""
    db = sql_store(store)
    found: dict[str, tuple[str, datetime]] = {}
    for start in range(0, len(alert_ids), 1000):
        chunk = list(alert_ids[start : start + 1000])
        marks = ", ".join([db.dialect.param] * len(chunk))
        rows = db.select(f"SELECT alert_id, case_id, added_at FROM case_alerts WHERE alert_id IN ({marks})", chunk)
        for row in rows.to_pylist():
            found[row["alert_id"]] = (row["case_id"], row["added_at"])
    return found
