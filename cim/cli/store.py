"""``cim store upgrade`` and ``cim store info``: a store's schema version, its upgrade and what it holds.

Opening a store with any command upgrades it already (:mod:`cim.store.migrations`); ``upgrade`` does only that and
says what it did, ``info`` looks without changing anything.
"""

from __future__ import annotations

import typer
from rich.table import Table

from cim.cli.options import JsonOption, StoreOption, console, print_json, store_url
from cim.store.migrations import inspect_store, upgrade_store

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
