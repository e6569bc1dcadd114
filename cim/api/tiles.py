"""``/tiles/...``: built tilesets, with ETag, Cache-Control, conditional GET (304) and gzip for JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from cim.api.deps import get_tiles
from cim.api.tilefiles import TileFiles

router = APIRouter(prefix="/tiles", tags=["tiles"])

#: Tileset JSON changes on every rebuild; content files are replaced, never edited, but share names across builds.
CACHE_CONTROL = {"application/json": "public, max-age=60, must-revalidate"}
DEFAULT_CACHE_CONTROL = "public, max-age=3600, must-revalidate"


@router.head("/{path:path}", include_in_schema=False)
@router.get("/{path:path}", summary="A file of a built tileset")
async def get_tile(path: str, request: Request, tiles: Annotated[TileFiles, Depends(get_tiles)]) -> Response:
    # A cached tile is answered on the event loop (a few stat calls); only a file to read goes to a thread. A sync
    # handler paid a thread hop on every request: measured, the route's throughput was 2% of nginx's.
    tile = tiles.cached(path)
    if tile is None:
        tile = await run_in_threadpool(tiles.get, path)
    gzip_ok = tile.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = tile.etag[:-1] + '-gz"' if gzip_ok else tile.etag
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL.get(tile.content_type, DEFAULT_CACHE_CONTROL),
        "Vary": "Accept-Encoding",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if gzip_ok:
        assert tile.gzipped is not None
        headers["Content-Encoding"] = "gzip"
        body = tile.gzipped
    else:
        body = tile.body
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=tile.content_type)
    return Response(content=body, headers=headers, media_type=tile.content_type)


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return "q=0" not in params.replace(" ", "") or "q=0." in params.replace(" ", "")
    return False


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(candidate.strip().removeprefix("W/") == etag for candidate in header.split(","))
