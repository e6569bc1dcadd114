"""What the case API reads besides single cases: the heat of open cases per area, the assets a case involves, its
photos, the assessment with area names, the check of every log, and the periods reports are asked for.

Synchronous: run on the case service's store thread (:class:`~cim.cases.service.CaseService`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cim.errors import InvalidInput, NotFound
from cim.model.cases import Case, verify_chain
from cim.store import AssetQuery, Store
from cim.store import cases as case_store
from cim.store.assessment import assess
from cim.store.case_rows import get_photo

#: Periods are the city's: a month in Shanghai starts at midnight Shanghai time (UTC+8), not UTC.
CITY_ZONE = ZoneInfo("Asia/Shanghai")


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """A month (``2026-11``) or a day (``2026-11-03``) in the city's time, as [start, end).

    >>> [t.isoformat() for t in period_bounds("2026-11")]
    ['2026-11-01T00:00:00+08:00', '2026-12-01T00:00:00+08:00']
    """
    if match := re.fullmatch(r"(\d{4})-(\d{2})", period.strip()):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise InvalidInput(f"period {period!r}", "has no such month")
        start = datetime(year, month, 1, tzinfo=CITY_ZONE)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CITY_ZONE)
        return start, end
    try:
        day = datetime.strptime(period.strip(), "%Y-%m-%d").replace(tzinfo=CITY_ZONE)
    except ValueError:
        raise InvalidInput(f"period {period[:40]!r}", "must be a month (2026-11) or a day (2026-11-03)") from None
    return day, day + timedelta(days=1)


def heat(store: Store, level: str, now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Open cases per area of ``level``, and the overdue ones among them."""
    return case_store.case_counts_by_area(store, level), case_store.case_counts_by_area(store, level, overdue_at=now)


def assets_of(store: Store, case: Case) -> list[dict[str, Any]]:
    """The assets a case involves, as {id, kind, name} (an asset deleted since is left out)."""
    if not case.asset_ids:
        return []
    found = store.find_assets(AssetQuery(ids=list(case.asset_ids)))
    return [{"id": a.id, "kind": str(a.kind), "name": a.name} for a in found]


def photo(store: Store, case_id: str, photo_id: str) -> tuple[str, bytes]:
    """A photo of one of the case's steps; a photo of another case is not found here."""
    events = case_store.case_events(store, case_id)
    if not any(photo_id in e.photos for e in events):
        raise NotFound(f"photo {photo_id[:80]!r}", f"is not attached to case {case_id}")
    return get_photo(store, photo_id)


def assessment(
    store: Store,
    names: Mapping[str, tuple[str | None, str | None]],
    *,
    level: str,
    start: datetime,
    end: datetime,
    parent: str | None,
) -> list[dict[str, Any]]:
    """:func:`cim.store.assessment.assess` with each row's name (Chinese, English) from ``names`` (code → names:
    areas and units)."""
    rows = assess(store, level=level, start=start, end=end, parent=parent)
    for row in rows:
        zh, en = names.get(row["code"], (None, None))
        row["name"], row["name_en"] = zh, en
    return rows


def verify_logs(store: Store, *, page: int = 1000) -> tuple[int, dict[str, str]]:
    """Every case's log checked (:func:`cim.model.cases.verify_chain`) and held against its case's version and state:
    (cases checked, case id → what is wrong)."""
    broken: dict[str, str] = {}
    checked = offset = 0
    while True:
        cases, _ = case_store.list_cases(store, case_store.CaseFilter(limit=page, offset=offset, count=False))
        for case in cases:
            events = case_store.case_events(store, case.id)
            problem = verify_chain(events)
            if problem is None and (len(events) != case.version or events[-1].to_state != case.state):
                problem = f"its log has {len(events)} steps ending in {events[-1].to_state}; the case says " + (
                    f"version {case.version}, state {case.state}"
                )
            if problem is None and events[-1].hash != case.last_hash:
                problem = "its last step's hash is not the one the case holds"
            if problem is not None:
                broken[case.id] = problem
        checked += len(cases)
        if len(cases) < page:
            return checked, broken
        offset += page
