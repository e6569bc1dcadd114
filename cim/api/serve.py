"""``cim serve``: run the app with uvicorn (httptools on uvloop, cached tiles answered by :mod:`cim.api.fastpath`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cim.errors import InvalidInput


def serve(
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="DuckDB file or postgresql:// URL [env: CIM_STORE]")
    ] = None,
    tiles: Annotated[
        Path | None, typer.Option(help="folder of built tilesets, served at /tiles [env: CIM_TILES_DIR]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on [env: CIM_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [env: CIM_PORT]")] = None,
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="sensors' MQTT broker, e.g. mqtt://127.0.0.1:1883 [env: CIM_MQTT_URL]")
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="log a line per request (costs ~7% of a loaded server's time)")
    ] = False,
) -> None:
    """Serve the viewer, the tiles, OGC API – Features, the queries and live sensor state over HTTP."""
    import uvicorn

    from cim.api import create_app
    from cim.api.client import announce
    from cim.api.fastpath import tile_protocol
    from cim.settings import AppSettings, MqttSettings, ServerSettings, StoreSettings

    server = ServerSettings()
    changes: dict[str, object] = {}
    if tiles is not None:
        changes["tiles_dir"] = tiles
    if host is not None:
        changes["host"] = host
    if port is not None:
        if not 1 <= port <= 65535:
            raise InvalidInput(f"--port {port}", "must be between 1 and 65535")
        changes["port"] = port
    server = server.model_copy(update=changes)
    if not server.tiles_dir.is_dir():
        raise InvalidInput(f"tiles folder {server.tiles_dir}", "does not exist; build tiles first or give --tiles DIR")
    broker = MqttSettings() if mqtt is None else MqttSettings(url=mqtt)
    settings = AppSettings(
        store=StoreSettings(store=store) if store else StoreSettings(),
        server=server,
        mqtt=broker,
        live=True,
        viewer=True,
    )
    check_port_free(server.host, server.port)
    app = create_app(settings)
    with announce(settings.store.store, host=server.host, port=server.port, tiles_dir=server.tiles_dir):
        uvicorn.run(
            app,
            host=server.host,
            port=server.port,
            log_level="info",
            access_log=access_log,
            http=tile_protocol(app),
            loop="uvloop",
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=round(server.shutdown_timeout_s),
        )


def check_port_free(host: str, port: int) -> None:
    """A clear message (and the way out) when something already listens on the port."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise InvalidInput(
                f"port {port} on {host}", "is taken by another program; choose one with --port"
            ) from None
