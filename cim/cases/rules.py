"""Alert → case rules: which alerts open cases, of which category and severity, and when a new alert joins an open
case instead of opening another.

A rule selects alerts by the quantity their sensor measures (``quantity``), the id of the IoT rule that raised them
(``rule_prefix``: a sensor's own thresholds are rules ``<sensor id>:<above|below|status|stale>``), the alert's
severity (``alert_severity``) and its condition (``conditions``, the part of the rule id after the last ``:``; by
default every one but ``stale`` — a sensor that fell silent is a fault of the sensor, not a problem of the city).
The first rule that selects an alert wins. The case's severity comes from the alert's through ``severity`` (default
critical → critical, warning → urgent, info → normal).

>>> rule = CaseRule(id="gas", category="gas_leak", quantity="gas_pressure")
>>> rule.selects(quantity="gas_pressure", rule_id="p1:below", severity="critical"), rule.case_severity("critical")
(True, <Severity.CRITICAL: 'critical'>)
>>> rule.selects(quantity="gas_pressure", rule_id="p1:stale", severity="critical")
False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cim.errors import InvalidInput
from cim.model.cases import CATEGORIES, CATEGORY_BY_ID, Severity

DEFAULT_SEVERITY: Mapping[str, Severity] = {
    "critical": Severity.CRITICAL,
    "warning": Severity.URGENT,
    "info": Severity.NORMAL,
}
DEFAULT_CONDITIONS: tuple[str, ...] = ("above", "below", "status")
DEFAULT_JOIN_DISTANCE_M = 200.0
DEFAULT_JOIN_WINDOW_S = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseRule:
    id: str
    category: str
    quantity: str | None = None
    rule_prefix: str | None = None
    alert_severity: tuple[str, ...] = ()  # empty: any
    conditions: tuple[str, ...] | None = DEFAULT_CONDITIONS  # None: any
    severity: Mapping[str, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    join_distance_m: float = DEFAULT_JOIN_DISTANCE_M
    join_window_s: float = DEFAULT_JOIN_WINDOW_S

    def __post_init__(self) -> None:
        if self.category not in CATEGORY_BY_ID:
            known = ", ".join(c.id for c in CATEGORIES)
            raise InvalidInput(
                f"case rule {self.id!r} category", f"{self.category!r} is not a case category; known: {known}"
            )
        if self.quantity is None and self.rule_prefix is None:
            raise InvalidInput(f"case rule {self.id!r}", "selects nothing: give a quantity and/or a rule_prefix")
        if self.join_distance_m < 0 or self.join_window_s < 0:
            raise InvalidInput(f"case rule {self.id!r}", "join_distance_m and join_window_s must not be negative")

    def selects(self, *, quantity: str | None, rule_id: str, severity: str) -> bool:
        condition = rule_id.rsplit(":", 1)[-1]
        return (
            (self.quantity is None or self.quantity == quantity)
            and (self.rule_prefix is None or rule_id.startswith(self.rule_prefix))
            and (not self.alert_severity or severity in self.alert_severity)
            and (self.conditions is None or condition in self.conditions)
        )

    def case_severity(self, alert_severity: str) -> Severity:
        return self.severity.get(alert_severity, DEFAULT_SEVERITY.get(alert_severity, Severity.NORMAL))


def case_rules(declared: Iterable[Mapping[str, Any]]) -> list[CaseRule]:
    """Rules from their declarations (the pipeline's ``[[case_rules]]`` as dicts); errors name the rule."""
    rules = []
    for index, entry in enumerate(declared):
        rule_id = str(entry.get("id") or f"case_rules[{index}] ({entry.get('category')})")
        mapping = dict(DEFAULT_SEVERITY)
        for key, value in (entry.get("severity") or {}).items():
            try:
                mapping[str(key)] = Severity(value)
            except ValueError:
                known = ", ".join(s.value for s in Severity)
                raise InvalidInput(
                    f"case rule {rule_id!r} severity.{key}", f"{value!r} is not one of {known}"
                ) from None
        conditions = entry.get("conditions")
        rules.append(
            CaseRule(
                id=rule_id,
                category=str(entry.get("category")),
                quantity=entry.get("quantity"),
                rule_prefix=entry.get("rule_prefix"),
                alert_severity=tuple(entry.get("alert_severity") or ()),
                conditions=DEFAULT_CONDITIONS if conditions is None else tuple(conditions) or None,
                severity=mapping,
                join_distance_m=float(entry.get("join_distance_m", DEFAULT_JOIN_DISTANCE_M)),
                join_window_s=float(entry.get("join_window_s", DEFAULT_JOIN_WINDOW_S)),
            )
        )
    return rules


def rule_for(rules: Sequence[CaseRule], *, quantity: str | None, rule_id: str, severity: str) -> CaseRule | None:
    """The first rule selecting the alert, or None."""
    return next((r for r in rules if r.selects(quantity=quantity, rule_id=rule_id, severity=severity)), None)


#: The demo's rules, and the default when a store carries none.
DEMO_RULES: tuple[CaseRule, ...] = (
    CaseRule(id="gas", category="gas_leak", quantity="gas_pressure"),
    CaseRule(id="water", category="waterlogging", quantity="water_level"),
    CaseRule(id="lift", category="lift_fault", quantity="lift_status"),
)
