"""``cim serve``: run the app with uvicorn."""

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
) -> None:
    """Serve the tiles, OGC API – Features and the queries over HTTP."""
    import uvicorn

    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

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
    settings = AppSettings(store=StoreSettings(store=store) if store else StoreSettings(), server=server)
    uvicorn.run(create_app(settings), host=server.host, port=server.port, log_level="info")
