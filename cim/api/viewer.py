"""The viewer: the CesiumJS app in ``viewer/`` and CesiumJS itself, served by the CIM server.

- ``/`` → ``viewer/index.html`` for browsers. The route matches only requests that accept HTML, so GDAL and other
  OGC API clients asking for JSON at ``/`` fall through to the landing page (when this router is included before the
  features router; included after it, browsers get the landing page at ``/`` and the viewer at ``/viewer/``).
- ``/viewer/`` → ``index.html``; ``/viewer/<file>`` → the app's modules, styles and data files (``node_modules``,
  ``package*.json`` and hidden files are not served).
- ``/viewer/config.json`` → the tilesets the tiles folder holds, so the viewer finds the city without being told, and
  which optional endpoints (live IoT, alerts, indicators, places) this server has.
- ``/viewer/colors.json`` → the colours the tiles are built with, by asset kind (:data:`cim.tiling.glb.KIND_COLORS`),
  so the legend shows what the tiles show from one table.
- ``/cesium/<file>`` → CesiumJS's built ES module, workers, assets and widgets (``viewer/node_modules/cesium/Build/
  Cesium``), so the page needs nothing but this server.

Files are served by Starlette's :class:`~starlette.staticfiles.StaticFiles` (ETag, Last-Modified, 304, HEAD; paths
that resolve outside the folder are not found).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from cim.api.deps import get_tiles
from cim.api.tilefiles import TileFiles
from cim.errors import NotFound

#: CesiumJS files carry the release in their folder's package; a day's caching is safe and saves the 23 MB again.
CESIUM_CACHE = "public, max-age=86400"
#: The app's own files change with the server: always revalidate (the ETag makes that a 304).
VIEWER_CACHE = "no-cache"
#: Top-level names in ``viewer/`` that are not part of the app.
PRIVATE = frozenset({"node_modules", "package.json", "package-lock.json"})
#: Endpoints other modules add to the app; the viewer uses each when the server has it.
OPTIONAL = (
    ("live", "/iot/live"),
    ("alerts", "/alerts"),
    ("sensors", "/iot/sensors"),
    ("indicators", "/indicators"),
    ("places", "/places"),
    ("cases", "/cases"),
    ("history", "/history"),
    ("changes", "/changes"),
)


class BrowserRoute(APIRoute):
    """A route that matches only requests accepting HTML; the others try the next route with the same path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not accepts_html(scope):
            return Match.NONE, {}
        return match, child


def accepts_html(scope: Scope) -> bool:
    """Whether the request's ``Accept`` header names ``text/html`` (what browsers send for a page).

    >>> accepts_html({"headers": [(b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8")]})
    True
    >>> accepts_html({"headers": [(b"accept", b"application/json")]})
    False
    """
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value.lower()
    return False


def build_viewer_router(viewer_dir: Path, cesium_dir: Path) -> APIRouter:
    """The routes of the viewer app in ``viewer_dir`` and of CesiumJS's build in ``cesium_dir``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> sorted(r.path for r in build_viewer_router(folder, folder).routes)[:3]
    ['/', '/cesium/{path:path}', '/viewer']
    """
    # Debian's mime.types lacks some of these; a wrong type breaks streaming WebAssembly compilation and modules.
    mimetypes.add_type("application/wasm", ".wasm")
    mimetypes.add_type("text/javascript", ".js")
    mimetypes.add_type("text/javascript", ".mjs")
    app_files = StaticFiles(directory=viewer_dir, check_dir=False)
    cesium_files = StaticFiles(directory=cesium_dir, check_dir=False)
    index = viewer_dir / "index.html"
    router = APIRouter(tags=["viewer"], include_in_schema=False)

    async def page(request: Request) -> Response:
        return await _static(app_files, "index.html", request, VIEWER_CACHE, what=str(index))

    router.add_api_route("/", page, methods=["GET", "HEAD"], route_class_override=BrowserRoute)

    @router.get("/viewer")
    def viewer_root() -> RedirectResponse:
        return RedirectResponse("/viewer/", status_code=308)

    router.add_api_route("/viewer/", page, methods=["GET", "HEAD"])

    @router.get("/viewer/config.json")
    def viewer_config(request: Request, tiles: Annotated[TileFiles, Depends(get_tiles)]) -> dict[str, Any]:
        """The tilesets the viewer may open (``""`` for one at the root of the tiles folder, else folder names) and
        which optional endpoints this server has, so the viewer never probes one that is not there."""
        paths = route_paths(request.app.routes)
        return {"tilesets": list_tilesets(tiles.root), "endpoints": {name: path in paths for name, path in OPTIONAL}}

    @router.get("/viewer/colors.json")
    def viewer_colors() -> dict[str, Any]:
        """The tiles' colour of each asset kind: glTF's linear RGBA and the sRGB CSS colour a swatch shows."""
        from cim.tiling.glb import KIND_COLORS  # numpy and pyarrow: loaded by the tiles' routes anyway

        return {"kinds": {kind: {"linear": list(rgba), "css": css_color(rgba)} for kind, rgba in KIND_COLORS.items()}}

    @router.api_route("/viewer/{path:path}", methods=["GET", "HEAD"])
    async def viewer_file(path: str, request: Request) -> Response:
        first = path.split("/", 1)[0]
        if first in PRIVATE or any(part.startswith(".") for part in path.split("/")):
            raise NotFound(f"viewer file {path[:200]!r}", "is not part of the app")
        return await _static(app_files, path, request, VIEWER_CACHE, what=f"viewer file {path[:200]!r}")

    @router.api_route("/cesium/{path:path}", methods=["GET", "HEAD"])
    async def cesium_file(path: str, request: Request) -> Response:
        return await _static(cesium_files, path, request, CESIUM_CACHE, what=f"CesiumJS file {path[:200]!r}")

    return router


def route_paths(routes: Iterable[Any]) -> set[str]:
    """Every path the app answers, looking inside included routers (FastAPI ≥ 0.16x keeps them as one route)."""
    paths: set[str] = set()
    for route in routes:
        if isinstance(getattr(route, "path", None), str):
            paths.add(route.path)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(route, "include_context", None)
            paths |= {getattr(prefix, "prefix", "") + p for p in route_paths(inner.routes)}
    return paths


def css_color(linear: tuple[float, ...]) -> str:
    """A linear RGB(A) colour (glTF's ``baseColorFactor``) as the sRGB ``#rrggbb`` a page shows (alpha dropped).

    >>> css_color((0.8, 0.78, 0.74, 1.0)), css_color((0.0, 0.5, 1.0))
    ('#e7e5df', '#00bcff')
    """

    def srgb(v: float) -> int:
        encoded = 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
        return round(255 * min(max(encoded, 0.0), 1.0))

    return "#" + "".join(f"{srgb(v):02x}" for v in linear[:3])


def list_tilesets(root: Path) -> list[str]:
    """Names of the tilesets under ``root`` (folders holding a ``tileset.json``), sorted; ``""`` is the root itself.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "city").mkdir()
    >>> _ = (folder / "city" / "tileset.json").write_text("{}")
    >>> list_tilesets(folder)
    ['city']
    """
    if not root.is_dir():
        return []
    names = [""] if (root / "tileset.json").is_file() else []
    names += sorted(
        child.name for child in root.iterdir() if not child.name.startswith(".") and (child / "tileset.json").is_file()
    )
    return names


async def _static(files: StaticFiles, path: str, request: Request, cache: str, *, what: str) -> Response:
    """``path`` from ``files`` with conditional GET, or NotFound; ``..`` and links out of the folder are not found."""
    if not path or path.endswith("/"):
        raise NotFound(what, "is a folder, not a file")
    try:
        response = await files.get_response(path, request.scope)
    except Exception as exc:  # Starlette raises HTTPException(404) for missing files and PermissionError for escapes
        if getattr(exc, "status_code", 404) == 404 or isinstance(exc, PermissionError):
            raise NotFound(what, "no such file") from None
        raise
    response.headers["Cache-Control"] = cache
    return response
