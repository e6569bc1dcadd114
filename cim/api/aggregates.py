"""``GET /collections/{collectionId}/aggregate``: counts, lengths and areas of a collection's assets, grouped.

The answer is :mod:`cim.queries.aggregates`'s; the filters are the items route's (bbox, CQL2 ``filter``,
``datetime`` on ``install_date``), parsed by the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from cim.api.deps import KindDep, StoreDep, query_params
from cim.api.schemas import AsOfParam, errors
from cim.queries.aggregates import AggregateOut, aggregate_json, parse_group_by
from cim.queries.cql import parse_filter
from cim.queries.items import parse_datetime
from cim.queries.params import BBOX_PATTERN, parse_bbox, store_as_of
from cim.store.aggregates import AGE_BANDS, GROUP_KEYS, MAX_GROUP_KEYS, UNKNOWN_AGE
from cim.store.sqlstore import sql_store

router = APIRouter(tags=["OGC API – Features"])

_BANDS = ", ".join([label for label, _ in AGE_BANDS] + [UNKNOWN_AGE])
DESCRIPTION = f"""Counts, total length and total area of the collection's assets, grouped by one to {MAX_GROUP_KEYS}
keys. OGC API – Features has no aggregation part yet; this is a documented equivalent of the grouped statistics OGC's
drafts discuss (a resource beside `items`, taking the same `bbox`, `filter` and `datetime` parameters, answering one
row per group), not a conformance class.

- `group_by`: comma-separated, any of {", ".join(f"`{k}`" for k in GROUP_KEYS)}. `age_band` counts whole years from
  `install_date` to `as_of` (default today): {_BANDS}. `district`, `street` and `grid_cell` are the administrative
  areas each asset lies in (by the point on its surface, as `/assets/{{id}}` gives its `areas`); each group then also
  carries the areas' Chinese (`zh`) and English (`en`) names. A key that does not apply to the collection (`network`
  on buildings, an area level on areas) is a 400.
- `length_m`: metres on the spheroid, lines only; `area_m2`: square metres on the spheroid, polygons only; null when
  the group holds no line (polygon). Both to 0.1.
- `as_of`: the assets counted are those of the model as it stood at the end of that day.
- Groups are sorted by their keys (age bands in age order), null last; `total` sums every group.
"""


@dataclass(frozen=True, slots=True)
class AggregateParams:
    group_by: Annotated[
        str,
        Query(
            description=f"comma-separated keys, 1 to {MAX_GROUP_KEYS} of: {', '.join(GROUP_KEYS)}",
            examples=["district", "network,age_band"],
        ),
    ]
    as_of: AsOfParam = None
    bbox: Annotated[str | None, Query(description="west,south,east,north in lon/lat (CRS84)", pattern=BBOX_PATTERN)] = (
        None
    )
    datetime: Annotated[str | None, Query(description="install_date instant or start/end interval")] = None
    filter: Annotated[str | None, Query(description="CQL2 filter, as for items")] = None
    filter_lang: Annotated[
        Literal["cql2-text", "cql2-json"], Query(alias="filter-lang", description="cql2-text or cql2-json")
    ] = "cql2-text"


@router.get(
    "/collections/{collectionId}/aggregate",
    summary="Counts, lengths and areas of a collection's assets, grouped",
    description=DESCRIPTION,
    response_model=AggregateOut,
    responses=errors(400, 404),
)
def get_aggregate(
    kind: KindDep, store: StoreDep, params: Annotated[AggregateParams, query_params(AggregateParams)]
) -> AggregateOut:
    store, day = store_as_of(store, params.as_of)
    condition = None
    if params.filter is not None and params.filter.strip():
        condition = parse_filter(params.filter, lang=params.filter_lang, kind=kind, dialect=sql_store(store).dialect)
    return aggregate_json(
        store,
        kind=kind,
        group_by=parse_group_by(params.group_by),
        as_of=day,
        bbox=parse_bbox(params.bbox) if params.bbox is not None else None,
        installed=parse_datetime(params.datetime) if params.datetime is not None else None,
        condition=condition,
    )
