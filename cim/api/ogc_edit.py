"""OGC API – Features – Part 4 (Create, Replace, Update and Delete) on the asset collections.

- ``POST /collections/{kind}/items`` a GeoJSON Feature → 201, ``Location`` of the new item; its id is the body's
  ``id`` when given (409 if taken, in any collection: ids are the store's), else ``<kind>-<12 hex digits>``.
- ``PUT /collections/{kind}/items/{id}`` the whole feature → 200 with it; 404 if the item is not there (PUT does
  not create: the server assigns ids, as the standard's ``put-rid-exception`` allows); an ``id`` in the body is
  ignored (``put-rid``).
- ``PATCH …/items/{id}`` a JSON merge patch (RFC 7396) of the feature → 200 with the result: members given
  replace, ``null`` unsets (a property-set key is removed), the rest stays; the ``id`` cannot change.
- ``DELETE …/items/{id}`` → 204; 404 if it is not there.
- ``OPTIONS`` on both endpoints → 200 with ``Allow`` (the write methods only for a request carrying the write
  token), ``Accept-Post`` / ``Accept-Patch``: QGIS asks these to decide whether a layer is editable.

Every write needs ``Authorization: Bearer <CIM_WRITE_TOKEN>`` (checked before the body is read); the body is
checked whole (:mod:`cim.api.feature_input`) before the store is touched; each change is one transaction that
reads, decides and writes the asset with other edits of that id kept out (:meth:`SqlStore.edit_asset`). After it,
the tiles of the edited asset are rebuilt by a coalesced job (:mod:`cim.api.tile_refresh`) named in the
``X-Cim-Job`` header (poll ``GET /admin/jobs/{id}``); the asset area tables and every cache keyed on the assets
version see the change at their next read, as after any write.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from cim.api.deps import KindDep, ResourcesDep, StoreDep, json_body, require_write_token
from cim.api.errors import error_response
from cim.api.feature_input import checked_id, new_asset, patched_asset
from cim.api.geojson import feature
from cim.api.ogc_features import GEOJSON, GeoJSONResponse
from cim.api.schemas import ErrorOut, FeatureOut, errors
from cim.api.tile_refresh import TileRefresher
from cim.errors import Conflict, InvalidInput, NotFound
from cim.model import Asset, Kind
from cim.queries.checks import checked_text
from cim.store.sqlstore import sql_store

router = APIRouter(tags=["OGC API – Features – Part 4"])

#: The response header naming the tile rebuild job an edit queued (or joined).
JOB_HEADER = "X-Cim-Job"
FEATURE_TYPES = (GEOJSON, "application/json")
PATCH_TYPES = ("application/merge-patch+json", *FEATURE_TYPES)
#: The names of CRS84 a Content-Crs header may give (the only CRS the collections offer).
_CRS84 = ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "http://www.opengis.net/def/crs/OGC/0/CRS84")
_READ_METHODS = ("GET", "HEAD", "OPTIONS")

_FEATURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A GeoJSON Feature: properties as the feature routes send them (typed columns of the kind, "
    "property-set keys; a `props` object is also read); geometry in lon/lat (CRS84)",
    "required": ["type", "geometry"],
    "properties": {
        "type": {"type": "string", "enum": ["Feature"]},
        "id": {"type": ["string", "integer"]},
        "geometry": {"type": ["object", "null"]},
        "properties": {"type": ["object", "null"]},
    },
}
_PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A JSON merge patch (RFC 7396) of the feature: members given replace, null unsets",
    "properties": {"geometry": {"type": ["object", "null"]}, "properties": {"type": "object"}},
}
_JOB_DOC: dict[str, Any] = {
    JOB_HEADER: {
        "description": "the tile rebuild job (GET /admin/jobs/{id}), when one was queued",
        "schema": {"type": "string"},
    }
}


async def get_refresher(request: Request) -> TileRefresher:
    """The server's tile refresher, made on first use over the admin job runner (its lifespan starts after this
    router's would)."""
    state = request.app.state
    refresher: TileRefresher | None = getattr(state, "tile_refresher", None)
    if refresher is None:
        refresher = state.tile_refresher = TileRefresher(state.admin_jobs)
    return refresher


RefresherDep = Annotated[TileRefresher, Depends(get_refresher)]
WRITE = [Depends(require_write_token)]


def _responses(status: int, ok: dict[str, Any], *statuses: int, media: bool = True) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a write: its success (``ok``: headers, description), its errors, 415 when it reads a
    body."""
    documented: dict[int | str, dict[str, Any]] = {status: ok, **errors(*statuses)}
    if media:
        documented[415] = {"model": ErrorOut, "description": "The body's Content-Type is not one this operation reads"}
    return documented


def _body(content: dict[str, Any], *types: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {t: {"schema": content} for t in types}}}


@router.post(
    "/collections/{collectionId}/items",
    summary="Add a feature to a collection",
    status_code=201,
    response_model=FeatureOut,
    response_class=GeoJSONResponse,
    dependencies=WRITE,
    responses=_responses(
        201, {"headers": {"Location": {"schema": {"type": "string"}}, **_JOB_DOC}}, 400, 401, 403, 404, 409, 413
    ),
    openapi_extra=_body(_FEATURE_SCHEMA, *FEATURE_TYPES),
)
async def create_feature(request: Request, kind: KindDep, store: StoreDep, refresher: RefresherDep) -> Response:
    if (refused := _refused_type(request, FEATURE_TYPES)) is not None:
        return refused
    body = await json_body(request)
    given = body.get("id") if isinstance(body, dict) else None
    asset_id = checked_id(given) if given is not None else f"{kind}-{uuid.uuid4().hex[:12]}"
    asset = new_asset(body, kind=kind, asset_id=asset_id)

    def create(current: Asset | None) -> Asset:
        if current is not None:
            where = f"collection {current.kind}"
            raise Conflict(
                f"feature {asset_id!r}", f"exists already (in {where}); replace it with PUT, or leave out id"
            )
        return asset

    await run_in_threadpool(sql_store(store).edit_asset, asset_id, create, by="api")
    location = _item_url(request, kind, asset_id)
    headers = {"Location": location, **_job(refresher, asset_id, kind)}
    return GeoJSONResponse(_with_links(feature(asset), request, kind, location), status_code=201, headers=headers)


@router.put(
    "/collections/{collectionId}/items/{feature_id}",
    summary="Replace a feature",
    response_model=FeatureOut,
    response_class=GeoJSONResponse,
    dependencies=WRITE,
    responses=_responses(200, {"headers": _JOB_DOC}, 400, 401, 403, 404, 413),
    openapi_extra=_body(_FEATURE_SCHEMA, *FEATURE_TYPES),
)
async def replace_feature(
    request: Request, kind: KindDep, feature_id: str, store: StoreDep, refresher: RefresherDep
) -> Response:
    if (refused := _refused_type(request, FEATURE_TYPES)) is not None:
        return refused
    feature_id = checked_text(feature_id, what="feature id")
    asset = new_asset(await json_body(request), kind=kind, asset_id=feature_id)  # the body's id is ignored

    def replace(current: Asset | None) -> Asset:
        _check_in(current, kind, feature_id)
        return asset

    await run_in_threadpool(sql_store(store).edit_asset, feature_id, replace, by="api")
    body = _with_links(feature(asset), request, kind, _item_url(request, kind, feature_id))
    return GeoJSONResponse(body, headers=_job(refresher, feature_id, kind))


@router.patch(
    "/collections/{collectionId}/items/{feature_id}",
    summary="Update a feature with a JSON merge patch",
    response_model=FeatureOut,
    response_class=GeoJSONResponse,
    dependencies=WRITE,
    responses=_responses(200, {"headers": _JOB_DOC}, 400, 401, 403, 404, 413),
    openapi_extra=_body(_PATCH_SCHEMA, *PATCH_TYPES),
)
async def update_feature(
    request: Request, kind: KindDep, feature_id: str, store: StoreDep, refresher: RefresherDep
) -> Response:
    if (refused := _refused_type(request, PATCH_TYPES)) is not None:
        return refused
    feature_id = checked_text(feature_id, what="feature id")
    patch = await json_body(request)
    if not isinstance(patch, dict):
        raise InvalidInput("request body", "must be a JSON object (a merge patch of the feature)")

    def update(current: Asset | None) -> Asset:
        return patched_asset(_check_in(current, kind, feature_id), patch)

    edited = await run_in_threadpool(sql_store(store).edit_asset, feature_id, update, by="api")
    assert edited is not None
    body = _with_links(feature(edited), request, kind, _item_url(request, kind, feature_id))
    return GeoJSONResponse(body, headers=_job(refresher, feature_id, kind))


@router.delete(
    "/collections/{collectionId}/items/{feature_id}",
    summary="Delete a feature",
    status_code=204,
    response_class=Response,
    dependencies=WRITE,
    responses=_responses(204, {"description": "Deleted", "headers": _JOB_DOC}, 401, 403, 404, media=False),
)
async def delete_feature(kind: KindDep, feature_id: str, store: StoreDep, refresher: RefresherDep) -> Response:
    feature_id = checked_text(feature_id, what="feature id")

    def delete(current: Asset | None) -> None:
        _check_in(current, kind, feature_id)
        return None

    await run_in_threadpool(sql_store(store).edit_asset, feature_id, delete, by="api")
    return Response(status_code=204, headers=_job(refresher, feature_id, kind))


@router.options("/collections/{collectionId}/items", include_in_schema=False)
async def items_options(kind: KindDep, request: Request, resources: ResourcesDep) -> Response:
    writes = ("POST",) if _may_write(request, resources.settings.write_token) else ()
    headers = {"Allow": ", ".join((*_READ_METHODS, *writes))}
    if writes:
        headers["Accept-Post"] = ", ".join(FEATURE_TYPES)
    return Response(status_code=200, headers=headers)


@router.options("/collections/{collectionId}/items/{feature_id}", include_in_schema=False)
async def item_options(kind: KindDep, feature_id: str, request: Request, resources: ResourcesDep) -> Response:
    writes = ("PUT", "PATCH", "DELETE") if _may_write(request, resources.settings.write_token) else ()
    headers = {"Allow": ", ".join((*_READ_METHODS, *writes))}
    if writes:
        headers["Accept-Patch"] = ", ".join(PATCH_TYPES)
    return Response(status_code=200, headers=headers)


def _may_write(request: Request, token: str | None) -> bool:
    """Whether the request carries the write token (OPTIONS lists the methods allowed *to this request*)."""
    if not token:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _refused_type(request: Request, accepted: tuple[str, ...]) -> Response | None:
    """A 400 when the body has no Content-Type, 415 when it is one the operation does not read; a 400 for a
    Content-Crs other than CRS84 (the only CRS of the collections)."""
    given = request.headers.get("content-type")
    if given is None:
        raise InvalidInput("Content-Type", f"is missing; send the body as {' or '.join(accepted)}")
    media = given.split(";", 1)[0].strip().lower()
    if media not in accepted:
        why = f"is {media[:80]!r}; this operation reads {', '.join(accepted)}"
        return error_response(415, "UnsupportedMediaType", "Content-Type", why)
    crs = request.headers.get("content-crs")
    if crs is not None and crs.strip().strip("<>") not in _CRS84:
        raise InvalidInput("Content-Crs", f"is {crs[:120]!r}; the collections take lon/lat in {_CRS84[0]} only")
    return None


def _check_in(current: Asset | None, kind: Kind, feature_id: str) -> Asset:
    if current is None or current.kind is not kind:
        raise NotFound(f"feature {feature_id[:100]!r}", f"is not in collection {kind}")
    return current


def _item_url(request: Request, kind: Kind, asset_id: str) -> str:
    root = str(request.base_url).rstrip("/")
    return f"{root}/collections/{kind}/items/{quote(asset_id, safe=':@!$&()*+,;=-._~')}"


def _with_links(body: dict[str, Any], request: Request, kind: Kind, url: str) -> dict[str, Any]:
    root = str(request.base_url).rstrip("/")
    body["links"] = [
        {"href": url, "rel": "self", "type": GEOJSON},
        {"href": f"{root}/collections/{kind}", "rel": "collection", "type": "application/json"},
    ]
    return body


def _job(refresher: TileRefresher, asset_id: str, kind: Kind) -> dict[str, str]:
    job = refresher.assets_changed([asset_id], [kind])
    return {JOB_HEADER: job} if job is not None else {}
