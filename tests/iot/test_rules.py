"""Rules per sensor and per kind / quantity, without a broker."""

from __future__ import annotations

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
