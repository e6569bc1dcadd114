"""Machine dispatch through the service, on both stores: alerts open dispatched cases with no human step, join open
ones, are idempotent, clear machine cases nobody touched, and survive a crash (recovery at start)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cim.model.cases import Action, AreaLevel, CaseSource, CaseState, Resolution, Severity, verify_chain
from cim.store import Store
from cim.store import cases as case_store
from tests.cases.conftest import T0, Clock, alert, closed, running

pytestmark = pytest.mark.anyio


async def test_alert_opens_a_dispatched_case(city: Store, clock: Clock) -> None:
    published: list[dict[str, Any]] = []
    async with running(city, clock, publish=published.append) as service:
        service.on_alert(alert("s-lift-1", T0))
        result = await service.process_pending()
        assert result is not None and result.opened == 1
        (case_id,) = case_store.cases_of_alerts(city, [alert("s-lift-1", T0).id]).values()
        case, events = await service.get(case_id)
    assert case.state is CaseState.DISPATCHED and case.dispatched_by_machine
    assert case.unit_id == "team-south" and case.level is AreaLevel.STREET
    assert (case.grid_cell, case.street, case.district) == ("310101001001", "310101001", "310101")
    assert case.source is CaseSource.SENSOR and case.severity is Severity.CRITICAL
    assert case.asset_ids == ("lift:1",) and case.lon == pytest.approx(121.42)
    assert [(e.action, e.actor) for e in events] == [
        (Action.REPORT, "machine"),
        (Action.FILE, "machine"),
        (Action.DISPATCH, "machine"),
    ]
    assert verify_chain(events) is None
    assert published[-1] == {
        "id": case.id, "state": "dispatched", "category": "lift_fault", "severity": "critical",
        "unit_id": "team-south", "district": "310101", "lon": case.lon, "lat": case.lat, "version": 3,
        "action": "dispatch",
    }  # fmt: skip


async def test_warning_alert_makes_an_urgent_case_for_the_district(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        service.on_alert(alert("s-lift-4", T0, severity="warning"))
        await service.process_pending()
        (case_id,) = case_store.cases_of_alerts(city, [alert("s-lift-4", T0).id]).values()
        case, _ = await service.get(case_id)
    assert case.severity is Severity.URGENT and case.unit_id == "lift-310101" and case.level is AreaLevel.DISTRICT


async def test_same_alert_twice_makes_one_case(city: Store, clock: Clock) -> None:
    a = alert("s-lift-1", T0)
    async with running(city, clock) as service:
        service.on_alert(a)
        service.on_alert(a)
        await service.process_pending()
        service.on_alert(a)  # delivered again later
        result = await service.process_pending()
        assert result is not None and result.opened == 0 and result.skipped == 1
        cases, matched = await service.list(case_store.CaseFilter())
    assert matched == 1 and cases[0].alert_ids == (a.id,)


async def test_second_alert_on_same_asset_joins(city: Store, clock: Clock) -> None:
    first, second = alert("s-lift-1", T0), alert("s-lift-1", T0 + _s(5))
    async with running(city, clock) as service:
        service.on_alert(first)
        await service.process_pending()
        service.on_alert(second)
        result = await service.process_pending()
        assert result is not None and result.joined == 1 and result.opened == 0
        held = case_store.cases_of_alerts(city, [first.id, second.id])
        assert held[first.id] == held[second.id]
        case, events = await service.get(held[first.id])
    assert case.alert_ids == (first.id, second.id) and events[-1].action is Action.JOIN
    assert events[-1].actor == "machine" and verify_chain(events) is None


async def test_nearby_alerts_join_within_distance_and_window(city: Store, clock: Clock) -> None:
    near, far = alert("s-lift-2", T0 + _s(60)), alert("s-lift-3", T0 + _s(60))  # ~95 m and ~1.9 km away
    late = alert("s-lift-2", T0 + _s(3601 + 60))
    async with running(city, clock) as service:
        service.on_alert(alert("s-lift-1", T0))
        service.on_alert(near)  # in the same batch as the case it joins
        service.on_alert(far)
        result = await service.process_pending()
        assert result is not None and (result.opened, result.joined) == (2, 1)
        held = case_store.cases_of_alerts(city, [alert("s-lift-1", T0).id, near.id, far.id])
        assert held[near.id] == held[alert("s-lift-1", T0).id] != held[far.id]
        case, _ = await service.get(held[near.id])
        assert case.asset_ids == ("lift:1", "lift:2")
        # lift:2 is on that open case now: its next alert joins by asset, whatever the window
        service.on_alert(late)
        result = await service.process_pending()
        assert result is not None and result.joined == 1


async def test_alert_outside_window_opens_new_case(city: Store, clock: Clock) -> None:
    later = alert("s-lift-2", T0 + _s(3700))  # near lift:1's case, but reported over an hour after it
    async with running(city, clock) as service:
        service.on_alert(alert("s-lift-1", T0))
        await service.process_pending()
        clock.advance(seconds=3700)
        service.on_alert(later)
        result = await service.process_pending()
    assert result is not None and result.opened == 1 and result.joined == 0


async def test_clearing_alert_clears_machine_case(city: Store, clock: Clock) -> None:
    a, b = alert("s-lift-1", T0), alert("s-lift-1", T0 + _s(5))
    async with running(city, clock) as service:
        service.on_alert(a)
        service.on_alert(b)
        await service.process_pending()
        service.on_alert(closed(a, T0 + _s(30)))
        result = await service.process_pending()
        assert result is not None and result.cleared == 0  # b is still open
        clock.advance(seconds=60)
        service.on_alert(closed(b, T0 + _s(60)))
        result = await service.process_pending()
        assert result is not None and result.cleared == 1
        case, events = await service.get(case_store.cases_of_alerts(city, [a.id])[a.id])
    assert case.state is CaseState.CLOSED and case.resolution is Resolution.CLEARED
    assert events[-1].action is Action.CLEAR and events[-1].actor == "machine"


async def test_no_clear_after_a_human_acted(city: Store, clock: Clock) -> None:
    a = alert("s-lift-1", T0)
    async with running(city, clock) as service:
        service.on_alert(a)
        await service.process_pending()
        case_id = case_store.cases_of_alerts(city, [a.id])[a.id]
        await service.act(case_id, "note", actor="centre", note="called the company")
        service.on_alert(closed(a, T0 + _s(30)))
        result = await service.process_pending()
        case, _ = await service.get(case_id)
    assert result is not None and result.cleared == 0 and case.state is CaseState.DISPATCHED


async def test_open_and_close_in_one_batch(city: Store, clock: Clock) -> None:
    a = alert("s-gas-1", T0)
    async with running(city, clock) as service:
        service.on_alert(a)
        service.on_alert(closed(a, T0 + _s(1)))
        result = await service.process_pending()
    assert result is not None and (result.opened, result.cleared) == (1, 1)


async def test_unmatched_alerts_are_skipped(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        stale = alert("s-lift-1", T0)
        stale = type(stale)(id="x|s-lift-1|t", rule="s-lift-1:stale", sensor_id="s-lift-1", opened_at=T0)
        unknown = type(stale)(id="y|nobody|t", rule="nobody:above", sensor_id="nobody", opened_at=T0)
        service.on_alert(stale)
        service.on_alert(unknown)
        result = await service.process_pending()
    assert result is not None and result.opened == 0 and result.skipped == 2


async def test_recovery_gives_open_alerts_their_cases(city: Store, clock: Clock) -> None:
    lost, done = alert("s-lift-5", T0), alert("s-gas-1", T0)
    city.save_alerts([lost, closed(done, T0 + _s(5))])  # the IoT service wrote them; the process died
    async with running(city, clock) as service:
        assert service.recovered == 1
        held = case_store.cases_of_alerts(city, [lost.id, done.id])
        case, _ = await service.get(held[lost.id])
    assert done.id not in held and case.unit_id == "lift-310104" and case.state is CaseState.DISPATCHED
    async with running(city, clock) as again:  # a second start finds nothing more to do
        assert again.recovered == 0


async def test_background_loop_dispatches_quickly(city: Store, clock: Clock) -> None:
    async with running(city, clock, background=True, options={"batch_interval": 0.02}) as service:
        for i in range(20):
            service.on_alert(alert("s-lift-5", T0 + _s(i)))
        for _ in range(200):
            if service.stats()["queue"] == 0 and service.stats()["batches"]:
                break
            await asyncio.sleep(0.02)
        stats = service.stats()
    assert stats["opened_by_machine"] == 1 and stats["joined"] == 19 and stats["alert_latency_p99_ms"] < 1000


def _s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)
