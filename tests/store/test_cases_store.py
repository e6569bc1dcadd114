"""The store of cases (cim.store.cases) on DuckDB and PostGIS: rows, logs, concurrency, lists, units, photos."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cim.errors import Conflict, InvalidInput, NotFound, StoreError
from cim.model.cases import (
    Action,
    Case,
    CaseEvent,
    CaseSource,
    Severity,
    apply_action,
    new_case,
    report_event,
    verify_chain,
)
from cim.store import Store
from cim.store import cases as cs
from cim.store.sqlstore import sql_store

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def reported(case_id: str, *, at: datetime = T0, **fields: Any) -> tuple[Case, list[CaseEvent]]:
    fields.setdefault("category", "pipe_burst")
    fields.setdefault("source", CaseSource.SENSOR)
    fields.setdefault("severity", Severity.NORMAL)
    case = new_case(id=case_id, at=at, **fields)
    case, event = report_event(case, actor="machine")
    return case, [event]


def stored(store: Store, case_id: str, steps: Sequence[tuple[str, dict[str, Any]]] = (), **fields: Any) -> Case:
    """A case stored, then taken through ``steps`` (action, apply_action keywords) one apply_event each."""
    case, events = reported(case_id, **fields)
    cs.insert_case(store, case, events)
    for n, (action, kwargs) in enumerate(steps, start=1):
        kwargs = {"actor": "centre", "at": case.reported_at + timedelta(minutes=n), **kwargs}
        after, event = apply_action(case, action, **kwargs)
        cs.apply_event(store, after, event, expected_version=case.version)
        case = after
    return case


Step = tuple[str, dict[str, Any]]
DISPATCH: Step = ("dispatch", {"data": {"unit": "u1"}, "by_machine": True})
FILE: Step = ("file", {})


def test_a_case_and_its_log_read_back_as_written(store: Store) -> None:
    shanghai = timezone(timedelta(hours=8))
    case, events = reported("C1", lon=121.5, lat=31.2, district="310101", street="s1", asset_ids=("a1", "a2"))
    after, filed = apply_action(case, Action.FILE, actor="centre", at=T0.astimezone(shanghai), note="备注 ✓")
    after, dispatched = apply_action(after, Action.DISPATCH, actor="machine", at=T0, data={"unit": "u1"})
    cs.insert_case(store, after, [*events, filed, dispatched], alert_ids=["al1"])
    assert cs.get_case(store, "C1") == after
    log = cs.case_events(store, "C1")
    assert log == [*events, filed, dispatched]
    assert log[1].at.isoformat() == "2026-11-03T16:00:00+08:00"  # spelled as it was hashed
    assert verify_chain(log) is None
    assert cs.cases_of_alerts(store, ["al1", "nope"]) == {"al1": "C1"}


def test_unknown_ids_are_not_found_naming_them(store: Store) -> None:
    for call in (lambda: cs.get_case(store, "C-404"), lambda: cs.case_events(store, "C-404")):
        with pytest.raises(NotFound, match="C-404"):
            call()
    case, _ = reported("C-404")
    after, event = apply_action(case, Action.FILE, actor="x", at=T0)
    with pytest.raises(NotFound, match="C-404"):
        cs.apply_event(store, after, event, expected_version=1)
    with pytest.raises(NotFound, match="photo 'f00'"):
        cs.get_photo(store, "f00")
    with pytest.raises(NotFound, match="unit 'u9'"):
        cs.set_unit_token(store, "u9", None)


def test_a_stale_version_is_a_conflict_naming_the_stored_one(store: Store) -> None:
    case = stored(store, "C1")
    first, event = apply_action(case, Action.FILE, actor="a", at=T0)
    cs.apply_event(store, first, event, expected_version=1)
    second, event = apply_action(case, Action.DISMISS, actor="b", at=T0, note="not ours")
    with pytest.raises(Conflict) as refused:
        cs.apply_event(store, second, event, expected_version=1)
    assert refused.value.current == {"version": 2, "state": "filed"}
    assert cs.get_case(store, "C1") == first
    assert [e.action for e in cs.case_events(store, "C1")] == ["report", "file"]


def test_nothing_is_stored_half_way(store: Store) -> None:
    stored(store, "C1", alert_ids=("al1",))
    with pytest.raises(Conflict, match="already exists"):
        stored(store, "C1")
    case, events = reported("C2")
    with pytest.raises(Conflict, match="alert al1 — already belongs to case C1") as refused:
        cs.insert_case(store, case, events, alert_ids=["al2", "al1"])
    assert refused.value.current == {"case_id": "C1"}
    with pytest.raises(NotFound):
        cs.get_case(store, "C2")
    assert cs.cases_of_alerts(store, ["al1", "al2"]) == {"al1": "C1"}
    # a join whose alert another case holds: the case is left as it was
    other = stored(store, "C3")
    joined, event = apply_action(other, Action.JOIN, actor="machine", at=T0, data={"alert_id": "al1"})
    with pytest.raises(Conflict, match="al1"):
        cs.apply_event(store, joined, event, expected_version=other.version)
    assert cs.get_case(store, "C3") == other and len(cs.case_events(store, "C3")) == 1


def test_a_log_that_does_not_chain_is_refused(store: Store) -> None:
    case, events = reported("C1")
    after, event = apply_action(case, Action.FILE, actor="a", at=T0)
    with pytest.raises(InvalidInput, match="case C1"):
        cs.insert_case(store, case, [*events, event])  # the case is not the one the last event left
    with pytest.raises(InvalidInput):
        cs.insert_case(store, after, [event])  # does not start at the report
    with pytest.raises(InvalidInput, match="first event"):
        cs.insert_case(store, case, [])
    cs.insert_case(store, case, events)
    forged = replace(event, note="forged")
    with pytest.raises(InvalidInput):
        cs.apply_event(store, after, forged, expected_version=1)
    with pytest.raises(InvalidInput, match="does not follow"):
        cs.apply_event(store, after, event, expected_version=3)


@pytest.mark.parametrize("threads", [20])
def test_racing_transitions_on_one_case_make_one_success(store: Store, threads: int) -> None:
    case = stored(store, "C1", [FILE])
    start = threading.Barrier(threads)

    def dispatch(n: int) -> str:
        after, event = apply_action(case, Action.DISPATCH, actor=f"clerk{n}", at=T0, data={"unit": f"u{n}"})
        start.wait(10)
        try:
            cs.apply_event(store, after, event, expected_version=case.version)
        except Conflict as refused:
            assert refused.current == {"version": 3, "state": "dispatched"}
            return "conflict"
        return "ok"

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(dispatch, range(threads)))
    assert sorted(outcomes) == ["conflict"] * (threads - 1) + ["ok"]
    log = cs.case_events(store, "C1")
    assert [e.seq for e in log] == [1, 2, 3] and verify_chain(log) is None
    final = cs.get_case(store, "C1")
    assert final.version == 3 and final.unit_id == log[-1].data["unit"]


def test_writers_that_retry_lose_no_update(store: Store) -> None:
    stored(store, "C1")
    writers, notes = 8, 5

    def write(n: int) -> int:
        retries = 0
        for k in range(notes):
            while True:
                case = cs.get_case(store, "C1")
                after, event = apply_action(case, Action.NOTE, actor=f"w{n}", at=T0, note=f"{n}.{k}")
                try:
                    cs.apply_event(store, after, event, expected_version=case.version)
                    break
                except Conflict:
                    retries += 1
        return retries

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    log = cs.case_events(store, "C1")
    assert len(log) == 1 + writers * notes and verify_chain(log) is None
    assert sorted(e.note for e in log[1:]) == sorted(f"{n}.{k}" for n in range(writers) for k in range(notes))
    assert cs.get_case(store, "C1").version == len(log)


def test_a_batch_skips_the_cases_changed_meanwhile_and_writes_the_rest(store: Store) -> None:
    a, b, c = (stored(store, f"C{n}", [FILE]) for n in (1, 2, 3))
    stale, event = apply_action(b, Action.NOTE, actor="x", at=T0, note="meanwhile")
    cs.apply_event(store, stale, event, expected_version=b.version)
    stored(store, "C9", alert_ids=("held",))
    changes = []
    for case in (c, a, b):
        changes.append(
            (*apply_action(case, Action.DISPATCH, actor="machine", at=T0, data={"unit": "u1"}), case.version)
        )
    joined = apply_action(changes[0][0], Action.JOIN, actor="machine", at=T0, data={"alert_id": "held"})
    assert cs.apply_events(store, changes) == ["C2"]
    assert [cs.get_case(store, f"C{n}").state for n in (1, 2, 3)] == ["dispatched", "filed", "dispatched"]
    assert cs.apply_events(store, [(*joined, changes[0][0].version)]) == ["C3"]  # its alert is C9's
    assert cs.get_case(store, "C3").version == 3 and cs.cases_of_alerts(store, ["held"]) == {"held": "C9"}
    assert cs.apply_events(store, []) == []
    with pytest.raises(InvalidInput, match="twice"):
        cs.apply_events(store, [changes[0], changes[0]])


def test_the_log_is_append_only(store: Store) -> None:
    stored(store, "C1", [FILE])
    cs.save_photo(store, b"\xff\xd8 a photo", "image/jpeg")
    db = sql_store(store)
    if db.dialect.param == "%s":  # PostgreSQL's trigger refuses a rewrite outright
        for statement in ("UPDATE case_events SET note = 'x'", "DELETE FROM case_events", "DELETE FROM case_photos"):
            with pytest.raises(StoreError, match="append-only"), db.change("rewriting the log"):
                db.execute(statement)
    else:  # DuckDB has no triggers: a rewrite shows in the chain
        with db.change("rewriting the log"):
            db.execute("UPDATE case_events SET note = 'x' WHERE seq = 2")
    log = cs.case_events(store, "C1")
    assert (verify_chain(log) is None) == (db.dialect.param == "%s")


def test_lists_filter_by_every_parameter(store: Store) -> None:
    now = T0 + timedelta(days=10)
    areas = {"grid_cell": "g1", "street": "s1", "district": "d1"}
    stored(store, "C1", [FILE, DISPATCH], lon=121.50, lat=31.20, **areas)
    stored(store, "C2", [FILE], at=T0 + timedelta(days=1), lon=121.60, lat=31.30, district="d1", street="s2")
    stored(store, "C3", [("dismiss", {"note": "no"})], at=T0 + timedelta(days=2), district="d2",
           category="gas_leak", source=CaseSource.HOTLINE)  # fmt: skip
    stored(store, "C4", at=now + timedelta(days=1), district="d2")  # not yet past its deadline at ``now``

    def ids(**kwargs: Any) -> list[str]:
        page, total = cs.list_cases(store, cs.CaseFilter(now=now, **kwargs))
        assert total == len(page) or kwargs.get("limit") or kwargs.get("count") is False
        return [c.id for c in page]

    assert ids() == ["C4", "C3", "C2", "C1"]
    assert ids(states=("filed", "dispatched")) == ["C2", "C1"]
    assert ids(categories=("E0401",)) == ids(categories=("gas_leak",)) == ["C3"]
    assert ids(area="g1") == ids(area="s1") == ["C1"]
    assert ids(area="d1") == ["C2", "C1"] and ids(area=cs.CITY_CODE) == ids()
    assert ids(unit_id="u1") == ["C1"] and ids(source="hotline") == ["C3"]
    assert ids(overdue=True) == ["C2", "C1"] and ids(overdue=False) == ["C4", "C3"]
    assert ids(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2)) == ["C2"]
    assert ids(bbox=(121.55, 31.25, 121.65, 31.35)) == ["C2"] and ids(bbox=(121.5, 31.2, 121.5, 31.2)) == ["C1"]
    assert ids(limit=2, offset=1) == ["C3", "C2"]
    page, total = cs.list_cases(store, cs.CaseFilter(limit=1))
    assert total == 4 and len(page) == 1
    assert cs.list_cases(store, cs.CaseFilter(count=False))[1] is None


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"states": ("lost",)}, "state 'lost'"),
        ({"categories": ("cats",)}, "category 'cats'"),
        ({"source": "pigeon"}, "source 'pigeon'"),
        ({"area": ""}, "area"),
        ({"unit_id": "x" * 300}, "unit_id"),
        ({"since": datetime(2026, 1, 1)}, "since"),
        ({"since": T0, "until": T0}, "since"),
        ({"bbox": (1, 2, 0, 3)}, "bbox"),
        ({"bbox": (0, 0, float("nan"), 1)}, "bbox"),
        ({"bbox": ("a", 0, 1, 1)}, "bbox"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_parameter(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        cs.CaseFilter(**kwargs)


def test_open_cases_an_alert_may_join(store: Store) -> None:
    stored(store, "C1", [FILE], lon=121.5, lat=31.2, asset_ids=("a1",))
    stored(store, "C2", [FILE], lon=121.5009, lat=31.2, asset_ids=("a1", "a2"), at=T0 + timedelta(minutes=5))
    stored(store, "C3", [("dismiss", {"note": "x"})], lon=121.5, lat=31.2, asset_ids=("a3",))
    stored(store, "C4", lon=121.5, lat=31.2, category="gas_leak")
    near = cs.open_cases_near(store, category="pipe_burst", lon=121.5001, lat=31.2, distance_m=100, since=T0)
    assert [c.id for c in near] == ["C1", "C2"]  # ~10 m and ~76 m; C3 closed, C4 another category
    assert (
        cs.open_cases_near(store, category="pipe_burst", lon=121.5001, lat=31.2, distance_m=50, since=T0)[0].id == "C1"
    )
    later = T0 + timedelta(minutes=1)
    assert [c.id for c in cs.open_cases_near(store, category="pipe_burst", lon=121.5, lat=31.2, distance_m=500,
                                              since=later)] == ["C2"]  # fmt: skip
    held = cs.open_cases_of_assets(store, ["a1", "a2", "a3", "zz"])
    assert {asset: case.id for asset, case in held.items()} == {"a1": "C2", "a2": "C2"}
    assert cs.open_cases_of_assets(store, []) == {}
    with pytest.raises(InvalidInput, match="distance"):
        cs.open_cases_near(store, category="pipe_burst", lon=121.5, lat=31.2, distance_m=-1, since=T0)
    with pytest.raises(InvalidInput, match="category"):
        cs.open_cases_near(store, category="cats", lon=121.5, lat=31.2, distance_m=1, since=T0)


def test_overdue_cases_and_counts_by_area(store: Store) -> None:
    stored(store, "C1", [FILE], district="d1", street="s1")  # pipe_burst, normal: 2 h
    stored(store, "C2", [FILE], category="gas_leak", district="d1", street="s2")  # 1 h
    stored(store, "C3", [FILE, ("escalate", {}), ("escalate", {})], district="d2")  # overseen by the city already
    stored(store, "C4", [("dismiss", {"note": "x"})], district="d2")
    assert [c.id for c in cs.overdue_cases(store, T0 + timedelta(minutes=90), 10)] == ["C2"]
    assert [c.id for c in cs.overdue_cases(store, T0 + timedelta(hours=3), 10)] == ["C2", "C1"]
    assert [c.id for c in cs.overdue_cases(store, T0 + timedelta(hours=3), 1)] == ["C2"]
    assert cs.case_counts_by_area(store, "district") == {"d1": 2, "d2": 1}
    assert cs.case_counts_by_area(store, "district", open_only=False) == {"d1": 2, "d2": 2}
    assert cs.case_counts_by_area(store, "street") == {"s1": 1, "s2": 1}
    assert cs.case_counts_by_area(store, "city") == {cs.CITY_CODE: 3}
    with pytest.raises(InvalidInput, match="level 'planet'"):
        cs.case_counts_by_area(store, "planet")


def test_units_are_replaced_whole_and_keep_their_tokens(store: Store) -> None:
    units = [
        cs.UnitRow(id="gas-d1", name="燃气公司", name_en="gas company", categories=("gas_leak",), areas=("d1",),
                   level="district", props={"phone": "12345"}),
        cs.UnitRow(id="grid-s1", name="网格", areas=("s1",), reports_to="gas-d1", level="street"),
    ]  # fmt: skip
    assert cs.save_units(store, units) == 2
    assert cs.load_units(store) == units
    cs.set_unit_token(store, "grid-s1", "ab" * 32)
    assert cs.unit_by_token_hash(store, "ab" * 32) == replace(units[1], token_hash="ab" * 32)
    cs.save_units(store, [units[1]])
    assert [(u.id, u.token_hash) for u in cs.load_units(store)] == [("grid-s1", "ab" * 32)]
    cs.set_unit_token(store, "grid-s1", None)
    assert cs.unit_by_token_hash(store, "ab" * 32) is None
    for bad, named in (([units[0], units[0]], "named twice"), ([cs.UnitRow(id="x", name="x", level="moon")], "level")):
        with pytest.raises(InvalidInput, match=named):
            cs.save_units(store, bad)
    with pytest.raises(InvalidInput, match="sha256"):
        cs.set_unit_token(store, "grid-s1", "secret")
    assert [u.id for u in cs.load_units(store)] == ["grid-s1"]  # the refused saves changed nothing


def test_photos_are_kept_once_by_their_hash(store: Store) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    photo = cs.save_photo(store, png, "image/png")
    assert cs.save_photo(store, png, "image/png") == photo and len(photo) == 64
    assert cs.get_photo(store, photo) == ("image/png", png)
    for data, kind, named in ((b"", "image/png", "empty"), (b"<p>", "text/html", "content type"),
                              (b"x" * 11, "image/png", "more than")):  # fmt: skip
        with pytest.raises(InvalidInput, match=named):
            cs.save_photo(store, data, kind, max_bytes=10)


def test_alerts_no_case_holds_are_found_for_recovery(store: Store) -> None:
    from cim.model import Alert

    opened = [Alert(id=f"al{n}", rule="r", sensor_id="s", severity="critical", message="m", value=1.0,
                    opened_at=T0 + timedelta(seconds=n)) for n in range(3)]  # fmt: skip
    store.save_alerts(opened)
    stored(store, "C1", alert_ids=("al1",))
    assert cs.alerts_without_case(store) == ["al0", "al2"]


def test_optimize_keeps_the_case_tables(store: Store) -> None:
    stored(store, "C1", [FILE], lon=121.5, lat=31.2)
    store.optimize()
    assert cs.get_case(store, "C1").state == "filed" and len(cs.case_events(store, "C1")) == 2
    with pytest.raises(Conflict):
        stored(store, "C1")  # the key is still there
