"""Threshold rules on readings, and the alerts they open and close.

A :class:`Rule` is one condition — ``above`` / ``below`` a value, ``status`` equal to one of some values, or
``stale`` (no reading for ``threshold`` seconds) — applied to one sensor, or to every sensor of a ``quantity``
and/or bound to an asset of a ``parent_kind``. A sensor's own ``props.thresholds`` become rules of that sensor
(:func:`rules_of_sensor`).

What a command centre can act on:

- **units**: a rule's thresholds are written in its ``unit`` and converted to each sensor's unit when the rules
  are bound to the sensors (:meth:`RuleEngine.set_sensors`); a rule whose unit cannot apply to a sensor (another
  dimension, or a sensor that declares no unit) is not applied to it — logged once and counted in
  :attr:`RuleEngine.unit_mismatches`.
- **deadband** (hysteresis): an ``above`` condition holds from ``value > threshold`` until ``value <= threshold −
  deadband`` (``below`` mirrors it), so a value hovering at the threshold opens one alert, not one per reading.
- **minimum duration**: the condition must hold on every reading for ``min_duration_s`` (by reading times) before
  the sensor counts as firing; the alert opens at the time of the first reading that completes the duration (not
  back-dated to the breach's start: an alert is never opened in the past of when it is raised). A spike shorter
  than that opens nothing.
- **one alert per asset**: alerts are keyed by (rule family, asset): the asset is the sensor's parent (the sensor
  itself when it has none), the family ``f"{quantity}:{condition}"`` for a sensor's own rules and the rule id for
  the others. The first sensor that fires opens the alert (its ``sensor_id``); it closes when none of the asset's
  sensors fire any longer. ``details["sensors"]`` lists the sensors that fired while it was open.
- **text**: :mod:`cim.iot.alert_text` — quantity, value and unit, condition and threshold, asset, street and
  district, in English (``message``) and Chinese (``details["message_zh"]``). Ids are ``family|asset|time`` to the
  second (``-2``, ``-3`` … when one asset's family opens again within the same second).

>>> from datetime import UTC, datetime
>>> from cim.iot.sensors import Sensor
>>> from cim.model import Reading
>>> engine = RuleEngine([Rule(id="gas-low", condition=Condition.BELOW, threshold=200.0, quantity="gas_pressure")])
>>> engine.set_sensors({"p1": Sensor(id="p1", quantity="gas_pressure")})
>>> t = datetime(2026, 5, 1, tzinfo=UTC)
>>> [(a.id, a.is_open) for a in engine.evaluate(Reading(sensor_id="p1", time=t, value=150.0))]
[('gas-low|p1|20260501T000000Z', True)]
>>> [a.is_open for a in engine.evaluate(Reading(sensor_id="p1", time=t, value=250.0))]
[False]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cim.errors import InvalidInput
from cim.iot.alert_text import texts
from cim.iot.sensors import SEVERITIES, Sensor
from cim.iot.units import UnitMismatch, conversion
from cim.model import Alert, Reading

log = logging.getLogger(__name__)


class Condition(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    STATUS = "status"
    STALE = "stale"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One condition on the sensors it selects (all selectors given must match; none given selects every sensor).

    ``unit``: the unit ``threshold`` and ``deadband`` are written in (None: each sensor's own); ``family``: the
    alerts of one family on one asset are one alert (None: the rule id)."""

    id: str
    condition: Condition
    threshold: float | None = None
    statuses: frozenset[str] = frozenset()
    sensor_id: str | None = None
    quantity: str | None = None
    parent_kind: str | None = None
    severity: str = "warning"
    unit: str | None = None
    deadband: float = 0.0
    min_duration_s: float = 0.0
    family: str | None = None

    def __post_init__(self) -> None:
        what = f"rule {self.id!r}"
        if self.condition is Condition.STATUS and not self.statuses:
            raise InvalidInput(what, "a status rule needs the statuses that fire it")
        if self.condition is not Condition.STATUS and self.threshold is None:
            raise InvalidInput(what, f"a {self.condition} rule needs a threshold")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise InvalidInput(f"{what} threshold", f"must be a finite number, got {self.threshold}")
        if self.condition is Condition.STALE and (self.threshold or 0) <= 0:
            raise InvalidInput(what, "a stale rule needs a positive number of seconds")
        if self.severity not in SEVERITIES:
            raise InvalidInput(f"{what} severity {self.severity!r}", f"must be one of {', '.join(SEVERITIES)}")
        for name in ("deadband", "min_duration_s"):
            amount = getattr(self, name)
            if not math.isfinite(amount) or amount < 0:
                raise InvalidInput(f"{what} {name}", f"must be a number ≥ 0, got {amount}")

    @property
    def family_name(self) -> str:
        return self.family or self.id

    def selects(self, sensor: Sensor) -> bool:
        return (
            (self.sensor_id is None or self.sensor_id == sensor.id)
            and (self.quantity is None or self.quantity == sensor.quantity)
            and (self.parent_kind is None or self.parent_kind == sensor.parent_kind)
        )


def rules_of_sensor(sensor: Sensor) -> list[Rule]:
    """The rules a sensor's ``props.thresholds`` declare (their family: ``f"{quantity}:{condition}"``)."""
    t = sensor.thresholds
    severity = str(t.get("severity") or "warning")
    quantity = sensor.quantity or "value"
    rules: list[Rule] = []
    try:
        unit = None if t.get("unit") is None else str(t["unit"])
        deadband = float(t.get("deadband") or 0.0)
        min_duration_s = float(t.get("min_duration_s") or 0.0)
        for key in ("above", "below"):
            if t.get(key) is not None:
                rules.append(
                    Rule(
                        id=f"{sensor.id}:{key}",
                        condition=Condition(key),
                        threshold=float(t[key]),
                        family=f"{quantity}:{key}",
                        unit=unit,
                        deadband=deadband,
                        min_duration_s=min_duration_s,
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
                    family=f"{quantity}:status",
                    min_duration_s=min_duration_s,
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
                    family=f"{quantity}:stale",
                    sensor_id=sensor.id,
                    severity=severity,
                )
            )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"sensor {sensor.id!r} thresholds", f"need numbers and status strings: {exc}") from None
    return rules


def _decimal(value: float) -> float:
    """``value`` without float noise past 12 significant digits (thresholds are written in decimals)."""
    return float(f"{value:.12g}")


class _Bound:
    """One rule on one sensor: its thresholds in the sensor's unit, and whether the sensor fires it (mutable, kept
    across reloads of the sensors). Slots and no allocation: :meth:`RuleEngine.evaluate` runs on every reading."""

    __slots__ = ("condition", "firing", "key", "min_duration", "release", "rule", "sensor", "since", "statuses",
                 "threshold")  # fmt: skip

    def __init__(self, rule: Rule, sensor: Sensor, threshold: float | None, release: float | None) -> None:
        self.rule = rule
        self.sensor = sensor
        self.condition = rule.condition
        self.threshold = threshold  # opens beyond it
        self.release = release  # while firing, holds beyond it (the threshold moved back by the deadband)
        self.statuses = rule.statuses
        self.min_duration = timedelta(seconds=rule.min_duration_s)
        self.key = (rule.family_name, sensor.parent_id or sensor.id)
        self.firing = False
        self.since: datetime | None = None  # start of a breach still shorter than min_duration


class RuleEngine:
    """Evaluates readings against rules and keeps the open alerts. Not thread-safe: one event loop drives it."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._global = list(rules)
        self._sensors: dict[str, Sensor] = {}
        self._bound: dict[str, list[_Bound]] = {}  # sensor id → its rules but stale ones
        self._stale: dict[str, list[_Bound]] = {}  # sensor id → its stale rules
        self.open: dict[tuple[str, str], Alert] = {}  # (rule family, asset id) → open alert
        self._firing: dict[tuple[str, str], list[str]] = {}  # (rule family, asset id) → sensors that fired
        self._stamps: dict[tuple[str, str], tuple[str, int]] = {}  # last id's second and count, per key
        self._mismatch_logged: set[tuple[str, str]] = set()
        self.last_seen: dict[str, datetime] = {}
        #: (rule, sensor) pairs not applied because the rule's unit cannot apply to the sensor.
        self.unit_mismatches = 0

    def set_sensors(self, sensors: Mapping[str, Sensor]) -> None:
        """Bind the rules to the sensors (again: a sensor keeps whether it fires each of its rules)."""
        before = {
            (b.rule.id, b.sensor.id): b for bounds in (*self._bound.values(), *self._stale.values()) for b in bounds
        }
        self._sensors = dict(sensors)
        self._bound = {}
        self._stale = {}
        mismatches = 0
        for sensor in sensors.values():
            for rule in [r for r in self._global if r.selects(sensor)] + rules_of_sensor(sensor):
                bound = self._bind(rule, sensor)
                if bound is None:
                    mismatches += 1
                    continue
                old = before.get((rule.id, sensor.id))
                if old is not None and old.key == bound.key:
                    bound.firing, bound.since = old.firing, old.since
                target = self._stale if rule.condition is Condition.STALE else self._bound
                target.setdefault(sensor.id, []).append(bound)
        self.unit_mismatches = mismatches

    def _bind(self, rule: Rule, sensor: Sensor) -> _Bound | None:
        """The rule on the sensor, its thresholds converted to the sensor's unit; None when its unit cannot apply."""
        if rule.condition not in (Condition.ABOVE, Condition.BELOW):
            return _Bound(rule, sensor, rule.threshold, rule.threshold)
        assert rule.threshold is not None
        threshold, deadband = rule.threshold, rule.deadband
        if rule.unit is not None and rule.unit != sensor.unit:
            try:
                if sensor.unit is None:
                    raise UnitMismatch(f"unit {rule.unit}", f"sensor {sensor.id!r} declares no unit")
                factor, shift, divisor = conversion(rule.unit, sensor.unit)
            except UnitMismatch as exc:
                if (rule.id, sensor.id) not in self._mismatch_logged:
                    self._mismatch_logged.add((rule.id, sensor.id))
                    log.warning("rule %s is not applied to sensor %s: %s", rule.id, sensor.id, exc)
                return None
            threshold = (threshold * factor + shift) / divisor
            deadband = deadband * factor / divisor
        release = threshold - deadband if rule.condition is Condition.ABOVE else threshold + deadband
        # to 12 significant digits: 1.6 + 0.1 is 1.7000000000000002, and a reading of 1.7 must release the alert
        return _Bound(rule, sensor, _decimal(threshold), _decimal(release))

    def restore(self, alerts: Iterable[Alert], last_seen: Mapping[str, datetime]) -> None:
        """Take back the open alerts and the last reading times from the store after a restart (call after
        :meth:`set_sensors`): each alert's sensors fire its rule again until a reading says otherwise."""
        for alert in alerts:
            if not alert.is_open:
                continue
            key, known = self._key_of(alert)
            self.open[key] = alert
            if not known:  # its rule or sensor is gone: listed still, though nothing will close it
                continue
            second, _, count = alert.id.rsplit("|", 1)[-1].partition("-")
            if count.isdigit() or not count:  # the next alert of the key in that second must not take its id
                self._stamps[key] = (second, int(count or 1))
            sensors = alert.details.get("sensors")
            firing = self._firing.setdefault(key, [])
            for sensor_id in sensors if isinstance(sensors, list) and sensors else [alert.sensor_id]:
                for bound in (*self._bound.get(sensor_id, ()), *self._stale.get(sensor_id, ())):
                    if bound.key == key and not bound.firing:
                        bound.firing = True
                        firing.append(sensor_id)
        for sensor_id, time in last_seen.items():
            self.last_seen.setdefault(sensor_id, time)

    def adopt(self, alert: Alert) -> None:
        """Another server's change of ``alert`` (servers sharing one subscription see parts of one sensor's
        readings): an opening is taken as :meth:`restore` takes one, unless this engine has the key open already; a
        closing removes the alert of that id and stops its sensors firing here."""
        if alert.is_open:
            # open here already (both servers opened it in one tick): the first one stays
            if self._key_of(alert)[0] not in self.open:
                self.restore([alert], {})
            return
        key = next((k for k, current in self.open.items() if current.id == alert.id), None)
        if key is None:
            return
        for b in list(self._asset_bounds(key)):
            b.firing = False
            b.since = None
        del self.open[key]
        self._firing.pop(key, None)

    def _key_of(self, alert: Alert) -> tuple[tuple[str, str], bool]:
        """The key ``alert`` is open under here, and whether its rule is still bound to its sensor (else the key is
        the rule and asset as the alert names them)."""
        bounds = (*self._bound.get(alert.sensor_id, ()), *self._stale.get(alert.sensor_id, ()))
        opener = next((b for b in bounds if b.rule.id == alert.rule), None)
        if opener is None:
            return (alert.rule, alert.asset_id or alert.sensor_id), False
        return opener.key, True

    def evaluate(self, reading: Reading, *, seen_at: datetime | None = None) -> list[Alert]:
        """The alerts this reading opens, changes or closes (a reading also ends its sensor's silence)."""
        sensor_id = reading.sensor_id
        seen = seen_at or reading.time
        self.last_seen[sensor_id] = seen
        changed: list[Alert] = []
        time = reading.time
        value = reading.value
        status = reading.status
        for b in self._bound.get(sensor_id, ()):
            condition = b.condition
            if condition is Condition.STATUS:
                if status is None:
                    continue
                hit = status in b.statuses
            elif value is None:
                continue
            elif condition is Condition.ABOVE:
                hit = value > (b.release if b.firing else b.threshold)  # type: ignore[operator]
            else:
                hit = value < (b.release if b.firing else b.threshold)  # type: ignore[operator]
            if hit:
                if b.firing:
                    continue
                if b.min_duration:
                    since = b.since
                    if since is None:
                        b.since = since = time
                    if time - since < b.min_duration:
                        continue
                self._join(b, reading, time, changed)
            else:
                b.since = None
                if b.firing:
                    self._leave(b, time, changed)
        for b in self._stale.get(sensor_id, ()):
            if b.firing:
                self._leave(b, seen, changed)
        return changed

    def check_stale(self, now: datetime, *, started: datetime) -> list[Alert]:
        """Open an alert for each sensor with a stale rule that has not reported for longer than its threshold."""
        changed: list[Alert] = []
        for sensor_id, bounds in self._stale.items():
            last = self.last_seen.get(sensor_id, started)
            for b in bounds:
                assert b.threshold is not None
                if not b.firing and now - last > timedelta(seconds=b.threshold):
                    self._join(b, None, now, changed)
        return changed

    def _join(self, b: _Bound, reading: Reading | None, at: datetime, changed: list[Alert]) -> None:
        """The sensor of ``b`` starts firing: open its asset's alert, or add the sensor to it."""
        b.firing = True
        b.since = None
        key = b.key
        firing = self._firing.setdefault(key, [])
        current = self.open.get(key)
        if current is None:
            firing[:] = [b.sensor.id]
            alert = self._opened(b, reading, at, firing)
        elif b.sensor.id in firing:
            return
        else:
            firing.append(b.sensor.id)
            alert = replace(current, details={**current.details, "sensors": list(firing)})
        self.open[key] = alert
        changed.append(alert)

    def _leave(self, b: _Bound, at: datetime, changed: list[Alert]) -> None:
        """The sensor of ``b`` stops firing: the alert closes when no sensor of its asset fires any more."""
        b.firing = False
        b.since = None
        key = b.key
        if any(other.firing for other in self._asset_bounds(key)):
            return
        current = self.open.pop(key, None)
        self._firing.pop(key, None)
        if current is not None:
            changed.append(replace(current, closed_at=max(at, current.opened_at)))

    def _asset_bounds(self, key: tuple[str, str]) -> Iterable[_Bound]:
        """The bound rules of ``key`` on the sensors that fired it (the only ones that may fire it still)."""
        for sensor_id in self._firing.get(key, ()):
            for b in (*self._bound.get(sensor_id, ()), *self._stale.get(sensor_id, ())):
                if b.key == key:
                    yield b

    def _opened(self, b: _Bound, reading: Reading | None, at: datetime, firing: list[str]) -> Alert:
        rule, sensor = b.rule, b.sensor
        value = reading.value if reading is not None else None
        status = reading.status if reading is not None else None
        message, message_zh = texts(sensor, rule.condition, value=value, threshold=b.threshold, status=status)
        details: dict[str, Any] = {
            "quantity": sensor.quantity,
            "unit": sensor.unit,
            "threshold": b.threshold,
            "condition": str(rule.condition),
            "status": status if rule.condition is Condition.STATUS else None,
            "asset_name": sensor.asset_name,
            "street": sensor.street,
            "district": sensor.district,
            "sensors": list(firing),
            "message_zh": message_zh,
        }
        return Alert(
            id=self._alert_id(b.key, at),
            rule=rule.id,
            sensor_id=sensor.id,
            asset_id=b.key[1],
            opened_at=at,
            severity=rule.severity,
            message=message,
            value=value if rule.condition in (Condition.ABOVE, Condition.BELOW) else None,
            details=details,
        )

    def _alert_id(self, key: tuple[str, str], at: datetime) -> str:
        """``family|asset|YYYYMMDDTHHMMSSZ``; a second alert of the key within the same second gets ``-2`` …"""
        second = (at if at.tzinfo is UTC else at.astimezone(UTC)).strftime("%Y%m%dT%H%M%SZ")
        last = self._stamps.get(key)
        count = last[1] + 1 if last is not None and last[0] == second else 1
        self._stamps[key] = (second, count)
        base = f"{key[0]}|{key[1]}|{second}"
        return base if count == 1 else f"{base}-{count}"
