"""``cim store upgrade``, ``info`` and ``retention``: a store's schema version, its upgrade, what it holds and how
long it keeps sensor history.

Opening a store with any command upgrades it already (:mod:`cim.store.migrations`); ``upgrade`` does only that and
says what it did, ``info`` looks without changing anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer
from rich.table import Table

from cim.cli.options import JsonOption, StoreOption, console, print_json, store_url
from cim.errors import InvalidInput
from cim.store import open_store
from cim.store.migrations import inspect_store, upgrade_store
from cim.store.sqlstore import SqlStore

store_app = typer.Typer(help="A store's schema: its version, pending upgrade steps, their history and its tables.")


@store_app.command()
def upgrade(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Bring the store to this release's schema version, running the steps it lacks in one transaction (a DuckDB
    file is copied aside first, as <name>.v<N>-backup.duckdb)."""
    done = upgrade_store(store_url(store))
    if as_json:
        print_json(done.to_json())
    elif done.steps:
        console.print(done.describe(), highlight=False, soft_wrap=True)
    else:
        console.print(f"store {done.store} is at schema version {done.to_version}, this release's: nothing to do")


@store_app.command()
def info(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show the store's schema version, the steps an upgrade would run, the steps applied and the tables, without
    changing the store."""
    found = inspect_store(store_url(store))
    if as_json:
        print_json(found)
        return
    console.print(
        f"store {found['store']}: schema version {found['version']} (this release writes {found['latest']})",
        highlight=False,
        soft_wrap=True,
    )
    pending = ", ".join(f"{step['version']} {step['name']}" for step in found["pending"])
    console.print(f"pending steps: {pending} (run `cim store upgrade`)" if pending else "pending steps: none")
    if found["history"]:
        history = Table("version", "step", "applied", "by cim", title="schema history")
        for row in found["history"]:
            when = "before the history was kept" if row["applied_at"] is None else str(row["applied_at"])
            history.add_row(str(row["version"]), row["name"], when, row["cim_version"] or "")
        console.print(history)
    else:
        console.print("schema history: not kept by this store's version")
    tables = Table("table", "rows", title="tables")
    for name, rows in found["tables"].items():
        tables.add_row(name, f"{rows:,}")
    console.print(tables)


def _days(text: str | None, option: str) -> int | str | None:
    """A retention option's value: a whole number of days, None for ``forever``, or ``"keep"`` when not given."""
    if text is None:
        return "keep"
    if text.strip().lower() == "forever":
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{option} {text[:40]!r}", "must be a whole number of days or 'forever'") from None


_LEVELS = {
    "raw_days": "raw readings",
    "minute_days": "per-minute rollup",
    "hour_days": "per-hour rollup",
    "day_days": "per-day rollup",
}


@store_app.command()
def retention(
    store: StoreOption = None,
    raw: Annotated[str | None, typer.Option("--raw", help="days of raw readings to keep, or 'forever'")] = None,
    minute: Annotated[str | None, typer.Option("--minute", help="days of the per-minute rollup")] = None,
    hour: Annotated[str | None, typer.Option("--hour", help="days of the per-hour rollup")] = None,
    day: Annotated[str | None, typer.Option("--day", help="days of the per-day rollup")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show how long the store keeps sensor history at each level, or change it (the server applies it within the
    hour; a running server holding a DuckDB file must be stopped first)."""
    wanted = {
        name: _days(value, option)
        for name, value, option in (
            ("raw_days", raw, "--raw"),
            ("minute_days", minute, "--minute"),
            ("hour_days", hour, "--hour"),
            ("day_days", day, "--day"),
        )
    }
    with open_store(store_url(store)) as opened:
        if not isinstance(opened, SqlStore):
            raise InvalidInput("store", "keeps no sensor history")
        current = opened.retention()
        changes = {name: days for name, days in wanted.items() if not isinstance(days, str)}
        if changes:
            current = replace(current, **changes)  # checked by Retention itself
            opened.set_retention(current)
    kept = {name: getattr(current, name) for name in _LEVELS}
    if as_json:
        print_json(kept)
        return
    for name, label in _LEVELS.items():
        days = kept[name]
        console.print(f"{label}: {'forever' if days is None else f'{days} days'}", highlight=False)
