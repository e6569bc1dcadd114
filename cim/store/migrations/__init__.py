"""Numbered, forward-only schema migrations for both SQL stores.

Each step is a module here named ``vNNN_what.py`` holding ``NAME`` (what it does, in a few words) and its statements:
``SQL`` when both backends read the same text, else ``DUCKDB`` and ``POSTGRES``. The schema is the sum of the steps:
a new store runs them all from step 1, a store written by an older release runs those it lacks. One place spells the
asset table again: the DuckDB store's ``optimize`` rebuilds it from :data:`cim.model.schema.ASSET_COLUMNS` with its
two indexes, so a step that changes that table or its indexes must change ``optimize`` too.
Adding step N+1 is adding the module ``v00N+1_….py``; a released step is never edited (stores in the field ran it).

A store's version is ``schema_version`` in ``cim_meta``, the key releases before migrations read, so they refuse a
newer store too. The steps a store lacks run when it is opened, all in one transaction with the new version, so a
step that fails, or a process killed meanwhile, leaves the store as it was. A DuckDB file is first copied aside
(:func:`copy_aside`); PostgreSQL openers take an advisory lock, so of two processes opening one schema at once the
first migrates and the second finds it done. A store newer than this release is refused.

>>> [(m.version, m.name) for m in MIGRATIONS][:2]
[(1, 'initial schema'), (2, 'migration history')]
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cim import __version__
from cim.errors import CimError, NotFound, StoreError, StoreUnavailable

Backend = Literal["duckdb", "postgres"]
#: Runs one statement with its parameters and returns its rows (none for a statement without a result).
Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

log = logging.getLogger("cim.store")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    duckdb: tuple[str, ...] = field(repr=False)
    postgres: tuple[str, ...] = field(repr=False)

    def statements(self, backend: Backend) -> tuple[str, ...]:
        return self.duckdb if backend == "duckdb" else self.postgres


def discover() -> tuple[Migration, ...]:
    """The steps in this package, in order; they must be numbered 1, 2, 3 … without a gap."""
    found = []
    for module_info in pkgutil.iter_modules(__path__):
        if (match := re.fullmatch(r"v(\d{3})_\w+", module_info.name)) is None:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        shared = tuple(getattr(module, "SQL", ()))
        duckdb, postgres = (tuple(getattr(module, name, shared)) for name in ("DUCKDB", "POSTGRES"))
        found.append(Migration(int(match[1]), module.NAME, duckdb, postgres))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"schema migrations must be numbered 1, 2, 3 … without a gap: {[m.version for m in found]}")
    return tuple(found)


MIGRATIONS: tuple[Migration, ...] = discover()
#: The schema version this release writes: its last step.
SCHEMA_VERSION = MIGRATIONS[-1].version


@dataclass(frozen=True, slots=True)
class Database:
    """How the migrations reach one store: a statement runner, the backend and the store's schema (``main`` in
    DuckDB)."""

    run: Run
    backend: Backend
    schema: str

    @property
    def param(self) -> str:
        return "?" if self.backend == "duckdb" else "%s"

    def has_table(self, name: str) -> bool:
        p = self.param
        sql = f"SELECT count(*) FROM information_schema.tables WHERE table_schema = {p} AND table_name = {p}"
        return bool(self.run(sql, [self.schema, name])[0][0])

    def version(self) -> int:
        """The store's schema version; 0 for a new (empty) store."""
        if not self.has_table("cim_meta"):
            return 0
        rows = self.run("SELECT value FROM cim_meta WHERE key = 'schema_version'", [])
        return int(rows[0][0]) if rows else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Upgrade:
    """What opening a store did to its schema: the steps run, from which version to which, and the copy kept."""

    store: str
    from_version: int
    to_version: int
    steps: tuple[Migration, ...]
    backup: Path | None = None

    def describe(self) -> str:
        steps = ", ".join(f"{m.version} {m.name}" for m in self.steps)
        kept = f"; the store as it was is kept at {self.backup}" if self.backup is not None else ""
        return (
            f"store {self.store} upgraded from schema version {self.from_version} to {self.to_version} ({steps}){kept}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "steps": [{"version": m.version, "name": m.name} for m in self.steps],
            "backup": None if self.backup is None else str(self.backup),
        }


def pending(store: str, current: int, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[Migration, ...]:
    """The steps a store at version ``current`` lacks; a store newer than this release is refused."""
    latest = migrations[-1].version
    if current > latest:
        raise StoreUnavailable(
            f"store {store}",
            f"has schema version {current}, newer than version {latest} that this cim ({__version__}) reads; "
            "open it with the newer cim that wrote it",
        )
    return tuple(m for m in migrations if m.version > current)


def apply(
    db: Database, store: str, current: int, migrations: Sequence[Migration] = MIGRATIONS, *, backup: Path | None = None
) -> Upgrade:
    """Run the steps a store at ``current`` lacks, set its version and record them, inside the caller's transaction
    (which rolls all of it back when this raises)."""
    steps = pending(store, current, migrations)
    for step in steps:
        try:
            for statement in step.statements(db.backend):
                db.run(statement, [])
        except CimError:
            raise
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(
                f"store {store}",
                f"upgrading to schema version {step.version} ({step.name}) failed: {reason}; "
                f"the store is left as it was, at version {current}",
            ) from exc
    target = steps[-1].version if steps else current
    p = db.param
    db.run(
        f"INSERT INTO cim_meta VALUES ('schema_version', {p}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [str(target)],
    )
    if db.has_table("cim_migrations"):
        done = {row[0] for row in db.run("SELECT version FROM cim_migrations", [])}
        now = datetime.now(UTC)
        for m in migrations[:target]:
            if m.version not in done:  # a step run before the history was kept has no date
                ran = m.version > current
                db.run(
                    f"INSERT INTO cim_migrations VALUES ({p}, {p}, {p}, {p})",
                    [m.version, m.name, now if ran else None, __version__ if ran else None],
                )
    return Upgrade(store=store, from_version=current, to_version=target, steps=steps, backup=backup)


def announce(upgrade: Upgrade | None) -> None:
    """Tell the user (a warning on the ``cim.store`` log, stderr by default) that a store they had was upgraded."""
    if upgrade is not None and upgrade.from_version > 0:
        log.warning("%s", upgrade.describe())


def copy_aside(path: Path, version: int) -> Path:
    """Copy the DuckDB file ``path`` (closed) to ``<name>.v<version>-backup.duckdb`` beside it before an upgrade,
    never over an earlier copy; written under a temporary name first, so a copy cut short is never taken for one."""
    stem = path.name.removesuffix(".duckdb")
    target = path.with_name(f"{stem}.v{version}-backup.duckdb")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}.v{version}-backup-{n}.duckdb")
    partial = target.with_name(target.name + ".partial")
    try:
        shutil.copyfile(path, partial)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, target.with_name(target.name + ".wal"))
        partial.rename(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreUnavailable(
            f"store {path}",
            f"was not upgraded: its copy {target} could not be written ({exc.strerror}); it is unchanged",
        ) from None
    return target


def inspect_store(url: str) -> dict[str, Any]:
    """:func:`describe` of the store at ``url``, opened without upgrading it (a missing DuckDB file is not made)."""
    from cim.store import open_store
    from cim.store.sqlstore import SqlStore

    _require_existing(url)
    with open_store(url, upgrade=False) as store:
        assert isinstance(store, SqlStore)
        return describe(store.schema_database(), store.url)


def upgrade_store(url: str) -> Upgrade:
    """Open the store at ``url`` and so bring it to this release's schema; what was done (no steps: nothing to do)."""
    from cim.store import open_store
    from cim.store.sqlstore import SqlStore

    _require_existing(url)
    quiet, log.disabled = log.disabled, True  # the caller reports the upgrade: no warning besides
    try:
        with open_store(url) as store:
            assert isinstance(store, SqlStore)
            return store.schema_upgrade or Upgrade(
                store=store.url, from_version=SCHEMA_VERSION, to_version=SCHEMA_VERSION, steps=()
            )
    finally:
        log.disabled = quiet


def _require_existing(url: str) -> None:
    from cim.store import duckdb_path

    path = duckdb_path(url)
    if path is not None and not path.exists():
        raise NotFound(f"store {path}", "does not exist")


def describe(db: Database, store: str, migrations: Sequence[Migration] = MIGRATIONS) -> dict[str, Any]:
    """The store's schema version, the steps this release would still run on it, their history and its tables."""
    current = db.version()
    history = []
    if db.has_table("cim_migrations"):
        rows = db.run("SELECT version, name, applied_at, cim_version FROM cim_migrations ORDER BY version", [])
        history = [dict(zip(("version", "name", "applied_at", "cim_version"), row, strict=True)) for row in rows]
    p = db.param
    names = db.run(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = {p} AND table_type = 'BASE TABLE' "
        "ORDER BY table_name",
        [db.schema],
    )
    tables = {name: int(db.run(f'SELECT count(*) FROM "{name}"', [])[0][0]) for (name,) in names}
    return {
        "store": store,
        "version": current,
        "latest": migrations[-1].version,
        "pending": [{"version": m.version, "name": m.name} for m in migrations if m.version > current],
        "history": history,
        "tables": tables,
    }
