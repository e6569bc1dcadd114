"""Running the app with uvicorn (httptools on uvloop, cached tiles answered by :mod:`cim.api.fastpath`): what
``cim serve`` and ``cim demo`` start."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from cim.api.app import create_app
from cim.api.client import announce
from cim.api.fastpath import tile_protocol
from cim.errors import InvalidInput
from cim.settings import AppSettings, ServerSettings


def run_server(settings: AppSettings, *, access_log: bool = False) -> None:
    """Serve until stopped, announced beside a DuckDB store so that ``cim ingest``/``build`` send their work here."""
    server = settings.server
    check_port_free(server.host, server.port)
    app = create_app(settings)
    with announce(settings.store.store, host=server.host, port=server.port, tiles_dir=server.tiles_dir):
        uvicorn.run(app, log_level="info", access_log=access_log, loop="uvloop", **uvicorn_options(app, server))


def uvicorn_options(app: FastAPI, server: ServerSettings) -> dict[str, Any]:
    """What every cim server runs uvicorn with: the address, the tile fast path, no WebSocket compression, and the
    graceful stop's time limit."""
    return {
        "host": server.host,
        "port": server.port,
        "http": tile_protocol(app),
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
