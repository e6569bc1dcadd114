"""The ``cim`` command. Each command calls one library function; this module only parses, prints and maps errors.

Errors reach the user as one line on stderr, ``error: <what> — <why>``, with exit status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from pyproj import CRS
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cim import __version__
from cim.errors import CimError, InvalidInput
from cim.gis.ingest import LayerSummary, ingest_layer
from cim.gis.mapping import LayerMapping, load_mapping, preset
from cim.gis.readers import parse_crs
from cim.model import parse_kind
from cim.settings import StoreSettings
from cim.store import Store, open_store
from cim.store.meshes import MeshStore, mesh_path_for

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
#: An ingest writing at least this many assets reorders the store for spatial locality afterwards.
OPTIMIZE_AFTER = 50_000
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


@app.command()
def ingest(
    files: Annotated[list[str], typer.Argument(help="GIS files, each optionally FILE:LAYER", show_default=False)],
    store: StoreOption = None,
    kind: Annotated[str | None, typer.Option(help="asset kind of every feature (building, pipe, hydrant …)")] = None,
    mapping: Annotated[Path | None, typer.Option("--map", help="layer mapping TOML file")] = None,
    preset_name: Annotated[
        str | None, typer.Option("--preset", help="built-in mapping: osm-buildings, osm-parks, osm-bus-stops, pipes")
    ] = None,
    crs: Annotated[str | None, typer.Option(help="CRS of layers that have none, e.g. EPSG:3857")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest GIS layers into the store. A file that fails is reported; the others still go in."""
    layer_mapping = _mapping(kind, mapping, preset_name)
    source_crs = parse_crs(crs) if crs else None
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with (
        open_store(store_url(store)) as opened,
        MeshStore(mesh_path_for(opened.url)) as meshes,
        _progress(quiet=as_json) as progress,
    ):
        for spec in files:
            results.append(_ingest_one(opened, meshes, spec, layer_mapping, source_crs, progress))
        if sum(sum(r["assets"].values()) for r in results) >= OPTIMIZE_AFTER:
            opened.optimize()  # large loads arrive in batches; reorder once so window queries stay fast
    totals: dict[str, int] = {}
    for result in results:
        for asset_kind, count in result.get("assets", {}).items():
            totals[asset_kind] = totals.get(asset_kind, 0) + count
    summary = {"files": results, "assets": totals, "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        print_json(summary)
    else:
        _print_ingest(summary)
    if any(not r["ok"] for r in results):
        raise typer.Exit(2)


def _mapping(kind: str | None, mapping: Path | None, preset_name: str | None) -> LayerMapping:
    given = [name for name, value in (("--kind", kind), ("--map", mapping), ("--preset", preset_name)) if value]
    if len(given) != 1:
        raise InvalidInput(
            "ingest options",
            "give exactly one of --kind, --map or --preset" + (f" (got {', '.join(given)})" if given else ""),
        )
    if mapping is not None:
        return load_mapping(mapping)
    if preset_name is not None:
        return preset(preset_name)
    assert kind is not None
    return LayerMapping(kind=parse_kind(kind))


def _ingest_one(
    store: Store, meshes: MeshStore, spec: str, mapping: LayerMapping, crs: CRS | None, progress: Progress
) -> dict[str, Any]:
    path_text, _, layer = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_text)
    entry: dict[str, Any] = {
        "path": str(path),
        "layer": layer or None,
        "ok": False,
        "error": None,
        "features_read": 0,
        "assets": {},
        "repaired": 0,
        "rejected": 0,
        "findings": [],
    }
    task = progress.add_task(path.name, total=None)
    try:
        if path.suffix.lower() in (".ifc", ".ifczip"):
            raise InvalidInput(f"file {path}", "IFC ingest is not in this version yet")
        result: LayerSummary = ingest_layer(
            store,
            path,
            mapping,
            layer=layer or None,
            crs=crs,
            meshes=meshes,
            progress=lambda n: progress.advance(task, n),
        )
    except CimError as exc:
        entry["error"] = str(exc)
        progress.console.print(f"[red]error:[/] {exc}", highlight=False)
        return entry
    finally:
        progress.update(task, total=progress.tasks[task].completed)
    entry.update(ok=True, **asdict(result))
    return entry


def _progress(*, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=False,
    )


def _print_ingest(summary: dict[str, Any]) -> None:
    table = Table("file", "layer", "read", "assets", "repaired", "rejected")
    for f in summary["files"]:
        assets = ", ".join(f"{k} {v:,}" for k, v in f["assets"].items()) or ("-" if f["ok"] else "[red]failed[/]")
        name, layer, read = Path(f["path"]).name, f["layer"] or "", f"{f['features_read']:,}"
        table.add_row(name, layer, read, assets, str(f["repaired"]), str(f["rejected"]))
    console.print(table)
    for f in summary["files"]:
        for finding in f["findings"]:
            examples = ", ".join(finding["examples"])
            line = f"  {Path(f['path']).name}: {finding['rule']} ×{finding['count']} (e.g. {examples})"
            console.print(line, highlight=False, soft_wrap=True)
    console.print(f"assets written: {summary['assets']}   in {summary['seconds']:.1f} s")


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
