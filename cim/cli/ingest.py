"""``cim info``, ``cim ingest`` and ``cim build``: what a store holds, files into it, its 3D Tiles out of it; each done
by the server that holds the store when one runs."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cim.cli.options import (
    AsOfOption,
    JsonOption,
    ServerOption,
    StoreOption,
    as_of_day,
    console,
    open_existing_store,
    print_error,
    print_json,
    store_url,
)
from cim.errors import InvalidInput
from cim.progress import progress_bars

# The heavy modules (the store, GIS readers, the pipeline, the HTTP client) are imported by the function that uses
# them, so that `cim build` does not pay for `cim ingest`'s GDAL and pyproj, nor either for the other (start-up: see
# cim/cli/__init__.py).
if TYPE_CHECKING:
    from cim.api.client import Server
    from cim.gis.mapping import LayerMapping
    from cim.tiling.build import BuildSummary


def info(store: StoreOption = None, server: ServerOption = None, as_json: JsonOption = False) -> None:
    """Show what a store holds: assets per kind and their extent (asked of the server that holds it, if one runs)."""
    summary: dict[str, Any]
    if (remote := _serving(store, server)) is not None:
        from cim.api.client import info_through

        summary = info_through(remote, server or store_url(store))
    else:
        with open_existing_store(store) as opened:
            summary = {"store": opened.url, "assets": opened.count_by_kind(), "extent": opened.extent()}
    if as_json:
        print_json(summary)
        return
    table = Table("kind", "assets", title=f"store {summary['store']}")
    for kind, count in summary["assets"].items():
        table.add_row(kind, f"{count:,}")
    console.print(table)
    console.print(f"extent (lon/lat): {summary['extent']}")


def ingest(
    files: Annotated[list[str], typer.Argument(help="GIS files, each optionally FILE:LAYER", show_default=False)],
    store: StoreOption = None,
    kind: Annotated[str | None, typer.Option(help="asset kind of every feature (building, pipe, hydrant …)")] = None,
    mapping: Annotated[Path | None, typer.Option("--map", help="layer mapping TOML file")] = None,
    preset_name: Annotated[
        str | None, typer.Option("--preset", help="built-in mapping: osm-buildings, osm-parks, osm-bus-stops, pipes")
    ] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of layers and CityGML files that have none, e.g. EPSG:3857")
    ] = None,
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
    valid_from: Annotated[
        str | None,
        typer.Option(
            "--valid-from",
            help="the day (YYYY-MM-DD) the files' content was so: their changes enter the history then (default now)",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest GIS layers, CityGML, CityJSON and IFC files into the store. A file that fails is reported; the others
    still go in.

    GIS layers need one of --kind, --map or --preset; CityGML, CityJSON and IFC take their kinds from the file.
    --place puts an IFC file without a georeference of its own on the map. A file that yields no valid asset (every
    feature rejected, or none left) is an error and leaves what the store holds from it; --allow-empty removes that
    instead.
    --valid-from dates the ingest in the model's history (never before a change already recorded, nor in the future).
    """
    at = _valid_from(valid_from)
    layer_mapping = _mapping(kind, mapping, preset_name) if (kind or mapping or preset_name) else None
    placement = None
    if place:  # IFC files without a georeference of their own
        from cim.bim.placement import Placement

        placement = Placement.parse(place)
    source_crs = None
    if crs:
        from cim.gis.readers import parse_crs

        source_crs = parse_crs(crs)
    started = time.perf_counter()
    if (remote := _serving(store, server, write=True)) is not None:  # the server holds the store: it does the work
        if allow_empty:
            raise InvalidInput(
                "--allow-empty", "is not sent to a running server; stop the server to empty a source with it"
            )
        from cim.api.client import ingest_through

        options = {"kind": kind, "preset": preset_name, "mapping": mapping, "crs": crs, "place": place}
        options["valid_from"] = valid_from
        with progress_bars(quiet=as_json) as progress:
            summary = ingest_through(remote, files, options, progress)
    else:
        from cim.pipeline.files import ingest_files
        from cim.store import open_store
        from cim.store.meshes import open_meshes

        with (
            open_store(store_url(store)) as opened,
            open_meshes(store_url(store)) as meshes,
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
                at=at,
            )
        summary = {**ingested, "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        print_json(summary)
    else:
        _print_ingest(summary)
    if any(not r["ok"] for r in summary["files"]):
        raise typer.Exit(2)


def build(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="tileset folder, e.g. tiles/city (a link swapped per build)")
    ],
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
    compress: Annotated[
        str,
        typer.Option(
            "--compress",
            help="mesh compression of the tiles: meshopt (EXT_meshopt_compression, CesiumJS decodes it) or none",
        ),
    ] = "meshopt",
    implicit: Annotated[
        bool | None,
        typer.Option(
            "--implicit/--explicit",
            help="implicit tiling (3D Tiles 1.1 subtrees: a small tileset.json at any size) or the explicit tree;"
            " default: implicit for a layer of more than 3,000 tiles",
        ),
    ] = None,
    as_of: AsOfOption = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            envvar="CIM_DASK_CLUSTER",
            show_default=False,
            help="Dask scheduler whose workers encode the tiles, e.g. tcp://scheduler:8786 (they read the meshes"
            " and write into the folder of --out, so both must be shared with them) [env: CIM_DASK_CLUSTER;"
            " default: a local cluster of one worker per CPU]",
        ),
    ] = None,
    mount: Annotated[
        list[str] | None,
        typer.Option(
            "--mount",
            help="NAME=PATH_OR_URL: an existing 3D Tiles tileset (a folder holding tileset.json, or a URL on this"
            " machine) to show beside the city, checked first; repeat for more. Mounts made before are kept",
        ),
    ] = None,
) -> None:
    """Build the store's 3D Tiles (root + buildings, bim, underground, points); unchanged tiles are kept. While a
    server holds the store, it builds them into its tiles folder (--out names the tileset there). With --as-of, the
    city as the model stood at the end of that day (meshes are those kept now: an asset of then whose mesh is gone
    is counted as having none)."""
    from cim.tiling.build import BuildSummary, GroupSummary

    summary: BuildSummary
    dropped: list[dict[str, str]] | None
    if compress not in ("meshopt", "none"):
        raise InvalidInput(f"--compress {compress}", "give meshopt or none")
    day = as_of_day(as_of)
    mounts = _mount_specs(mount or [])
    if (remote := _serving(store, server, write=True)) is not None:
        if mounts:
            raise InvalidInput("--mount", "a build through a running server cannot mount; use a pipeline")
        if cluster is not None:
            raise InvalidInput(f"--cluster {cluster}", "a build through a running server uses its CIM_DASK_CLUSTER")
        from cim.api.client import build_through

        with progress_bars(quiet=as_json) as progress:
            built = build_through(remote, out, progress, compress, implicit=implicit, as_of=day)
        groups = {name: GroupSummary(**figures) for name, figures in built["tilesets"].items()}
        fields = ("written", "reused", "without_mesh", "without_mesh_examples", "degenerate_triangles")
        summary = BuildSummary(built["path"], groups, built["seconds"], **{k: built[k] for k in fields})
        dropped = None  # the server's build carries the mounts over (and drops broken ones) where it stands
    else:
        summary = _build_here(store, out, as_json, compress, implicit, day, cluster)
        dropped = _dropped_mounts(out)
    if summary.without_mesh:
        examples = ", ".join(summary.without_mesh_examples)
        gone = f"; meshes are kept for the current model only, as of {day} theirs may be gone" if day else ""
        sys.stderr.write(
            f"warning: {summary.without_mesh} assets have no mesh and are not drawn (e.g. {examples}){gone}\n"
        )
    if summary.degenerate_triangles:
        sys.stderr.write(f"warning: {summary.degenerate_triangles} degenerate triangles dropped\n")
    for lost in dropped or []:
        sys.stderr.write(f"warning: external tileset {lost['name']} is no longer mounted: {lost['why']}\n")
    mounted = _mount(out, mounts)
    if as_json:
        print_json({**summary.to_json(), "as_of": None if day is None else day.isoformat(),
                    "without_mesh": summary.without_mesh, **({"mounts": mounted} if mounted else {}),
                    **({"mounts_dropped": dropped} if dropped is not None else {})})  # fmt: skip
        if mounted and mounted["errors"]:
            raise typer.Exit(2)
        return
    when = "" if day is None else f" as of {day}"
    table = Table("tileset", "tiles", "features", "bytes", title=f"{out}{when} → {summary.path}")
    for group, figures in summary.tilesets.items():
        table.add_row(group, f"{figures.tiles:,}", f"{figures.features:,}", f"{figures.bytes:,}")
    console.print(table)
    console.print(f"tiles written {summary.written:,}, unchanged {summary.reused:,}   in {summary.seconds:.1f} s")
    if summary.without_mesh:
        console.print(f"assets without a mesh: {summary.without_mesh:,}")
    if dropped:
        console.print(f"external tilesets no longer mounted: {', '.join(d['name'] for d in dropped)} (see warnings)")
    if mounted:
        if mounted["mounted"]:
            console.print(f"external tilesets mounted: {', '.join(mounted['mounted'])}")
        for error in mounted["errors"]:
            print_error(error)
        if mounted["errors"]:
            raise typer.Exit(2)


def _mount_specs(given: list[str]) -> list[Any]:
    """``NAME=PATH_OR_URL`` options as mount specs (:mod:`cim.tiling.external`), names and URLs checked."""
    import re

    from cim.tiling.external import MountSpec
    from cim.tiling.external_check import check_local_url

    specs = []
    for item in given:
        name, sep, where = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", name) or not where:
            raise InvalidInput(f"--mount {item[:80]}", "give NAME=PATH_OR_URL, NAME a slug (a-z, 0-9, -)")
        if where.startswith(("http://", "https://")):
            specs.append(MountSpec(name, url=check_local_url(where, what=f"--mount {name}")))
        else:
            specs.append(MountSpec(name, path=Path(where)))
    return specs


def _dropped_mounts(out: Path) -> list[dict[str, str]]:
    """The mounts the build just made into ``out`` did not carry over, each ``{"name", "why"}``: read before
    ``--mount`` changes the mounts (which clears them)."""
    from cim.tiling.external import dropped_mounts

    return dropped_mounts(out.resolve())


def _mount(out: Path, specs: list[Any]) -> dict[str, Any] | None:
    from cim.tiling.external import mount_tilesets

    return mount_tilesets(out, specs, keep_others=True).to_dict() if specs else None


def _build_here(
    store: str | None,
    out: Path,
    as_json: bool,
    compress: str,
    implicit: bool | None = None,
    day: date | None = None,
    cluster: str | None = None,
) -> BuildSummary:
    from cim.queries.params import model_as_of
    from cim.store import open_store
    from cim.store.meshes import open_meshes
    from cim.tiling.build import build_tiles

    if day is not None:
        _refuse_served(out)
    with (
        open_store(store_url(store), spatial=False) as opened,  # a build reads no geometry and writes no asset
        open_meshes(store_url(store), read_only=True) as meshes,
        progress_bars(quiet=as_json) as progress,
    ):
        task = progress.add_task("tiles", total=None)
        # as of a day: the view's row hashes are those of then, so the incremental build reuses a previous
        # version's tile only where every row and mesh in it hashes the same (cim/tiling/incremental.py)
        return build_tiles(
            model_as_of(opened, day),
            meshes,
            out,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            compress=compress,
            implicit=implicit,
            cluster=cluster,
        )


def _refuse_served(out: Path) -> None:
    """A build as of a day written here may not go into a folder a running server serves (it would swap the past in
    under the viewers' feet, outside the server's job queue): send it to that server, or write it elsewhere."""
    from cim.api.client import serving_folder

    served = serving_folder(out)
    if served is not None:
        raise InvalidInput(
            f"--out {out}",
            f"is in the tiles folder {served[0]} that cim serve at {served[1]} serves; an as-of build there goes "
            f"through that server (--server {served[1]}, with CIM_WRITE_TOKEN), or give --out another folder",
        )


def _serving(store: str | None, server: str | None, *, write: bool = False) -> Server | None:
    """The running server to send the work to (``--server``, or the one holding the DuckDB store), else None. For a
    write, its token is checked before anything is sent."""
    from cim.api.client import AdminClient, find_server

    remote = find_server(store_url(store), server=server, token=None)
    if remote is None:
        return None
    from cim.settings import ServerSettings  # pydantic-settings: paid only when a server is there to take the token

    remote.token = ServerSettings().write_token
    if write:
        AdminClient(remote).check_token()
    return remote


def _valid_from(text: str | None) -> datetime | None:
    """``--valid-from`` as the start of that day, UTC."""
    if text is None:
        return None
    from cim.pipeline.dated import at_midnight

    try:
        return at_midnight(date.fromisoformat(text))
    except ValueError:
        raise InvalidInput(f"--valid-from {text}", "is not a date; give YYYY-MM-DD") from None


def _mapping(kind: str | None, mapping: Path | None, preset_name: str | None) -> LayerMapping:
    given = [name for name, value in (("--kind", kind), ("--map", mapping), ("--preset", preset_name)) if value]
    from cim.gis.mapping import LayerMapping, load_mapping, preset
    from cim.model import parse_kind

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
