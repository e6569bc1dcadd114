"""Derived tables: materialised views over the assets, rebuilt when the assets changed (a part of
:class:`~cim.store.sqlstore.SqlStore`, which supplies the statement runners)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from cim.store.sql import Dialect

#: The ``cim_meta`` key counting committed asset writes.
VERSION_KEY = "assets_version"
#: Derived tables kept per name for views of the model as of a date (the check-up reads 7: five year-ends, the
#: plan's baseline and the day): one per date asked, the least recently built
#: dropped when another date needs one (a lift register, an area map of every asset: each date's is its own).
MAX_AS_OF_TABLES = 8
_BUILT = "derived-built:"


class DerivedTables:
    dialect: Dialect
    as_of_time: datetime | None

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def _changing(self, what: str, *, derived: bool = False) -> AbstractContextManager[None]:
        raise NotImplementedError

    def derived_table(self, name: str, select_sql: str) -> str:
        """The table ``name`` holding the rows of ``select_sql`` (a query of ``assets`` with no parameters), rebuilt
        first when assets changed since it was built or ``select_sql`` is not the one it was built from.

        A materialised view for a query that must answer from a million assets faster than a join over them
        allows (see :func:`cim.queries.domain.old_lifts_json`). Every asset write bumps ``assets_version`` in
        ``cim_meta`` inside its transaction; the version is read *before* the rebuild, so a write committed
        during it leaves the table marked older than the data and the next call rebuilds again.
        """
        return self.refresh_derived(name, select_sql)[1]

    def refresh_derived(self, name: str, select_sql: str) -> tuple[str, str]:
        """:meth:`derived_table`, returning the version stamp of the data the table now holds (it changes whenever
        the table is rebuilt: a key for caching answers computed from it) and the table's name. A view as of a date
        has a table of its date (``<name>_as_of_<time>``): two requests as of two dates never read one table that
        the other rebuilt between its refresh and its read; at most :data:`MAX_AS_OF_TABLES` dates are kept."""
        name = self.derived_name(name)
        digest = hashlib.sha256(select_sql.encode()).hexdigest()[:16]
        stamp_key = f"derived:{name}"
        current, stamp = self._derived_stamps(stamp_key, digest)
        if current != stamp:
            with self._changing(f"refreshing {name}", derived=True):
                # many requests may have found it stale at once: the first rebuilds it, the others find it fresh
                self._lock_derived(stamp_key)
                current, stamp = self._derived_stamps(stamp_key, digest)
                if current != stamp:
                    self._execute(f"DROP TABLE IF EXISTS {name}")
                    self._execute(f"CREATE TABLE {name} AS {select_sql}")
                    self._derived(name)
                    self._set_meta(stamp_key, stamp)
                    if self.as_of_time is not None:
                        self._drop_old_as_of(name)
        return stamp, name

    def derived_name(self, name: str) -> str:
        """The name of the derived table ``name`` in this store, or in this view as of a date (one per date)."""
        if self.as_of_time is None:
            return name
        return f"{name}_as_of_{self.as_of_time.astimezone(UTC):%Y%m%d%H%M%S%f}"

    def _drop_old_as_of(self, built: str) -> None:
        """Inside the transaction that built the as-of table ``built``: note when, and drop the tables of the same
        name for other dates beyond the :data:`MAX_AS_OF_TABLES` built last."""
        p = self.dialect.param
        self._set_meta(_BUILT + built, datetime.now(UTC).isoformat())
        family = built[: built.rindex("_as_of_") + len("_as_of_")]
        rows = self._fetch(f"SELECT key, value FROM cim_meta WHERE key LIKE {p}", [f"{_BUILT}{family}%"]).to_pylist()
        rows.sort(key=lambda r: (r["value"], r["key"]), reverse=True)
        for row in rows[MAX_AS_OF_TABLES:]:
            old = row["key"].removeprefix(_BUILT)
            self._execute(f"DROP TABLE IF EXISTS {old}")
            self._execute(f"DELETE FROM cim_meta WHERE key IN ({p}, {p})", [row["key"], f"derived:{old}"])

    def _derived_stamps(self, stamp_key: str, digest: str) -> tuple[str | None, str]:
        """(the stamp the derived table was built with, the stamp it needs now)."""
        p = self.dialect.param
        rows = self._fetch(f"SELECT key, value FROM cim_meta WHERE key IN ({p}, {p})", [VERSION_KEY, stamp_key])
        meta = dict(zip(rows.column("key").to_pylist(), rows.column("value").to_pylist(), strict=True))
        return meta.get(stamp_key), f"{meta.get(VERSION_KEY, '0')}:{digest}"

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
            [VERSION_KEY],
        )

    def _set_meta(self, key: str, value: str) -> None:
        p = self.dialect.param
        self._execute(
            f"INSERT INTO cim_meta VALUES ({p}, {p}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )
