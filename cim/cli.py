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
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cim import __version__
from cim.api.client import AdminClient, Server, build_through, find_server, info_through, ingest_through
from cim.api.serve import serve
from cim.cli_store import store_app
from cim.errors import CimError, InvalidInput
from cim.gis.mapping import LayerMapping, load_mapping, preset
from cim.gis.readers import parse_crs
from cim.model import parse_kind
from cim.pipeline.commands import merge as merge_command
from cim.pipeline.commands import run as run_pipeline_command
from cim.pipeline.demo import demo as demo_command
from cim.pipeline.files import ingest_files
from cim.progress import progress_bars
from cim.queries.commands import query_app
from cim.settings import ServerSettings, StoreSettings
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for

if TYPE_CHECKING:
    from cim.tiling.build import BuildSummary

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
def info(store: StoreOption = None, server: ServerOption = None, as_json: JsonOption = False) -> None:
    """Show what a store holds: assets per kind and their extent (asked of the server that holds it, if one runs)."""
    summary: dict[str, Any]
    if (remote := _serving(store, server)) is not None:
        summary = info_through(remote, server or store_url(store))
    else:
        with open_store(store_url(store)) as opened:
            summary = {"store": opened.url, "assets": opened.count_by_kind(), "extent": opened.extent()}
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
    place: Annotated[
        str | None, typer.Option("--place", help="IFC files without georeference: LON,LAT,HEIGHT[,ROTATION]")
    ] = None,
    server: ServerOption = None,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="let a GIS layer or CityJSON file that yields no valid asset empty its source in the store",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest GIS layers, CityJSON and IFC files into the store. A file that fails is reported; the others still go in.

    GIS layers need one of --kind, --map or --preset; CityJSON and IFC take their kinds from the file. --place puts
    an IFC file without a georeference of its own on the map. A file that yields no valid asset (every feature
    rejected, or none left) is an error and leaves what the store holds from it; --allow-empty removes that instead."""
    layer_mapping = _mapping(kind, mapping, preset_name) if (kind or mapping or preset_name) else None
    placement = None
    if place:  # IFC files without a georeference of their own
        from cim.bim.georef import Placement

        placement = Placement.parse(place)
    source_crs = parse_crs(crs) if crs else None
    started = time.perf_counter()
    if (remote := _serving(store, server, write=True)) is not None:  # the server holds the store: it does the work
        if allow_empty:
            raise InvalidInput(
                "--allow-empty", "is not sent to a running server; stop the server to empty a source with it"
            )
        options = {"kind": kind, "preset": preset_name, "mapping": mapping, "crs": crs, "place": place}
        with progress_bars(quiet=as_json) as progress:
            summary = ingest_through(remote, files, options, progress)
    else:
        with (
            open_store(store_url(store)) as opened,
            MeshStore(mesh_path_for(opened.url)) as meshes,
            progress_bars(quiet=as_json) as progress,
        ):
            ingested = ingest_files(
                opened,
                meshes,
                files,
                mapping=layer_mapping,
                crs=source_crs,
                placement=placement,
                progress=progress,
                allow_empty=allow_empty,
            )
        summary = {**ingested, "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        print_json(summary)
    else:
        _print_ingest(summary)
    if any(not r["ok"] for r in summary["files"]):
        raise typer.Exit(2)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="folder for the GeoParquet layers and IFC towers")],
    buildings: Annotated[int, typer.Option("--buildings", help="number of buildings (up to 5,000,000)")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="random seed: the same seed writes the same files")] = 0,
    towers: Annotated[int, typer.Option("--towers", help="detailed IFC towers to generate in Lujiazui")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Generate the demo city at Shanghai's real places: one GeoParquet file per layer, and IFC towers."""
    from cim.synth.generate import generate_city, mapping_file

    started = time.perf_counter()
    with progress_bars(quiet=as_json) as progress:
        task = progress.add_task("buildings", total=buildings)
        result = generate_city(
            out=out, buildings=buildings, seed=seed, towers=towers, progress=lambda n: progress.advance(task, n)
        )
    summary = {**asdict(result), "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        print_json(summary)
        return
    table = Table("layer", "features", "ingest with", title=f"demo city in {out}")
    for layer, rows in result.layers.items():
        table.add_row(layer, f"{rows:,}", f"cim ingest {out / layer}.parquet --map {mapping_file(layer)}")
    console.print(table)
    mains = ", ".join(f"{network} {km:,.1f} km" for network, km in result.mains_km.items())
    console.print(f"buried mains: {mains}", highlight=False)
    console.print(
        f"lifts older than 15 years: {result.lifts_older_than_15_years:,}; "
        f"without a date: {result.lifts_without_date:,}"
    )
    if result.towers:
        console.print(f"IFC towers: {', '.join(result.towers)}")
    console.print(f"generated in {summary['seconds']:.1f} s")


@app.command()
def build(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="tileset folder, e.g. tiles/city (a link swapped per build)")
    ],
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the store's 3D Tiles (root + buildings, bim, underground, points); unchanged tiles are kept. While a
    server holds the store, it builds them into its tiles folder (--out names the tileset there)."""
    from cim.tiling.build import BuildSummary, GroupSummary

    summary: BuildSummary
    if (remote := _serving(store, server, write=True)) is not None:
        with progress_bars(quiet=as_json) as progress:
            built = build_through(remote, out, progress)
        groups = {name: GroupSummary(**figures) for name, figures in built["tilesets"].items()}
        fields = ("written", "reused", "without_mesh", "without_mesh_examples", "degenerate_triangles")
        summary = BuildSummary(built["path"], groups, built["seconds"], **{k: built[k] for k in fields})
    else:
        summary = _build_here(store, out, as_json)
    if summary.without_mesh:
        examples = ", ".join(summary.without_mesh_examples)
        sys.stderr.write(f"warning: {summary.without_mesh} assets have no mesh and are not drawn (e.g. {examples})\n")
    if summary.degenerate_triangles:
        sys.stderr.write(f"warning: {summary.degenerate_triangles} degenerate triangles dropped\n")
    if as_json:
        print_json(summary.to_json())
        return
    table = Table("tileset", "tiles", "features", "bytes", title=f"{out} → {summary.path}")
    for group, figures in summary.tilesets.items():
        table.add_row(group, f"{figures.tiles:,}", f"{figures.features:,}", f"{figures.bytes:,}")
    console.print(table)
    console.print(f"tiles written {summary.written:,}, unchanged {summary.reused:,}   in {summary.seconds:.1f} s")


def _build_here(store: str | None, out: Path, as_json: bool) -> BuildSummary:
    from cim.tiling.build import build_tiles

    with (
        open_store(store_url(store)) as opened,
        MeshStore(mesh_path_for(opened.url), read_only=True) as meshes,
        progress_bars(quiet=as_json) as progress,
    ):
        task = progress.add_task("tiles", total=None)
        return build_tiles(
            opened, meshes, out, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )


def _serving(store: str | None, server: str | None, *, write: bool = False) -> Server | None:
    """The running server to send the work to (``--server``, or the one holding the DuckDB store), else None. For a
    write, its token is checked before anything is sent."""
    remote = find_server(store_url(store), server=server, token=ServerSettings().write_token)
    if remote is not None and write:
        AdminClient(remote).check_token()
    return remote


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


@app.command()
def simulate(
    broker: Annotated[
        str | None, typer.Option(help="MQTT broker URL [env: CIM_MQTT_URL; default mqtt://127.0.0.1:1883]")
    ] = None,
    store: StoreOption = None,
    rate: Annotated[float, typer.Option(help="readings a second, over all sensors")] = 10.0,
    duration: Annotated[float | None, typer.Option(help="seconds to run (default: until Ctrl-C)")] = None,
    demo_sensors: Annotated[
        int, typer.Option("--demo-sensors", help="first declare this many sensors of each kind (lift, gas, drainage)")
    ] = 0,
    seed: Annotated[int, typer.Option(help="random seed: the same seed replays the same readings")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Publish realistic sensor readings (real USGS river series as water levels, lift status, gas pressure)."""
    import asyncio

    from cim.iot.simulate import declare_demo_sensors
    from cim.iot.simulate import simulate as run_simulation
    from cim.settings import MqttSettings

    url = broker or MqttSettings().url or "mqtt://127.0.0.1:1883"
    with open_store(store_url(store)) as opened:
        if demo_sensors:
            declare_demo_sensors(opened, per_kind=demo_sensors)
        if not as_json:
            console.print(f"publishing {rate:g} readings/s to {url} (Ctrl-C stops)")
        try:
            summary = asyncio.run(run_simulation(broker=url, store=opened, rate=rate, duration=duration, seed=seed))
        except KeyboardInterrupt:
            raise typer.Abort() from None
    result = {"broker": url, "sensors": summary.sensors, "published": summary.published, "seconds": summary.seconds}
    if as_json:
        print_json(result)
    else:
        console.print(f"published {summary.published:,} readings in {summary.seconds:.1f} s for {summary.sensors}")


@app.command()
def indicators(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """The city vital signs: old lifts, old buried mains, homes near parks, stops near metro exits, live state."""
    from cim.queries.indicators import vital_signs

    with open_store(store_url(store)) as opened:
        result = vital_signs(opened)
    if as_json:
        print_json(result)
        return
    table = Table("indicator", "value", "of", title=f"city vital signs at {result['computed_at']}")
    for item in result["indicators"]:
        value = "-" if item["value"] is None else f"{item['value']:,} {item['unit']}"
        table.add_row(item["label"], value, "" if item["total"] is None else f"{item['total']:,}")
    console.print(table)


@app.command()
def render(
    asset_id: Annotated[str, typer.Argument(help="The asset to draw.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    store: StoreOption = None,
    width: Annotated[int, typer.Option(help="Width in pixels (64…2048).")] = 800,
    height: Annotated[int, typer.Option(help="Height in pixels (64…2048).")] = 600,
) -> None:
    """Draw an asset and its surroundings to a PNG, off-screen (no display needed)."""
    from cim.render import open_meshes_for, render_asset

    with open_store(store_url(store)) as opened:
        meshes = open_meshes_for(opened.url)
        try:
            png = render_asset(opened, meshes, asset_id, width=width, height=height)
        finally:
            if meshes is not None:
                meshes.close()
    out.write_bytes(png)
    console.print(f"wrote {out} ({width}×{height}, {len(png):,} bytes)")


# --- the server and the queries (cim/api, cim/queries) ---
app.add_typer(query_app, name="query")
app.add_typer(store_app, name="store")
app.command()(serve)
app.command("run")(run_pipeline_command)
app.command("merge")(merge_command)
app.command("demo")(demo_command)


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
