"""``cim export``: the model handed on as a file other tools read — GeoPackage, CityJSON, CityGML or the original IFC
files (:mod:`cim.export`). This module parses the options, shows progress and prints the summary; the writer of
the format does the work."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cim.cli.options import JsonOption, StoreOption, console, open_existing_store, print_json
from cim.errors import InvalidInput
from cim.progress import progress_bars

if TYPE_CHECKING:
    from cim.export import ExportSummary
    from cim.model import Kind
    from cim.store import BBox, Store
    from cim.store.meshes import MeshStore

#: Formats whose writer reads the stored meshes.
_READS_MESHES = ("cityjson", "citygml", "ifc")
#: Formats whose writer projects coordinates, so takes ``--crs``.
_TAKES_CRS = ("cityjson", "citygml")


def export(
    format_name: Annotated[
        str,
        typer.Option("--format", "-f", help="gpkg, cityjson, citygml or ifc / 导出格式", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="the file to write, e.g. city.gpkg (for ifc: a folder, one file per original) / 输出文件",
            show_default=False,
        ),
    ],
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="export only this kind, e.g. building; repeat for more (default: all)"),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option("--bbox", help="only assets inside west,south,east,north (lon/lat degrees)", show_default=False),
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(
            "--crs",
            help="cityjson, citygml: the projected CRS in metres to write in, e.g. EPSG:32651 (default: the UTM zone "
            "of the centre)",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace a file already at --out")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the store's assets: gpkg (every kind a layer), cityjson (CityJSON 2.0 buildings), citygml (CityGML 3.0
    buildings) or ifc (the original IFC files of the BIM buildings). The file appears whole or not at all."""
    from cim.export import FORMATS, check_out, writer

    fmt = format_name.lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {format_name[:40]!r}", f"use one of {', '.join(FORMATS)}")
    if crs is not None and fmt not in _TAKES_CRS:
        raise InvalidInput(f"--crs {crs[:40]}", f"applies to --format {' or '.join(_TAKES_CRS)} only")
    kinds = parse_kinds(kind)
    window = parse_bbox(bbox)
    target = _check_folder(out) if fmt == "ifc" else check_out(out, force=force)
    write = writer(fmt)
    with _open(store) as opened:
        meshes = _meshes(opened) if fmt in _READS_MESHES else None
        try:
            with progress_bars(quiet=as_json) as bars:
                task = bars.add_task(f"exporting {fmt}", total=None)
                options: dict[str, Any] = {"crs": crs} if crs is not None else {}
                summary = write(
                    opened,
                    meshes,
                    target,
                    kinds=kinds,
                    bbox=window,
                    progress=lambda n: bars.advance(task, n),
                    **options,
                )
        finally:
            if meshes is not None:
                meshes.close()
    _print(summary, as_json)


def parse_kinds(values: list[str] | None) -> list[Kind] | None:
    """The ``--kind`` values as kinds (None when none was given), or an error naming the one that is not a kind."""
    from cim.model import Kind

    if not values:
        return None
    kinds = []
    for value in values:
        for part in value.split(","):
            try:
                kinds.append(Kind(part.strip().lower()))
            except ValueError:
                raise InvalidInput(
                    f"--kind {part[:40]!r}", f"is not a kind; use one of {', '.join(k.value for k in Kind)}"
                ) from None
    return kinds


def parse_bbox(text: str | None) -> BBox | None:
    """``--bbox`` as (west, south, east, north), or an error naming it."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise InvalidInput(
            f"--bbox {text[:60]!r}", "must be four numbers west,south,east,north, e.g. 121.4,31.1,121.6,31.3"
        )
    west, south, east, north = numbers
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidInput(
            f"--bbox {text[:60]!r}", "must have west ≤ east within -180..180 and south ≤ north within -90..90"
        )
    return west, south, east, north


def _open(store: str | None) -> Store:
    """The store, opened to read; while a running server holds a DuckDB store, say how to export through it."""
    from cim.errors import StoreUnavailable

    try:
        return open_existing_store(store)
    except StoreUnavailable as exc:
        if "busy" not in exc.why:
            raise
        raise StoreUnavailable(
            exc.what,
            "is busy: a running cim serve holds it; stop it to export, or fetch a page of a collection from it as "
            "/collections/KIND/items?f=gpkg (or f=cityjson for buildings)",
        ) from None


def _check_folder(out: Path) -> Path:
    out = out.expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out}", "is a file; the ifc export writes a folder of files")
    if not out.parent.is_dir():
        raise InvalidInput(f"--out {out}", f"its folder {out.parent} does not exist")
    return out


def _meshes(store: Store) -> MeshStore | None:
    from cim.store.meshes import has_meshes, open_meshes

    return open_meshes(store, read_only=True) if has_meshes(store) else None


def _print(summary: ExportSummary, as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        print_json(asdict(summary))
        return
    table = Table("objects", "count", title=f"{summary.format} export")
    for name, count in summary.objects.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if summary.types:
        written = ", ".join(f"{count:,} {name}" for name, count in summary.types.items())
        console.print(f"written as {written}", highlight=False)
    for path in summary.files:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    for skipped in summary.skipped:
        examples = ", ".join(str(e) for e in skipped.get("examples", []))  # type: ignore[attr-defined]
        console.print(f"left out: {skipped['count']} ({skipped['rule']}), e.g. {examples}", highlight=False)
