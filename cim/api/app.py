"""The app factory: ``create_app(settings)`` builds the FastAPI app; nothing is built at import.

The lifespan opens the store and the tiles folder and closes the store on shutdown. Routers come from
:data:`CORE_ROUTERS` plus the ``routers`` a caller adds (the IoT ingest and WebSocket, the viewer): that is the one
place other modules plug in. ``alerts`` fills the ``alerts`` list of ``/assets/{id}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from cim import __version__
from cim.api import (
    aggregates,
    assets,
    case_features,
    cases,
    changes,
    health,
    history,
    indicators,
    ogc_edit,
    ogc_features,
    originals,
    preview,
    queries,
    reports,
    search,
    targets,
    tiles,
)
from cim.api.admin import build_admin_router
from cim.api.admission import AdmissionControl, AdmissionLimits
from cim.api.deps import AlertLookup, Probe, Resources, no_alerts
from cim.api.errors import install_error_handlers
from cim.api.openapi import install_openapi
from cim.api.replica import ReadRouting
from cim.api.tilefiles import TileFiles
from cim.api.workers import claim_worker_slot
from cim.settings import AppSettings, MqttSettings
from cim.store import Store, open_store

if TYPE_CHECKING:
    from cim.cases import CaseService
    from cim.iot import IotService

log = logging.getLogger("cim.api")

#: The routers every server has; the order is the order of the OpenAPI document.
CORE_ROUTERS: tuple[APIRouter, ...] = (
    case_features.router,  # /collections/cases before the asset kinds' /collections/{collectionId}
    ogc_features.router,
    originals.router,  # /collections/{collectionId}/items/{feature_id}/ifc: a BIM feature's original file
    ogc_edit.router,
    aggregates.router,
    queries.router,
    indicators.router,
    reports.router,
    targets.router,
    changes.router,
    history.router,
    search.router,
    assets.router,
    tiles.router,
    preview.router,
    cases.router,
    health.router,
)


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
        service = None
        case_service = None
        reads = None
        watching = None
        try:
            if settings.store.store_read_url is not None:
                reads = await ReadRouting.open(store, settings.store.store_read_url)
                watching = asyncio.create_task(reads.watch(), name="cim-read-replica-watch")
            if settings.live:
                service = await _start_iot(settings)
            case_service = await _start_cases(settings, service, reader=store)
            app.state.resources = Resources(
                settings=settings.server,
                store=store,
                tiles=TileFiles(settings.server.tiles_dir),
                alerts=alerts if service is None else _alerts_of(service),
                probes={} if service is None else _iot_probes(service),
                iot=service,
                cases=case_service,
                reads=reads,
            )
            log.info("serving store %s and tiles from %s", store.url, settings.server.tiles_dir)
            yield
        finally:
            if service is not None:
                await service.stop()
                service.store.close()
            if case_service is not None:  # after the IoT service: its last alerts still become cases
                await case_service.stop()
                case_service.store.close()
            if watching is not None:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
            if reads is not None:
                reads.close()
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
    app.add_middleware(
        AdmissionControl,
        limits=AdmissionLimits(
            max_active=settings.server.max_active_requests,
            max_waiting=settings.server.max_waiting_requests,
            wait_timeout=settings.server.queue_timeout_s,
        ),
    )
    install_openapi(app)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],  # PUT…: Part 4 edits
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Location", ogc_edit.JOB_HEADER],  # a created item's URL, an edit's rebuild job
        )
    first = [viewer] if (viewer := _viewer_router(settings)) is not None else []
    live = [_iot_router(settings)] if settings.live else []
    admin = [build_admin_router(settings)]  # ingest and build while serving
    for router in (*first, *CORE_ROUTERS, *admin, *live, *routers):  # the viewer's / before the landing page
        app.include_router(router)
    return app


async def _start_iot(settings: AppSettings) -> IotService:
    """The IoT service on a store connection of its own (its worker thread must not share the API's). On a
    PostgreSQL store its live changes are relayed to the other servers on that store, and theirs to its clients
    (:mod:`cim.iot.relay`); in an MQTT share group it has a spool of its own, named after its client id."""
    from cim.iot import IotService
    from cim.iot.mqtt import client_id_for
    from cim.iot.spool import spool_path_for
    from cim.store.postgis import PostGISStore

    url = settings.store.store
    store = await run_in_threadpool(open_store, url)
    mqtt = settings.mqtt
    if mqtt.client_id is None:  # one per serving process, the same at its restarts: its session resumes
        mqtt = mqtt.model_copy(update={"client_id": client_id_for(url, port=settings.server.port)})
    if settings.server.workers > 1:  # worker processes of one cim serve: each its own session, sharing the topic
        mqtt = _worker_mqtt(mqtt, claim_worker_slot(mqtt.client_id or "cim", settings.server.workers))
    own_spool = mqtt.client_id if mqtt.share_group else None
    service = IotService(
        store,
        mqtt,
        spool_path=settings.iot.spool or spool_path_for(url, client_id=own_spool),
        relay_url=url if isinstance(store, PostGISStore) else None,
    )
    try:
        await service.start()
    except BaseException:
        store.close()
        raise
    return service


def _worker_mqtt(mqtt: MqttSettings, slot: int) -> MqttSettings:
    """A worker's MQTT settings: its client id is the server's with its slot (the same when the worker is made
    again after a crash, so its session and queued share resume), in a share group of the server's workers (the
    given group, else one named after the server's client id): the broker hands each reading to one of them."""
    base = mqtt.client_id or "cim"
    return mqtt.model_copy(update={"client_id": f"{base}-w{slot}", "share_group": mqtt.share_group or base})


async def _start_cases(settings: AppSettings, iot: IotService | None, *, reader: Store) -> CaseService:
    """The case service on a store connection of its own; with live sensors, every alert reaches it (machine
    dispatch) and every case change goes out on the live WebSocket."""
    from cim.cases import CaseService

    store = await run_in_threadpool(open_store, settings.store.store)
    service = CaseService(store, publish=iot.hub.publish_case if iot is not None else None, reader=reader)
    try:
        await service.start()
    except BaseException:
        store.close()
        raise
    if iot is not None:
        iot.alert_listeners.append(service.on_alert)
    return service


def _alerts_of(service: IotService) -> AlertLookup:
    """Open alerts of an asset: of the asset itself when it is a sensor, or of the sensors bound to it."""
    from cim.iot.live import alert_dict

    def lookup(asset_id: str) -> list[dict[str, Any]]:
        return [
            alert_dict(a)
            for a in service.open_alerts()
            if a.sensor_id == asset_id or getattr(service.sensors.get(a.sensor_id), "parent_id", None) == asset_id
        ]

    return lookup


def _iot_probes(service: IotService) -> dict[str, Probe]:
    """Readiness of the live side: readings reach the store, and the broker is connected when one is configured."""

    async def readings() -> str | None:
        if not service.flushes_failing:
            return None
        return f"readings cannot be written to the store; {service.stats()['buffered']} wait in the spool"

    probes: dict[str, Probe] = {"readings": readings}
    if service.mqtt_status is not None:
        status = service.mqtt_status

        async def mqtt() -> str | None:
            return None if status.connected else "the MQTT broker is not connected; reconnecting"

        probes["mqtt"] = mqtt
    return probes


def _iot_router(settings: AppSettings) -> APIRouter:
    from cim.api.iot import LiveGate, build_router

    server = settings.server
    origins = server.ws_origins if server.ws_origins is not None else server.cors_origins
    return build_router(LiveGate(origins=tuple(origins), token=server.ws_token))


def _viewer_router(settings: AppSettings) -> APIRouter | None:
    if not settings.viewer:
        return None
    from cim.api.viewer import build_viewer_router

    viewer_dir = settings.server.viewer_dir
    cesium = viewer_dir / "node_modules" / "cesium" / "Build" / "Cesium"
    if not (viewer_dir / "index.html").is_file() or not cesium.is_dir():
        log.warning("no viewer at %s (run npm ci in viewer/): serving the API only", viewer_dir)
        return None
    return build_viewer_router(viewer_dir, cesium)
