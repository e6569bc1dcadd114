"""Running the app with uvicorn (httptools on uvloop, cached tiles answered by :mod:`cim.api.fastpath`): what
``cim serve`` and ``cim demo`` start.

With ``workers`` > 1 (``cim serve --workers N``, ``CIM_WORKERS``) uvicorn's supervisor spawns N processes that accept
on one listening socket; each builds its own app with :func:`worker_app` from the settings the supervisor put in
:data:`SETTINGS_ENV` (a spawned process gets its parent's environment, not its objects) and answers tiles with
:func:`worker_protocol`. Only a PostgreSQL store may have several: one process at a time may write a DuckDB file.
What one worker would otherwise hold alone is shared through the store, PostgreSQL's LISTEN/NOTIFY and the MQTT
broker (docs/architecture.md, "Many servers, one store").
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from cim.api.app import create_app
from cim.api.client import announce
from cim.api.fastpath import tile_protocol
from cim.errors import InvalidInput
from cim.settings import AppSettings, ServerSettings, StoreSettings

#: The environment variable carrying the app's settings (JSON) from ``cim serve`` to its worker processes.
SETTINGS_ENV = "CIM_SERVE_SETTINGS_JSON"


def run_server(settings: AppSettings, *, access_log: bool = False) -> None:
    """Serve until stopped, announced beside a DuckDB store so that ``cim ingest``/``build`` send their work here."""
    server = settings.server
    check_scale_out(settings.store, server)
    check_port_free(server.host, server.port)
    if server.workers > 1:
        os.environ[SETTINGS_ENV] = settings_json(settings)
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=server.workers,
            log_level="info",
            access_log=access_log,
            loop="uvloop",
            **(uvicorn_options(None, server) | {"http": f"{__name__}:worker_protocol"}),
        )
        return
    app = create_app(settings)
    with announce(settings.store.store, host=server.host, port=server.port, tiles_dir=server.tiles_dir):
        uvicorn.run(app, log_level="info", access_log=access_log, loop="uvloop", **uvicorn_options(app, server))


def check_scale_out(store: StoreSettings, server: ServerSettings) -> None:
    """Several workers and a read replica need a PostgreSQL store: say so before anything starts."""
    on_postgres = store.store.startswith(("postgresql://", "postgres://"))
    if server.workers > 1 and not on_postgres:
        raise InvalidInput(
            f"--workers {server.workers}",
            "needs a PostgreSQL store (postgresql://…): one process at a time may write a DuckDB file",
        )
    if store.store_read_url is not None and not (
        on_postgres and store.store_read_url.startswith(("postgresql://", "postgres://"))
    ):
        raise InvalidInput(
            "CIM_STORE_READ_URL",
            "is a PostgreSQL streaming replica (postgresql://…) of a PostgreSQL store (CIM_STORE)",
        )


def settings_json(settings: AppSettings) -> str:
    """``settings`` as JSON a worker reads back, the secrets in clear (they travel in the environment only)."""
    values = settings.model_dump(mode="json")
    if settings.mqtt.password is not None:
        values["mqtt"]["password"] = settings.mqtt.password.get_secret_value()
    return json.dumps(values)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory), from the settings ``cim serve`` left in the environment."""
    return create_app(AppSettings.model_validate_json(os.environ[SETTINGS_ENV]))


_protocols: dict[int, type[asyncio.Protocol]] = {}


def worker_protocol(**kwargs: Any) -> asyncio.Protocol:
    """The tile fast path in a worker process: uvicorn imports the protocol by name there (a class made for an app
    cannot travel to a spawned process), so this finds the worker's app under uvicorn's wrappers and makes the
    protocol for it once."""
    app: Any = kwargs["config"].loaded_app
    while not isinstance(app, FastAPI):
        app = app.app  # uvicorn's ProxyHeadersMiddleware and friends keep the app they wrap as .app
    protocol = _protocols.get(id(app))
    if protocol is None:
        protocol = _protocols[id(app)] = tile_protocol(app)
    return protocol(**kwargs)


def uvicorn_options(app: FastAPI | None, server: ServerSettings) -> dict[str, Any]:
    """What every cim server runs uvicorn with: the address, the tile fast path (of ``app``; None: set by the
    caller), no WebSocket compression, and the graceful stop's time limit."""
    return {
        "host": server.host,
        "port": server.port,
        "http": tile_protocol(app) if app is not None else "h11",
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": round(server.shutdown_timeout_s),
    }


def check_port_free(host: str, port: int) -> None:
    """A clear message (and the way out) when something already listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise InvalidInput(
                f"port {port} on {host}", "is taken by another program; choose one with --port"
            ) from None
