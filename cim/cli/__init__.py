"""The ``cim`` command. Each command calls one library function; these modules only parse, print and map errors.

One module per group of commands: :mod:`~cim.cli.ingest` (info, ingest, build), :mod:`~cim.cli.synth` (synth,
simulate), :mod:`~cim.cli.query` (indicators, render, ``query ...``), :mod:`~cim.cli.serve`,
:mod:`~cim.cli.pipeline` (run, merge) and :mod:`~cim.cli.demo`; what they share is in :mod:`~cim.cli.options`.

Errors reach the user as one line on stderr, ``error: <what> — <why>``, with exit status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cim import __version__
from cim.cli.cases import cases_app, report_app
from cim.cli.demo import demo
from cim.cli.ingest import build, info, ingest
from cim.cli.options import print_error
from cim.cli.pipeline import merge, run
from cim.cli.query import indicators, query_app, render
from cim.cli.serve import serve
from cim.cli.store import store_app
from cim.cli.synth import simulate, synth
from cim.errors import CimError

app = typer.Typer(
    name="cim",
    help="City information model server: BIM + GIS + IoT in one model, as 3D Tiles and OGC API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


# in the order of `cim --help`
for command in (info, ingest, synth, build, simulate, indicators, render, serve, run, merge, demo):
    app.command()(command)
app.add_typer(query_app, name="query")
app.add_typer(store_app, name="store")
app.add_typer(cases_app, name="cases")
app.add_typer(report_app, name="report")


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
    print_error(f"{what} — {why}")
    sys.exit(code)
