"""``cim run PIPELINE``: one command from sources to a published city, with a progress bar per stage."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cim.pipeline.model import load_pipeline
from cim.pipeline.run import RunSummary, run_pipeline

console = Console()


def run(
    pipeline: Annotated[Path, typer.Argument(help="pipeline file, e.g. pipelines/shanghai-demo.toml")],
    store: Annotated[str | None, typer.Option("--store", "-s", help="override the pipeline's store")] = None,
    out: Annotated[str | None, typer.Option("--out", help="override the pipeline's tiles folder")] = None,
    force: Annotated[bool, typer.Option("--force", help="ingest every source even when unchanged")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")] = False,
) -> None:
    """Run a pipeline: generate, ingest every source (unchanged ones are skipped), build the tiles."""
    loaded = load_pipeline(pipeline)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=as_json,
    ) as bars:

        def stage(name: str, total: int | None) -> Callable[[int], None]:
            for earlier in bars.tasks:  # the previous stage is done: freeze its bar
                if not earlier.finished:
                    bars.update(earlier.id, total=earlier.completed)
                    bars.stop_task(earlier.id)
            task = bars.add_task(name, total=total)
            return lambda n: bars.advance(task, n)

        summary = run_pipeline(loaded, store_url=store, tiles_dir=out, force=force, progress=stage)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), ensure_ascii=False, default=str) + "\n")
    else:
        _print(summary)
    if not summary.ok:
        raise typer.Exit(2)


def _print(summary: RunSummary) -> None:
    table = Table("source", "type", "result", "assets", "s", title=f"pipeline {summary.pipeline} → {summary.store}")
    for s in summary.sources:
        result = "[red]failed[/]" if not s.ok else ("unchanged" if s.skipped else "ingested")
        assets = ", ".join(f"{k} {v:,}" for k, v in s.assets.items())
        table.add_row(Path(s.path).name, s.type, result, assets, f"{s.seconds:.1f}")
    console.print(table)
    for s in summary.sources:
        if s.error:
            console.print(f"[red]error:[/] {s.error}", highlight=False)
    if summary.tiles:
        groups = ", ".join(
            f"{g} {t['tiles']} tiles/{t['features']:,} features" for g, t in summary.tiles["tilesets"].items()
        )
        console.print(f"tiles in {summary.tiles['out']}: {groups}")
    console.print(f"done in {summary.seconds:.1f} s")
