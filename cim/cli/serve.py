"""``cim serve``: the server's settings from the options and the environment, then :func:`cim.api.serve.run_server`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cim.cli.options import StoreOption
from cim.errors import InvalidInput


def serve(
    store: StoreOption = None,
    tiles: Annotated[
        Path | None, typer.Option(help="folder of built tilesets, served at /tiles [env: CIM_TILES_DIR]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on [env: CIM_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [env: CIM_PORT]")] = None,
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="sensors' MQTT broker, e.g. mqtt://127.0.0.1:1883 [env: CIM_MQTT_URL]")
    ] = None,
    mqtt_share_group: Annotated[
        str | None,
        typer.Option(
            "--mqtt-share-group",
            help="share the MQTT subscription with the other servers of this group ($share/GROUP/topic: each "
            "message goes to one of them) [env: CIM_MQTT_SHARE_GROUP]",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="server processes answering on the one port; more than 1 needs a PostgreSQL store [env: CIM_WORKERS]",
        ),
    ] = None,
    read_url: Annotated[
        str | None,
        typer.Option(
            "--read-url",
            help="a streaming replica of the PostgreSQL store for read-only requests [env: CIM_STORE_READ_URL]",
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="log a line per request (costs ~7% of a loaded server's time)")
    ] = False,
) -> None:
    """Serve the viewer, the tiles, OGC API – Features, the queries and live sensor state over HTTP."""
    from cim.api.serve import check_scale_out, run_server
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
    if workers is not None:
        if not 1 <= workers <= 64:
            raise InvalidInput(f"--workers {workers}", "must be between 1 and 64")
        changes["workers"] = workers
    server = server.model_copy(update=changes)
    if not server.tiles_dir.is_dir():
        raise InvalidInput(f"tiles folder {server.tiles_dir}", "does not exist; build tiles first or give --tiles DIR")
    given = {"url": mqtt, "share_group": mqtt_share_group}
    try:  # the environment's CIM_MQTT_*, then the options over it (validated again)
        broker = MqttSettings()
        broker = MqttSettings.model_validate(broker.model_dump() | {k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput("MQTT settings", str(first["msg"]).removeprefix("Value error, ")) from None
    store_settings = StoreSettings()
    given_store = {"store": store, "store_read_url": read_url}
    store_settings = store_settings.model_copy(update={k: v for k, v in given_store.items() if v is not None})
    check_scale_out(store_settings, server)
    settings = AppSettings(
        store=store_settings,
        server=server,
        mqtt=broker,
        live=True,
        viewer=True,
    )
    run_server(settings, access_log=access_log)
