"""``cim run PIPELINE``: one command from sources to a published city, with a progress bar per stage; ``cim merge``:
BIM buildings into the GIS buildings they stand on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cim.cli.options import console, json_flag, print_error, print_json, store_url
from cim.pipeline.model import Pipeline, load_pipeline
from cim.pipeline.run import RunSummary, run_pipeline
from cim.progress import progress_bars


def run(
    pipeline: Annotated[Path, typer.Argument(help="pipeline file, e.g. pipelines/shanghai-demo.toml")],
    store: Annotated[str | None, typer.Option("--store", "-s", help="override the pipeline's store")] = None,
    out: Annotated[str | None, typer.Option("--out", help="override the pipeline's tiles folder")] = None,
    force: Annotated[bool, typer.Option("--force", help="ingest every source even when unchanged")] = False,
    as_json: Annotated[bool, json_flag("summary")] = False,
) -> None:
    """Run a pipeline: generate, ingest every source (unchanged ones are skipped), build the tiles."""
    loaded = load_pipeline(pipeline)
    summary = run_with_progress(loaded, quiet=as_json, store_url=store, tiles_dir=out, force=force)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print(summary)
    if not summary.ok:
        raise typer.Exit(2)


def run_with_progress(pipeline: Pipeline, *, quiet: bool = False, **options: Any) -> RunSummary:
    """:func:`run_pipeline` with one progress bar per stage on stderr (none when ``quiet``)."""
    with progress_bars(quiet=quiet) as bars:

        def stage(name: str, total: int | None) -> Callable[[int], None]:
            for earlier in bars.tasks:  # the previous stage is done: freeze its bar
                if not earlier.finished:
                    bars.update(earlier.id, total=earlier.completed)
                    bars.stop_task(earlier.id)
            task = bars.add_task(name, total=total)
            return lambda n: bars.advance(task, n)

        return run_pipeline(pipeline, progress=stage, **options)


def _print(summary: RunSummary) -> None:
    table = Table("source", "type", "result", "assets", "s", title=f"pipeline {summary.pipeline} → {summary.store}")
    for s in summary.sources:
        result = "[red]failed[/]" if not s.ok else ("unchanged" if s.skipped else "ingested")
        assets = ", ".join(f"{k} {v:,}" for k, v in s.assets.items())
        table.add_row(Path(s.path).name, s.type, result, assets, f"{s.seconds:.1f}")
    console.print(table)
    for s in summary.sources:
        if s.error:
            print_error(s.error)
    for error in summary.sensors["errors"]:
        print_error(f"pipeline {summary.pipeline} {error}")
    for error in (summary.cases or {}).get("errors", []):
        print_error(f"pipeline {summary.pipeline} {error}")
    if summary.cases and not summary.cases["errors"]:
        console.print(f"units: {summary.cases['units']}, case rules: {summary.cases['case_rules']}")
    if summary.sensors["changed"]:
        console.print(f"sensors declared: {summary.sensors['declared']}, given rules: {summary.sensors['ruled']}")
    if summary.tiles:
        groups = ", ".join(
            f"{g} {t['tiles']} tiles/{t['features']:,} features" for g, t in summary.tiles["tilesets"].items()
        )
        console.print(f"tiles in {summary.tiles['out']}: {groups}")
    if summary.tilesets:
        for error in summary.tilesets["errors"]:
            print_error(error)
        if summary.tilesets["mounted"]:
            console.print(f"external tilesets mounted: {', '.join(summary.tilesets['mounted'])}")
    console.print(f"done in {summary.seconds:.1f} s")


def merge(
    store: Annotated[str | None, typer.Option("--store", "-s", help="DuckDB file or postgresql:// URL")] = None,
    prefer: Annotated[str, typer.Option(help="whose attribute wins on a conflict: gis or bim")] = "gis",
    as_json: Annotated[bool, json_flag("report")] = False,
) -> None:
    """Match BIM buildings to the GIS buildings they stand on and merge each pair into one building."""
    from cim.errors import InvalidInput
    from cim.pipeline.merge import merge_buildings
    from cim.pipeline.run import beside_meshes
    from cim.store import open_store
    from cim.store.meshes import open_meshes

    if prefer not in ("gis", "bim"):
        raise InvalidInput(f"--prefer {prefer!r}", "must be gis or bim")
    with open_store(store_url(store)) as opened, open_meshes(store_url(store)) as meshes:
        report = merge_buildings(opened, meshes, prefer=prefer, state=beside_meshes(meshes, ".merges.json"))
    if as_json:
        print_json(report.to_dict())
        return
    for m in report.matched:
        console.print(f"merged {m['bim_id']} into {m['gis_id']} ({m['method']}, {len(m['conflicts'])} conflicts)")
    for a in [*report.ambiguous, *report.unmatched]:
        console.print(f"[yellow]not merged[/] {a['bim_id']}: {a['why']}", highlight=False)
    for gis_id in report.restored:
        console.print(f"restored {gis_id}: its BIM model is gone")
