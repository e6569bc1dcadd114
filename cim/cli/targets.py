"""``cim targets``: the plan's targets tracked from the model and its history (:mod:`cim.queries.targets`), the
same JSON as ``GET /targets`` under ``--json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cim.cli.options import (
    JsonOption,
    ServerOption,
    StoreOption,
    ask_server,
    console,
    open_existing_store,
    print_json,
    reading_server,
)
from cim.queries.params import parse_date

DEFAULT_FILE = Path("pipelines/targets/shanghai-renewal.toml")


def targets(
    file: Annotated[Path, typer.Option("--file", help="the target file (TOML, cim/queries/targets.py)")] = DEFAULT_FILE,
    scale: Annotated[
        float | None, typer.Option(help="the share of the city the model covers (overrides the file's)")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="the day to measure at, YYYY-MM-DD (default today)")
    ] = None,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """The plan's targets: progress, the pace needed and a forecast at today's pace / 规划目标进展."""
    from cim.queries.targets import load_targets, plan_dict, target_progress

    day = parse_date(as_of, what="as_of") if as_of else datetime.now(UTC).date()
    plan = load_targets(file, scale=scale)  # checked here, before the store is opened
    result: dict[str, Any]
    if (remote := reading_server(store, server)) is not None:
        result = json.loads(ask_server(remote, "/targets", params={"as_of": day.isoformat()}))
    else:
        with open_existing_store(store) as opened:
            result = {**plan_dict(plan), "as_of": day.isoformat(), "targets": target_progress(opened, plan, day)}
    if as_json:
        print_json(result)
        return
    headers = ("目标 target", "现值 value", "目标值 goal", "进度 progress", "年速 pace/yr", "需年速 needed/yr")
    table = Table(
        *headers,
        "预测 forecast",
        title=f"{result['plan']} — {result['as_of']} (baseline {result['baseline']}, deadline {result['deadline']})",
    )
    for t in result["targets"]:
        progress = "-" if t.get("progress") is None else f"{100 * t['progress']:.0f}%"
        mark = "✓" if t.get("on_track") else "✗"
        needed = t.get("pace_needed_per_year")
        table.add_row(
            f"{t['name']} {t['name_en']}", f"{t['value']:,} {t['unit']}", f"{t['target']:,}", progress,
            f"{t['pace_per_year']:,}", "-" if needed is None else f"{needed:,}", f"{t['forecast']:,} {mark}",
        )  # fmt: skip
    console.print(table)
