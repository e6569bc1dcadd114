"""What the commands share: the ``--store``, ``--server`` and ``--json`` options, the consoles, the JSON and error
lines they print, and how a read command finds what it reads: the running server that holds the store, else the store
itself, which must exist (a read never creates one)."""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cim.errors import NotFound, StoreUnavailable
from cim.progress import write_error_line

if TYPE_CHECKING:
    from cim.api.client import Server
    from cim.store import Store

#: Seconds a read command waits for the server's answer (a city-wide query may take a while).
SERVER_TIMEOUT_S = 120.0

#: Tables and messages (stdout).
console = Console()
#: Progress and warnings of the long-running commands, and errors (stderr).
err_console = Console(stderr=True)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", "-s", help="DuckDB file or postgresql:// URL [env: CIM_STORE]", show_default=False),
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="CIM_SERVER",
        show_default=False,
        help="send the work to this running cim serve, e.g. http://127.0.0.1:8000 [env: CIM_SERVER; default: the "
        "server holding the DuckDB store, if one runs]",
    ),
]

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        show_default=False,
        help="answer from the model as it stood at the end of this day, YYYY-MM-DD (ages are counted to it; default "
        "today, the current model) / 按该日结束时的模型作答",
    ),
]


def json_flag(what: str = "result") -> Any:
    """The ``--json`` option of a command whose output is ``what``."""
    return typer.Option("--json", help=f"Print the {what} as one JSON object on stdout.")


JsonOption = Annotated[bool, json_flag()]


def store_url(option: str | None) -> str:
    """The store given on the command line, else ``CIM_STORE``, else the default file."""
    if option:
        return option
    from cim.settings import StoreSettings  # pydantic-settings costs ~0.15 s to import: only when --store is not given

    return StoreSettings().store


def reading_server(store: str | None, server: str | None) -> Server | None:
    """The running ``cim serve`` a read command asks: ``--server`` when given, else the one that announced it holds
    the DuckDB store, else None (the command opens the store itself)."""
    from cim.api.client import find_server

    return find_server(store_url(store), server=server, token=None)


def open_existing_store(option: str | None) -> Store:
    """The store a read command reads, opened only if it exists: a DuckDB file that is not there, or a PostgreSQL
    schema without the cim tables, is refused (naming it) and not created. A store of an older schema version is
    brought up to date, as any open does."""
    from cim.store import duckdb_path, open_store
    from cim.store.migrations import SCHEMA_VERSION
    from cim.store.sqlstore import SqlStore

    url = store_url(option)
    path = duckdb_path(url)
    if path is not None and not path.exists():
        raise NotFound(f"store {path}", _NO_STORE + " (a read command does not create one)")
    try:
        opened = open_store(url, upgrade=False)
    except StoreUnavailable as exc:
        if "busy" not in exc.why:
            raise
        raise StoreUnavailable(exc.what, exc.why + "; or ask the server that holds it with --server URL") from None
    try:
        version = opened.schema_database().version() if isinstance(opened, SqlStore) else SCHEMA_VERSION
    except BaseException:
        opened.close()
        raise
    if version == SCHEMA_VERSION:
        return opened
    opened.close()
    if version == 0:
        raise NotFound(f"store {opened.url}", _NO_STORE + " (it holds no cim tables; a read command makes none)")
    return open_store(url)  # an older version: upgraded as any command's open does


_NO_STORE = "does not exist: name an existing one with --store or CIM_STORE, or make one with cim demo, synth or ingest"


def ask_server(server: Server, path: str, *, params: dict[str, Any] | None = None, body: Any = None) -> bytes:
    """The body of the server's answer to ``GET path?params`` (``POST`` with ``body`` as JSON); its refusal as the
    same one-line error a local run gives."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    from cim.api.client import RemoteError

    query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
    url = server.url + path + (f"?{urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            refusal = json.loads(exc.read())
        except ValueError:
            refusal = {}
        if isinstance(refusal, dict) and refusal.get("what") and refusal.get("why"):
            raise RemoteError(str(refusal["what"]), str(refusal["why"])) from None
        raise RemoteError(f"server {server.url}", f"answered HTTP {exc.code} to {path}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreUnavailable(f"server {server.url}", f"does not answer ({reason}); is cim serve running?") from None


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_of_day(text: str | None) -> date | None:
    """An ``--as-of`` value read (YYYY-MM-DD), or None when not given."""
    from cim.queries.params import parse_date

    return parse_date(text, what="--as-of") if text else None


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout (what ``--json`` prints)."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def print_error(message: str) -> None:
    """``error: <message>`` on one line of stderr."""
    write_error_line(err_console, message)
