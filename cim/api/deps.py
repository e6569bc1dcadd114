"""What handlers get through ``Depends``: the store, the tiles, the alert hook, the IoT service, the write check.

The lifespan (:mod:`cim.api.app`) opens these and keeps them in a :class:`Resources`; handlers never read
``app.state`` themselves.
"""

from __future__ import annotations

import hmac
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar, get_type_hints

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from cim.api.errors import Forbidden, RequestTooLarge, Unauthorized
from cim.api.replica import PRIMARY_HEADER
from cim.api.tilefiles import TileFiles
from cim.errors import InvalidInput
from cim.model import Kind, parse_kind
from cim.settings import ServerSettings
from cim.store import Store

if TYPE_CHECKING:
    from cim.api.replica import ReadRouting
    from cim.cases import CaseService
    from cim.iot import IotService

#: Largest request body the API reads (a GeoJSON area of 100,000 vertices fits in about 4 MB).
MAX_BODY_BYTES = 8 * 1024 * 1024


class AlertLookup(Protocol):
    """The open alerts of one asset, as JSON objects. The IoT module supplies one; the default has none."""

    def __call__(self, asset_id: str) -> list[dict[str, Any]]: ...


def no_alerts(asset_id: str) -> list[dict[str, Any]]:
    return []


#: A readiness check of one dependency: None when it answers, else why it does not (see :mod:`cim.api.health`).
Probe = Callable[[], Awaitable[str | None]]


@dataclass
class Resources:
    """What the app holds while it runs, opened by the lifespan."""

    settings: ServerSettings
    store: Store
    tiles: TileFiles
    alerts: AlertLookup = no_alerts
    probes: dict[str, Probe] = field(default_factory=dict)
    iot: IotService | None = None  # live sensors (cim.api.iot), when the app serves them
    cases: CaseService | None = None  # cases and machine dispatch (cim.api.cases)
    reads: ReadRouting | None = None  # a streaming replica for read-only requests (cim.api.replica)


async def get_resources(connection: HTTPConnection) -> Resources:  # async: a sync dependency costs a thread hop
    resources: Resources = connection.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_store(resources: ResourcesDep, connection: HTTPConnection) -> Store:
    """The store. Backends serve many threads at once (DuckDB: a read cursor per reading thread; PostGIS: a
    connection pool), so no request waits for another here: a process-wide lock taken in the event loop and held
    across the hand-off to a worker thread once deadlocked the server at 41 concurrent requests (issue 19).
    With a read replica, a GET or HEAD gets the replica (unless it asks for the primary, :mod:`cim.api.replica`)."""
    reads = resources.reads
    if reads is None or connection.scope.get("method") not in ("GET", "HEAD"):
        return resources.store
    if connection.headers.get(PRIMARY_HEADER, "").lower() == "primary":
        return resources.store
    return reads.for_read()


StoreDep = Annotated[Store, Depends(get_store)]


async def get_tiles(resources: ResourcesDep) -> TileFiles:
    return resources.tiles


async def get_alerts(resources: ResourcesDep) -> AlertLookup:
    return resources.alerts


_Params = TypeVar("_Params")


def query_params(cls: type[_Params]) -> Any:
    """A dependency building ``cls``, a dataclass of query parameters, in the event loop: FastAPI calls a class
    dependency in a worker thread, a hop that cost more than building it (see :func:`get_store`)."""
    hints = get_type_hints(cls, include_extras=True)
    signature = inspect.signature(cls)
    parameters = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()]

    async def build(**values: Any) -> _Params:
        return cls(**values)

    build.__signature__ = signature.replace(parameters=parameters, return_annotation=cls)  # type: ignore[attr-defined]
    return Depends(build)


async def collection_kind(collectionId: str) -> Kind:
    """The asset kind a collection id names, or 404."""
    try:
        return parse_kind(collectionId)
    except InvalidInput as exc:
        from cim.errors import NotFound

        raise NotFound(f"collection {collectionId[:80]!r}", exc.why) from None


KindDep = Annotated[Kind, Depends(collection_kind)]


#: Declares the bearer token in the OpenAPI document; :func:`require_write_token` checks it.
_bearer = HTTPBearer(auto_error=False, description="CIM_WRITE_TOKEN")


async def require_write_token(
    resources: ResourcesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Every write endpoint depends on this: ``Authorization: Bearer <CIM_WRITE_TOKEN>``; with no token configured,
    writes are refused. Async and without the body: the token is checked before a byte of the body is read."""
    token = resources.settings.write_token
    if not token:
        raise Forbidden("writes", "are disabled: the server has no write token (set CIM_WRITE_TOKEN)")
    given = credentials.credentials if credentials is not None else ""
    if credentials is None or not hmac.compare_digest(given.strip().encode(), token.encode()):
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
