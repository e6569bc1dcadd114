"""``/tiles/...``: built tilesets, with ETag, Cache-Control, conditional GET (304) and gzip for JSON and glb.

The route checks the path, reads the file into the cache and answers. ``cim serve`` answers a GET or HEAD of a
cached, unchanged file before the request reaches the app (:mod:`cim.api.fastpath`); both answer with :func:`answer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from cim.api.deps import get_tiles
from cim.api.schemas import errors
from cim.api.tilefiles import CONTENT_TYPES, Reply, TileFile, TileFiles

router = APIRouter(prefix="/tiles", tags=["tiles"])

_C = r"[^/\\\x00]"  # a character a segment may hold
_FIRST = rf"([^/\\\x00.]([^/\\\x00:]{_C}*)?|\.[^/\\\x00.:]{_C}*|\.\.{_C}+)"  # no drive letter (C:)
_NEXT = rf"([^/\\\x00.]|\.[^/\\\x00.]|\.\.{_C}){_C}*"
#: A path inside the tiles folder as :meth:`TileFiles.resolve` takes it: relative (no leading ``/``, no drive),
#: no ``.`` or ``..`` segment, no backslash or NUL. In the OpenAPI document, so fuzzers know it too.
TILE_PATH = rf"^{_FIRST}(/{_NEXT})*$"

_BINARY = {"schema": {"type": "string", "format": "binary"}}
#: The content types the tiles folder's files are served with (:data:`cim.api.tilefiles.CONTENT_TYPES`).
TILE_CONTENT = {
    media: {"schema": {"type": "object"}} if media.endswith("json") else _BINARY
    for media in sorted({*CONTENT_TYPES.values(), "application/octet-stream"})
}


@router.head("/{path:path}", include_in_schema=False)
@router.get(
    "/{path:path}",
    summary="A file of a built tileset",
    response_class=Response,
    responses={
        200: {"description": "The file", "content": TILE_CONTENT},
        304: {"description": "Not modified: the If-None-Match header names the file's ETag"},
        **errors(400, 404),
    },
)
async def get_tile(
    path: Annotated[str, Path(description="a path inside the tiles folder", pattern=TILE_PATH)],
    request: Request,
    tiles: Annotated[TileFiles, Depends(get_tiles)],
) -> Response:
    # A cached tile is answered on the event loop (a few stat calls); only a file to read goes to a thread. A sync
    # handler paid a thread hop on every request: measured, the route's throughput was 2% of nginx's.
    tile = tiles.cached(path)
    if tile is None:
        tile = await run_in_threadpool(tiles.get, path)
    reply = answer(tile, request.method, request.headers.raw)
    response = Response(status_code=reply.status)
    response.raw_headers, response.body = list(reply.headers), reply.body
    return response


def answer(tile: TileFile, method: str, headers: Iterable[tuple[bytes, bytes]]) -> Reply:
    """The reply to a request of ``tile`` (``headers`` as ASGI has them, names in lower case): gzip when the file
    has a gzip form and the client accepts it (with an ETag of its own), 304 when ``If-None-Match`` names the ETag,
    no body for HEAD."""
    accept_encoding = if_none_match = b""
    for name, value in headers:
        if name == b"accept-encoding":
            accept_encoding = value
        elif name == b"if-none-match":
            if_none_match = value
    encoded = tile.gzipped if tile.gzipped is not None and _accepts_gzip(accept_encoding) else tile.plain
    if if_none_match and _matches(if_none_match, encoded.etag):
        return encoded.not_modified
    return encoded.head if method == "HEAD" else encoded.ok


@lru_cache(maxsize=256)  # clients send few distinct values, each again and again
def _accepts_gzip(header: bytes) -> bool:
    for item in header.decode("latin-1").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return "q=0" not in params.replace(" ", "") or "q=0." in params.replace(" ", "")
    return False


def _matches(header: bytes, etag: bytes) -> bool:
    if header.strip() == b"*":
        return True
    return any(candidate.strip().removeprefix(b"W/") == etag for candidate in header.split(b","))
