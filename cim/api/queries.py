"""``/queries/...``: the domain questions, answering with the same JSON as ``cim query ... --json``, or (``f=``
or ``Accept``) as a GeoJSON FeatureCollection of the answered assets with their geometry, or as CSV
(:mod:`cim.queries.answer_features`, :mod:`cim.api.formats`). JSON stays the default and is built as before."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from cim.api.deps import StoreDep, json_body, query_params
from cim.api.formats import CsvGeometryParam, OutputFormat, features_response, negotiate
from cim.api.schemas import AsOfParam, errors
from cim.errors import InvalidInput
from cim.model import Kind
from cim.queries import buried_pipes, within_distance
from cim.queries.answer_features import buried_pipes_features, old_lifts_features, within_distance_features
from cim.queries.domain import BuriedPipesOut, OldLiftsOut, WithinDistanceOut, old_lifts, old_lifts_json
from cim.queries.params import BBOX_PATTERN, bbox_area, parse_area, parse_bbox, store_as_of
from cim.store import Store

router = APIRouter(prefix="/queries", tags=["queries"])

_POLYGON = {
    "type": "object",
    "required": ["type", "coordinates"],
    "properties": {
        "type": {"enum": ["Polygon", "MultiPolygon"]},
        "coordinates": {"type": "array", "items": {"type": "array"}},
    },
}
_FEATURE = {
    "type": "object",
    "required": ["type", "geometry"],
    "properties": {"type": {"const": "Feature"}, "geometry": _POLYGON},
}
_AREA = {
    "anyOf": [
        _POLYGON,
        _FEATURE,
        {
            "type": "object",
            "required": ["type", "features"],
            "properties": {
                "type": {"const": "FeatureCollection"},
                "features": {"type": "array", "items": _FEATURE, "minItems": 1, "maxItems": 1},
            },
        },
    ]
}
#: The formats a domain question answers in, the default first.
ANSWER_FORMATS = (OutputFormat.JSON, OutputFormat.GEOJSON, OutputFormat.CSV)
FormatParam = Annotated[
    str | None,
    Query(
        description="json (the answer as it is, default), geojson (a FeatureCollection of the answered assets with "
        "their geometry) or csv; without it, the Accept header chooses",
        json_schema_extra={"enum": [str(f) for f in ANSWER_FORMATS]},
    ),
]
_FEATURES_SCHEMA = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "id", "geometry", "properties"],
                "properties": {
                    "type": {"const": "Feature"},
                    "id": {"type": "string"},
                    "geometry": {"type": ["object", "null"]},
                    "properties": {"type": "object"},
                },
            },
        },
    },
}


def answer_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The answers of a domain question: its JSON (the response model), GeoJSON features, CSV, or an error."""
    return {
        200: {
            "content": {
                "application/geo+json": {"schema": _FEATURES_SCHEMA},
                "text/csv": {"schema": {"type": "string"}},
            }
        },
        **errors(*statuses),
    }


#: The body of ``POST /queries/buried-pipes`` (read by :func:`json_body`, so FastAPI does not describe it itself).
AREA_BODY = {
    "anyOf": [
        _AREA,
        {
            "type": "object",
            "required": ["area"],
            "properties": {
                "area": _AREA,
                "network": {"type": ["string", "null"]},
                "older_than": {"type": ["number", "null"], "minimum": 0, "maximum": 500},
                "deeper_than": {"type": ["number", "null"], "minimum": 0, "maximum": 1000},
                "as_of": {"type": ["string", "null"], "format": "date"},
            },
        },
    ],
    "description": "A GeoJSON Polygon/MultiPolygon, a Feature of one, a one-feature FeatureCollection, or "
    "{area: <that>, network, older_than, deeper_than, as_of}",
}


@router.get(
    "/old-lifts",
    summary="Buildings with lifts older than N years",
    description="Buildings in id order, each with its old lifts, oldest first; old lifts under no building under "
    "`without_building`, oldest first; lifts with no install date apart under `unknown_age`, by building.",
    response_model=OldLiftsOut,
    responses=answer_responses(400),
)
def get_old_lifts(
    request: Request,
    store: StoreDep,
    years: Annotated[float, Query(ge=0, le=500, description="age in years a lift must exceed")] = 15,
    as_of: AsOfParam = None,
    f: FormatParam = None,
    geometry: CsvGeometryParam = "wkt",
) -> Response:
    fmt = negotiate(request, f, ANSWER_FORMATS)
    store, day = store_as_of(store, as_of)
    if fmt is OutputFormat.JSON:
        # The store writes the JSON (tens of thousands of lifts in a city); it is sent as it is, not re-encoded.
        return Response(content=old_lifts_json(store, years=years, as_of=day), media_type="application/json")
    body = old_lifts_features(store, old_lifts(store, years=years, as_of=day))
    return features_response(fmt, request=request, title="old-lifts", body=body, csv_geometry=geometry)


@dataclass(frozen=True, slots=True)
class PipeFilters:
    network: Annotated[str | None, Query(description="gas, water, drainage, sewer … (all when omitted)")] = None
    older_than: Annotated[float | None, Query(ge=0, le=500, description="installed more than N years ago")] = None
    deeper_than: Annotated[float | None, Query(ge=0, le=1000, description="depth_m greater than D metres")] = None
    as_of: AsOfParam = None


@router.get(
    "/buried-pipes",
    summary="Below-ground pipes of a network inside a bbox",
    response_model=BuriedPipesOut,
    responses=answer_responses(400),
)
def get_buried_pipes(
    request: Request,
    store: StoreDep,
    filters: Annotated[PipeFilters, query_params(PipeFilters)],
    bbox: Annotated[str, Query(description="west,south,east,north in lon/lat", pattern=BBOX_PATTERN)],
    f: FormatParam = None,
    geometry: CsvGeometryParam = "wkt",
) -> Any:
    fmt = negotiate(request, f, ANSWER_FORMATS)
    store, day = store_as_of(store, filters.as_of)
    answer = _buried_pipes(store, filters, bbox_area(parse_bbox(bbox)), day)
    return _answer(fmt, request, "buried-pipes", answer, lambda: buried_pipes_features(store, answer), geometry)


@router.post(
    "/buried-pipes",
    summary="Below-ground pipes of a network inside a GeoJSON polygon",
    response_model=BuriedPipesOut,
    responses=answer_responses(400, 413),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": AREA_BODY}}}},
)
def post_buried_pipes(
    request: Request,
    store: StoreDep,
    filters: Annotated[PipeFilters, query_params(PipeFilters)],
    body: Annotated[Any, Depends(json_body)],
    f: FormatParam = None,
    geometry: CsvGeometryParam = "wkt",
) -> Any:
    """The body is a GeoJSON Polygon/MultiPolygon, Feature or one-feature FeatureCollection, or an object
    ``{"area": <that>, "network": …, "older_than": …, "deeper_than": …, "as_of": …}`` (query parameters also work)."""
    if isinstance(body, dict) and "area" in body:
        merged = {k: body.get(k, getattr(filters, k)) for k in ("network", "older_than", "deeper_than", "as_of")}
        filters = PipeFilters(**{k: _typed(k, v) for k, v in merged.items()})
        body = body["area"]
    fmt = negotiate(request, f, ANSWER_FORMATS)
    area = parse_area(body)
    store, day = store_as_of(store, filters.as_of)
    answer = _buried_pipes(store, filters, area, day)
    return _answer(fmt, request, "buried-pipes", answer, lambda: buried_pipes_features(store, answer), geometry)


def _answer(
    fmt: OutputFormat,
    request: Request,
    title: str,
    answer: Any,
    as_features: Callable[[], dict[str, Any]],
    csv_geometry: str,
) -> Any:
    """``answer`` itself for JSON (FastAPI checks it against the response model), else its features as ``fmt``."""
    if fmt is OutputFormat.JSON:
        return answer
    return features_response(fmt, request=request, title=title, body=as_features(), csv_geometry=csv_geometry)


def _typed(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in ("network", "as_of"):
        if not isinstance(value, str):
            raise InvalidInput(name, f"must be text, got {type(value).__name__}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(name, f"must be a number, got {type(value).__name__}")
    highest = 1000 if name == "deeper_than" else 500  # the bounds of the query parameters of the same name
    if not 0 <= value <= highest:
        raise InvalidInput(name, f"must be between 0 and {highest}, got {value}")
    return float(value)


def _buried_pipes(store: Store, filters: PipeFilters, area: Any, day: date | None) -> BuriedPipesOut:
    return buried_pipes(
        store,
        area=area,
        network=filters.network,
        older_than=filters.older_than,
        deeper_than=filters.deeper_than,
        as_of=day,
    )


@router.get(
    "/within-distance",
    summary="Assets of one kind within (or beyond) D metres of another kind",
    response_model=WithinDistanceOut,
    responses=answer_responses(400),
)
def get_within_distance(
    request: Request,
    store: StoreDep,
    kind: Annotated[Kind, Query(description="the assets to list, e.g. building")],
    near: Annotated[Kind, Query(description="the kind they must be near, e.g. park")],
    distance: Annotated[float, Query(ge=0, le=50_000, description="metres")],
    bbox: Annotated[
        str | None, Query(description="only assets of `kind` in this lon/lat bbox", pattern=BBOX_PATTERN)
    ] = None,
    beyond: Annotated[bool, Query(description="list those with none that near instead")] = False,
    as_of: AsOfParam = None,
    f: FormatParam = None,
    geometry: CsvGeometryParam = "wkt",
) -> Any:
    fmt = negotiate(request, f, ANSWER_FORMATS)
    bounds = parse_bbox(bbox) if bbox else None
    store, _ = store_as_of(store, as_of)
    answer = within_distance(
        store,
        kind=kind,
        near_kind=near,
        distance_m=distance,
        bbox=bounds,
        beyond=beyond,
    )
    title = f"{kind}-{'beyond' if beyond else 'within'}-{distance:g}m-of-{near}"
    return _answer(fmt, request, title, answer, lambda: within_distance_features(store, answer), geometry)
