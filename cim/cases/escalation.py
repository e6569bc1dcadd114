"""Escalation: an open case past its deadline goes one level up (street → district → city), once per deadline span.

A case's span is its deadline minus its report time (the category's hours times the severity's factor). It
escalates at its deadline, again one full span later, and so on until the city oversees it: the k-th escalation is
due at ``deadline + (k - 1) × span``, and a case escalated k times is not escalated again before the (k+1)-th is
due — never twice for one span. Each ``escalate`` event names the level and the unit it goes to: the ``reports_to``
of the unit overseeing it so far (the case's unit at first, then the unit of the last escalation).

Synchronous; runs on the case service's store thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cim.cases.dispatch import Unit
from cim.errors import Conflict
from cim.model.cases import Action, AreaLevel, Case, CaseEvent, apply_action
from cim.store import Store
from cim.store import cases as case_store

log = logging.getLogger(__name__)
OVERDUE_BATCH = 5000
#: ``overdue_cases`` takes deadlines strictly before its time; a case escalates *at* its deadline.
EPSILON = timedelta(microseconds=1)


@dataclass(slots=True)
class Escalator:
    store: Store
    units: Callable[[], Mapping[str, Unit]]
    #: case id → (version seen, when its next escalation is due): spares re-reading the log of a case that waits
    next_due: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    def run(self, now: datetime) -> list[tuple[Case, CaseEvent]]:
        """Escalate every case due at ``now``; returns what changed."""
        changed: list[tuple[Case, CaseEvent]] = []
        for case in case_store.overdue_cases(self.store, now + EPSILON, OVERDUE_BATCH):
            if not case.is_open or case.level is AreaLevel.CITY or now < case.deadline:
                continue
            known = self.next_due.get(case.id)
            if known is not None and known[0] == case.version and now < known[1]:
                continue
            events = case_store.case_events(self.store, case.id)
            escalations = [e for e in events if e.action is Action.ESCALATE]
            span = case.deadline - case.reported_at
            due_at = case.deadline + span * len(escalations)
            if now < due_at:
                self.next_due[case.id] = (case.version, due_at)
                continue
            to_unit = self._next_unit(case, escalations)
            updated, event = apply_action(
                case,
                Action.ESCALATE,
                actor="machine",
                at=now,
                note=f"past its deadline {case.deadline.isoformat()}",
                data={"to_unit": to_unit, "escalation": len(escalations) + 1},
            )
            try:
                case_store.apply_event(self.store, updated, event, expected_version=case.version)
            except Conflict:
                continue  # changed meanwhile: looked at again on the next run
            self.next_due[case.id] = (updated.version, due_at + span)
            changed.append((updated, event))
        if len(self.next_due) > 100_000:
            self.next_due.clear()
        return changed

    def _next_unit(self, case: Case, escalations: list[CaseEvent]) -> str | None:
        units = self.units()
        current = case.unit_id
        for event in reversed(escalations):
            if event.data.get("to_unit"):
                current = str(event.data["to_unit"])
                break
        unit = units.get(current) if current else None
        return unit.reports_to if unit is not None else None
