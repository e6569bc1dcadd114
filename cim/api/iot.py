"""The IoT routes: HTTP ingest, sensor history, ingest statistics, alerts, and the live WebSocket.

Handlers get the running :class:`~cim.iot.service.IotService` through :func:`get_iot`, from the
:class:`~cim.api.deps.Resources` the app's lifespan opens; writes depend on :func:`~cim.api.deps.require_write_token`.
Domain errors are raised as they are (``NotFound`` for an unknown sensor, ``InvalidInput`` for a body that is not
readings): the app's status map turns them into 404 / 400.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect, WebSocketException, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cim.api.deps import ResourcesDep, json_body, require_write_token
from cim.api.schemas import (
    AlertOut,
    IotStatsOut,
    ReadingsAcceptedOut,
    SensorOut,
    SensorReadingsOut,
    errors,
)
from cim.errors import InvalidInput, NotFound
from cim.iot.live import alert_dict
from cim.iot.service import IotService
from cim.model import Reading
from cim.store.areas import area_tree
from cim.store.history import check_window

#: The most readings one POST may carry.
MAX_POST_READINGS = 10_000

routes = APIRouter()  # the HTTP routes; build_router adds the WebSocket with its gate


async def get_iot(resources: ResourcesDep) -> IotService:
    """The IoT service the lifespan started (``Resources.iot``)."""
    if resources.iot is None:
        raise RuntimeError("Resources.iot is not set: start an IotService in the app's lifespan")
    return resources.iot


Iot = Annotated[IotService, Depends(get_iot)]


INSTANT = {"format": "date-time"}
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)


def parse_instant(text: str, *, what: str) -> datetime:
    """An RFC 3339 time with its zone (OpenAPI's ``format: date-time``); a number or a time without zone is refused.

    >>> parse_instant("2026-05-01T08:00:00+08:00", what="from").isoformat()
    '2026-05-01T08:00:00+08:00'
    """
    try:
        if not _RFC3339.fullmatch(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"parameter {what}={text[:60]!r}", "is not an RFC 3339 time with a zone (e.g. 2026-05-01T08:00:00Z)"
        ) from None
    try:
        moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 parses but lies before year 1 in UTC
        raise InvalidInput(f"parameter {what}={text[:60]!r}", "lies outside the years 1–9999 in UTC") from None
    return moment


def reading_out(reading: Reading) -> dict[str, Any]:
    return {"time": reading.time.isoformat(), "value": reading.value, "status": reading.status}


_READING = {
    "type": "object",
    "required": ["sensor_id"],
    "properties": {
        "sensor_id": {"type": "string", "minLength": 1, "description": "a sensor asset of the store"},
        "value": {"type": ["number", "null"]},
        "status": {"type": ["string", "null"]},
        "time": {
            "type": ["string", "number"],
            "description": "ISO 8601 with a zone, or Unix seconds; the time of arrival when omitted",
        },
    },
}
_READINGS = {"type": "array", "items": _READING, "minItems": 1, "maxItems": MAX_POST_READINGS}
#: The body of ``POST /iot/readings`` (read by :func:`json_body` after the token is checked).
READINGS_BODY = {
    "anyOf": [
        _READING,
        _READINGS,
        {"type": "object", "required": ["readings"], "properties": {"readings": _READINGS}},
    ]
}


@routes.post(
    "/iot/readings",
    status_code=202,
    dependencies=[Depends(require_write_token)],  # before the body: a request without the token is not read
    tags=["iot"],
    response_model=ReadingsAcceptedOut,
    responses=errors(400, 401, 403, 413),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": READINGS_BODY}}}},
)
async def post_readings(iot: Iot, body: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    """One reading ``{"sensor_id", "value", "time", "status"}``, a list of them, or ``{"readings": [...]}``.
    Bad readings are counted per reason and dropped; when none is accepted the answer is a 400. A 202 means the
    accepted readings are durable (in the write-ahead spool); when the server cannot take them now it answers 503
    with ``Retry-After`` and keeps none of them."""
    if isinstance(body, dict) and "readings" in body:
        body = body["readings"]
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_POST_READINGS:
        raise InvalidInput("readings", f"send between 1 and {MAX_POST_READINGS:,} readings, got {len(items):,}")
    accepted, dropped, messages = iot.ingest_items(items)  # Backpressure is a StoreUnavailable: 503, Retry-After
    if not accepted:
        raise InvalidInput("readings", "none accepted: " + "; ".join(messages))
    return {"accepted": accepted, "dropped": dropped, "errors": messages}


@routes.get("/iot/sensors", tags=["iot"], response_model=list[SensorOut], responses=errors())
async def list_sensors(iot: Iot) -> list[dict[str, Any]]:
    """Every sensor with its latest state."""
    out = []
    for sensor_id in sorted(iot.sensors):
        latest = iot.latest.get(sensor_id)
        out.append({**iot.sensors[sensor_id].to_dict(), "latest": reading_out(latest) if latest else None})
    return out


@routes.get("/iot/sensors/{sensor_id}", tags=["iot"], response_model=SensorOut, responses=errors(404))
async def get_sensor(iot: Iot, sensor_id: str) -> dict[str, Any]:
    sensor = iot.sensor(sensor_id)
    latest = iot.latest.get(sensor_id)
    return {**sensor.to_dict(), "latest": reading_out(latest) if latest else None}


@routes.get(
    "/iot/sensors/{sensor_id}/readings",
    tags=["iot"],
    response_model=SensorReadingsOut,
    responses=errors(400, 404),
)
async def get_readings(
    iot: Iot,
    sensor_id: str,
    since: Annotated[
        str | None, Query(alias="from", description="RFC 3339, inclusive", json_schema_extra=INSTANT)
    ] = None,
    until: Annotated[
        str | None, Query(alias="to", description="RFC 3339, exclusive", json_schema_extra=INSTANT)
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    order: Annotated[
        Literal["desc", "asc"], Query(description="desc: newest first (the default); asc: oldest first")
    ] = "desc",
) -> dict[str, Any]:
    """A sensor's raw history, newest first unless ``order=asc``; ``limit`` keeps the first of that order. Older
    history is in the rollups: ``GET /iot/series``."""
    start = parse_instant(since, what="from") if since is not None else None
    end = parse_instant(until, what="to") if until is not None else None
    sensor = iot.sensor(sensor_id)
    readings = await iot.readings(sensor_id, start=start, end=end, limit=limit, newest_first=order == "desc")
    return {
        "sensor_id": sensor_id,
        "quantity": sensor.quantity,
        "unit": sensor.unit,
        "readings": [reading_out(r) for r in readings],
    }


class SeriesPointOut(BaseModel):
    bucket: str = Field(description="the bucket's start (RFC 3339, UTC); for step raw the reading's time")
    n: int = Field(description="readings in the bucket, status-only ones included")
    n_values: int = Field(description="readings with a value")
    min: float | None
    mean: float | None = Field(description="sum / n_values; null when no reading had a value")
    max: float | None
    sum: float = Field(description="the sum of the values (a district's consumption)")
    sensor_id: str | None = Field(None, description="the sensor, with per_sensor=true")


class SeriesOut(BaseModel):
    step: str = Field(description="the source read: raw, 1m, 1h or 1d")
    start: str
    end: str
    sensor_ids: list[str] | None
    area: str | None
    per_sensor: bool
    points: list[SeriesPointOut]


#: The most sensors one series request may name.
MAX_SERIES_SENSORS = 1_000
#: The window of a series when ``from`` is not given: the day before ``to``.
DEFAULT_SERIES_WINDOW = timedelta(days=1)


@routes.get("/iot/series", tags=["iot"], response_model=SeriesOut, responses=errors(400, 404))
async def get_series(
    iot: Iot,
    sensor_ids: Annotated[
        list[str] | None, Query(alias="sensor_id", description="a sensor (repeat the parameter for several)")
    ] = None,
    area: Annotated[
        str | None, Query(description="a district, street or grid cell code: its sensors, summed", min_length=1)
    ] = None,
    since: Annotated[
        str | None,
        Query(alias="from", description="RFC 3339, inclusive; default: a day before to", json_schema_extra=INSTANT),
    ] = None,
    until: Annotated[
        str | None, Query(alias="to", description="RFC 3339, exclusive; default: now", json_schema_extra=INSTANT)
    ] = None,
    step: Annotated[
        Literal["raw", "1m", "1h", "1d"] | None,
        Query(description="the bucket; default by the window: raw ≤ 6 h, 1m ≤ 3 days, 1h ≤ 120 days, else 1d"),
    ] = None,
    per_sensor: Annotated[bool, Query(description="one series per sensor instead of their sum")] = False,
) -> dict[str, Any]:
    """Min, mean, max, sum and count of readings per bucket, from the rollup that fits the window: of the named
    sensors, or of every sensor in an area, summed over them or (``per_sensor``) one series each."""
    if not sensor_ids and area is None:
        raise InvalidInput("series", "name sensors (sensor_id=…, repeatable) or an area (area=<code>)")
    if sensor_ids is not None and len(sensor_ids) > MAX_SERIES_SENSORS:
        raise InvalidInput("sensor_id", f"at most {MAX_SERIES_SENSORS:,} sensors, got {len(sensor_ids):,}")
    for sensor_id in sensor_ids or ():
        iot.sensor(sensor_id)  # NotFound: 404
    end = parse_instant(until, what="to") if until is not None else datetime.now(UTC)
    if since is not None:
        start = parse_instant(since, what="from")
    elif end - datetime.min.replace(tzinfo=UTC) < DEFAULT_SERIES_WINDOW:
        raise InvalidInput("to", f"is too early for the default window ({DEFAULT_SERIES_WINDOW}): give from= as well")
    else:
        start = end - DEFAULT_SERIES_WINDOW
    if area is not None and area not in await run_in_threadpool(area_tree, iot.store):
        raise NotFound(f"area {area[:100]!r}", "is no district, street or grid cell code of the store")
    chosen = check_window(start, end, step)  # InvalidInput before the store is asked
    points = await run_in_threadpool(
        iot.store.reading_series, sensor_ids, start=start, end=end, step=chosen, area=area, per_sensor=per_sensor
    )
    return {
        "step": chosen,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "sensor_ids": sensor_ids,
        "area": area,
        "per_sensor": per_sensor,
        "points": [p.to_dict() for p in points],
    }


@routes.get("/iot/stats", tags=["iot"], response_model=IotStatsOut, responses=errors())
async def get_stats(iot: Iot) -> dict[str, Any]:
    """Ingest counters: received, accepted, dropped per reason, stored, MQTT connection."""
    return iot.stats()


@routes.get("/alerts", tags=["iot"], response_model=list[AlertOut], responses=errors(400))
async def get_alerts(
    iot: Iot,
    open: Annotated[
        bool | None, Query(description="true: the alerts still open; false: the closed ones; absent: all")
    ] = None,
    sensor_id: Annotated[str | None, Query(description="the alerts this sensor opened")] = None,
    asset_id: Annotated[str | None, Query(description="the alerts about this asset (a sensor's parent)")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> list[dict[str, Any]]:
    """Alerts newest first. One alert per asset and rule family: several sensors on one gas main give one alert
    (``details.sensors``); times are UTC to the second."""
    found = await iot.alerts(open=open, sensor_id=sensor_id, asset_id=asset_id, limit=limit)
    return [alert_dict(a) for a in found]


@dataclass(frozen=True)
class LiveGate:
    """Who may open ``/iot/live``: a browser page from the same origin or one of ``origins`` (``"*"``: any), and,
    when ``token`` is set, a client that sends it as ``?token=...`` or as the subprotocol ``token.<token>``
    (browsers cannot set headers on a WebSocket). Clients that send no ``Origin`` (not browsers) are not asked for
    one. A refused handshake is answered 403.

    >>> gate = LiveGate(origins=("https://wall.example",))
    >>> gate.allows_origin("https://wall.example", host="cim:8000"), gate.allows_origin("http://evil", host="cim:8000")
    (True, False)
    >>> gate.allows_origin("http://cim:8000", host="cim:8000")
    True
    """

    origins: tuple[str, ...] = ()
    token: str | None = None

    def allows_origin(self, origin: str, *, host: str | None) -> bool:
        if "*" in self.origins or origin.rstrip("/") in (o.rstrip("/") for o in self.origins):
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and host is not None and parts.netloc.lower() == host.lower()

    async def __call__(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if origin is not None and not self.allows_origin(origin, host=websocket.headers.get("host")):
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "origin not allowed")
        if self.token:
            offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
            given = [websocket.query_params.get("token", "")] + [
                p.removeprefix("token.") for p in offered if p.startswith("token.")
            ]
            if not any(secrets.compare_digest(g.encode(), self.token.encode()) for g in given if g):
                raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "token needed")
            if offered:  # a browser fails the connection unless the server picks one of the subprotocols it offered
                websocket.state.subprotocol = "cim-live" if "cim-live" in offered else offered[0]


def build_router(gate: LiveGate | None = None) -> APIRouter:
    """The IoT routes, with ``/iot/live`` behind ``gate`` (by default: same origin only, no token)."""
    router = APIRouter()
    router.include_router(routes)
    router.add_api_websocket_route("/iot/live", live, dependencies=[Depends(gate or LiveGate())])
    return router


async def live(websocket: WebSocket, iot: Iot) -> None:
    """A snapshot (``{"type": "snapshot", "states": [...], "alerts": [...]}``), then coalesced updates."""
    # the serving process, as the live relay names it: with several workers a client (a test) knows which it has
    server = [(b"cim-server", iot.relay.origin.encode())] if iot.relay is not None else None
    await websocket.accept(subprotocol=getattr(websocket.state, "subprotocol", None), headers=server)
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


#: The IoT routes with the default gate on ``/iot/live`` (same origin only, no token).
router = build_router()
