"""What long commands show on stderr, so ``--json`` output stays clean: one rich progress bar per task, and errors as
one line each."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text


def progress_bars(*, quiet: bool = False) -> Progress:
    """A progress display with one bar per task (nothing shown when ``quiet``)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=False,
    )


def write_error_line(out: Console, message: str) -> None:
    """``error: <message>`` on ``out`` as one line, whatever its length, with no part of it read as rich markup (a
    file named ``[old] roads.geojson``)."""
    out.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True, highlight=False)
