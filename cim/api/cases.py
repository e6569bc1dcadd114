"""The case routes: report a problem, list and read cases, act on them, and assess how fast and well they close.

Who may do what comes from the bearer token. ``CIM_WRITE_TOKEN`` is the command centre's (and the hotline's and the
inspectors' apps'): it reports cases and may take any action the state machine allows. A unit's own token
(``cim cases token UNIT``) acts only on the cases dispatched to that unit, and only with the unit's actions (accept,
return, handle, note); anything else is 403. A transition may name the ``version`` of the case it read: when
someone changed the case meanwhile the answer is 409 with the current state and version, and the allowed actions —
never a lost update.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cim.api.case_json import case_detail, feature_collection
from cim.api.case_schemas import AssessmentOut, CaseCollectionOut, CaseDetailOut, CategoryOut, HeatOut, UnitOut
from cim.api.deps import ResourcesDep, json_body, require_write_token
from cim.api.errors import Forbidden, Unauthorized
from cim.api.iot import INSTANT, parse_instant
from cim.api.schemas import errors
from cim.cases.photos import FORMATS, Photo
from cim.cases.steps import CaseDraft
from cim.errors import InvalidInput
from cim.model.cases import CATEGORIES, Action, CaseSource, Severity
from cim.queries.params import BBOX_PATTERN, parse_bbox

if TYPE_CHECKING:
    from cim.cases import CaseService, Unit
    from cim.store.cases import CaseFilter

router = APIRouter(tags=["cases"])
PHOTO_TYPES = sorted(FORMATS.values())
HeatLevel = Literal["grid_cell", "street", "district"]
AssessLevel = Literal["grid_cell", "street", "district", "city", "unit"]
_bearer = HTTPBearer(auto_error=False, description="CIM_WRITE_TOKEN, or a unit's token")


async def get_cases(resources: ResourcesDep) -> CaseService:
    if resources.cases is None:
        raise RuntimeError("Resources.cases is not set: start a CaseService in the app's lifespan")
    return resources.cases


Cases = Annotated["CaseService", Depends(get_cases)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a write: the command centre (``unit`` None) or one unit."""

    unit: Unit | None

    @property
    def label(self) -> str:
        return "command-centre" if self.unit is None else self.unit.id


async def caller(
    resources: ResourcesDep,
    cases: Cases,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The command centre for ``CIM_WRITE_TOKEN``, a unit for its token; 401 for none or an unknown one."""
    given = credentials.credentials.strip() if credentials is not None else ""
    if not given:
        raise Unauthorized("case actions", "need the header Authorization: Bearer <CIM_WRITE_TOKEN or a unit's token>")
    token = resources.settings.write_token
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return Caller(unit=None)
    unit = await cases.unit_for_token(given)
    if unit is None:
        if not token:
            raise Forbidden("case actions", "need a unit's token (the server has no write token)")
        raise Unauthorized("case actions", "the token is neither CIM_WRITE_TOKEN nor a unit's token")
    return Caller(unit=unit)


CallerDep = Annotated[Caller, Depends(caller)]


def csv_values(value: str | None) -> tuple[str, ...]:
    """A comma-separated parameter as its values; none when absent or empty."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


@router.get("/cases/categories", response_model=list[CategoryOut], responses=errors())
async def list_categories() -> list[dict[str, Any]]:
    """The case categories: id, code (GB/T 30428.2 layout), Chinese and English names, hours to handle."""
    return [{"id": c.id, "code": c.code, "zh": c.zh, "en": c.en, "hours": c.hours} for c in CATEGORIES]


@router.get("/cases/units", response_model=list[UnitOut], responses=errors())
async def list_units(cases: Cases) -> list[dict[str, Any]]:
    """The responsible units: the areas and categories each answers for, and the unit it escalates to."""
    return [u.to_dict() for u in sorted(cases.units.values(), key=lambda u: u.id)]


@router.get("/cases/heat", response_model=HeatOut, responses=errors(400))
async def case_heat(
    cases: Cases,
    level: Annotated[HeatLevel, Query(description="the level of the areas counted")] = "grid_cell",
) -> dict[str, Any]:
    """Open (and overdue open) cases per area of one level: the heat layer."""
    counts, overdue = await cases.heat(level)
    return {"level": level, "counts": counts, "overdue": overdue}


@router.get("/cases", response_model=CaseCollectionOut, response_model_exclude_unset=True, responses=errors(400))
async def list_cases(
    cases: Cases,
    state: Annotated[str | None, Query(description="states, comma-separated")] = None,
    category: Annotated[str | None, Query(description="categories (id or code), comma-separated")] = None,
    area: Annotated[
        str | None, Query(description="an area code at any level: grid cell, street, district, city")
    ] = None,
    unit: Annotated[str | None, Query(description="the responsible unit's id")] = None,
    overdue: Annotated[bool | None, Query(description="only cases past their deadline (true) or not (false)")] = None,
    source: Annotated[str | None, Query(description="sensor, rule, hotline, inspector, manual")] = None,
    since: Annotated[
        str | None, Query(description="reported at or after (RFC 3339)", json_schema_extra=INSTANT)
    ] = None,
    until: Annotated[str | None, Query(description="reported before (RFC 3339)", json_schema_extra=INSTANT)] = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north in lon/lat", pattern=BBOX_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Cases newest first, as GeoJSON (a case without a location has no geometry)."""
    params: dict[str, Any] = {"state": state, "category": category, "area": area, "unit": unit, "overdue": overdue}
    params |= {"source": source, "since": since, "until": until, "bbox": bbox, "limit": limit, "offset": offset}
    now = datetime.now(UTC)
    found, matched = await cases.list(case_filter(params, now=now))
    return feature_collection(found, matched=matched, units=cases.units, now=now)


def case_filter(params: Mapping[str, Any], *, now: datetime) -> CaseFilter:
    """The filter of ``GET /cases`` (and ``cim cases list``) from its parameters, text or typed."""
    from cim.store.cases import CaseFilter

    overdue = params.get("overdue")
    if isinstance(overdue, str):
        if overdue.lower() not in ("true", "false"):
            raise InvalidInput(f"parameter overdue={overdue[:20]!r}", "must be true or false")
        overdue = overdue.lower() == "true"
    since, until = params.get("since"), params.get("until")  # given empty: refused, as any bad time
    return CaseFilter(
        states=csv_values(params.get("state")),
        categories=csv_values(params.get("category")),
        area=params.get("area") or None,
        unit_id=params.get("unit") or None,
        overdue=overdue,
        source=params.get("source") or None,
        since=parse_instant(since, what="since") if since is not None else None,
        until=parse_instant(until, what="until") if until is not None else None,
        bbox=parse_bbox(params["bbox"]) if params.get("bbox") else None,
        limit=int(params.get("limit") or 100),
        offset=int(params.get("offset") or 0),
        now=now,
    )


@router.get("/cases/{case_id}", response_model=CaseDetailOut, responses=errors(404))
async def get_case(cases: Cases, case_id: str) -> dict[str, Any]:
    """One case with its timeline (every step: who, when, what, why, photos) and the assets it involves."""
    return await detail_json(cases, case_id)


async def detail_json(cases: CaseService, case_id: str) -> dict[str, Any]:
    """A case as it stands now, with its timeline and assets (``GET /cases/{id}``, and the answer of every write
    to a case; ``cim cases show``)."""
    case, events = await cases.get(case_id)
    assets = await cases.assets_of(case)
    return case_detail(case, events, assets=assets, units=cases.units, now=datetime.now(UTC))


@router.get(
    "/cases/{case_id}/photos/{photo_id}",
    response_class=Response,
    responses={
        200: {
            "description": "the photo",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in PHOTO_TYPES},
        },
        **errors(404),
    },
)
async def get_photo(cases: Cases, case_id: str, photo_id: str) -> Response:
    """A photo attached to one of the case's steps."""
    content_type, data = await cases.photo(case_id, photo_id)
    return Response(data, media_type=content_type, headers={"Cache-Control": "max-age=31536000, immutable"})


_MACHINE_ONLY = {Action.REPORT, Action.CLEAR, Action.ESCALATE, Action.JOIN}
_PHOTO = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "name": {"type": ["string", "null"], "maxLength": 100},
        "data": {"type": "string", "minLength": 4, "description": "base64 JPEG/PNG/WebP, at most 5 MB"},
    },
}
_REPORT_BODY = {
    "type": "object",
    "required": ["category"],
    "properties": {
        "category": {
            "type": "string",
            "enum": [c.id for c in CATEGORIES] + [c.code for c in CATEGORIES],
            "description": "a category id or code (GET /cases/categories)",
        },
        "severity": {"type": ["string", "null"], "enum": [*(s.value for s in Severity), None]},
        "source": {
            "type": ["string", "null"],
            "enum": [*(s.value for s in CaseSource if s is not CaseSource.SENSOR), None],
        },
        "lon": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
        "lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
        "asset_id": {
            "type": ["string", "null"],
            "description": "the asset the problem is at (its place is the case's)",
        },
        "title": {"type": ["string", "null"], "maxLength": 200},
        "description": {"type": ["string", "null"], "maxLength": 4000},
        "reporter": {"type": ["string", "null"], "maxLength": 200},
        "photos": {"type": ["array", "null"], "items": _PHOTO, "maxItems": 5},
    },
}
_ACTION_BODY = {
    "type": "object",
    "required": ["action"],
    "properties": {
        "action": {"type": "string", "enum": [a.value for a in Action if a not in _MACHINE_ONLY]},
        "actor": {"type": ["string", "null"], "maxLength": 200, "description": "the person acting"},
        "note": {"type": ["string", "null"], "maxLength": 4000},
        "version": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "the case version read; 409 when it changed meanwhile",
        },
        "unit": {"type": ["string", "null"], "description": "dispatch: the unit to send the case to"},
        "asset": {
            "type": ["object", "null"],
            "description": "handle: the case's asset as the unit left it (a pipe or lift replaced), recorded in the "
            "model's history as made by this case / 处置后资产状态: id, install_date, status, material, diameter_mm, "
            "depth_m",
            "properties": {
                "id": {"type": "string"},
                "install_date": {"type": "string", "format": "date"},
                "status": {"type": "string", "maxLength": 200},
                "material": {"type": "string", "maxLength": 200},
                "diameter_mm": {"type": "number"},
                "depth_m": {"type": "number"},
            },
            "additionalProperties": False,
        },
        "photos": {"type": ["array", "null"], "items": _PHOTO, "maxItems": 5},
    },
}


def _text(body: dict[str, Any], key: str, *, limit: int, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"field {key}", f"must be text of at most {limit:,} characters")
    return value


def _photos(body: dict[str, Any]) -> list[Photo]:
    photos = body.get("photos")
    if photos is None:
        return []
    if not isinstance(photos, list):
        raise InvalidInput("field photos", "must be a list of {name, data (base64)}")
    out = []
    for i, photo in enumerate(photos):
        name = f"photo {i + 1}" if not isinstance(photo, dict) else str(photo.get("name") or f"photo {i + 1}")[:100]
        data = photo.get("data") if isinstance(photo, dict) else None
        if not isinstance(data, str):
            raise InvalidInput(f"{name}", "needs its bytes as base64 text in 'data'")
        try:
            out.append(Photo(base64.b64decode(data, validate=True), name))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{name}", "'data' is not base64") from None
    return out


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"field {key}", f"must be a number, got {str(value)[:40]!r}")
    return float(value)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("request body", "must be a JSON object")
    return body


def report_arguments(body: Any) -> dict[str, Any]:
    """The arguments of :meth:`CaseService.report` from a ``POST /cases`` body, each field checked."""
    body = _object(body)
    return {
        "category": _text(body, "category", limit=60),
        "severity": _text(body, "severity", limit=20, default="normal"),
        "source": _text(body, "source", limit=20, default="hotline"),
        "lon": _number(body, "lon"),
        "lat": _number(body, "lat"),
        "asset_id": _text(body, "asset_id", limit=200) or None,
        "title": _text(body, "title", limit=200),
        "description": _text(body, "description", limit=4000),
        "reporter": _text(body, "reporter", limit=200) or None,
        "photos": _photos(body),
    }


def act_arguments(body: Any, *, actor: str, unit_id: str | None) -> dict[str, Any]:
    """The arguments of :meth:`CaseService.act` (after the case id) from a transition's body."""
    body = _object(body)
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInput("field version", "must be the integer version of the case you read")
    unit = _text(body, "unit", limit=200)
    asset = body.get("asset")
    if asset is not None and not isinstance(asset, dict):
        raise InvalidInput("field asset", "must be an object of the asset's new fields")
    data: dict[str, Any] = {"unit": unit} if unit else {}
    if asset is not None:
        data["asset"] = asset
    return {
        "action": _text(body, "action", limit=40),
        "actor": _text(body, "actor", limit=200) or actor,
        "unit_id": unit_id,
        "note": _text(body, "note", limit=4000),
        "version": version,
        "photos": _photos(body),
        "data": data or None,
    }


@router.post(
    "/cases",
    status_code=201,
    response_model=CaseDetailOut,
    dependencies=[Depends(require_write_token)],
    responses=errors(400, 401, 403, 404, 413),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REPORT_BODY}}}},
)
async def report_case(cases: Cases, body: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    """Report a problem (the hotline's and inspectors' apps): it is located in its grid cell, street and district,
    filed, and dispatched to the responsible unit with no human step."""
    case, _ = await cases.report(CaseDraft(**report_arguments(body)), actor="command-centre")
    return await detail_json(cases, case.id)


@router.post(
    "/cases/{case_id}/transitions",
    response_model=CaseDetailOut,
    responses=errors(400, 401, 403, 404, 409, 413),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _ACTION_BODY}}}},
)
async def act_on_case(
    cases: Cases, who: CallerDep, case_id: str, body: Annotated[Any, Depends(json_body)]
) -> dict[str, Any]:
    """One step of the case's loop. 409 when the action is not allowed from the case's state (``allowed`` names
    those that are) or the ``version`` given is not the case's; 403 when a unit acts on another unit's case."""
    unit_id = None if who.unit is None else who.unit.id
    await cases.act(case_id, **act_arguments(body, actor=who.label, unit_id=unit_id))
    return await detail_json(cases, case_id)


@router.get("/indicators/cases", tags=["indicators"], response_model=AssessmentOut, responses=errors(400))
async def case_indicators(
    cases: Cases,
    level: Annotated[AssessLevel, Query(description="areas of this level, or the units")] = "district",
    period: Annotated[
        str | None, Query(description="a month (2026-11) or a day (2026-11-03)", pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    ] = None,
    start: Annotated[str | None, Query(description="RFC 3339, inclusive", json_schema_extra=INSTANT)] = None,
    end: Annotated[str | None, Query(description="RFC 3339, exclusive", json_schema_extra=INSTANT)] = None,
    parent: Annotated[str | None, Query(description="drill down: only the children of this area")] = None,
) -> dict[str, Any]:
    """Assessment per area or unit over a period: cases opened, filed, dispatched (by machine), handled on time,
    closed, reopened; mean and p90 time to dispatch, handle and close."""
    from cim.cases.reading import CITY_ZONE, period_bounds

    if period is not None and (start is not None or end is not None):
        raise InvalidInput("parameters period, start/end", "give a period or start and end, not both")
    if (start is None) != (end is None):
        raise InvalidInput("parameters start, end", "give both, or a period")
    if start is not None and end is not None:
        begin, finish = parse_instant(start, what="start"), parse_instant(end, what="end")
    else:  # this month in the city's time unless a period is named
        begin, finish = period_bounds(period or datetime.now(CITY_ZONE).strftime("%Y-%m"))
    rows = await cases.assess(level=level, start=begin, end=finish, parent=parent)
    return {"level": level, "start": begin.isoformat(), "end": finish.isoformat(), "parent": parent, "rows": rows}
