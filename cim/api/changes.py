"""``/changes``: what changed in the city between two days — the changed assets (JSON, GeoJSON for the viewer's
"what changed" overlay, CSV) and their counts and kilometres per kind, network, district and change. The answers
are :mod:`cim.queries.changes`'s, the same JSON ``cim changes --json`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from cim.api.deps import StoreDep, query_params
from cim.api.formats import CsvGeometryParam, OutputFormat, features_response, json_response, negotiate
from cim.api.queries import ANSWER_FORMATS, FormatParam, answer_responses
from cim.api.schemas import errors
from cim.queries.changes import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    ChangeLinkOut,
    ChangesOut,
    ChangeSummaryOut,
    change_summary_json,
    changes,
    changes_features,
    parse_days,
)
from cim.store.changes import SUMMARY_KEYS

router = APIRouter(prefix="/changes", tags=["history"])

DATE = {"format": "date"}
DESCRIPTION = """The assets added, removed, renewed (`install_date` moved later: a main replaced in place) or
otherwise changed between two days, both included: the model at the end of the day before `from` against the model
at the end of `to` (now, for today). An asset changed several times is one change, from its first state to its last;
one added and removed in between is none. A day in the future, `from` after `to`, or `from` before the model's
history begins is a 400.

Each change names the fields that differ (`props.<key>` for a property, `geom` for the shape) with their values
before and after, and the district the asset stands in (code, Chinese and English names). `f=geojson` gives a
FeatureCollection with each asset's shape at `to` (at `from` for a removed one); `f=csv` a table. Pages follow
`limit`/`offset` in id order, with a `next` link."""
SUMMARY_DESCRIPTION = f"""Counts and lengths (m and km, lines only, the state at `to` or at `from` for a removed
asset) of the changed assets between two days, both included, grouped by `by` ({", ".join(SUMMARY_KEYS)}), largest
count first; grouped by district, each group also carries the district's Chinese (`zh`) and English (`en`) name.
E.g. km of gas mains renewed in 2026 per district:
`?from=2026-01-01&to=2026-12-31&kind=pipe&by=network,district,change`.
"""


@dataclass(frozen=True, slots=True)
class ChangeParams:
    start: Annotated[
        str, Query(alias="from", description="the first day included (YYYY-MM-DD)", json_schema_extra=DATE)
    ]
    to: Annotated[
        str | None, Query(description="the last day included (YYYY-MM-DD; default today)", json_schema_extra=DATE)
    ] = None
    kind: Annotated[
        list[str] | None,
        Query(description="only assets of these kinds (repeat the parameter, or a comma-separated list)"),
    ] = None


@router.get(
    "",
    summary="The assets changed between two days",
    description=DESCRIPTION,
    response_model=ChangesOut,
    responses=answer_responses(400),
)
def get_changes(
    request: Request,
    store: StoreDep,
    params: Annotated[ChangeParams, query_params(ChangeParams)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"changes per page (at most {MAX_LIMIT:,})")] = (
        DEFAULT_LIMIT
    ),
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="changes skipped (id order)")] = 0,
    f: FormatParam = None,
    geometry: CsvGeometryParam = "wkt",
) -> Any:
    fmt = negotiate(request, f, ANSWER_FORMATS)
    start, end = parse_days(params.start, params.to)
    asked: dict[str, Any] = {"start": start, "end": end, "kinds": params.kind, "limit": limit, "offset": offset}
    if fmt is OutputFormat.JSON:
        answer = changes(store, **asked)
        answer["links"] = _links(request, answer["next_offset"], limit, "application/json")
        return json_response(dict(answer), media_type="application/json")
    body = changes_features(store, **asked)
    body["links"] = _links(request, body["next_offset"], limit, "application/geo+json")
    title = f"changes-{body['from']}-{body['to']}"
    return features_response(fmt, request=request, title=title, body=body, csv_geometry=geometry)


@router.get(
    "/summary",
    summary="Counts and km of the assets changed between two days, grouped",
    description=SUMMARY_DESCRIPTION,
    response_model=ChangeSummaryOut,
    responses=errors(400),
)
def get_change_summary(
    store: StoreDep,
    params: Annotated[ChangeParams, query_params(ChangeParams)],
    by: Annotated[str, Query(description=f"comma-separated, one or more of {', '.join(SUMMARY_KEYS)}")] = ",".join(
        SUMMARY_KEYS
    ),
) -> Response:
    start, end = parse_days(params.start, params.to)
    answer = change_summary_json(store, start=start, end=end, by=by.split(","), kinds=params.kind)
    return json_response(dict(answer), media_type="application/json")


def _links(request: Request, next_offset: int | None, limit: int, media_type: str) -> list[ChangeLinkOut]:
    links: list[ChangeLinkOut] = [{"href": str(request.url), "rel": "self", "type": media_type, "title": "this page"}]
    if next_offset is not None:
        following = request.url.include_query_params(offset=next_offset, limit=limit)
        links.append({"href": str(following), "rel": "next", "type": media_type, "title": "next page"})
    return links
