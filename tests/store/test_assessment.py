"""The assessment of cases (cim.store.assessment) against figures worked out by hand, on DuckDB and PostGIS.

Eight water-main bursts (pipe_burst, normal: a 2 h deadline), November 2026, all times UTC:

====  =========  ========  =====================================================================================
case  district   street    steps (hh:mm after the report unless said)
====  =========  ========  =====================================================================================
A     D1         S1        file 0:10, machine dispatch to u1 0:10, accept, handle 1:00, verify, close 1:30
B     D1         S1        file 0:30, dispatch to u1 by a clerk 1:00, accept, handle 3:00 (late), verify, close 4:00
C     D1         S2        file, machine dispatch to u1 0:05, handle 1:00, close 2:00; reopened the next day,
                           machine dispatch again, handled 25:00 (late), closed 26:00
D     D1         S2        file, machine dispatch to u2 0:10; still dispatched (overdue)
E     D2         S3        dismissed 0:30
F     D2         S3        cleared by the machine 0:20
G     D2         S3        file 0:10, dispatch to u3 by a clerk 0:40, accept, handle 1:30; awaiting verification
H     D1         S1        reported 31 October 23:00: outside the period
====  =========  ========  =====================================================================================

Continuous p90 of n sorted values v: v[k] + f·(v[k+1] − v[k]) where k + f = 0.9·(n − 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cim.errors import InvalidInput
from cim.model.cases import CaseSource, Severity, apply_action, new_case, report_event
from cim.store import Store
from cim.store import cases as cs
from cim.store.assessment import FIGURES, assess

NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
NOW = datetime(2026, 12, 10, tzinfo=UTC)


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC) + timedelta(hours=hh, minutes=mm)


def unit(name: str, *, machine: bool) -> dict[str, Any]:
    return {"data": {"unit": name}, "by_machine": machine}


NOTE = {"note": "why"}
CASES: dict[str, tuple[datetime, str, str, list[tuple[str, datetime, dict[str, Any]]]]] = {
    "A": (at(1, 0), "D1", "S1", [("file", at(1, 0, 10), {}), ("dispatch", at(1, 0, 10), unit("u1", machine=True)),
          ("accept", at(1, 0, 20), {}), ("handle", at(1, 1), {}), ("verify", at(1, 1, 10), {}),
          ("close", at(1, 1, 30), {})]),
    "B": (at(2, 0), "D1", "S1", [("file", at(2, 0, 30), {}), ("dispatch", at(2, 1), unit("u1", machine=False)),
          ("accept", at(2, 1, 30), {}), ("handle", at(2, 3), {}), ("verify", at(2, 3, 10), {}),
          ("close", at(2, 4), {})]),
    "C": (at(3, 0), "D1", "S2", [("file", at(3, 0, 5), {}), ("dispatch", at(3, 0, 5), unit("u1", machine=True)),
          ("accept", at(3, 0, 30), {}), ("handle", at(3, 1), {}), ("verify", at(3, 1, 30), {}),
          ("close", at(3, 2), {}), ("reopen", at(4, 0), NOTE), ("dispatch", at(4, 0, 1), unit("u1", machine=True)),
          ("accept", at(4, 0, 30), {}), ("handle", at(4, 1), {}), ("verify", at(4, 1, 30), {}),
          ("close", at(4, 2), {})]),
    "D": (at(5, 0), "D1", "S2", [("file", at(5, 0, 10), {}), ("dispatch", at(5, 0, 10), unit("u2", machine=True))]),
    "E": (at(6, 0), "D2", "S3", [("dismiss", at(6, 0, 30), NOTE)]),
    "F": (at(7, 0), "D2", "S3", [("clear", at(7, 0, 20), {})]),
    "G": (at(8, 0), "D2", "S3", [("file", at(8, 0, 10), {}), ("dispatch", at(8, 0, 40), unit("u3", machine=False)),
          ("accept", at(8, 1), {}), ("handle", at(8, 1, 30), {})]),
    "H": (at(1, -1), "D1", "S1", [("file", at(1, 0), {})]),
}  # fmt: skip


@pytest.fixture
def city(store: Store) -> Store:
    for case_id, (reported, district, street, steps) in CASES.items():
        case = new_case(id=case_id, category="pipe_burst", source=CaseSource.SENSOR, severity=Severity.NORMAL,
                        at=reported, district=district, street=street, grid_cell=f"{street}-g")  # fmt: skip
        case, first = report_event(case, actor="machine")
        events = [first]
        for action, when, kwargs in steps:
            case, event = apply_action(case, action, actor="centre", at=when, **kwargs)
            events.append(event)
        cs.insert_case(store, case, events)
    return store


def figures(**values: Any) -> dict[str, Any]:
    """A row of figures: every one of FIGURES, None unless given."""
    return {name: values.get(name) for name in FIGURES}


def by_code(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["code"]: {k: v for k, v in row.items() if k not in ("code", "level")} for row in rows}


def same(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> bool:
    """Area by area, each figure equal (the floats to a relative 1e-6)."""
    return actual.keys() == expected.keys() and all(actual[k] == pytest.approx(expected[k]) for k in expected)


D1 = figures(
    opened=4, filed=4, dispatched=4, dispatched_by_machine=3, machine_share=0.75, handled=3, handled_on_time=1,
    on_time_rate=1 / 3, closed=3, reopened=1, overdue_open=1,
    # dispatch A 600, B 3600, C 300, D 600 → mean 1275; sorted 300 600 600 3600, 0.9·3 = 2.7 → 600 + 0.7·3000
    mean_dispatch_s=1275.0, p90_dispatch_s=2700.0,
    # handle A 3600, B 10800, C 90000 (the second handling, 25 h) → mean 34800; 0.9·2 = 1.8 → 10800 + 0.8·79200
    mean_handle_s=34800.0, p90_handle_s=74160.0,
    # close A 5400, B 14400, C 93600 → mean 37800; 14400 + 0.8·79200
    mean_close_s=37800.0, p90_close_s=77760.0,
)  # fmt: skip
D2 = figures(
    opened=3, filed=1, dispatched=1, dispatched_by_machine=0, machine_share=0.0, handled=1, handled_on_time=1,
    on_time_rate=1.0, closed=2, reopened=0, overdue_open=0,  # G was handled in time: not overdue
    mean_dispatch_s=2400.0, p90_dispatch_s=2400.0, mean_handle_s=5400.0, p90_handle_s=5400.0,
    # close E 1800, F 1200 → mean 1500; 0.9·1 → 1200 + 0.9·600
    mean_close_s=1500.0, p90_close_s=1740.0,
)  # fmt: skip


def test_a_month_per_district(city: Store) -> None:
    rows = assess(city, level="district", start=NOVEMBER[0], end=NOVEMBER[1], now=NOW)
    assert [(r["level"], r["code"]) for r in rows] == [("district", "D1"), ("district", "D2")]
    assert same(by_code(rows), {"D1": D1, "D2": D2})


def test_drilling_down_from_a_district_to_its_streets(city: Store) -> None:
    rows = by_code(assess(city, level="street", start=NOVEMBER[0], end=NOVEMBER[1], parent="D1", now=NOW))
    assert same(rows, {
        "S1": figures(opened=2, filed=2, dispatched=2, dispatched_by_machine=1, machine_share=0.5, handled=2,
                      handled_on_time=1, on_time_rate=0.5, closed=2, reopened=0, overdue_open=0,
                      mean_dispatch_s=2100.0, p90_dispatch_s=3300.0,  # 600, 3600: 600 + 0.9·3000
                      mean_handle_s=7200.0, p90_handle_s=10080.0,  # 3600, 10800: 3600 + 0.9·7200
                      mean_close_s=9900.0, p90_close_s=13500.0),  # 5400, 14400: 5400 + 0.9·9000
        "S2": figures(opened=2, filed=2, dispatched=2, dispatched_by_machine=2, machine_share=1.0, handled=1,
                      handled_on_time=0, on_time_rate=0.0, closed=1, reopened=1, overdue_open=1,
                      mean_dispatch_s=450.0, p90_dispatch_s=570.0,  # 300, 600: 300 + 0.9·300
                      mean_handle_s=90000.0, p90_handle_s=90000.0, mean_close_s=93600.0, p90_close_s=93600.0),
    })  # fmt: skip
    cells = assess(city, level="grid_cell", start=NOVEMBER[0], end=NOVEMBER[1], parent="S2", now=NOW)
    assert [(r["code"], r["opened"]) for r in cells] == [("S2-g", 2)]


def test_the_city_and_the_units(city: Store) -> None:
    (whole,) = assess(city, level="city", start=NOVEMBER[0], end=NOVEMBER[1], now=NOW)
    assert (whole["code"], whole["opened"], whole["closed"], whole["handled_on_time"]) == (cs.CITY_CODE, 7, 5, 2)
    # dispatch 300 600 600 2400 3600 → mean 1500; 0.9·4 = 3.6 → 2400 + 0.6·1200
    assert (whole["mean_dispatch_s"], whole["p90_dispatch_s"]) == pytest.approx((1500.0, 3120.0))
    units = by_code(assess(city, level="unit", start=NOVEMBER[0], end=NOVEMBER[1], now=NOW))
    assert {u: (f["opened"], f["handled"], f["handled_on_time"], f["overdue_open"]) for u, f in units.items()} == {
        "u1": (3, 3, 1, 0),
        "u2": (1, 0, 0, 1),
        "u3": (1, 1, 1, 0),
    }
    assert by_code(assess(city, level="unit", start=NOVEMBER[0], end=NOVEMBER[1], parent="S3", now=NOW)).keys() == {
        "u3"
    }


def test_a_period_holds_the_cases_reported_in_it(city: Store) -> None:
    october = assess(city, level="district", start=at(1, -24), end=NOVEMBER[0], now=NOW)
    assert [(r["code"], r["opened"], r["filed"], r["dispatched"]) for r in october] == [("D1", 1, 1, 0)]
    assert october[0]["machine_share"] is None and october[0]["on_time_rate"] is None
    assert october[0]["mean_handle_s"] is None and october[0]["overdue_open"] == 1  # H: filed, never handled
    assert assess(city, level="district", start=at(9, 0), end=at(10, 0), now=NOW) == []
    # before D's deadline it is not overdue yet
    (early,) = assess(city, level="district", start=at(5, 0), end=at(6, 0), now=at(5, 1))
    assert early["overdue_open"] == 0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"level": "planet"}, "level 'planet'"),
        ({"start": datetime(2026, 11, 1)}, "start"),
        ({"start": NOVEMBER[1], "end": NOVEMBER[0]}, "start"),
        ({"parent": ""}, "parent"),
        ({"now": datetime(2026, 11, 1)}, "now"),
    ],
)
def test_bad_parameters_are_refused_naming_them(store: Store, kwargs: dict[str, Any], named: str) -> None:
    call: dict[str, Any] = {"level": "district", "start": NOVEMBER[0], "end": NOVEMBER[1], **kwargs}
    with pytest.raises(InvalidInput, match=named):
        assess(store, **call)
