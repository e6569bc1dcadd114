"""OGC API – Features Part 1 (core, GeoJSON, OpenAPI 3.0), Part 3 (queryables, CQL2 text and JSON filters) and
Part 5 (schemas).

One collection per asset kind: ``/collections/{kind}/items`` pages the assets of that kind, each page with
``numberMatched``; a property-set key the kind has is a typed property like a column (:mod:`cim.api.geojson`).

Paging: a page holds ``limit`` features (default 100, at most 10,000, declared as the OpenAPI ``maximum``). The
``next`` link asks for at least :data:`NEXT_MIN_LIMIT`: GDAL 3.6 asks for pages of 10 and reads no maximum, so the
78 tall buildings of the demo city took it 8 requests, and a copy of 20,000 buildings 2,000 (issue 23); it follows
``next`` as given, so only its first page is small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from cim.api.deps import KindDep, StoreDep, query_params
from cim.api.feature_schema import collection_schema, feature_schema, queryables_document
from cim.api.formats import (
    FEATURE_FORMATS,
    ITEMS_FORMATS,
    CsvGeometryParam,
    OutputFormat,
    export_page_response,
    feature_response,
    features_response,
    negotiate,
)
from cim.api.geojson import column_names, feature, geometry_fragments, property_name
from cim.api.schemas import (
    AsOfParam,
    CollectionOut,
    CollectionsOut,
    ConformanceOut,
    FeatureCollectionOut,
    FeatureOut,
    FeatureSchemaOut,
    LandingOut,
    QueryablesOut,
    errors,
)
from cim.errors import InvalidInput
from cim.model import Kind
from cim.queries import ItemsQuery, find_features
from cim.queries.cql import parse_filter
from cim.queries.items import find_feature, parse_datetime, parse_sortby
from cim.queries.params import BBOX_PATTERN, parse_bbox, store_as_of
from cim.store import Store
from cim.store.catalogue import KindCatalogue, assets_version, kind_catalogue
from cim.store.sqlstore import sql_store

router = APIRouter(tags=["OGC API – Features"])
_Handler = TypeVar("_Handler", bound=Callable[..., Any])

DEFAULT_LIMIT = 100
#: The most features one page holds; a larger limit is refused (400 naming ``limit``).
MAX_LIMIT = 10_000
#: The least a ``next`` link asks for (see the module's docstring).
NEXT_MIN_LIMIT = 1_000
MAX_OFFSET = 10**12
GEOJSON = "application/geo+json"
SCHEMA_JSON = "application/schema+json"
FormatName = Literal["geojson", "json", "csv", "fgb", "html"]
assert set(FormatName.__args__) == {str(f) for f in FEATURE_FORMATS}  # type: ignore[attr-defined]
#: A collection's items also come as the exports write them: a GeoPackage, or CityJSON (buildings).
ItemsFormatName = Literal["geojson", "json", "csv", "fgb", "html", "gpkg", "cityjson"]
assert set(ItemsFormatName.__args__) == {str(f) for f in ITEMS_FORMATS}  # type: ignore[attr-defined]


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


class SchemaResponse(JSONResponse):
    media_type = SCHEMA_JSON


def _schema_answer(request: Request, body: dict[str, Any]) -> SchemaResponse:
    """A JSON Schema, as ``application/schema+json`` unless the client accepts plain JSON only: GDAL 3.6 asks for
    the queryables with ``Accept: application/geo+json, application/json`` and refuses any other type."""
    accept = request.headers.get("accept", "")
    plain = "application/json" in accept and SCHEMA_JSON not in accept and "*/*" not in accept
    answer = SchemaResponse(body)
    if plain:
        answer.headers["content-type"] = "application/json"
    return answer


CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/sortables",
    # Part 4, with the write token (cim.api.ogc_edit)
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
]


#: The names of CRS84 a client may give as bbox-crs or filter-crs (GDAL sends the EPSG ones).
CrsName = Literal[
    "http://www.opengis.net/def/crs/OGC/1.3/CRS84", "EPSG:4326", "http://www.opengis.net/def/crs/EPSG/0/4326"
]

#: filter-lang values → the parser; GDAL 3.6 sends the draft name ``cql-text`` for what is CQL2 text.
_LANGS = {"cql2-text": "cql2-text", "cql2-json": "cql2-json", "cql-text": "cql2-text"}


@dataclass(frozen=True, slots=True)
class ItemsParams:
    """The query parameters of ``/collections/{kind}/items``."""

    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"features per page (at most {MAX_LIMIT:,})")] = (
        DEFAULT_LIMIT
    )
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="features to skip")] = 0
    bbox: Annotated[str | None, Query(description="west,south,east,north in lon/lat (CRS84)", pattern=BBOX_PATTERN)] = (
        None
    )
    bbox_crs: Annotated[CrsName | None, Query(alias="bbox-crs", description="only CRS84 (lon/lat)")] = None
    datetime: Annotated[str | None, Query(description="install_date instant or start/end interval")] = None
    filter: Annotated[str | None, Query(description="CQL2 filter")] = None
    filter_lang: Annotated[
        Literal["cql2-text", "cql2-json", "cql-text"],
        Query(alias="filter-lang", description="cql2-text or cql2-json (cql-text: the draft name GDAL sends)"),
    ] = "cql2-text"
    filter_crs: Annotated[CrsName | None, Query(alias="filter-crs", description="only CRS84 (lon/lat)")] = None
    ids: Annotated[str | None, Query(description="comma-separated asset ids")] = None
    sortby: Annotated[str | None, Query(description="e.g. +name,-install_date")] = None
    properties: Annotated[
        str | None, Query(description="comma-separated properties to return (props: every property-set key)")
    ] = None
    result_type: Annotated[
        Literal["results", "hits"],
        Query(alias="resultType", description="hits: numberMatched alone, no features"),
    ] = "results"
    f: Annotated[
        ItemsFormatName | None,
        Query(description="answer format (else the Accept header; GeoJSON); cityjson: the building collection only"),
    ] = None
    geometry: CsvGeometryParam = "wkt"
    as_of: AsOfParam = None


def _get(
    path: str,
    summary: str,
    model: type[Any],
    *statuses: int,
    answer: type[JSONResponse] | None = None,
    exclude_unset: bool = False,
    formats: bool = False,
    exports: bool = False,
) -> Callable[[_Handler], _Handler]:
    """``router.get`` for an operation of a collection: its body in the shape of ``model`` (sent as ``answer``,
    JSON by default; with ``formats`` also as JSON, CSV, FlatGeobuf or HTML, as ``f`` or Accept choose), or one of
    the errors ``statuses``."""
    options: dict[str, Any] = {"response_class": answer} if answer is not None else {}
    if exclude_unset:
        options["response_model_exclude_unset"] = True
    responses = errors(*statuses)
    if formats:
        responses = {200: {"content": formats_content(model, exports=exports)}, **responses}
    return router.get(path, summary=summary, response_model=model, responses=responses, **options)


def formats_content(model: type[Any], *, exports: bool = False) -> dict[str, Any]:
    """The content types of a 200 answer in any feature format (``f=``, ``Accept``): JSON in the shape of ``model``
    beside the route's own (GeoJSON), CSV, FlatGeobuf and HTML."""
    text = {"schema": {"type": "string"}}
    return {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "text/csv": text,
        "application/flatgeobuf": {"schema": {"type": "string", "format": "binary"}},
        "text/html": text,
        **(
            {
                "application/geopackage+sqlite3": {"schema": {"type": "string", "format": "binary"}},
                "application/city+json": {
                    "schema": {
                        "type": "object",
                        "required": ["type", "version", "transform", "CityObjects", "vertices"],
                    }
                },
            }
            if exports
            else {}
        ),
    }


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get(
    "/", summary="Landing page", response_model=LandingOut, response_model_exclude_unset=True, responses=errors()
)
def landing(request: Request) -> dict[str, Any]:
    root = _root(request)
    return {
        "title": "CIM server",
        "description": "City information model: assets as OGC API – Features collections, 3D Tiles, queries",
        "links": [
            {"href": f"{root}/", "rel": "self", "type": "application/json", "title": "this document"},
            {
                "href": f"{root}/api",
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.0",
                "title": "the API definition",
            },
            {"href": f"{root}/api.html", "rel": "service-doc", "type": "text/html", "title": "the API documentation"},
            {"href": f"{root}/conformance", "rel": "conformance", "type": "application/json", "title": "conformance"},
            {"href": f"{root}/collections", "rel": "data", "type": "application/json", "title": "collections"},
        ],
    }


@router.get("/conformance", summary="Conformance classes", response_model=ConformanceOut, responses=errors())
def conformance() -> dict[str, list[str]]:
    return {"conformsTo": CONFORMANCE}


@_get("/collections", "One collection per asset kind in the store", CollectionsOut, exclude_unset=True)
def collections(request: Request, store: StoreDep) -> dict[str, Any]:
    root = _root(request)
    kinds = [Kind(k) for k in store.count_by_kind() if k in Kind._value2member_map_]
    found = [_collection(root, kind, store.extent(kind=kind)) for kind in kinds]
    if getattr(request.app.state.resources, "cases", None) is not None:
        from cim.api.case_features import cases_collection  # it builds on this module

        found.append(cases_collection(root))
    return {
        "collections": found,
        "links": [{"href": f"{root}/collections", "rel": "self", "type": "application/json"}],
    }


@_get("/collections/{collectionId}", "One collection", CollectionOut, 404, exclude_unset=True)
def collection(request: Request, kind: KindDep, store: StoreDep) -> dict[str, Any]:
    return _collection(_root(request), kind, store.extent(kind=kind))


@_get(
    "/collections/{collectionId}/queryables",
    "The properties a filter may use",
    QueryablesOut,
    404,
    answer=SchemaResponse,
)
def get_queryables(request: Request, kind: KindDep, store: StoreDep) -> SchemaResponse:
    return _schema_answer(request, queryables_document(_base(request, kind), kind, kind_catalogue(store, kind)))


@_get(
    "/collections/{collectionId}/schema",
    "The features' properties (OGC API – Features Part 5)",
    FeatureSchemaOut,
    404,
    answer=SchemaResponse,
)
def get_schema(request: Request, kind: KindDep, store: StoreDep) -> SchemaResponse:
    return _schema_answer(request, collection_schema(_base(request, kind), kind, kind_catalogue(store, kind)))


@_get(
    "/collections/{collectionId}/feature-schema",
    "The schema of one GeoJSON feature (the collection's describedBy)",
    FeatureSchemaOut,
    404,
    answer=SchemaResponse,
)
def get_feature_schema(request: Request, kind: KindDep, store: StoreDep) -> SchemaResponse:
    return _schema_answer(request, feature_schema(_base(request, kind), kind, kind_catalogue(store, kind)))


@_get(
    "/collections/{collectionId}/items",
    "Features of a collection",
    FeatureCollectionOut,
    400,
    404,
    answer=GeoJSONResponse,
    formats=True,
    exports=True,
)
def items(
    request: Request, kind: KindDep, store: StoreDep, params: Annotated[ItemsParams, query_params(ItemsParams)]
) -> Response:
    fmt = negotiate(request, params.f, ITEMS_FORMATS)
    store, _ = store_as_of(store, params.as_of)
    version = assets_version(store)  # a view as of a date has its own: no page count of another date is reused
    catalogue = _catalogue_if_needed(store, kind, params, version)
    keys = catalogue.keys if catalogue is not None else {}
    query = ItemsQuery(
        kind=kind,
        bbox=parse_bbox(params.bbox) if params.bbox is not None else None,
        ids=[i.strip() for i in params.ids.split(",") if i.strip()] if params.ids is not None else None,
        installed=parse_datetime(params.datetime) if params.datetime is not None else None,
        filter=parse_filter(
            params.filter,
            lang=_LANGS[params.filter_lang],
            kind=kind,
            dialect=sql_store(store).dialect,
            keys=keys,
            open_keys=catalogue is not None and catalogue.truncated,
        )
        if params.filter is not None and params.filter.strip()
        else None,
        sortby=parse_sortby(params.sortby, kind=kind, keys=keys) if params.sortby else (),
        key_types=keys,
        limit=params.limit,
        offset=params.offset,
        hits=params.result_type == "hits",
    )
    selected = _properties(params.properties, kind, catalogue)
    page = find_features(store, query, version=version)
    if fmt is OutputFormat.GEOPACKAGE or fmt is OutputFormat.CITYJSON:
        return export_page_response(fmt, kind=str(kind), assets=page.assets, title=str(kind))
    as_text = fmt is OutputFormat.GEOJSON or fmt is OutputFormat.JSON  # orjson writes GEOS's text as it is
    features = [feature(a, properties=selected, geometry=not as_text) for a in page.assets]
    if as_text:
        for one, geometry in zip(features, geometry_fragments(page.assets), strict=True):
            one["geometry"] = geometry
    body = {
        "type": "FeatureCollection",
        "features": features,
        "links": _page_links(request, params, more=page.more),
        "numberMatched": page.matched,
        "numberReturned": len(page.assets),
        "timeStamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    return features_response(fmt, request=request, title=str(kind), body=body, csv_geometry=params.geometry)


def _catalogue_if_needed(store: Store, kind: Kind, params: ItemsParams, version: str) -> KindCatalogue | None:
    """The kind's catalogue when the request names properties (a filter, sortby or properties); a plain page
    does without."""
    named = (params.filter or "").strip() or params.sortby or params.properties
    return kind_catalogue(store, kind, version=version) if named else None


def _page_links(request: Request, params: ItemsParams, *, more: bool) -> list[dict[str, Any]]:
    """self, and next/prev when there are such pages: the same query at another offset (the order is total: the
    sort keys, then id, so pages neither overlap nor skip while the data does not change)."""
    links: list[dict[str, Any]] = [{"href": str(request.url), "rel": "self", "type": GEOJSON, "title": "this page"}]
    limit, offset = params.limit, params.offset
    if more:
        grown = min(MAX_LIMIT, max(limit, NEXT_MIN_LIMIT))
        following = request.url.include_query_params(offset=offset + limit, limit=grown)
        links.append({"href": str(following), "rel": "next", "type": GEOJSON, "title": "next page"})
    if offset > 0:
        before = request.url.include_query_params(offset=max(0, offset - limit), limit=min(limit, offset))
        links.append({"href": str(before), "rel": "prev", "type": GEOJSON, "title": "previous page"})
    return links


@_get(
    "/collections/{collectionId}/items/{feature_id}",
    "One feature",
    FeatureOut,
    400,
    404,
    answer=GeoJSONResponse,
    formats=True,
)
def item(
    request: Request,
    kind: KindDep,
    feature_id: str,
    store: StoreDep,
    f: Annotated[FormatName | None, Query(description="answer format (else the Accept header; GeoJSON)")] = None,
    as_of: AsOfParam = None,
) -> Response:
    fmt = negotiate(request, f)
    store, _ = store_as_of(store, as_of)
    asset = find_feature(store, feature_id, kind=kind)
    body = feature(asset)
    body["links"] = [
        {"href": str(request.url), "rel": "self", "type": GEOJSON},
        {"href": _base(request, kind), "rel": "collection", "type": "application/json"},
    ]
    return feature_response(fmt, request=request, title=f"{kind} {asset.name or asset.id}", body=body)


def _base(request: Request, kind: Kind) -> str:
    return f"{_root(request)}/collections/{kind}"


def _collection(root: str, kind: Kind, extent: tuple[float, float, float, float] | None) -> dict[str, Any]:
    found = collection_json(
        root, str(kind), title=str(kind).replace("_", " "), description=f"assets of kind {kind}", extent=extent
    )
    base = f"{root}/collections/{kind}"
    found["links"] += [
        # GDAL 3.6 looks for rel "queryables" exactly, and makes its fields from describedBy
        {"href": f"{base}/queryables", "rel": "queryables", "type": "application/json", "title": "queryables"},
        {"href": f"{base}/feature-schema", "rel": "describedBy", "type": SCHEMA_JSON, "title": "feature schema"},
        {"href": f"{base}/schema", "rel": "http://www.opengis.net/def/rel/ogc/1.0/schema", "type": SCHEMA_JSON},
    ]
    return found


def collection_json(
    root: str, collection_id: str, *, title: str, description: str, extent: tuple[float, float, float, float] | None
) -> dict[str, Any]:
    """One collection's description: its extent (the world when unknown) and its links."""
    base = f"{root}/collections/{collection_id}"
    spatial = {"bbox": [list(extent)], "crs": CRS84} if extent is not None else {"bbox": [[-180, -90, 180, 90]]}
    return {
        "id": collection_id,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": spatial, "temporal": {"interval": [[None, None]]}},
        "links": [
            {"href": base, "rel": "self", "type": "application/json"},
            {"href": f"{base}/items", "rel": "items", "type": GEOJSON},
            {
                "href": f"{base}/queryables",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "type": "application/schema+json",
            },
        ],
    }


def _properties(text: str | None, kind: Kind, catalogue: KindCatalogue | None) -> set[str] | None:
    """The properties to return: columns, property-set keys (by their feature property or as ``props.<key>``),
    and ``props`` for every key."""
    if text is None:
        return None
    keys = catalogue.keys if catalogue is not None else {}
    chosen, unknown = set(), []
    for name in (n.strip() for n in text.split(",")):
        key = name.removeprefix("props.")
        if name in column_names(kind) or name == "props":
            chosen.add(name)
        elif key in keys and (name != key or property_name(kind, key) == key):
            chosen.add(property_name(kind, key))
        elif name:
            unknown.append(name)
    if unknown and not (catalogue is not None and catalogue.truncated):
        raise InvalidInput(
            f"properties {', '.join(unknown)[:200]}",
            f"not properties of {kind}; use {', '.join(column_names(kind))}, props, or a key of its queryables",
        )
    return chosen | set(unknown)  # keys the truncated catalogue does not list, when there are such


def with_collection_paths(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``/collections/<kind>/items`` spelled out for every kind, as copies of the templated
    operations (GET, and the writes the server takes there): GDAL 3.6 asks ``resultType=hits`` for a filtered count
    only when the items path *of that collection* declares the parameter (it looks up no template), and otherwise
    counts by reading every page, then reads them again to list them."""
    paths = document.get("paths", {})
    template = paths.get("/collections/{collectionId}/items")
    if not template or "get" not in template:
        return document
    for kind in Kind:
        spelled = {
            method: {
                **operation,
                "operationId": f"{operation.get('operationId', method)}_{kind}",
                "summary": f"{operation.get('summary', '')} ({kind})",
                "parameters": [p for p in operation.get("parameters", []) if p.get("name") != "collectionId"],
            }
            for method, operation in template.items()
            if isinstance(operation, dict)
        }
        paths.setdefault(f"/collections/{kind}/items", spelled)
    return document
