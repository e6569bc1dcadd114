"""Live sensor state: MQTT and HTTP ingest, history, threshold rules and alerts, a live WebSocket push.

Sensors are assets of kind ``sensor`` bound to the asset they watch (``parent_id``), with ``props["quantity"]``,
``props["unit"]`` and optional ``props["thresholds"]`` (:mod:`cim.iot.sensors`). :class:`IotService` owns the live
state; :data:`router` exposes it.

Mounting into the app (``cim/api``)::

    from contextlib import asynccontextmanager
    from cim.iot import IotService, router as iot_router
    from cim.settings import MqttSettings, ServerSettings

    @asynccontextmanager
    async def lifespan(app):
        service = IotService(store, MqttSettings(), write_token=ServerSettings().write_token)
        await service.start()          # loads sensors, latest states, open alerts; subscribes when CIM_MQTT_URL is set
        app.state.iot = service        # handlers get it through cim.iot.router.get_iot (a Depends)
        try:
            yield
        finally:
            await service.stop()       # stops MQTT, closes WebSockets, flushes buffered readings

    app = FastAPI(lifespan=lifespan)
    app.include_router(iot_router)     # POST /iot/readings, GET /iot/sensors[/{id}[/readings]], GET /iot/stats,
                                       # GET /alerts?open=true, WebSocket /iot/live

The router raises :class:`cim.errors.NotFound` (unknown sensor → 404) and :class:`cim.errors.InvalidInput` (a body
that holds no acceptable reading, a time without zone → 400); the app's error map must turn them into JSON.
Auth failures are ``HTTPException`` 401 (wrong or missing bearer token) or 403 (no ``CIM_WRITE_TOKEN`` configured).

The service reaches the store from one worker thread of its own; with the embedded DuckDB store the app must share
its one store object with the service (DuckDB allows one writer process).
"""

from __future__ import annotations

from cim.iot.rules import Condition, Rule
from cim.iot.sensors import Sensor, sensor_asset
from cim.iot.service import IotOptions, IotService

__all__ = ["Condition", "IotOptions", "IotService", "Rule", "Sensor", "router", "sensor_asset"]


def __getattr__(name: str) -> object:
    if name == "router":  # FastAPI is imported only by those who mount the routes
        from cim.iot.router import router

        return router
    raise AttributeError(name)
