"""What both SQL backends share: the queries, the readings logic and the transaction discipline.

A backend supplies four things: how to run a statement and fetch Arrow, how to open a transaction, and how to
bulk-load a batch of assets or readings into its tables.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import IO, Any

import orjson
import pyarrow as pa

from cim.errors import InvalidInput, NotFound, StoreError
from cim.model import Alert, Asset, AssetBatch, Kind, Reading
from cim.model.schema import ASSET_SCHEMA
from cim.store import versions
from cim.store.base import AssetQuery, BBox, ClosedOnExit, Store
from cim.store.derived import DerivedTables
from cim.store.guard import ChangeGuard
from cim.store.history import instant_sql
from cim.store.history_queries import HistoryQueries
from cim.store.migrations import Database, Upgrade
from cim.store.originals import OriginalFile, StoredOriginal, copy_original, originals_of, replace_original
from cim.store.sql import Dialect

READINGS_SCHEMA = pa.schema(
    [
        pa.field("sensor_id", pa.string()),
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("value", pa.float64()),
        pa.field("status", pa.string()),
    ]
)

ALERTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("sensor_id", pa.string()),
        pa.field("opened_at", pa.timestamp("us", tz="UTC")),
        pa.field("closed_at", pa.timestamp("us", tz="UTC")),
        pa.field("severity", pa.string()),
        pa.field("message", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("asset_id", pa.string()),
        pa.field("details", pa.string()),  # JSON text
    ]
)
_ALERT_COLUMNS = ", ".join(ALERTS_SCHEMA.names)
#: The alert columns as selected: the JSON details as text (DuckDB's JSON and PostgreSQL's JSONB alike).
_ALERT_SELECT = ", ".join(
    "CAST(details AS TEXT) AS details" if name == "details" else name for name in ALERTS_SCHEMA.names
)


class SqlStore(ClosedOnExit, DerivedTables, HistoryQueries, ABC):
    """Shared implementation of :class:`cim.store.base.Store` over a SQL connection."""

    dialect: Dialect
    #: What opening the store did to its schema (:mod:`cim.store.migrations`); None when it had nothing to do.
    schema_upgrade: Upgrade | None = None
    #: The asset table every query reads (``FROM {assets_table} AS x``): ``assets``, the current state, or in a view
    #: of the model as of a date (:meth:`as_of`) the versions valid then.
    assets_table: str = "assets"
    #: The date of a view made by :meth:`as_of`; None for the store itself.
    as_of_time: datetime | None = None
    #: The store a view made by :meth:`as_of` reads (a key for answers cached across views); None for the store.
    view_of: SqlStore | None = None

    def as_of(self, when: datetime) -> SqlStore:
        """A read-only view of the model as it stood at ``when``: the same store, whose queries read the asset
        versions valid then. A time in the future, or before the history begins, is :class:`InvalidInput`."""
        view = copy.copy(self)
        view.view_of = self.view_of or self
        view.as_of_time = versions.check_as_of(self, when)
        view.assets_table = versions.as_of_table(view.as_of_time)
        view.dialect = copy.copy(self.dialect)
        view.dialect.indexed_assets = False
        if self.dialect.snapshots_as_of:
            view.assets_table = view.derived_table("assets_snapshot", f"SELECT * FROM {view.assets_table} AS v")
        return view

    # --- what a backend supplies ---
    @abstractmethod
    def schema_database(self) -> Database:
        """The store as the schema migrations read it."""

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run a query and return its rows as an Arrow table."""

    @abstractmethod
    def _fetch_batches(self, sql: str, params: Sequence[Any], rows: int) -> Iterator[pa.Table]:
        """Run a long query and yield its rows as Arrow tables of at most ``rows`` rows, as they come: memory holds
        one batch, not the result (no read time limit: an export of a city outlasts a request's)."""

    @abstractmethod
    def _fetch_rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query and return its rows as dicts (``bytes`` for binary columns)."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed (or -1 when unknown)."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """A transaction: committed when the block ends, rolled back when it raises."""

    @abstractmethod
    def _load_assets(self, batch: AssetBatch) -> None:
        """Insert-or-replace the batch into ``assets``, deriving the bbox columns (inside a transaction)."""

    @abstractmethod
    def _load_readings(self, table: pa.Table) -> None:
        """Append readings (READINGS_SCHEMA), move the latest state forward and merge the readings' aggregates into
        the rollups (:mod:`cim.store.history`), inside a transaction."""

    @abstractmethod
    def _drop_raw_before(self, cutoff: datetime) -> dict[str, int]:
        """Inside a transaction: drop the raw readings older than ``cutoff`` (a UTC midnight); what went, per
        table (or partitions)."""

    @abstractmethod
    def optimize(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # --- changes ---
    def upsert_assets(
        self, batch: AssetBatch, *, at: datetime | None = None, change: str = "edit", by: str | None = None
    ) -> int:
        if not len(batch):
            return 0
        when = versions.change_time(at)
        scope = versions.ids_scope(self, batch.table.column("id").to_pylist())
        with self._changing(f"writing {len(batch)} assets"):
            when = versions.check_time(self, scope, when, asked=at is not None)
            self._load_assets(batch)
            versions.record(self, scope, when, change=change, by=by)
            self._assets_changed()
        self._changed()
        return len(batch)

    def replace_source(
        self,
        source: str,
        batches: Iterable[AssetBatch],
        *,
        at: datetime | None = None,
        original: OriginalFile | None = None,
    ) -> int:
        written = 0
        when = versions.change_time(at)
        scope = versions.source_scope(self, source)
        with self._changing(f"replacing the assets of {source}"):
            when = versions.check_time(self, versions.source_only_scope(self, source), when, asked=at is not None)
            self._execute(f"DELETE FROM assets WHERE source = {self.dialect.param}", [source])
            self._assets_changed()
            for batch in batches:
                if len(batch):
                    self._load_assets(batch)
                    written += len(batch)
            replace_original(self, source, original)  # the assets and their original: one ingest, one transaction
            versions.record(self, scope, when, change="ingest", by=source)
        self._changed()
        return written

    def delete_assets(
        self,
        *,
        ids: Sequence[str] | None = None,
        source: str | None = None,
        at: datetime | None = None,
        by: str | None = None,
    ) -> int:
        if ids is None and source is None:
            raise StoreError("delete_assets", "needs ids or a source; refusing to delete everything")
        p = self.dialect.param
        clauses, params = [], []
        if ids is not None:
            if not ids:
                return 0
            clauses.append(f"id IN ({', '.join([p] * len(ids))})")
            params += list(ids)
        if source is not None:
            clauses.append(f"source = {p}")
            params.append(source)
        when = versions.change_time(at)
        scope = (
            versions.ids_scope(self, ids, source=source)
            if ids is not None
            else versions.source_only_scope(self, source or "")
        )
        with self._changing("deleting assets"):
            when = versions.check_time(self, scope, when, asked=at is not None)
            count = self._execute("DELETE FROM assets WHERE " + " AND ".join(clauses), params)
            if ids is None and source is not None:
                replace_original(self, source, None)  # the source is gone: its original with it
            versions.record(self, scope, when, change="remove", by=by or source)
            self._assets_changed()
        self._changed()
        return count

    def edit_asset(
        self,
        asset_id: str,
        edit: Callable[[Asset | None], Asset | None],
        *,
        by: str | None = None,
        change: str = "edit",
    ) -> Asset | None:
        """Read the asset ``asset_id`` (None when there is none), hand it to ``edit`` and store what that returns —
        an asset with this id, or None to delete it — in one transaction: read, decision and write are one step,
        and other edits of the same id wait until it ends (two racing edits of one asset apply one after the
        other, never one over a stale read). ``edit`` raises to write nothing. Returns what ``edit`` returned."""
        with self._changing(f"editing asset {asset_id[:80]!r}"):
            self._lock_derived(f"asset:{asset_id}")  # the derived tables' advisory lock, on a key of its own
            found = self.find_assets(AssetQuery(ids=[asset_id]))
            current = found[0] if found else None
            edited = edit(current)
            if edited is not None:
                if edited.id != asset_id:
                    raise StoreError("edit_asset", f"the edit returned asset {edited.id!r}, not {asset_id!r}")
                self._load_assets(AssetBatch.from_assets([edited]))
            elif current is not None:
                self._execute(f"DELETE FROM assets WHERE id = {self.dialect.param}", [asset_id])
            if edited is not None or current is not None:
                scope = versions.ids_scope(self, [asset_id])
                when = versions.check_time(self, scope, versions.change_time(None), asked=False)
                versions.record(self, scope, when, change=change if edited is not None else "remove", by=by)
                self._assets_changed()
        self._changed()
        return edited

    def append_readings(self, readings: Sequence[Reading]) -> int:
        if not readings:
            return 0
        table = pa.table(
            {
                "sensor_id": [r.sensor_id for r in readings],
                "time": [r.time.astimezone(UTC) for r in readings],
                "value": [r.value for r in readings],
                "status": [r.status for r in readings],
            },
            schema=READINGS_SCHEMA,
        )
        with self._changing(f"appending {len(readings)} readings"):
            self._load_readings(table)
        return len(readings)

    def save_alerts(self, alerts: Sequence[Alert]) -> int:
        if not alerts:
            return 0
        p = self.dialect.param
        updates = ", ".join(f"{c} = excluded.{c}" for c in ALERTS_SCHEMA.names[1:])
        row = f"({', '.join(f'CAST({p} AS JSON)' if c == 'details' else p for c in ALERTS_SCHEMA.names)})"
        latest = {a.id: a for a in alerts}  # one row per id: the last change of each alert wins
        unique = list(latest.values())
        with self._changing(f"saving {len(unique)} alerts"):
            for start in range(0, len(unique), 500):  # a few statements of many rows, not one per alert
                chunk = unique[start : start + 500]
                self._execute(
                    f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES {', '.join([row] * len(chunk))} "
                    f"ON CONFLICT (id) DO UPDATE SET {updates}",
                    [value for alert in chunk for value in _alert_row(alert)],
                )
        return len(unique)

    # --- queries ---
    def get_asset(self, asset_id: str) -> Asset:
        found = self.find_assets(AssetQuery(ids=[asset_id]))
        if not found:
            raise NotFound(f"asset {asset_id[:200]!r}", "is not in the store")
        return found[0]

    def children(self, parent_id: str, *, kind: Kind | None = None) -> list[Asset]:
        return self.find_assets(AssetQuery(parent_id=parent_id, kinds=None if kind is None else (kind,)))

    def find_assets(self, query: AssetQuery) -> list[Asset]:
        return self.find_batch(query).to_assets()

    def find_batch(self, query: AssetQuery) -> AssetBatch:
        where = self.dialect.where(query)
        p = self.dialect.param
        sql = f"SELECT {self.dialect.select_list()} FROM {self.assets_table} AS assets WHERE {where.sql} ORDER BY id"
        params = list(where.params)
        if query.limit is not None:
            sql += f" LIMIT {p}"
            params.append(query.limit)
        if query.offset:
            sql += f" OFFSET {p}"
            params.append(query.offset)
        return AssetBatch(as_schema(self._fetch(sql, params), ASSET_SCHEMA))

    def originals(self, sources: Sequence[str]) -> dict[str, StoredOriginal]:
        return originals_of(self, sources)

    def copy_original(self, source: str, out: IO[bytes]) -> StoredOriginal | None:
        return copy_original(self, source, out)

    def select(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run one read-only query written in this backend's dialect (``self.dialect``); every value a caller gave
        travels in ``params``. For the query modules beside the store (:mod:`cim.queries`), whose SQL the
        :class:`~cim.store.base.Store` protocol has no verb for."""
        return self._fetch(sql, params)

    def select_batches(self, sql: str, params: Sequence[Any] = (), *, rows: int = 65_536) -> Iterator[pa.Table]:
        """:meth:`select` for a result too large to hold (an export of every asset): its rows as Arrow tables of at
        most ``rows`` rows each, streamed from the database as the caller reads them. Closing the iterator early
        ends the query."""
        return self._fetch_batches(sql, params, rows)

    def select_rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """:meth:`select` for an answer of a row or a few, as dicts: building an Arrow table (and casting it to a
        schema) for one row cost more than the query (item by id under 16 clients: py-spy, bench/ogc_bench.py)."""
        return self._fetch_rows(sql, params)

    def change(self, what: str) -> AbstractContextManager[None]:
        """One transaction for the SQL modules beside the store (:mod:`cim.store.cases`): committed when the block
        ends, rolled back when it raises; a database error inside becomes :class:`StoreError` (or
        :class:`StoreUnavailable`) naming ``what``, a :class:`CimError` passes as it is. Statements inside go
        through :meth:`execute` and :meth:`select`, which then run in this transaction."""
        return self._changing(what)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in this backend's dialect inside :meth:`change`; the number of rows it changed (-1
        when unknown). Every value a caller gave travels in ``params``."""
        return self._execute(sql, params)

    def count_assets(self, query: AssetQuery) -> int:
        where = self.dialect.where(query)
        return int(
            self._fetch(f"SELECT count(*) AS n FROM {self.assets_table} AS assets WHERE {where.sql}", where.params)[
                "n"
            ][0].as_py()
        )

    def count_by_kind(self) -> dict[str, int]:
        rows = self._fetch(
            f"SELECT kind, count(*) AS n FROM {self.assets_table} AS assets GROUP BY kind ORDER BY kind"
        ).to_pylist()
        return {row["kind"]: int(row["n"]) for row in rows}

    def extent(self, *, kind: Kind | None = None) -> BBox | None:
        where = "" if kind is None else f" WHERE kind = {self.dialect.param}"
        sql = (
            "SELECT min(min_x) AS w, min(min_y) AS s, max(max_x) AS e, max(max_y) AS n FROM "
            + self.assets_table
            + " AS assets"
            + where
        )
        row = self._fetch(sql, [] if kind is None else [str(kind)]).to_pylist()[0]
        if row["w"] is None:
            return None
        return (row["w"], row["s"], row["e"], row["n"])

    def readings(
        self,
        sensor_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Reading]:
        # the sensor and the times as literals: DuckDB then prunes row groups by their zone maps (history.instant_sql)
        where = self.dialect.key_in("sensor_id", [sensor_id])
        sql = f"SELECT sensor_id, time, value, status FROM readings WHERE {where.sql}"
        if start is not None:
            sql += f" AND time >= {instant_sql(start)}"
        if end is not None:
            sql += f" AND time < {instant_sql(end)}"
        sql += " ORDER BY time DESC" if newest_first else " ORDER BY time"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return list(_readings(self._fetch(sql, where.params)))

    def load_history(self, tables: Iterable[pa.Table]) -> int:
        """The bulk path: Arrow tables of readings (:data:`READINGS_SCHEMA`'s columns; the value and status may be
        null) appended as they are, one transaction each, through the same code as :meth:`append_readings` —
        history, latest state and rollups — without a Python object per reading. Returns the readings written.
        A table in (sensor_id, time) order is best: DuckDB's zone maps then find one sensor's rows."""
        written = 0
        for table in tables:
            if not table.num_rows:
                continue
            table = as_schema(table, READINGS_SCHEMA)
            with self._changing(f"loading {table.num_rows} readings"):
                self._load_readings(table)
            written += table.num_rows
        return written

    def latest_states(self, sensor_ids: Sequence[str] | None = None) -> dict[str, Reading]:
        sql = "SELECT sensor_id, time, value, status FROM sensor_state"
        params: list[str] = []
        if sensor_ids is not None:
            if not sensor_ids:
                return {}
            sql += f" WHERE sensor_id IN ({', '.join([self.dialect.param] * len(sensor_ids))})"
            params = list(sensor_ids)
        return {r.sensor_id: r for r in _readings(self._fetch(sql, params))}

    def alerts(
        self,
        *,
        open: bool | None = None,
        sensor_id: str | None = None,
        asset_id: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        p = self.dialect.param
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if open is not None:
            clauses.append("closed_at IS NULL" if open else "closed_at IS NOT NULL")
        if sensor_id is not None:
            clauses.append(f"sensor_id = {p}")
            params.append(sensor_id)
        if asset_id is not None:
            clauses.append(f"asset_id = {p}")
            params.append(asset_id)
        sql = f"SELECT {_ALERT_SELECT} FROM alerts WHERE {' AND '.join(clauses)} ORDER BY opened_at DESC, id"
        if limit is not None:
            sql += f" LIMIT {p}"
            params.append(limit)
        rows = as_schema(self._fetch(sql, params), ALERTS_SCHEMA).to_pylist()
        return [Alert(**{**row, "details": orjson.loads(row["details"]) if row["details"] else {}}) for row in rows]

    def ping(self) -> None:
        self._fetch("SELECT 1 AS ok")

    # --- plumbing ---
    def _changing(self, what: str, *, derived: bool = False) -> AbstractContextManager[None]:
        if self.as_of_time is not None and not derived:
            raise InvalidInput(f"{what}", f"the model as of {self.as_of_time:%Y-%m-%d} is read-only")
        return ChangeGuard(self, what)

    def _changed(self) -> None:
        """Called after a committed change to assets; backends drop caches here."""

    def _is_conflict(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised inside a change, is the database refusing it because a concurrent transaction
        changed the same rows (a serialization failure, a deadlock): reported as :class:`Conflict`."""
        return False

    def _is_unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised inside a change, means the database went away (a server restart, a lost
        connection): the change is then reported as :class:`StoreUnavailable`, which callers may retry."""
        return False


def as_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table``'s columns of ``schema``, cast to its types (the backends return slightly different ones)."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def _alert_row(alert: Alert) -> list[Any]:
    """An alert's values in the order of ALERTS_SCHEMA (its details as JSON text)."""
    return [
        *(getattr(alert, name) for name in ALERTS_SCHEMA.names[:-1]),
        orjson.dumps(dict(alert.details)).decode() if alert.details else None,
    ]


def _readings(table: pa.Table) -> Iterator[Reading]:
    for row in as_schema(table, READINGS_SCHEMA).to_pylist():
        yield Reading(**row)


def sql_store(store: Store) -> SqlStore:
    """``store`` as a :class:`SqlStore`, the stores whose questions are answered in SQL; others cannot answer them."""
    if not isinstance(store, SqlStore):
        raise InvalidInput(f"store {store.url}", "answers no SQL queries; use a DuckDB or PostGIS store")
    return store
