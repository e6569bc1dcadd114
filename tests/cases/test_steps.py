"""People's steps through the service, on both stores: the state machine (every allowed transition, refused ones
naming the allowed), permissions, optimistic concurrency, reports from the hotline, unit tokens, bad photos."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
from PIL import Image

from cim.cases import CaseDraft, CaseService, Photo
from cim.cases.photos import MAX_PHOTO_BYTES
from cim.errors import Conflict, InvalidInput, NotFound, NotPermitted
from cim.model.cases import Action, CaseState, Resolution, verify_chain
from cim.store import Store
from cim.store import cases as case_store
from tests.cases.conftest import Clock, running

pytestmark = pytest.mark.anyio
LIFT_DRAFT = CaseDraft(category="lift_fault", asset_id="lift:1", title="lift stuck", reporter="12345 caller")


def png(size: tuple[int, int] = (4, 4), kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, kind)
    return out.getvalue()


async def dispatched(service: CaseService) -> str:
    case, _ = await service.report(LIFT_DRAFT, actor="hotline")
    assert case.state is CaseState.DISPATCHED and case.unit_id == "team-south"
    return case.id


async def test_full_loop_with_return_reject_reopen(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        cid = await dispatched(service)
        unit = {"actor": "wang", "unit_id": "team-south"}
        steps = [
            ("return", unit, "not our lift", CaseState.FILED),
            ("dispatch", {"actor": "centre"}, "", CaseState.DISPATCHED),
            ("accept", unit, "", CaseState.IN_PROGRESS),
            ("handle", unit, "", CaseState.HANDLED),
            ("reject", {"actor": "centre"}, "still stuck", CaseState.IN_PROGRESS),
            ("handle", unit, "fixed the door", CaseState.HANDLED),
            ("verify", {"actor": "inspector"}, "", CaseState.VERIFIED),
            ("close", {"actor": "centre"}, "", CaseState.CLOSED),
            ("reopen", {"actor": "centre"}, "stuck again", CaseState.FILED),
            ("dismiss", {"actor": "centre"}, "duplicate call", CaseState.CLOSED),
        ]
        for action, who, note, expected in steps:
            clock.advance(minutes=5)
            case, event = await service.act(cid, action, note=note, **who)  # type: ignore[arg-type]
            assert case.state is expected, action
            assert event.at == clock.now and event.actor == who["actor"]
        case, events = await service.get(cid)
    assert case.resolution is Resolution.DISMISSED and case.reopened == 1
    assert not case.dispatched_by_machine  # the centre dispatched it again by hand
    assert [e.action for e in events][:4] == [Action.REPORT, Action.FILE, Action.DISPATCH, Action.RETURN]
    assert verify_chain(events) is None and case.version == len(events)


async def test_refused_transition_names_allowed(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        cid = await dispatched(service)
        with pytest.raises(Conflict, match="allowed: accept, return") as caught:
            await service.act(cid, "close", actor="centre")
        assert caught.value.allowed == ("accept", "return")
        with pytest.raises(InvalidInput, match="note of action return"):
            await service.act(cid, "return", actor="wang", unit_id="team-south")
        with pytest.raises(InvalidInput, match="action 'fly'"):
            await service.act(cid, "fly", actor="centre")
        with pytest.raises(NotPermitted, match="machine only"):
            await service.act(cid, "clear", actor="centre")
        with pytest.raises(NotFound, match="case 'C-none'"):
            await service.act("C-none", "accept", actor="centre")
        _, events = await service.get(cid)
    assert len(events) == 3  # nothing refused was written


async def test_unit_acts_only_on_its_own_cases(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        cid = await dispatched(service)
        with pytest.raises(NotPermitted, match="dispatched to unit 'team-south'"):
            await service.act(cid, "accept", actor="li", unit_id="lift-310104")
        with pytest.raises(NotPermitted, match="is the command centre's"):
            await service.act(cid, "close", actor="wang", unit_id="team-south")
        await service.act(cid, "accept", actor="wang", unit_id="team-south")


async def test_stale_version_is_a_conflict(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        cid = await dispatched(service)
        await service.act(cid, "note", actor="centre", note="seen", version=3)
        with pytest.raises(Conflict, match="you read version 3, it is at version 4") as caught:
            await service.act(cid, "accept", actor="wang", unit_id="team-south", version=3)
    assert caught.value.current == {"state": "dispatched", "version": 4}


async def test_concurrent_tasks_one_success(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        cid = await dispatched(service)
        outcomes = await asyncio.gather(
            *(service.act(cid, "accept", actor=f"w{i}", unit_id="team-south", version=3) for i in range(12)),
            return_exceptions=True,
        )
        case, events = await service.get(cid)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    assert case.state is CaseState.IN_PROGRESS and len(events) == 4 and verify_chain(events) is None


def test_concurrent_writers_on_the_store(city: Store, clock: Clock, store_url: str) -> None:
    """Many threads, each with a service of its own (PostGIS: its own connection), act on one case at once."""
    if not store_url.startswith("postgresql"):
        pytest.skip("a DuckDB file has one writer process: the one-service test above covers it")
    from cim.store import open_store

    async def make() -> str:
        async with running(city, clock) as service:
            return await dispatched(service)

    cid = asyncio.run(make())
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        async def go() -> None:
            with open_store(store_url) as own:
                async with running(own, clock) as service:
                    barrier.wait()
                    try:
                        await service.act(cid, "accept", actor=f"w{i}", unit_id="team-south", version=3)
                        results.append("ok")
                    except Conflict:
                        results.append("conflict")

        asyncio.run(go())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = case_store.case_events(city, cid)
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    assert len(events) == 4 and verify_chain(events) is None


async def test_report_by_point_and_outside(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        case, events = await service.report(
            CaseDraft(category="gas_leak", lon=121.55, lat=31.2, severity="urgent", source="inspector"), actor="zhao"
        )
        assert (case.district, case.unit_id, case.dispatched_by_machine) == ("310104", "sh-gas", True)
        assert events[0].actor == "zhao" and events[-1].actor == "machine"
        orphan, _ = await service.report(CaseDraft(category="waterlogging", lon=121.45, lat=31.25), actor="x")
        assert orphan.state is CaseState.FILED and orphan.unit_id is None  # no unit: the centre's
        with pytest.raises(InvalidInput, match=r"location \(120.0, 30.0\) — lies outside every area"):
            await service.report(CaseDraft(category="gas_leak", lon=120.0, lat=30.0), actor="x")
        with pytest.raises(NotFound, match="lift:99"):
            await service.report(CaseDraft(category="lift_fault", asset_id="lift:99"), actor="x")
        with pytest.raises(InvalidInput, match="give lon and lat"):
            await service.report(CaseDraft(category="lift_fault"), actor="x")
        with pytest.raises(InvalidInput, match="category 'lift'"):
            await service.report(CaseDraft(category="lift", lon=121.45, lat=31.25), actor="x")
        with pytest.raises(InvalidInput, match="severity 'high'"):
            await service.report(CaseDraft(category="gas_leak", lon=121.45, lat=31.25, severity="high"), actor="x")
        _, matched = await service.list(case_store.CaseFilter())
    assert matched == 2


async def test_photos(city: Store, clock: Clock) -> None:
    good: list[Photo | bytes] = [Photo(png(), "a.png"), png(kind="JPEG"), png(kind="WEBP")]
    async with running(city, clock) as service:
        case, events = await service.report(
            CaseDraft(category="lift_fault", asset_id="lift:1", photos=good), actor="inspector"
        )
        assert len(events[0].photos) == 3
        content_type, data = case_store.get_photo(city, events[0].photos[1])
        assert content_type == "image/jpeg" and data == good[1]
        bad: list[tuple[list[Photo | bytes], str]] = [
            ([Photo(b"not an image at all", "x.jpg")], r"photo 0 \(x.jpg\) — is not a JPEG, PNG or WebP"),
            ([png(), Photo(png(kind="GIF"), "anim.gif")], r"photo 1 \(anim.gif\) — is a GIF image"),
            ([png()[:40]], "photo 0 — is not a JPEG"),  # a truncated header
            ([b""], "photo 0 — is empty"),
            ([b"\x89PNG" + b"0" * MAX_PHOTO_BYTES], "photo 0 — is 5,242,884 bytes; at most 5,242,880"),
            ([png()] * 6, "6 given; at most 5"),
        ]
        for photos, message in bad:
            with pytest.raises(InvalidInput, match=message):
                await service.act(case.id, "note", actor="centre", note="n", photos=photos)
        _, after = await service.get(case.id)
    assert len(after) == len(events)  # no refused step was written


async def test_unit_tokens(city: Store, clock: Clock) -> None:
    async with running(city, clock) as service:
        token = await service.issue_unit_token("team-south")
        unit = await service.unit_for_token(token)
        assert unit is not None and unit.id == "team-south" and unit.reports_to == "lift-310101"
        assert await service.unit_for_token("wrong") is None
        again = await service.issue_unit_token("team-south")
        assert await service.unit_for_token(token) is None and await service.unit_for_token(again) is not None
        with pytest.raises(NotFound, match="unit 'nobody'"):
            await service.issue_unit_token("nobody")


async def test_a_handled_case_that_replaced_its_asset_is_in_the_models_history(city: Store, clock: Clock) -> None:
    import dataclasses
    from datetime import UTC, date, datetime

    from cim.model import AssetBatch
    from cim.store.changes import Window, change_rows
    from cim.store.sqlstore import sql_store

    before = dataclasses.replace(city.get_asset("lift:1"), install_date=date(2005, 6, 1))
    city.upsert_assets(AssetBatch.from_assets([before]))
    async with running(city, clock) as service:
        cid = await dispatched(service)
        unit = {"actor": "wang", "unit_id": "team-south"}
        await service.act(cid, "accept", **unit)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match=r"data.asset.colour.*is not recordable"):
            await service.act(cid, "handle", data={"asset": {"colour": "red"}}, **unit)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match=r"data.asset.id.*must be one of the case's assets: lift:1"):
            await service.act(cid, "handle", data={"asset": {"id": "lift:2", "status": "x"}}, **unit)  # type: ignore[arg-type]
        case, _ = await service.get(cid)
        assert case.state is CaseState.IN_PROGRESS  # a refused handle wrote nothing
        started = datetime.now(UTC)  # the model's history is kept in real time, not the test's clock
        replaced = {"install_date": "2026-11-03", "material": "new cabin", "status": "in_service"}
        case, _ = await service.act(cid, "handle", data={"asset": replaced}, **unit)  # type: ignore[arg-type]
    assert case.state is CaseState.HANDLED
    lift = city.get_asset("lift:1")
    assert (lift.install_date, lift.material, lift.status) == (date(2026, 11, 3), "new cabin", "in_service")
    db = sql_store(city)
    made = db.select_rows("SELECT change, changed_by FROM asset_versions WHERE id = 'lift:1' AND valid_to IS NULL")
    assert made == [{"change": "case", "changed_by": f"case:{cid}"}]
    rows, _ = change_rows(db, Window(started, datetime.now(UTC)))
    lift_change = next(r for r in rows if r["id"] == "lift:1")
    assert lift_change["change"] == "renewed" and lift_change["before"]["install_date"] == "2005-06-01"
