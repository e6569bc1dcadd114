"""Escalation on a controlled clock, on both stores: at the deadline exactly, again one span later, never twice in
one span, up the units' reports_to, and never past the city."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cim.cases import CaseDraft
from cim.model.cases import Action, AreaLevel
from cim.store import Store
from tests.cases.conftest import Clock, running

pytestmark = pytest.mark.anyio


async def test_escalates_each_span_up_to_the_city(city: Store, clock: Clock) -> None:
    published: list[dict[str, object]] = []
    async with running(city, clock, publish=published.append) as service:
        case, _ = await service.report(
            CaseDraft(category="lift_fault", asset_id="lift:1", severity="critical"), actor="hotline"
        )
        span = case.deadline - case.reported_at
        assert span == timedelta(hours=1) and case.level is AreaLevel.STREET  # lift: 4 h, critical: a quarter

        clock.now = case.deadline - timedelta(microseconds=1)
        assert await service.escalate_overdue() == []
        clock.now = case.deadline  # exactly at the deadline
        (up,) = await service.escalate_overdue()
        assert up.level is AreaLevel.DISTRICT
        assert await service.escalate_overdue() == []  # never twice in one span
        clock.now = case.deadline + span - timedelta(seconds=1)
        assert await service.escalate_overdue() == []
        clock.now = case.deadline + span
        (up,) = await service.escalate_overdue()
        assert up.level is AreaLevel.CITY
        clock.now = case.deadline + 5 * span
        assert await service.escalate_overdue() == []  # the city is the top
        _, events = await service.get(case.id)
    escalations = [e for e in events if e.action is Action.ESCALATE]
    assert [(e.data["level"], e.data["to_unit"], e.actor) for e in escalations] == [
        ("district", "lift-310101", "machine"),
        ("city", "city-lift", "machine"),
    ]
    assert [p["action"] for p in published].count("escalate") == 2
    assert service.stats()["escalated"] == 2


async def test_handled_in_time_never_escalates(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        case, _ = await service.report(CaseDraft(category="lift_fault", asset_id="lift:5"), actor="hotline")
        clock.advance(minutes=30)
        await service.act(case.id, "accept", actor="li", unit_id="lift-310104")
        await service.act(case.id, "handle", actor="li", unit_id="lift-310104")
        await service.act(case.id, "verify", actor="centre")
        await service.act(case.id, "close", actor="centre")
        clock.now = case.deadline + timedelta(days=1)
        assert await service.escalate_overdue() == []


async def test_escalation_after_a_restart_does_not_repeat(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        case, _ = await service.report(CaseDraft(category="lift_fault", asset_id="lift:1"), actor="hotline")
        clock.now = case.deadline + timedelta(minutes=1)
        (up,) = await service.escalate_overdue()
        assert up.level is AreaLevel.DISTRICT
    async with running(city, clock) as fresh:  # no memory of what it did: the log says it
        assert await fresh.escalate_overdue() == []
        clock.now = case.deadline + (case.deadline - case.reported_at)
        (up,) = await fresh.escalate_overdue()
        assert up.level is AreaLevel.CITY


async def test_district_case_goes_straight_to_the_city(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        case, _ = await service.report(CaseDraft(category="lift_fault", asset_id="lift:4"), actor="hotline")
        assert case.level is AreaLevel.DISTRICT
        clock.now = case.deadline
        (up,) = await service.escalate_overdue()
        _, events = await service.get(case.id)
    assert up.level is AreaLevel.CITY and events[-1].data["to_unit"] == "city-lift"
