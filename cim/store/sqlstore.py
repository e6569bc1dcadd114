"""What both SQL backends share: the queries, the readings logic and the transaction discipline.

A backend supplies four things: how to run a statement and fetch Arrow, how to open a transaction, and how to
bulk-load a batch of assets or readings into its tables.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
import pyarrow as pa

from cim.errors import CimError, Conflict, InvalidInput, NotFound, StoreError, StoreUnavailable
from cim.model import Alert, Asset, AssetBatch, Kind, Reading
from cim.model.schema import ASSET_SCHEMA
from cim.store.base import AssetQuery, BBox, ClosedOnExit, Store
from cim.store.history import instant_sql
from cim.store.history_queries import HistoryQueries
from cim.store.migrations import Database, Upgrade
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
#: The ``cim_meta`` key counting committed asset writes.
_VERSION_KEY = "assets_version"


class SqlStore(ClosedOnExit, HistoryQueries, ABC):
    """Shared implementation of :class:`cim.store.base.Store` over a SQL connection."""

    dialect: Dialect
    #: What opening the store did to its schema (:mod:`cim.store.migrations`); None when it had nothing to do.
    schema_upgrade: Upgrade | None = None

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
    def upsert_assets(self, batch: AssetBatch) -> int:
        if not len(batch):
            return 0
        with self._changing(f"writing {len(batch)} assets"):
            self._load_assets(batch)
            self._assets_changed()
        self._changed()
        return len(batch)

    def replace_source(self, source: str, batches: Iterable[AssetBatch]) -> int:
        written = 0
        with self._changing(f"replacing the assets of {source}"):
            self._execute(f"DELETE FROM assets WHERE source = {self.dialect.param}", [source])
            self._assets_changed()
            for batch in batches:
                if len(batch):
                    self._load_assets(batch)
                    written += len(batch)
        self._changed()
        return written

    def delete_assets(self, *, ids: Sequence[str] | None = None, source: str | None = None) -> int:
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
        with self._changing("deleting assets"):
            count = self._execute("DELETE FROM assets WHERE " + " AND ".join(clauses), params)
            self._assets_changed()
        self._changed()
        return count

    def edit_asset(self, asset_id: str, edit: Callable[[Asset | None], Asset | None]) -> Asset | None:
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
        sql = f"SELECT {self.dialect.select_list()} FROM assets WHERE {where.sql} ORDER BY id"
        params = list(where.params)
        if query.limit is not None:
            sql += f" LIMIT {p}"
            params.append(query.limit)
        if query.offset:
            sql += f" OFFSET {p}"
            params.append(query.offset)
        return AssetBatch(as_schema(self._fetch(sql, params), ASSET_SCHEMA))

    def select(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run one read-only query written in this backend's dialect (``self.dialect``); every value a caller gave
        travels in ``params``. For the query modules beside the store (:mod:`cim.queries`), whose SQL the
        :class:`~cim.store.base.Store` protocol has no verb for."""
        return self._fetch(sql, params)

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

    def derived_table(self, name: str, select_sql: str) -> str:
        """The table ``name`` holding the rows of ``select_sql`` (a query of ``assets`` with no parameters), rebuilt
        first when assets changed since it was built or ``select_sql`` is not the one it was built from.

        A materialised view for a query that must answer from a million assets faster than a join over them
        allows (see :func:`cim.queries.domain.old_lifts_json`). Every asset write bumps ``assets_version`` in
        ``cim_meta`` inside its transaction; the version is read *before* the rebuild, so a write committed
        during it leaves the table marked older than the data and the next call rebuilds again.
        """
        self.refresh_derived(name, select_sql)
        return name

    def refresh_derived(self, name: str, select_sql: str) -> str:
        """:meth:`derived_table`, returning the version stamp of the data the table now holds (it changes whenever
        the table is rebuilt): a key for caching answers computed from it."""
        digest = hashlib.sha256(select_sql.encode()).hexdigest()[:16]
        stamp_key = f"derived:{name}"
        current, stamp = self._derived_stamps(stamp_key, digest)
        if current != stamp:
            with self._changing(f"refreshing {name}"):
                # many requests may have found it stale at once: the first rebuilds it, the others find it fresh
                self._lock_derived(stamp_key)
                current, stamp = self._derived_stamps(stamp_key, digest)
                if current != stamp:
                    self._execute(f"DROP TABLE IF EXISTS {name}")
                    self._execute(f"CREATE TABLE {name} AS {select_sql}")
                    self._derived(name)
                    self._set_meta(stamp_key, stamp)
        return stamp

    def _derived_stamps(self, stamp_key: str, digest: str) -> tuple[str | None, str]:
        """(the stamp the derived table was built with, the stamp it needs now)."""
        p = self.dialect.param
        rows = self._fetch(f"SELECT key, value FROM cim_meta WHERE key IN ({p}, {p})", [_VERSION_KEY, stamp_key])
        meta = dict(zip(rows.column("key").to_pylist(), rows.column("value").to_pylist(), strict=True))
        return meta.get(stamp_key), f"{meta.get(_VERSION_KEY, '0')}:{digest}"

    def _lock_derived(self, stamp_key: str) -> None:
        """Inside the rebuild's transaction: keep other processes' rebuilds of the same table out until it ends
        (a backend whose writes are serialised already needs nothing)."""

    def _derived(self, name: str) -> None:
        """Called inside the transaction that rebuilt the derived table ``name``."""

    def _assets_changed(self) -> None:
        """Inside a write's transaction: bump ``assets_version``, so :meth:`derived_table` rebuilds."""
        self._execute(
            f"INSERT INTO cim_meta VALUES ({self.dialect.param}, '1') ON CONFLICT (key) DO UPDATE "
            "SET value = CAST(CAST(cim_meta.value AS BIGINT) + 1 AS VARCHAR)",
            [_VERSION_KEY],
        )

    def _set_meta(self, key: str, value: str) -> None:
        p = self.dialect.param
        self._execute(
            f"INSERT INTO cim_meta VALUES ({p}, {p}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def count_assets(self, query: AssetQuery) -> int:
        where = self.dialect.where(query)
        return int(self._fetch(f"SELECT count(*) AS n FROM assets WHERE {where.sql}", where.params)["n"][0].as_py())

    def count_by_kind(self) -> dict[str, int]:
        rows = self._fetch("SELECT kind, count(*) AS n FROM assets GROUP BY kind ORDER BY kind").to_pylist()
        return {row["kind"]: int(row["n"]) for row in rows}

    def extent(self, *, kind: Kind | None = None) -> BBox | None:
        where = "" if kind is None else f" WHERE kind = {self.dialect.param}"
        sql = "SELECT min(min_x) AS w, min(min_y) AS s, max(max_x) AS e, max(max_y) AS n FROM assets" + where
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
    def _changing(self, what: str) -> AbstractContextManager[None]:
        return _ChangeGuard(self, what)

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


class _ChangeGuard(AbstractContextManager[None]):
    """One transaction; a database error inside becomes a :class:`StoreError` after the rollback."""

    def __init__(self, store: SqlStore, what: str) -> None:
        self._store = store
        self._what = what
        self._transaction: AbstractContextManager[None] | None = None

    def __enter__(self) -> None:
        self._transaction = self._store._transaction()
        self._transaction.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._transaction is not None
        try:
            self._transaction.__exit__(exc_type, exc, tb)  # rolls back when exc is set
        except Exception as ending:  # the commit failed, or the rollback of a connection that died
            if exc is None:
                exc = ending
        if exc is not None and not isinstance(exc, CimError) and isinstance(exc, Exception):
            if self._store._is_conflict(exc):
                raise Conflict(
                    self._what,
                    f"another writer changed the same rows meanwhile ({_first_line(exc)}); nothing was "
                    "written: read again and retry",
                ) from exc
            if self._store._is_unavailable(exc):
                raise StoreUnavailable(
                    f"{self._what} in the store", f"the database went away ({_first_line(exc)}); nothing was written"
                ) from exc
            raise StoreError(
                f"{self._what} in {self._store.url}", f"{type(exc).__name__}: {_first_line(exc)}; nothing was written"
            ) from exc


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sql_store(store: Store) -> SqlStore:
    """``store`` as a :class:`SqlStore`, the stores whose questions are answered in SQL; others cannot answer them."""
    if not isinstance(store, SqlStore):
        raise InvalidInput(f"store {store.url}", "answers no SQL queries; use a DuckDB or PostGIS store")
    return store
