"""Progress bars for long commands: one rich bar per task, on stderr so ``--json`` output stays clean."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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
