"""``cim report checkup``: the annual city check-up as HTML and PDF (:mod:`cim.report`). It joins ``cim report
cases`` (:mod:`cim.cli.cases`) in the ``report`` group.

With a server holding the DuckDB store (or ``--server``), the two files come from its ``/reports/checkup-<year>``
routes, written by it; otherwise the command reads the store itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cim.cli.cases import report_app
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
from cim.errors import InvalidInput

__all__ = ["report_app"]


@report_app.command("checkup")
def report_checkup(
    year: Annotated[int, typer.Option("--year", help="the year of the check-up (the current one: as of today)")],
    out: Annotated[Path, typer.Option("--out", help="folder to write checkup-<year>.html and .pdf into")] = Path(
        "reports"
    ),
    targets: Annotated[
        Path | None, typer.Option("--targets", help="the plan's target file (TOML) to track progress against")
    ] = None,
    scale: Annotated[
        float | None, typer.Option("--scale", help="the share of the city the model covers (default: the file's)")
    ] = None,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """The annual city check-up 城市体检: per district the vital signs and their five-year trend, what changed in
    the year, the plan's targets and progress, cases and their on-time rate, maps and a picture of the model."""
    from cim.report.build import report_names, write_checkup

    if (remote := reading_server(store, server)) is not None:
        if targets is not None:
            raise InvalidInput(
                f"--targets {targets}", "a server tracks its own target file (CIM_TARGETS_FILE); omit --targets"
            )
        written: dict[str, object] = {"year": year, "server": remote.url}
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"--out {out}", f"cannot be made: {exc.strerror}") from None
        for key, name in zip(("html", "pdf"), report_names(year), strict=True):
            (out / name).write_bytes(ask_server(remote, f"/reports/{name}"))
            written[key] = str(out / name)
        result = written
    else:
        with open_existing_store(store) as opened:
            result = write_checkup(opened, year=year, out=out, targets=targets, targets_scale=scale)
    if as_json:
        print_json(result)
        return
    console.print(f"wrote {result['html']}")
    console.print(f"wrote {result['pdf']}")
    if "seconds" in result:
        console.print(f"in {result['seconds']['total']} s", highlight=False)  # type: ignore[index]
