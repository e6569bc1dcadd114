"""``/assets/{id}/preview.png``: a picture of an asset in its surroundings, rendered off-screen (:mod:`cim.render`).

The store is held only while the scene is read; the rendering runs after, so other requests are not kept waiting.
Pictures are cached in memory (least recently used first out, bounded in bytes), keyed by asset, size and the
digest of everything drawn: a change to the asset or to anything around it makes a new picture.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from cim.api.deps import ResourcesDep, query_params
from cim.api.errors import error_response
from cim.api.schemas import errors
from cim.render import MAX_SIZE, MIN_SIZE, RenderUnavailable, load_scene, open_meshes_for, render_scene

#: What the picture cache may hold.
CACHE_BYTES = 64 * 1024 * 1024
CACHE_ITEMS = 512


class PictureCache:
    """PNG bytes by key, least recently used out first, at most ``max_bytes`` and ``max_items``; thread-safe."""

    def __init__(self, *, max_bytes: int = CACHE_BYTES, max_items: int = CACHE_ITEMS) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int, int, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int, str]) -> bytes | None:
        with self._lock:
            png = self._items.get(key)
            if png is not None:
                self._items.move_to_end(key)
            return png

    def put(self, key: tuple[str, int, int, str], png: bytes) -> None:
        if len(png) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= len(old) if old is not None else 0
            self._items[key] = png
            self._bytes += len(png)
            while self._bytes > self.max_bytes or len(self._items) > self.max_items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class PictureSize:
    """The picture's size in pixels."""

    width: Annotated[int, Query(ge=MIN_SIZE, le=MAX_SIZE, description="Width in pixels")] = 640
    height: Annotated[int, Query(ge=MIN_SIZE, le=MAX_SIZE, description="Height in pixels")] = 480


def build_preview_router(*, cache: PictureCache | None = None) -> APIRouter:
    """The router of ``/assets/{id}/preview.png``, with a picture cache of its own."""
    pictures = cache if cache is not None else PictureCache()
    router = APIRouter(prefix="/assets", tags=["assets"])
    scene_lock = threading.Lock()

    @router.get(
        "/{asset_id}/preview.png",
        summary="A picture of an asset in its surroundings (PNG)",
        response_class=Response,
        responses={
            200: {
                "description": "A PNG picture",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            304: {"description": "Not modified: the If-None-Match header names the picture's ETag"},
            **errors(400, 404),
        },
    )
    def get_preview(
        asset_id: str,
        size: Annotated[PictureSize, query_params(PictureSize)],
        resources: ResourcesDep,
        request: Request,
    ) -> Response:
        meshes = open_meshes_for(resources.store)
        try:
            with scene_lock:  # one mesh-file open and scene at a time; taken and released in this thread
                scene = load_scene(resources.store, meshes, asset_id)
        finally:
            if meshes is not None:
                meshes.close()
        etag = f'"{scene.digest[:20]}-{size.width}x{size.height}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        key = (asset_id, size.width, size.height, scene.digest)
        png = pictures.get(key)
        if png is None:
            try:
                png = render_scene(scene, width=size.width, height=size.height)
            except RenderUnavailable as exc:
                return error_response(503, "ServiceUnavailable", exc.what, exc.why)
            pictures.put(key, png)
        return Response(png, media_type="image/png", headers=headers)

    return router


#: The router :data:`cim.api.app.CORE_ROUTERS` mounts (its cache is empty until the first picture).
router = build_preview_router()
