"""The dispatch table on hand-made area trees: the most specific area wins, templates expand, and every kind of bad
table (unknown category / area / unit, a gap, an ambiguity, a loop) is refused with a message naming it."""

from __future__ import annotations

from typing import Any

import pytest

from cim.cases.config import build_units
from cim.cases.dispatch import DispatchTable, Unit, expand_units
from cim.errors import InvalidInput
from cim.model.cases import AreaLevel
from tests.cases.conftest import TREE, UNITS

CELL1 = ("310101001001", "310101001", "310101")  # most specific first
CELL3 = ("310101002001", "310101002", "310101")
CELL4 = ("310104001001", "310104001", "310104")


def table(units: list[dict[str, Any]], **options: Any) -> DispatchTable:
    return build_units(units, TREE, **options)


def unit_id(t: DispatchTable, category: str, areas: tuple[str, ...]) -> str | None:
    unit = t.unit_for(category, areas)
    return unit.id if unit is not None else None


def test_most_specific_area_wins() -> None:
    t = table(UNITS)
    assert unit_id(t, "lift_fault", CELL1) == "team-south"  # the street's team
    assert unit_id(t, "lift_fault", CELL3) == "lift-310101"  # the district's company
    assert unit_id(t, "lift_fault", CELL4) == "lift-310104"
    assert unit_id(t, "lift_fault", ()) == "city-lift"  # outside every area: the city-wide one
    assert unit_id(t, "gas_leak", CELL4) == "sh-gas"
    assert unit_id(t, "waterlogging", CELL1) is None  # no unit: the command centre's


def test_levels_come_from_areas() -> None:
    t = table(UNITS)
    assert t.units["team-south"].level is AreaLevel.STREET
    assert t.units["lift-310104"].level is AreaLevel.DISTRICT
    assert t.units["city-lift"].level is AreaLevel.CITY


def test_template_expands_per_district() -> None:
    units = expand_units(UNITS[1:2], TREE)
    assert [(u.id, u.name, u.name_en, u.areas, u.reports_to) for u in units] == [
        ("lift-310101", "黄浦区电梯公司", "Huangpu lifts", ("310101",), "city-lift"),
        ("lift-310104", "徐汇区电梯公司", "Xuhui lifts", ("310104",), "city-lift"),
    ]


def test_template_reports_to_its_parent() -> None:
    units = expand_units(
        [{"per": "street", "id": "team-{code}", "categories": ["lift_fault"], "reports_to": "lift-{parent}"}], TREE
    )
    assert {u.id: u.reports_to for u in units}["team-310104001"] == "lift-310104"


def test_unknown_category_lists_known_ones() -> None:
    with pytest.raises(InvalidInput, match=r"unit 'x': unknown categories lift_falt \(known: manhole_cover,"):
        table([{"id": "x", "name": "X", "categories": ["lift_falt"]}])


def test_unknown_area() -> None:
    with pytest.raises(InvalidInput, match="unit 'x': unknown area codes 999"):
        table([{"id": "x", "categories": ["lift_fault"], "areas": ["999"]}, UNITS[0]])


def test_gap_names_category_and_areas() -> None:
    units = [{"id": "south", "categories": ["lift_fault"], "areas": ["310101001"]}]
    with pytest.raises(InvalidInput) as caught:
        table(units)
    message = str(caught.value)
    assert "category lift_fault has no unit for 2 area(s)" in message
    assert "310101002001 (Cell 3)" in message and "310104001001 (Cell 4)" in message


def test_require_all_categories() -> None:
    table(UNITS)  # only declared categories count by default
    with pytest.raises(InvalidInput, match="category manhole_cover has no unit"):
        table(UNITS, require_all_categories=True)


def test_ambiguity() -> None:
    units = [*UNITS, {"id": "team-2", "categories": ["lift_fault"], "areas": ["310101001"]}]
    with pytest.raises(
        InvalidInput, match="units 'team-south' and 'team-2' both answer for lift_fault in area 310101001"
    ):
        table(units)
    two_cities = [*UNITS, {"id": "gas-2", "categories": ["gas_leak"]}]
    with pytest.raises(InvalidInput, match="both answer for gas_leak in the whole city"):
        table(two_cities)


def test_loop_is_named() -> None:
    units = [
        {"id": "a", "categories": ["gas_leak"], "reports_to": "b", "areas": ["310101"]},
        {"id": "b", "categories": ["gas_leak"], "reports_to": "c", "areas": ["310104"]},
        {"id": "c", "categories": ["lift_fault"], "reports_to": "a"},
    ]
    with pytest.raises(InvalidInput, match="reports_to loops: a → b → c → a"):
        table(units)


def test_reports_to_unknown_unit() -> None:
    with pytest.raises(InvalidInput, match="unit 'x': reports_to 'nobody', which is not a unit"):
        table([{"id": "x", "categories": ["gas_leak"], "reports_to": "nobody"}])


def test_duplicate_unit_and_bad_template() -> None:
    with pytest.raises(InvalidInput, match="unit 'sh-gas' is declared twice"):
        table([*UNITS, UNITS[-1]])
    with pytest.raises(InvalidInput, match="per and areas exclude each other"):
        expand_units([{"id": "t-{code}", "per": "district", "areas": ["310101"], "categories": ["gas_leak"]}], TREE)


def test_units_without_areas_in_store() -> None:
    with pytest.raises(InvalidInput, match="the store holds no areas"):
        build_units(UNITS, {})


def test_every_problem_at_once() -> None:
    units = [Unit(id="a", name="A", categories=("nope",), reports_to="zz")]
    with pytest.raises(InvalidInput) as caught:
        DispatchTable.build(units, TREE)
    assert "unknown categories nope" in str(caught.value) and "reports_to 'zz'" in str(caught.value)
