"""What handlers get through ``Depends``: the store (one statement at a time), the tiles, the alert hook.

The lifespan (:mod:`cim.api.app`) opens these and keeps them in a :class:`Resources`; handlers never read
``app.state`` themselves.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from cim.api.errors import Forbidden, RequestTooLarge, Unauthorized
from cim.api.tilefiles import TileFiles
from cim.errors import InvalidInput
from cim.model import Kind, parse_kind
from cim.settings import ServerSettings
from cim.store import Store

#: Largest request body the API reads (a GeoJSON area of 100,000 vertices fits in about 4 MB).
MAX_BODY_BYTES = 8 * 1024 * 1024


class AlertLookup(Protocol):
    """The open alerts of one asset, as JSON objects. The IoT module supplies one; the default has none."""

    def __call__(self, asset_id: str) -> list[dict[str, Any]]: ...


def no_alerts(asset_id: str) -> list[dict[str, Any]]:
    return []


@dataclass
class Resources:
    """What the app holds while it runs, opened by the lifespan."""

    settings: ServerSettings
    store: Store
    tiles: TileFiles
    alerts: AlertLookup = no_alerts
    store_lock: threading.Lock = field(default_factory=threading.Lock)


async def get_resources(request: Request) -> Resources:  # async: a sync dependency costs a thread hop
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_store(resources: ResourcesDep) -> Iterator[Store]:
    """The store, held for this request alone: a store connection runs one statement at a time."""
    with resources.store_lock:
        yield resources.store


StoreDep = Annotated[Store, Depends(get_store)]


async def get_tiles(resources: ResourcesDep) -> TileFiles:
    return resources.tiles


def get_alerts(resources: ResourcesDep) -> AlertLookup:
    return resources.alerts


def collection_kind(collectionId: str) -> Kind:
    """The asset kind a collection id names, or 404."""
    try:
        return parse_kind(collectionId)
    except InvalidInput as exc:
        from cim.errors import NotFound

        raise NotFound(f"collection {collectionId[:80]!r}", exc.why) from None


KindDep = Annotated[Kind, Depends(collection_kind)]


def require_write_token(request: Request, resources: ResourcesDep) -> None:
    """Every write endpoint depends on this: ``Authorization: Bearer <CIM_WRITE_TOKEN>``."""
    token = resources.settings.write_token
    if not token:
        raise Forbidden("writes", "are disabled: the server has no write token (set CIM_WRITE_TOKEN)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("writes", "need the header Authorization: Bearer <CIM_WRITE_TOKEN>")


async def json_body(request: Request) -> Any:
    """The request body as JSON, read up to :data:`MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestTooLarge("request body", f"is {int(declared):,} bytes; at most {MAX_BODY_BYTES:,} are read")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestTooLarge("request body", f"is over {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:
        raise InvalidInput("request body", f"is not JSON: {str(exc)[:200]}") from None
