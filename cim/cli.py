"""The ``cim`` command. Each command calls one library function; this module only parses, prints and maps errors.

Errors reach the user as one line on stderr, ``error: <what> — <why>``, with exit status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cim import __version__
from cim.errors import CimError
from cim.settings import StoreSettings
from cim.store import open_store

app = typer.Typer(
    name="cim",
    help="City information model server: BIM + GIS + IoT in one model, as 3D Tiles and OGC API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
StoreOption = Annotated[
    str | None,
    typer.Option("--store", "-s", help="DuckDB file or postgresql:// URL [env: CIM_STORE]", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """City information model server."""


def store_url(option: str | None) -> str:
    """The store given on the command line, else ``CIM_STORE``, else the default file."""
    return option or StoreSettings().store


@app.command()
def info(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show what a store holds: assets per kind and their extent."""
    with open_store(store_url(store)) as opened:
        summary: dict[str, Any] = {"store": opened.url, "assets": opened.count_by_kind(), "extent": opened.extent()}
    if as_json:
        print_json(summary)
        return
    table = Table("kind", "assets", title=f"store {summary['store']}")
    for kind, count in summary["assets"].items():
        table.add_row(kind, f"{count:,}")
    console.print(table)
    console.print(f"extent (lon/lat): {summary['extent']}")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning every error into one line on stderr (exit status 2)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Abort:
        _fail("interrupted", "stopped by the user", code=130)
    except typer.TyperException as exc:  # usage errors: typer prints them with the command's help line
        show = getattr(exc, "show", None)
        if show is None:
            _fail("command line", str(exc))
        else:
            show()
        sys.exit(getattr(exc, "exit_code", 2))
    except CimError as exc:
        if debug:
            raise
        _fail(exc.what, exc.why)
    except Exception as exc:
        if debug:
            raise
        _fail(f"unexpected {type(exc).__name__}", f"{exc} (run with --debug for the traceback)")
    sys.exit(code if isinstance(code, int) else 0)


def _fail(what: str, why: str, *, code: int = 2) -> None:
    sys.stderr.write(f"error: {what} — {why}\n")
    sys.exit(code)
