"""The IoT routes: HTTP ingest, sensor history, ingest statistics, alerts, and the live WebSocket.

Handlers get the running :class:`~cim.iot.service.IotService` through :func:`get_iot`, which reads
``app.state.iot`` (set by the app's lifespan). Domain errors are raised as they are (``NotFound`` for an unknown
sensor, ``InvalidInput`` for a body that is not readings): the app's status map turns them into 404 / 400.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, WebSocket, WebSocketDisconnect
from starlette.requests import HTTPConnection

from cim.errors import InvalidInput
from cim.iot.live import alert_dict
from cim.iot.mqtt import Backpressure
from cim.iot.service import IotService
from cim.model import Reading

#: The most readings one POST may carry.
MAX_POST_READINGS = 10_000

router = APIRouter()


def get_iot(connection: HTTPConnection) -> IotService:
    """The IoT service the lifespan put on ``app.state.iot``."""
    service = getattr(connection.app.state, "iot", None)
    if not isinstance(service, IotService):
        raise RuntimeError("app.state.iot is not set: start an IotService in the app's lifespan")
    return service


Iot = Annotated[IotService, Depends(get_iot)]


def require_write_token(iot: Iot, authorization: Annotated[str | None, Header()] = None) -> None:
    """Writes need ``Authorization: Bearer <CIM_WRITE_TOKEN>``; with no token configured, writes are refused."""
    expected = iot.write_token
    if not expected:
        raise HTTPException(403, "write — refused: the server has no write token (set CIM_WRITE_TOKEN)")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(
            401, "write — needs the header Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"}
        )


def reading_out(reading: Reading) -> dict[str, Any]:
    return {"time": reading.time.isoformat(), "value": reading.value, "status": reading.status}


@router.post("/iot/readings", status_code=202, dependencies=[Depends(require_write_token)], tags=["iot"])
async def post_readings(iot: Iot, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """One reading ``{"sensor_id", "value", "time", "status"}``, a list of them, or ``{"readings": [...]}``.
    Bad readings are counted per reason and dropped; when none is accepted the answer is a 400. A 202 means the
    accepted readings are durable (in the write-ahead spool); when the server cannot take them now it answers 503
    with ``Retry-After`` and keeps none of them."""
    if isinstance(body, dict) and "readings" in body:
        body = body["readings"]
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_POST_READINGS:
        raise InvalidInput("readings", f"send between 1 and {MAX_POST_READINGS:,} readings, got {len(items):,}")
    try:
        accepted, dropped, messages = iot.ingest_items(items)
    except Backpressure as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    if not accepted:
        raise InvalidInput("readings", "none accepted: " + "; ".join(messages))
    return {"accepted": accepted, "dropped": dropped, "errors": messages}


@router.get("/iot/sensors", tags=["iot"])
async def list_sensors(iot: Iot) -> list[dict[str, Any]]:
    """Every sensor with its latest state."""
    out = []
    for sensor_id in sorted(iot.sensors):
        latest = iot.latest.get(sensor_id)
        out.append({**iot.sensors[sensor_id].to_dict(), "latest": reading_out(latest) if latest else None})
    return out


@router.get("/iot/sensors/{sensor_id}", tags=["iot"])
async def get_sensor(iot: Iot, sensor_id: str) -> dict[str, Any]:
    sensor = iot.sensor(sensor_id)
    latest = iot.latest.get(sensor_id)
    return {**sensor.to_dict(), "latest": reading_out(latest) if latest else None}


@router.get("/iot/sensors/{sensor_id}/readings", tags=["iot"])
async def get_readings(
    iot: Iot,
    sensor_id: str,
    start: Annotated[datetime | None, Query(alias="from", description="ISO 8601, inclusive")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> dict[str, Any]:
    """A sensor's history in time order."""
    for name, moment in (("from", start), ("to", end)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"parameter {name}={moment.isoformat()}", "needs a time zone (add Z or +08:00)")
    sensor = iot.sensor(sensor_id)
    readings = await iot.readings(sensor_id, start=start, end=end, limit=limit)
    return {
        "sensor_id": sensor_id,
        "quantity": sensor.quantity,
        "unit": sensor.unit,
        "readings": [reading_out(r) for r in readings],
    }


@router.get("/iot/stats", tags=["iot"])
async def get_stats(iot: Iot) -> dict[str, Any]:
    """Ingest counters: received, accepted, dropped per reason, stored, MQTT connection."""
    return iot.stats()


@router.get("/alerts", tags=["iot"])
async def get_alerts(
    iot: Iot,
    open_only: Annotated[bool, Query(alias="open", description="only the alerts still open")] = False,
    sensor_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> list[dict[str, Any]]:
    """Alerts newest first."""
    return [alert_dict(a) for a in await iot.alerts(open_only=open_only, sensor_id=sensor_id, limit=limit)]


@router.websocket("/iot/live")
async def live(websocket: WebSocket, iot: Iot) -> None:
    """A snapshot (``{"type": "snapshot", "states": [...], "alerts": [...]}``), then coalesced updates."""
    await websocket.accept()
    client = iot.hub.connect()
    receiver = asyncio.create_task(_until_disconnect(websocket, client.close))
    try:
        snapshot = {
            "type": "snapshot",
            "states": [{"sensor_id": r.sensor_id, **reading_out(r)} for r in iot.latest.values()],
            "alerts": [alert_dict(a) for a in iot.open_alerts()],
        }
        await websocket.send_text(json.dumps(snapshot))
        while (message := await client.next_message()) is not None:
            await websocket.send_text(message)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        iot.hub.disconnect(client)
        receiver.cancel()


async def _until_disconnect(websocket: WebSocket, on_close: Any) -> None:
    try:
        while True:
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        on_close()
