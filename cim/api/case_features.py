"""Cases as an OGC API – Features collection (``/collections/cases``), so QGIS and GDAL map them like any layer.

The items take the core parameters (``limit``, ``offset``, ``bbox``, ``datetime`` on the time a case was reported)
and, as queryables-as-query-parameters, the case fields a map is filtered by: ``state``, ``category``,
``severity``, ``source``, ``unit_id``, ``district``, ``street``, ``grid_cell`` (comma-separated values). Every
page says ``numberMatched``. These routes come before the asset collections' ``/collections/{collectionId}``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from cim.api.case_json import case_feature, feature_collection
from cim.api.cases import Cases, csv_values
from cim.api.formats import CsvGeometryParam, feature_response, features_response, negotiate
from cim.api.iot import parse_instant
from cim.api.ogc_features import (
    GEOJSON,
    MAX_LIMIT,
    CrsName,
    FormatName,
    GeoJSONResponse,
    SchemaResponse,
    collection_json,
    formats_content,
)
from cim.api.schemas import CollectionOut, FeatureCollectionOut, FeatureOut, QueryablesOut, errors
from cim.errors import InvalidInput
from cim.queries.params import BBOX_PATTERN, parse_bbox

router = APIRouter(tags=["OGC API – Features"])

#: The case fields a client may filter on, with their JSON types (the collection's queryables).
QUERYABLES: dict[str, str] = {
    "state": "string",
    "category": "string",
    "severity": "string",
    "source": "string",
    "unit_id": "string",
    "district": "string",
    "street": "string",
    "grid_cell": "string",
}


def reported_interval(text: str) -> tuple[datetime | None, datetime | None]:
    """An OGC ``datetime`` (an instant or ``start/end``, ``..`` open; dates or RFC 3339 times) as [since, until).

    >>> [t.isoformat() for t in reported_interval("2026-11-01/2026-11-30")]
    ['2026-11-01T00:00:00+00:00', '2026-12-01T00:00:00+00:00']
    """
    parts = text.split("/")
    if len(parts) > 2:
        raise InvalidInput(f"datetime {text[:80]!r}", "must be an instant or start/end (use .. for an open end)")

    def bound(part: str, *, end: bool) -> datetime | None:
        if part in ("", ".."):
            return None
        if "T" in part or "t" in part:
            moment = parse_instant(part, what="datetime")
            return moment + timedelta(microseconds=1) if end else moment
        try:
            day = date.fromisoformat(part)
        except ValueError:
            raise InvalidInput(f"datetime {text[:80]!r}", f"{part[:40]!r} is not a date or RFC 3339 time") from None
        return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)

    if len(parts) == 1:
        return bound(parts[0], end=False), bound(parts[0], end=True)
    since, until = bound(parts[0], end=False), bound(parts[1], end=True)
    if since is not None and until is not None and since >= until:
        raise InvalidInput(f"datetime {text[:80]!r}", "starts after it ends")
    return since, until


def cases_collection(root: str) -> dict[str, Any]:
    return collection_json(
        root,
        "cases",
        title="cases 案件",
        description="problems found in the city and where their loop stands (reported … closed)",
        extent=None,
    )


@router.get("/collections/cases", summary="The cases collection", response_model=CollectionOut, responses=errors())
def collection(request: Request) -> dict[str, Any]:
    return cases_collection(str(request.base_url).rstrip("/"))


@router.get(
    "/collections/cases/queryables",
    summary="The properties the cases may be filtered on",
    response_model=QueryablesOut,
    response_class=SchemaResponse,
    responses=errors(),
)
def queryables(request: Request) -> SchemaResponse:
    root = str(request.base_url).rstrip("/")
    return SchemaResponse(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{root}/collections/cases/queryables",
            "type": "object",
            "title": "cases",
            "description": "Case fields, each a query parameter of the items (comma-separated values)",
            "properties": {
                **{name: {"title": name, "type": t} for name, t in QUERYABLES.items()},
                "geometry": {"$ref": "https://geojson.org/schema/Point.json"},
            },
            "additionalProperties": False,
            "queryables": [{"id": name, "type": t} for name, t in QUERYABLES.items()],
        }
    )


@router.get(
    "/collections/cases/items",
    summary="Cases as features",
    response_model=FeatureCollectionOut,
    response_class=GeoJSONResponse,
    responses={200: {"content": formats_content(FeatureCollectionOut)}, **errors(400)},
)
async def items(
    request: Request,
    cases: Cases,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"features per page (at most {MAX_LIMIT:,})")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    bbox: Annotated[str | None, Query(description="west,south,east,north (CRS84)", pattern=BBOX_PATTERN)] = None,
    bbox_crs: Annotated[CrsName | None, Query(alias="bbox-crs", description="only CRS84 (lon/lat)")] = None,
    filter_: Annotated[str | None, Query(alias="filter", description="not supported here: use the queryables")] = None,
    filter_lang: Annotated[
        Literal["cql2-text", "cql2-json", "cql-text"], Query(alias="filter-lang", description="(no filter here)")
    ] = "cql2-text",
    filter_crs: Annotated[CrsName | None, Query(alias="filter-crs", description="only CRS84 (lon/lat)")] = None,
    datetime_: Annotated[str | None, Query(alias="datetime", description="reported at: instant or interval")] = None,
    state: str | None = None,
    category: str | None = None,
    severity: str | None = None,
    source: str | None = None,
    unit_id: str | None = None,
    district: str | None = None,
    street: str | None = None,
    grid_cell: str | None = None,
    result_type: Annotated[
        Literal["results", "hits"], Query(alias="resultType", description="hits: numberMatched alone")
    ] = "results",
    f: Annotated[FormatName | None, Query(description="answer format (else the Accept header; GeoJSON)")] = None,
    geometry: CsvGeometryParam = "wkt",
) -> Response:
    from cim.store.cases import CaseFilter

    _refuse_as_of(request)
    fmt = negotiate(request, f)
    if filter_ is not None:
        raise InvalidInput("parameter filter", "the cases collection takes its queryables as parameters, not CQL2")
    since = until = None
    if datetime_:
        since, until = reported_interval(datetime_)
    now = datetime.now(UTC)
    found, matched = await cases.list(
        CaseFilter(
            states=csv_values(state),
            categories=csv_values(category),
            severities=csv_values(severity),
            source=source or None,
            unit_id=unit_id or None,
            districts=csv_values(district),
            streets=csv_values(street),
            grid_cells=csv_values(grid_cell),
            since=since,
            until=until,
            bbox=parse_bbox(bbox) if bbox else None,
            limit=limit,
            offset=offset,
            now=now,
        )
    )
    if result_type == "hits":
        found = []
    body = feature_collection(found, matched=matched, units=cases.units, now=now)
    links = [{"href": str(request.url), "rel": "self", "type": GEOJSON}]
    if matched is not None and offset + len(found) < matched:
        following = request.url.include_query_params(offset=offset + limit, limit=limit)
        links.append({"href": str(following), "rel": "next", "type": GEOJSON})
    body["links"] = links
    return features_response(fmt, request=request, title="cases", body=body, csv_geometry=geometry)


@router.get(
    "/collections/cases/items/{feature_id}",
    summary="One case",
    response_model=FeatureOut,
    response_class=GeoJSONResponse,
    responses={200: {"content": formats_content(FeatureOut)}, **errors(400, 404)},
)
async def item(
    request: Request,
    cases: Cases,
    feature_id: str,
    f: Annotated[FormatName | None, Query(description="answer format (else the Accept header; GeoJSON)")] = None,
) -> Response:
    _refuse_as_of(request)
    fmt = negotiate(request, f)
    case, _ = await cases.get(feature_id)
    body = case_feature(case, units=cases.units, now=datetime.now(UTC))
    return feature_response(fmt, request=request, title=f"case {case.id}", body=body)


def _refuse_as_of(request: Request) -> None:
    """``as_of`` is a parameter of every collection's items (the asset kinds' history), which a client may send to
    ``/collections/{collectionId}/…`` with ``cases`` as the collection. Cases keep their past as a log of
    transitions, so the model as of a day does not apply to them: said, rather than ignored (and not offered in
    these routes' own parameters)."""
    as_of = request.query_params.get("as_of")
    if as_of is not None:
        raise InvalidInput(
            f"as_of {as_of!r}",
            "cases have no as-of view: a case's past is its history (GET /cases/{id}); filter by datetime (reported)",
        )
