"""Cases as JSON: GeoJSON features for lists and maps (the API, the OGC collection, ``cim cases --json``), and one
case's detail with its timeline. One spelling, so every client reads the same fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cim.model.cases import CATEGORY_BY_ID, Case, CaseEvent, allowed_actions

if TYPE_CHECKING:
    from cim.cases import Unit


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def case_properties(case: Case, *, units: Mapping[str, Unit], now: datetime) -> dict[str, Any]:
    category = CATEGORY_BY_ID[case.category]
    unit = units.get(case.unit_id) if case.unit_id else None
    return {
        "id": case.id,
        "category": case.category,
        "category_zh": category.zh,
        "category_en": category.en,
        "code": category.code,
        "source": str(case.source),
        "severity": str(case.severity),
        "state": str(case.state),
        "resolution": None if case.resolution is None else str(case.resolution),
        "title": case.title,
        "unit_id": case.unit_id,
        "unit_name": None if unit is None else unit.name,
        "district": case.district,
        "street": case.street,
        "grid_cell": case.grid_cell,
        "level": str(case.level),
        "reported_at": _iso(case.reported_at),
        "deadline": _iso(case.deadline),
        "filed_at": _iso(case.filed_at),
        "dispatched_at": _iso(case.dispatched_at),
        "handled_at": _iso(case.handled_at),
        "closed_at": _iso(case.closed_at),
        "overdue": case.overdue(now),
        "version": case.version,
        "dispatched_by_machine": case.dispatched_by_machine,
        "reopened": case.reopened,
    }


def case_feature(case: Case, *, units: Mapping[str, Unit], now: datetime) -> dict[str, Any]:
    geometry = None
    if case.lon is not None and case.lat is not None:
        geometry = {"type": "Point", "coordinates": [case.lon, case.lat]}
    return {
        "type": "Feature",
        "id": case.id,
        "geometry": geometry,
        "properties": case_properties(case, units=units, now=now),
    }


def feature_collection(
    cases: Sequence[Case], *, matched: int | None, units: Mapping[str, Unit], now: datetime
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [case_feature(c, units=units, now=now) for c in cases],
        "numberReturned": len(cases),
        "timeStamp": now.isoformat(),
    }
    if matched is not None:
        out["numberMatched"] = matched
    return out


def event_json(event: CaseEvent, *, photo_base: str) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "action": str(event.action),
        "from_state": None if event.from_state is None else str(event.from_state),
        "to_state": str(event.to_state),
        "actor": event.actor,
        "unit_id": event.unit_id,
        "at": event.at.isoformat(),
        "note": event.note,
        "photos": [f"{photo_base}/{p}" for p in event.photos],
        "data": dict(event.data),
        "hash": event.hash,
    }


def case_detail(
    case: Case,
    events: Sequence[CaseEvent],
    *,
    assets: Sequence[Mapping[str, Any]],
    units: Mapping[str, Unit],
    now: datetime,
) -> dict[str, Any]:
    """The feature, with the description, assets, alerts, the actions allowed now and the whole timeline."""
    feature = case_feature(case, units=units, now=now)
    feature["properties"].update(
        description=case.description,
        reporter=case.reporter,
        asset_ids=list(case.asset_ids),
        alert_ids=list(case.alert_ids),
        allowed_actions=list(allowed_actions(case.state)),
    )
    feature["timeline"] = [event_json(e, photo_base=f"/cases/{case.id}/photos") for e in events]
    feature["assets"] = [dict(a) for a in assets]
    return feature
