"""Rules per sensor and per kind / quantity, without a broker."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cim.errors import InvalidInput
from cim.iot.rules import Condition, Rule, RuleEngine
from cim.iot.sensors import Sensor, sensor_asset
from cim.model import Reading

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(sensor_id: str, seconds: float, value: float | None = None, status: str | None = None) -> Reading:
    return Reading(sensor_id=sensor_id, time=T0 + timedelta(seconds=seconds), value=value, status=status)


def test_a_rule_for_a_parent_kind_fires_on_every_sensor_bound_to_that_kind() -> None:
    engine = RuleEngine([Rule(id="lift-maint", condition=Condition.STATUS, statuses=frozenset({"maintenance"}),
                              parent_kind="lift")])  # fmt: skip
    engine.set_sensors({"a": Sensor(id="a", parent_kind="lift"), "b": Sensor(id="b", parent_kind="building")})
    assert [x.sensor_id for x in engine.evaluate(at("a", 0, status="maintenance"))] == ["a"]
    assert engine.evaluate(at("b", 0, status="maintenance")) == []


def test_a_status_only_reading_leaves_value_rules_alone() -> None:
    engine = RuleEngine([Rule(id="hot", condition=Condition.ABOVE, threshold=5.0, quantity="temperature")])
    engine.set_sensors({"t": Sensor(id="t", quantity="temperature")})
    assert len(engine.evaluate(at("t", 0, value=6.0))) == 1
    assert engine.evaluate(at("t", 1, status="ok")) == []  # says nothing about the value: stays open
    closed = engine.evaluate(at("t", 2, value=4.0))
    assert closed[0].closed_at == T0 + timedelta(seconds=2) and closed[0].opened_at == T0


def test_stale_alerts_open_after_the_silence_and_close_on_the_next_reading() -> None:
    sensor = Sensor.from_asset(sensor_asset(id="s", parent_id=None, quantity="x", thresholds={"stale_s": 60}))
    engine = RuleEngine()
    engine.set_sensors({"s": sensor})
    engine.evaluate(at("s", 0, value=1.0))
    assert engine.check_stale(T0 + timedelta(seconds=59), started=T0) == []
    opened = engine.check_stale(T0 + timedelta(seconds=61), started=T0)
    assert [a.rule for a in opened] == ["s:stale"]
    assert engine.check_stale(T0 + timedelta(seconds=90), started=T0) == []  # already open
    assert [a.is_open for a in engine.evaluate(at("s", 95, value=1.0))] == [False]


def test_bad_thresholds_are_refused_with_the_sensor_named() -> None:
    with pytest.raises(InvalidInput, match="'s'.*unknown"):
        Sensor.from_asset(sensor_asset(id="s", parent_id=None, quantity="x", thresholds={"over": 3}))
    with pytest.raises(InvalidInput, match="needs a threshold"):
        Rule(id="r", condition=Condition.ABOVE)


def gas_main(sensor_id: str = "gp-1", parent: str | None = "pipe-7", **thresholds: object) -> Sensor:
    return Sensor(
        id=sensor_id,
        parent_id=parent,
        parent_kind="pipe",
        quantity="gas_pressure",
        unit="kPa",
        thresholds=thresholds or {"above": 3.5, "severity": "critical"},
        asset_name="Lujiazui Rd main",
        street="Lujiazui Street",
        district="Pudong New Area",
        street_zh="陆家嘴街道",
        district_zh="浦东新区",
    )


def engine_of(*sensors: Sensor, rules: list[Rule] | None = None) -> RuleEngine:
    engine = RuleEngine(rules or [])
    engine.set_sensors({s.id: s for s in sensors})
    return engine


def feed(engine: RuleEngine, sensor_id: str, values: list[float], step_s: float = 1.0, start_s: float = 0.0) -> list:
    changes = []
    for i, value in enumerate(values):
        changes += engine.evaluate(at(sensor_id, start_s + i * step_s, value=value))
    return changes


def test_a_value_hovering_at_the_threshold_opens_once_and_closes_once_with_a_deadband() -> None:
    engine = engine_of(gas_main(above=3.5, deadband=0.2))
    hovering = [3.4, 3.6, 3.45, 3.55, 3.31, 3.6, 3.32, 3.51]  # never down to 3.3 after opening
    changes = feed(engine, "gp-1", hovering)
    assert [(a.is_open, a.value) for a in changes] == [(True, 3.6)]
    closing = feed(engine, "gp-1", [3.3], start_s=100)
    assert [(a.is_open, a.closed_at) for a in closing] == [(False, T0 + timedelta(seconds=100))]
    without = engine_of(gas_main(above=3.5))  # the same values with no deadband: an alert per crossing
    assert len([a for a in feed(without, "gp-1", hovering) if a.is_open]) == 4


def test_a_below_rule_mirrors_the_deadband() -> None:
    engine = engine_of(gas_main(below=1.6, deadband=0.1))
    changes = feed(engine, "gp-1", [1.7, 1.5, 1.65, 1.55, 1.69, 1.70, 1.5])
    assert [a.is_open for a in changes] == [True, False, True]  # closes at 1.70 (≥ 1.6 + 0.1), not at 1.65


def test_a_spike_shorter_than_the_minimum_duration_opens_nothing() -> None:
    engine = engine_of(gas_main(above=3.5, min_duration_s=60))
    assert feed(engine, "gp-1", [2.5, 9.0, 2.5, 9.0, 9.0, 2.5], step_s=20) == []  # 9.0 held 20 s at most


def test_a_sustained_breach_opens_once_at_the_reading_that_completes_the_duration() -> None:
    engine = engine_of(gas_main(above=3.5, min_duration_s=60))
    changes = feed(engine, "gp-1", [2.5, 4.0, 4.2, 4.1, 4.4, 4.3, 4.6], step_s=25)
    # breach from 25 s; 60 s are complete at the reading of 100 s (75 s into it): opened then, with its value
    assert [(a.opened_at, a.value) for a in changes] == [(T0 + timedelta(seconds=100), 4.4)]


def test_a_status_rule_waits_for_its_minimum_duration_too() -> None:
    lift = Sensor(id="ls", parent_id="lift-3", quantity="lift_status", thresholds={"status": ["fault"],
                  "min_duration_s": 30})  # fmt: skip
    engine = engine_of(lift)
    assert engine.evaluate(at("ls", 0, status="fault")) == [] and engine.evaluate(at("ls", 10, status="ok")) == []
    assert engine.evaluate(at("ls", 20, status="fault")) == []
    assert [a.opened_at for a in engine.evaluate(at("ls", 50, status="fault"))] == [T0 + timedelta(seconds=50)]


def test_two_sensors_on_one_main_give_one_alert_that_closes_when_both_are_back() -> None:
    engine = engine_of(gas_main("gp-a"), gas_main("gp-b"), gas_main("gp-c", parent="pipe-8"))
    opened = engine.evaluate(at("gp-a", 0, value=4.1))
    joined = engine.evaluate(at("gp-b", 1, value=4.3))
    assert len(opened) == 1 and opened[0].asset_id == "pipe-7" and opened[0].sensor_id == "gp-a"
    assert [(a.id, a.is_open, a.details["sensors"]) for a in joined] == [(opened[0].id, True, ["gp-a", "gp-b"])]
    assert len(engine.open) == 1
    assert engine.evaluate(at("gp-a", 2, value=2.0)) == []  # gp-b still fires
    assert engine.evaluate(at("gp-c", 2, value=4.0))[0].asset_id == "pipe-8"  # another main: its own alert
    (closed,) = engine.evaluate(at("gp-b", 3, value=2.0))
    assert closed.id == opened[0].id and closed.closed_at == T0 + timedelta(seconds=3)
    assert [a.asset_id for a in engine.open.values()] == ["pipe-8"]


def test_alert_ids_are_readable_to_the_second_and_never_collide() -> None:
    engine = engine_of(gas_main())
    ids = [a.id for a in feed(engine, "gp-1", [4.0, 2.0, 4.0, 2.0, 4.0], step_s=0.1) if a.is_open]
    assert ids == [
        "gas_pressure:above|pipe-7|20260501T000000Z",
        "gas_pressure:above|pipe-7|20260501T000000Z-2",
        "gas_pressure:above|pipe-7|20260501T000000Z-3",
    ]


def test_the_text_names_quantity_value_threshold_asset_street_and_district_in_english_and_chinese() -> None:
    (alert,) = engine_of(gas_main()).evaluate(at("gp-1", 0.123456, value=4.1))
    assert alert.message == "Gas pressure 4.1 kPa above 3.5 kPa — Lujiazui Rd main, Lujiazui Street, Pudong New Area"
    assert alert.details["message_zh"] == "燃气压力 4.1 kPa 高于 3.5 kPa — Lujiazui Rd main, 陆家嘴街道, 浦东新区"
    assert {k: alert.details[k] for k in ("quantity", "unit", "threshold", "condition", "sensors")} == {
        "quantity": "gas_pressure", "unit": "kPa", "threshold": 3.5, "condition": "above", "sensors": ["gp-1"],
    }  # fmt: skip
    assert alert.severity == "critical" and "." not in alert.id  # no microseconds
    place = {"asset_name": "Lift 3 of Jinmao Tower", "street": "Lujiazui Street", "district": "Pudong New Area"}
    lift = Sensor(id="ls", parent_id="lift-3", quantity="lift_status", thresholds={"status": ["fault"]}, **place)
    (fault,) = engine_of(lift).evaluate(at("ls", 0, status="fault"))
    assert fault.message == "Lift fault — Lift 3 of Jinmao Tower, Lujiazui Street, Pudong New Area"
    assert fault.details["message_zh"].startswith("电梯故障 — Lift 3 of Jinmao Tower")


def test_thresholds_written_in_another_unit_are_converted_to_the_sensors() -> None:
    engine = engine_of(gas_main(above=3500, unit="Pa", deadband=200))
    assert feed(engine, "gp-1", [3.4]) == []
    (opened,) = feed(engine, "gp-1", [3.6], start_s=1)
    assert opened.details["threshold"] == 3.5 and "above 3.5 kPa" in opened.message
    assert feed(engine, "gp-1", [3.35], start_s=2) == []  # deadband 200 Pa = 0.2 kPa: holds above 3.3
    assert [a.is_open for a in feed(engine, "gp-1", [3.3], start_s=3)] == [False]
    global_rule = Rule(id="gas-high", condition=Condition.ABOVE, threshold=0.004, unit="MPa", quantity="gas_pressure")
    plain = Sensor(id="gp-1", parent_id="pipe-7", quantity="gas_pressure", unit="kPa")
    (high,) = engine_of(plain, rules=[global_rule]).evaluate(at("gp-1", 0, value=4.5))
    assert (high.rule, high.details["threshold"]) == ("gas-high", 4.0)


def test_a_rule_whose_unit_cannot_apply_is_not_applied_and_counted() -> None:
    celsius = Rule(id="hot", condition=Condition.ABOVE, threshold=40.0, unit="°C")  # every sensor
    lift = Sensor(id="ls", parent_id="lift-3", quantity="lift_status", thresholds={"status": ["fault"]})
    engine = engine_of(gas_main(above=3.5), lift, rules=[celsius])
    assert engine.unit_mismatches == 2  # on the kPa sensor (another dimension) and the one without a unit
    assert [a.rule for a in engine.evaluate(at("gp-1", 0, value=50.0))] == ["gp-1:above"]  # not "hot"
    own = engine_of(gas_main(above=1.0, unit="m"))
    assert own.unit_mismatches == 1 and own.evaluate(at("gp-1", 0, value=5.0)) == []


def test_severity_levels_are_checked() -> None:
    for severity in ("info", "warning", "critical"):
        Rule(id="r", condition=Condition.ABOVE, threshold=1.0, severity=severity)
    with pytest.raises(InvalidInput, match="severity 'urgent'.*info, warning, critical"):
        Rule(id="r", condition=Condition.ABOVE, threshold=1.0, severity="urgent")
    with pytest.raises(InvalidInput, match="'s'.*severity 'high'"):
        Sensor.from_asset(
            sensor_asset(id="s", parent_id=None, quantity="x", thresholds={"above": 1, "severity": "high"})
        )
    with pytest.raises(InvalidInput, match="deadband"):
        Rule(id="r", condition=Condition.ABOVE, threshold=1.0, deadband=-1)


def test_a_restored_alert_closes_when_its_sensors_are_back_and_reloads_keep_the_state() -> None:
    engine = engine_of(gas_main("gp-a"), gas_main("gp-b"))
    engine.evaluate(at("gp-a", 0, value=4.1))
    (alert,) = engine.evaluate(at("gp-b", 1, value=4.1))
    engine.set_sensors({s.id: s for s in (gas_main("gp-a"), gas_main("gp-b"))})  # a reload: still firing
    assert engine.evaluate(at("gp-a", 2, value=2.0)) == []
    restarted = engine_of(gas_main("gp-a"), gas_main("gp-b"))
    restarted.restore([alert], {})
    assert restarted.evaluate(at("gp-a", 3, value=2.0)) == []
    assert [(a.id, a.is_open) for a in restarted.evaluate(at("gp-b", 4, value=2.0))] == [(alert.id, False)]


def test_an_alert_after_a_restart_within_the_same_second_does_not_take_the_restored_ones_id() -> None:
    (alert,) = engine_of(gas_main()).evaluate(at("gp-1", 0, value=4.0))
    restarted = engine_of(gas_main())
    restarted.restore([alert], {})
    closed, reopened = [
        *restarted.evaluate(at("gp-1", 0.2, value=2.0)),
        *restarted.evaluate(at("gp-1", 0.4, value=4.0)),
    ]
    assert closed.id == alert.id and reopened.id == f"{alert.id}-2"


def test_an_asset_without_a_name_is_named_by_its_kind_and_id_without_the_layer() -> None:
    unnamed = replace(gas_main(), parent_id="pipes:GAS-PD-0000218", asset_name=None, street=None, street_zh=None)
    (alert,) = engine_of(unnamed).evaluate(at("gp-1", 0, value=3.6))
    assert alert.message == "Gas pressure 3.6 kPa above 3.5 kPa — main GAS-PD-0000218, Pudong New Area"
    assert alert.details["message_zh"].endswith("— 管道 GAS-PD-0000218, 浦东新区")
    assert alert.asset_id == "pipes:GAS-PD-0000218" and alert.details["asset_name"] is None
