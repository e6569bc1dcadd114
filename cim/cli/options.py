"""What the commands share: the ``--store``, ``--server`` and ``--json`` options, the consoles, and the JSON and
error lines they print."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from cim.progress import write_error_line
from cim.settings import StoreSettings

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


def json_flag(what: str = "result") -> Any:
    """The ``--json`` option of a command whose output is ``what``."""
    return typer.Option("--json", help=f"Print the {what} as one JSON object on stdout.")


JsonOption = Annotated[bool, json_flag()]


def store_url(option: str | None) -> str:
    """The store given on the command line, else ``CIM_STORE``, else the default file."""
    return option or StoreSettings().store


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout (what ``--json`` prints)."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def print_error(message: str) -> None:
    """``error: <message>`` on one line of stderr."""
    write_error_line(err_console, message)
