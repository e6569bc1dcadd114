"""The SQL of a page of one feature collection (:mod:`cim.queries.items`), built and run in the store, and the
count of all its pages (``numberMatched``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pyarrow.compute as pc

from cim.model import AssetBatch
from cim.model.schema import ASSET_SCHEMA
from cim.store.base import AssetQuery, Store
from cim.store.catalogue import count_where
from cim.store.sql import Where
from cim.store.sqlstore import SqlStore, as_schema, sql_store

#: Above this many ids, the rows of a page are looked up through one array parameter rather than one parameter
#: each: DuckDB took 265 ms for the rows of 1,000 ids as ``id IN (?, …)`` and 55 ms as a semi-join on the unnested
#: array (a page GDAL asks for when it copies a collection).
ARRAY_IDS = 200


def page_where(
    store: Store,
    *,
    query: AssetQuery,
    installed: tuple[date | None, date | None] | None = None,
    condition: Where | None = None,
) -> Where:
    """The WHERE of the assets ``query`` selects, installed in the (start, end) interval (both inclusive, either
    open) and meeting ``condition``."""
    db = sql_store(store)
    p = db.dialect.param
    base = db.dialect.where(query)
    clauses, params = [base.sql], list(base.params)
    start, end = installed or (None, None)
    for bound, value in (("install_date >=", start), ("install_date <=", end)):
        if value is not None:
            clauses.append(f"{bound} {p}")
            params.append(value)
    if condition is not None:
        clauses.append(condition.sql)
        params += condition.params
    return Where(" AND ".join(clauses), params)


def count_matched(store: Store, where: Where, *, version: str) -> int:
    """How many assets meet ``where`` (:func:`page_where`), remembered per assets ``version``."""
    return count_where(store, where.sql, where.params, version=version)


def feature_page(
    store: Store, *, where: Where, order: Sequence[tuple[Where, bool]] = (), limit: int, offset: int = 0
) -> tuple[AssetBatch | None, bool]:
    """The assets meeting ``where`` (:func:`page_where`), ordered by the (expression, descending) pairs of ``order``
    then id: at most ``limit`` of them from ``offset`` (None when there are none), and whether more follow
    (``limit + 1`` rows are asked for)."""
    db = sql_store(store)
    p = db.dialect.param
    order_sql = [f"{e.sql} {'DESC' if descending else 'ASC'} NULLS LAST" for e, descending in order]
    order_params = [value for e, _ in order for value in e.params]
    # Two steps: the page's ids first, then their rows. Asking for every column at once makes DuckDB decode the
    # geometry of every row of the collection before the top-N cut (bench/api_bench.py: 120–290 ms for 100 pipes
    # of 1M assets); sorting ids alone and fetching 101 rows by id costs a fraction of that, in PostGIS as well.
    order_by = ", ".join([*order_sql, "id"])
    page = f"SELECT id FROM {db.assets_table} AS assets WHERE {where.sql} ORDER BY {order_by} LIMIT {p} OFFSET {p}"
    ids = db.select(page, [*where.params, *order_params, limit + 1, offset]).column("id")
    if len(ids) == 0:
        return None, False  # most map windows hold nothing: no empty table is built for them
    # the versions of a model as of a date have no key index: the page's condition lets zone maps prune the lookup
    rows = _rows_by_id(db, ids.to_pylist(), within=None if db.as_of_time is None else where)
    # the rows in the page's order (an id the second step no longer finds was deleted in between: left out)
    position = pc.index_in(ids, value_set=rows.column("id"))
    ordered = as_schema(rows.take(position.drop_null()), ASSET_SCHEMA)
    return AssetBatch(ordered.slice(0, limit)), len(ids) > limit


def _rows_by_id(db: SqlStore, keys: list[Any], *, within: Where | None = None) -> Any:
    """The asset rows of ``keys`` (in no order), among those meeting ``within`` when given."""
    p = db.dialect.param
    columns = db.dialect.select_list()
    also, params = ("", []) if within is None else (f" AND {within.sql}", list(within.params))
    if len(keys) <= ARRAY_IDS:
        return db.select(
            f"SELECT {columns} FROM {db.assets_table} AS assets WHERE id IN ({', '.join([p] * len(keys))}){also}",
            [*keys, *params],
        )
    if p == "%s":  # PostgreSQL: a text[] parameter
        sql = f"SELECT {columns} FROM {db.assets_table} AS assets WHERE id = ANY({p}){also}"
        return db.select(sql, [keys, *params])
    return db.select(
        f"SELECT {columns} FROM {db.assets_table} AS assets SEMI JOIN (SELECT unnest({p}::VARCHAR[]) AS k) ON id = k "
        f"WHERE TRUE{also}",
        [keys, *params],
    )
