"""The ``cim`` command. Each command calls one library function; these modules only parse, print and map errors.

One module per group of commands: :mod:`~cim.cli.ingest` (info, ingest, build), :mod:`~cim.cli.export`,
:mod:`~cim.cli.synth` (synth, simulate), :mod:`~cim.cli.query` (indicators, render, ``query ...``),
:mod:`~cim.cli.serve`, :mod:`~cim.cli.pipeline` (run, merge) and :mod:`~cim.cli.demo`; what they share is in
:mod:`~cim.cli.options`.

Errors reach the user as one line on stderr, ``error: <what> — <why>``, with exit status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
import typer.core

from cim import __version__
from cim.cli.options import print_error
from cim.errors import CimError

#: Every command, in the order of ``cim --help``: its name → (module, attribute), a function or a Typer sub-app.
#: A command's module is imported only when that command runs (or help lists them all): ``cim build`` on a small
#: store spent 1.2 s of its 1.25 s importing every command's dependencies (pandas, geopandas, pyogrio, fastapi …).
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("cim.cli.ingest", "info"),
    "ingest": ("cim.cli.ingest", "ingest"),
    "synth": ("cim.cli.synth", "synth"),
    "build": ("cim.cli.ingest", "build"),
    "export": ("cim.cli.export", "export"),
    "simulate": ("cim.cli.synth", "simulate"),
    "indicators": ("cim.cli.query", "indicators"),
    "render": ("cim.cli.query", "render"),
    "targets": ("cim.cli.targets", "targets"),
    "serve": ("cim.cli.serve", "serve"),
    "run": ("cim.cli.pipeline", "run"),
    "merge": ("cim.cli.pipeline", "merge"),
    "demo": ("cim.cli.demo", "demo"),
    "query": ("cim.cli.query", "query_app"),
    "store": ("cim.cli.store", "store_app"),
    "changes": ("cim.cli.changes", "changes"),
    "cases": ("cim.cli.cases", "cases_app"),
    "report": ("cim.cli.report", "report_app"),
}


class LazyCommands(typer.core.TyperGroup):
    """The root group: it turns a command's function (or sub-app) into its click command on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = _load(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in COMMANDS:  # a typo: load them all, so the error can suggest the nearest
            for name in COMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


def _load(name: str) -> Any:
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name=name)(target)
    return typer.main.get_command(single)


app = typer.Typer(
    name="cim",
    help="City information model server: BIM + GIS + IoT in one model, as 3D Tiles and OGC API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LazyCommands,
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
