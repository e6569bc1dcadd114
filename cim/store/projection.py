"""The tiling reads (:mod:`cim.tiling.assets`): the plain columns and bounding boxes of the assets of some kinds,
and a hash of each row where the backend offers one (:meth:`~cim.store.sql.Dialect.row_hash`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import shapely

from cim.model import Kind
from cim.model.schema import ASSET_SCHEMA
from cim.store.base import AssetQuery, Store
from cim.store.schema import BBOX_COLUMNS
from cim.store.sqlstore import SqlStore


def hashes_rows(store: Store) -> bool:
    """Whether ``store`` gives a hash of each asset row (a DuckDB store), so a rebuild can find changed rows."""
    return isinstance(store, SqlStore) and store.dialect.row_hash(()) is not None


def read_projection(
    store: Store, *, columns: Sequence[str], kinds: Collection[Kind], ids: pa.Array | pa.ChunkedArray | None = None
) -> pa.Table:
    """``columns`` and the bounding-box columns of the assets of ``kinds`` (or those of ``ids`` among them),
    ordered by id, with ``row_hash`` (of those columns) where :func:`hashes_rows`.

    One projection query in a SQL store (no geometry decoding: the store's bounding-box columns), but for a list of
    ids in a store whose dialect cannot take the list as one parameter; there, and in other stores, the bounding
    boxes are computed from the geometries of :meth:`~cim.store.base.Store.find_batch`."""
    if isinstance(store, SqlStore) and (ids is None or hashes_rows(store)):
        listed = ", ".join(f"'{k}'" for k in sorted(k.value for k in kinds))  # enum values, not user input
        hashed = store.dialect.row_hash([*columns, *BBOX_COLUMNS])
        wanted, params = "", []
        if ids is not None:
            wanted, params = " AND id IN (SELECT unnest(?))", [ids.to_pylist()]  # the DuckDB dialect
        return _typed(
            store.select(
                f"SELECT {', '.join([*columns, *BBOX_COLUMNS])}{'' if hashed is None else f', {hashed} AS row_hash'} "
                f"FROM {store.assets_table} AS assets WHERE kind IN ({listed}){wanted} ORDER BY id",
                params,
            )
        )
    batch = store.find_batch(AssetQuery(kinds=list(kinds), ids=None if ids is None else ids.to_pylist()))
    bounds = shapely.bounds(batch.geometries())
    table = batch.table.select(list(columns))
    for i, name in enumerate(BBOX_COLUMNS):
        table = table.append_column(name, pa.array(bounds[:, i]))
    return table.take(pc.sort_indices(table, [("id", "ascending")]))


def _typed(table: pa.Table) -> pa.Table:
    """``table`` with each asset column in its schema type. A PostgreSQL answer types a column by its values, so
    a column empty in every row came back as Arrow's null type: the tiling could not read it (``source``), and a
    tile's hash changed with the first value such a column got."""
    types = {**{f.name: f.type for f in ASSET_SCHEMA}, **dict.fromkeys(BBOX_COLUMNS, pa.float64())}
    for i, name in enumerate(table.column_names):
        if name in types and table.schema.field(i).type != types[name]:
            table = table.set_column(i, name, table.column(i).cast(types[name]))
    return table


def row_hashes(store: Store, *, columns: Sequence[str], kinds: Collection[Kind]) -> pa.Table:
    """``id`` and ``row_hash`` (as :func:`read_projection` gives it) of the assets of ``kinds``, ordered by id;
    only where :func:`hashes_rows`."""
    assert isinstance(store, SqlStore), "only where hashes_rows(store)"
    listed = ", ".join(f"'{k}'" for k in sorted(k.value for k in kinds))
    hashed = store.dialect.row_hash([*columns, *BBOX_COLUMNS])
    return store.select(
        f"SELECT id, {hashed} AS row_hash FROM {store.assets_table} AS assets WHERE kind IN ({listed}) ORDER BY id"
    )
