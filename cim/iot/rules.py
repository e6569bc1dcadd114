"""Threshold rules on readings, and the alerts they open and close.

A :class:`Rule` is one condition — ``above`` / ``below`` a value, ``status`` equal to one of some values, or
``stale`` (no reading for ``threshold`` seconds) — applied to one sensor, or to every sensor of a ``quantity``
and/or bound to an asset of a ``parent_kind``. A sensor's own ``props.thresholds`` become rules of that sensor
(:func:`rules_of_sensor`). An alert opens the first time its rule fires on a sensor and closes when a later reading
no longer fires it; both times are kept.

>>> from datetime import UTC, datetime
>>> from cim.iot.sensors import Sensor
>>> from cim.model import Reading
>>> engine = RuleEngine([Rule(id="gas-low", condition=Condition.BELOW, threshold=200.0, quantity="gas_pressure")])
>>> engine.set_sensors({"p1": Sensor(id="p1", quantity="gas_pressure")})
>>> t = datetime(2026, 5, 1, tzinfo=UTC)
>>> [a.is_open for a in engine.evaluate(Reading(sensor_id="p1", time=t, value=150.0))]
[True]
>>> [a.is_open for a in engine.evaluate(Reading(sensor_id="p1", time=t, value=250.0))]
[False]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cim.errors import InvalidInput
from cim.iot.sensors import Sensor
from cim.model import Alert, Reading


class Condition(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    STATUS = "status"
    STALE = "stale"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One condition on the sensors it selects (all selectors given must match; none given selects every sensor)."""

    id: str
    condition: Condition
    threshold: float | None = None
    statuses: frozenset[str] = frozenset()
    sensor_id: str | None = None
    quantity: str | None = None
    parent_kind: str | None = None
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.condition is Condition.STATUS and not self.statuses:
            raise InvalidInput(f"rule {self.id!r}", "a status rule needs the statuses that fire it")
        if self.condition is not Condition.STATUS and self.threshold is None:
            raise InvalidInput(f"rule {self.id!r}", f"a {self.condition} rule needs a threshold")
        if self.condition is Condition.STALE and (self.threshold or 0) <= 0:
            raise InvalidInput(f"rule {self.id!r}", "a stale rule needs a positive number of seconds")

    def selects(self, sensor: Sensor) -> bool:
        return (
            (self.sensor_id is None or self.sensor_id == sensor.id)
            and (self.quantity is None or self.quantity == sensor.quantity)
            and (self.parent_kind is None or self.parent_kind == sensor.parent_kind)
        )

    def fires(self, reading: Reading) -> bool | None:
        """Whether the reading fires the rule; None when it says nothing about it (a status-only reading and a
        threshold on the value). Stale rules are checked by :meth:`RuleEngine.check_stale`."""
        if self.condition is Condition.STATUS:
            return None if reading.status is None else reading.status in self.statuses
        if self.condition is Condition.STALE or reading.value is None:
            return None
        assert self.threshold is not None
        return reading.value > self.threshold if self.condition is Condition.ABOVE else reading.value < self.threshold

    def describe(self, sensor: Sensor, reading: Reading | None) -> str:
        unit = f" {sensor.unit}" if sensor.unit else ""
        name = sensor.quantity or "value"
        if self.condition is Condition.STALE:
            return f"{sensor.id}: no reading for over {self.threshold:g} s"
        if self.condition is Condition.STATUS:
            return f"{sensor.id}: status {reading.status if reading else '?'}"
        value = reading.value if reading else None
        return f"{sensor.id}: {name} {value:g}{unit} is {self.condition} {self.threshold:g}{unit}"


def rules_of_sensor(sensor: Sensor) -> list[Rule]:
    """The rules a sensor's ``props.thresholds`` declare."""
    t = sensor.thresholds
    severity = str(t.get("severity", "warning"))
    rules: list[Rule] = []
    try:
        for key in ("above", "below"):
            if t.get(key) is not None:
                rules.append(
                    Rule(
                        id=f"{sensor.id}:{key}",
                        condition=Condition(key),
                        threshold=float(t[key]),
                        sensor_id=sensor.id,
                        severity=severity,
                    )
                )
        if t.get("status"):
            statuses = t["status"] if isinstance(t["status"], list) else [t["status"]]
            rules.append(
                Rule(
                    id=f"{sensor.id}:status",
                    condition=Condition.STATUS,
                    statuses=frozenset(str(s) for s in statuses),
                    sensor_id=sensor.id,
                    severity=severity,
                )
            )
        if t.get("stale_s") is not None:
            rules.append(
                Rule(
                    id=f"{sensor.id}:stale",
                    condition=Condition.STALE,
                    threshold=float(t["stale_s"]),
                    sensor_id=sensor.id,
                    severity=severity,
                )
            )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"sensor {sensor.id!r} thresholds", f"need numbers and status strings: {exc}") from None
    return rules


class RuleEngine:
    """Evaluates readings against rules and keeps the open alerts. Not thread-safe: one event loop drives it."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._global = list(rules)
        self._sensors: dict[str, Sensor] = {}
        self._rules: dict[str, list[Rule]] = {}
        self._stale: dict[str, list[Rule]] = {}
        self.open: dict[tuple[str, str], Alert] = {}  # (rule id, sensor id) → open alert
        self.last_seen: dict[str, datetime] = {}

    def set_sensors(self, sensors: Mapping[str, Sensor]) -> None:
        self._sensors = dict(sensors)
        self._rules = {}
        self._stale = {}
        for sensor in sensors.values():
            rules = [r for r in self._global if r.selects(sensor)] + rules_of_sensor(sensor)
            self._rules[sensor.id] = [r for r in rules if r.condition is not Condition.STALE]
            stale = [r for r in rules if r.condition is Condition.STALE]
            if stale:
                self._stale[sensor.id] = stale

    def restore(self, alerts: Iterable[Alert], last_seen: Mapping[str, datetime]) -> None:
        """Take back the open alerts and the last reading times from the store after a restart."""
        for alert in alerts:
            if alert.is_open:
                self.open[(alert.rule, alert.sensor_id)] = alert
        for sensor_id, time in last_seen.items():
            self.last_seen.setdefault(sensor_id, time)

    def evaluate(self, reading: Reading, *, seen_at: datetime | None = None) -> list[Alert]:
        """The alerts this reading opens or closes (a reading also closes its sensor's stale alerts)."""
        sensor_id = reading.sensor_id
        self.last_seen[sensor_id] = seen_at or reading.time
        changed: list[Alert] = []
        sensor = self._sensors.get(sensor_id)
        if sensor is None:
            return changed
        for rule in self._rules.get(sensor_id, ()):
            fired = rule.fires(reading)
            if fired is not None:
                self._move(rule, sensor, reading, fired, reading.time, changed)
        for rule in self._stale.get(sensor_id, ()):
            self._move(rule, sensor, reading, False, seen_at or reading.time, changed)
        return changed

    def check_stale(self, now: datetime, *, started: datetime) -> list[Alert]:
        """Open an alert for each sensor with a stale rule that has not reported for longer than its threshold."""
        changed: list[Alert] = []
        for sensor_id, rules in self._stale.items():
            last = self.last_seen.get(sensor_id, started)
            for rule in rules:
                assert rule.threshold is not None
                if now - last > timedelta(seconds=rule.threshold):
                    self._move(rule, self._sensors[sensor_id], None, True, now, changed)
        return changed

    def _move(
        self, rule: Rule, sensor: Sensor, reading: Reading | None, fired: bool, at: datetime, changed: list[Alert]
    ) -> None:
        key = (rule.id, sensor.id)
        current = self.open.get(key)
        if fired and current is None:
            alert = Alert(
                id=f"{rule.id}|{sensor.id}|{at.strftime('%Y%m%dT%H%M%S.%fZ')}",
                rule=rule.id,
                sensor_id=sensor.id,
                opened_at=at,
                severity=rule.severity,
                message=rule.describe(sensor, reading),
                value=reading.value if reading else None,
            )
            self.open[key] = alert
            changed.append(alert)
        elif not fired and current is not None:
            del self.open[key]
            changed.append(replace(current, closed_at=max(at, current.opened_at)))
