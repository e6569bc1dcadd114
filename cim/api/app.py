"""The app factory: ``create_app(settings)`` builds the FastAPI app; nothing is built at import.

The lifespan opens the store and the tiles folder and closes the store on shutdown. Routers come from
:data:`CORE_ROUTERS` plus the ``routers`` a caller adds (the IoT ingest and WebSocket, the viewer): that is the one
place other modules plug in. ``alerts`` fills the ``alerts`` list of ``/assets/{id}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from cim import __version__
from cim.api import assets, features, queries, tiles
from cim.api.deps import AlertLookup, Resources, no_alerts
from cim.api.errors import install_error_handlers
from cim.api.tilefiles import TileFiles
from cim.settings import AppSettings
from cim.store import open_store

log = logging.getLogger("cim.api")

#: The routers every server has; the order is the order of the OpenAPI document.
CORE_ROUTERS: tuple[APIRouter, ...] = (features.router, queries.router, assets.router, tiles.router)


def create_app(settings: AppSettings, *, routers: Sequence[APIRouter] = (), alerts: AlertLookup = no_alerts) -> FastAPI:
    """The CIM server app over the store and tiles folder ``settings`` name.

    >>> import tempfile, os
    >>> from cim.settings import ServerSettings, StoreSettings
    >>> d = tempfile.mkdtemp()
    >>> app = create_app(AppSettings(store=StoreSettings(store=os.path.join(d, "c.duckdb")),
    ...                              server=ServerSettings(tiles_dir=d)))
    >>> app.openapi_url
    '/api'
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await run_in_threadpool(open_store, settings.store.store)
        app.state.resources = Resources(
            settings=settings.server, store=store, tiles=TileFiles(settings.server.tiles_dir), alerts=alerts
        )
        log.info("serving store %s and tiles from %s", store.url, settings.server.tiles_dir)
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="CIM server",
        version=__version__,
        description="City information model: OGC API – Features over the assets, 3D Tiles, domain queries.",
        openapi_url="/api",
        docs_url="/api.html",
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag"],
        )
    for router in (*CORE_ROUTERS, *routers):
        app.include_router(router)
    return app
