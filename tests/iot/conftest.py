"""Fixtures for the IoT tests: a real Mosquitto of the test's own (so it can be killed and restarted), the system
broker on 127.0.0.1:1883, a store with sensors, and a small FastAPI app that mounts the IoT routes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from fastapi import FastAPI
from shapely.geometry import LineString, Point

from cim.api.deps import Resources
from cim.api.errors import install_error_handlers
from cim.api.iot import router
from cim.api.tilefiles import TileFiles
from cim.iot import IotOptions, IotService, sensor_asset
from cim.iot.mqtt import parse_mqtt_url
from cim.model import Asset, AssetBatch, Kind
from cim.settings import MqttSettings, ServerSettings
from cim.store import Store
from tests.conftest import missing_service
from tests.faults import PrivateMosquitto, port_answers, running_mosquitto

TOKEN = "test-token"


class Broker(PrivateMosquitto):
    """A Mosquitto process of the test's own, with persistence and no cap on the messages queued for a session,
    that the test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, extra="max_queued_messages 0\nmax_inflight_messages 100\n")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_mosquitto(tmp_path, Broker) as started:
        yield started


@pytest.fixture
def system_broker_url() -> str:
    if not port_answers(1883):
        missing_service("the MQTT broker on 127.0.0.1:1883 does not answer")
    return "mqtt://127.0.0.1:1883"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def declare_sensors(store: Store) -> None:
    """Three assets and a sensor on each: a lift's status, a drainage node's water level, a gas main's pressure."""
    assets = [
        Asset(id="lift-1", kind=Kind.LIFT, geom=Point(121.50, 31.23), status="running"),
        Asset(id="node-1", kind=Kind.NODE, geom=Point(121.51, 31.22), network="drainage"),
        Asset(id="gas-1", kind=Kind.PIPE, geom=LineString([(121.5, 31.2), (121.51, 31.21)]), network="gas"),
        sensor_asset(id="lift-1-status", parent_id="lift-1", quantity="lift_status", thresholds={"status": ["fault"]}),
        sensor_asset(id="wl-1", parent_id="node-1", quantity="water_level", unit="m", thresholds={"above": 1.0}),
        sensor_asset(id="gp-1", parent_id="gas-1", quantity="gas_pressure", unit="kPa", thresholds={"below": 200}),
    ]
    store.upsert_assets(AssetBatch.from_assets(assets))


def fast_options(**overrides: object) -> IotOptions:
    values: dict[str, object] = {
        "client_id": f"cim-test-{time.monotonic_ns()}",
        "flush_interval": 0.05,
        "stale_check_interval": 0.05,
        "live_min_interval": 0.02,
        "min_backoff": 0.1,
        "max_backoff": 0.5,
    }
    values.update(overrides)
    return IotOptions(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running(
    store: Store,
    url: str | None = None,
    *,
    spool: Path | None = None,
    **options: object,
) -> AsyncIterator[IotService]:
    """The service on ``store`` (its spool in ``spool``, else in a temporary folder of its own)."""
    with tempfile.TemporaryDirectory(prefix="cim-spool-") as folder:
        async with _running(store, url, spool or Path(folder) / "spool.sqlite", **options) as service:
            yield service


@asynccontextmanager
async def _running(store: Store, url: str | None, spool: Path, **options: object) -> AsyncIterator[IotService]:
    service = IotService(
        store,
        MqttSettings(url=url),
        options=fast_options(**options),
        spool_path=spool,
    )
    await service.start()
    try:
        if url is not None:
            await eventually(lambda: service.mqtt_status is not None and service.mqtt_status.connected)
        yield service
    finally:
        await service.stop()
        if url is not None:
            await forget_session(url, service.options.client_id)


async def forget_session(url: str, client_id: str) -> None:
    """End the test's persistent session, so the broker stops queueing for it (matters on the system broker)."""
    host, port = parse_mqtt_url(url)
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(host, port, identifier=client_id, clean_session=True):
            pass


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def build_app(store: Store, *, mqtt_url: str | None = None, **options: object) -> FastAPI:
    """The app the factory builds, reduced to the IoT part."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        spool = Path(tempfile.mkdtemp(prefix="cim-spool-")) / "spool.sqlite"
        service = IotService(store, MqttSettings(url=mqtt_url), options=fast_options(**options), spool_path=spool)
        await service.start()
        serve_iot(app, service)
        try:
            yield
        finally:
            await service.stop()
            shutil.rmtree(spool.parent, ignore_errors=True)

    return iot_app(lifespan)


def iot_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None) -> FastAPI:
    """A small app with the IoT routes and the API's error map; :func:`serve_iot` hands them a running service."""
    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)
    return app


def serve_iot(app: FastAPI, service: IotService) -> None:
    """What the app factory's lifespan gives the IoT routes: the service, and a server whose write token is TOKEN."""
    app.state.resources = Resources(
        settings=ServerSettings(write_token=TOKEN),
        store=service.store,
        tiles=TileFiles(service.spool_path.parent),
        iot=service,
    )
