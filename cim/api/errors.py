"""Errors at the HTTP edge: one status map for the domain errors, JSON bodies, nothing internal in a 5xx.

Bodies follow the OGC API exception shape (``code``, ``description``) and add the ``what``/``why`` halves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from cim.errors import (
    CimError,
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    StoreError,
    StoreUnavailable,
    UpstreamError,
)

log = logging.getLogger("cim.api")

#: The methods a 405's ``Allow`` header may list.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class RequestTooLarge(InvalidInput):
    """A request body over the server's limit."""


class Unauthorized(CimError):
    """A write without a valid bearer token."""


class Forbidden(CimError):
    """A request the server refuses whoever sends it (e.g. writes while no write token is configured)."""


#: Domain error → HTTP status; the most specific class listed first wins.
STATUS: tuple[tuple[type[CimError], int], ...] = (
    (RequestTooLarge, 413),
    (InvalidInput, 400),
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotPermitted, 403),
    (Conflict, 409),
    (UpstreamError, 502),
    (StoreUnavailable, 503),
    (StoreError, 500),
)


def status_of(exc: CimError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def error_response(
    status: int,
    code: str,
    what: str,
    why: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The error body; ``extra`` adds fields a client acts on (a 409's ``allowed`` actions and ``current`` state)."""
    headers = {
        **(headers or {}),
        **({"WWW-Authenticate": "Bearer"} if status == 401 else {}),
        **({"Retry-After": "1"} if status == 503 else {}),
    }
    body: dict[str, Any] = {"code": code, "description": f"{what} — {why}", "what": what, "why": why}
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers)


async def _cim_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CimError)
    status = status_of(exc)
    if status >= 500:
        # The message names where the store is (a file, a database user and host): the log has it, not the client.
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        if isinstance(exc, UpstreamError):  # names a mounted tileset, never its address
            return error_response(status, "BadGateway", exc.what, exc.why)
        if isinstance(exc, StoreUnavailable):
            return error_response(status, "ServiceUnavailable", "store", "is unavailable; try again later")
        return error_response(status, "ServerError", "request", "the store failed to answer; see the server log")
    extra = {"allowed": list(exc.allowed), "current": exc.current} if isinstance(exc, Conflict) else None
    return error_response(status, type(exc).__name__, exc.what, exc.why, extra=extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body"))
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return error_response(400, "InvalidParameterValue", "request parameters", "; ".join(problems))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    what = f"{request.method} {request.url.path[:200]}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
    return error_response(exc.status_code, "HTTPError", what, str(exc.detail), headers=headers)


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """The methods some route of ``app`` answers at the scope's path (for a 405's ``Allow``): Starlette names only
    those of the first route with that path, though GET and POST may be two routes."""
    allowed = []
    for method in METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=exc)
    return error_response(500, "ServerError", "request", "the server failed unexpectedly; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CimError, _cim_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
