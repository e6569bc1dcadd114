"""The assets a build tiles, as one Arrow table with the columns the property tables and the quadtree need.

Read by the store (:func:`cim.store.projection.read_projection`: the plain columns and bounding boxes, with no
geometry decoding in a SQL store). Adds ``group`` (:mod:`cim.tiling.groups`), ``install_date`` as ISO text,
``install_year``/``year_built``, ``lift_count`` (buildings) and ``size_m``, the asset's largest extent in metres
(inner quadtree tiles keep the largest assets).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.geodesy import METRES_PER_DEGREE
from cim.store.base import Store
from cim.store.projection import read_projection, row_hashes
from cim.tiling.groups import TILED_KINDS, group_of

COLUMNS = (
    "id",
    "kind",
    "name",
    "parent_id",
    "source",
    "z_min",
    "z_max",
    "install_date",
    "status",
    "material",
    "height_m",
    "network",
    "diameter_mm",
    "depth_m",
    "storeys",
)
#: How far up a lift's parent chain is followed to find its building (lift → space → storey → building → site).
MAX_CHAIN = 8


def read_assets(store: Store, *, ids: pa.Array | pa.ChunkedArray | None = None) -> pa.Table:
    """Every tiled asset of ``store`` (or those of ``ids``) with the derived columns, ordered by id. Given ``ids``,
    ``lift_count`` is not derived (the lifts are not read)."""
    return read_assets_and_hashes(store, ids=ids)[0]


def read_assets_and_hashes(
    store: Store, *, ids: pa.Array | pa.ChunkedArray | None = None
) -> tuple[pa.Table, pa.Table | None]:
    """:func:`read_assets` and, from the same read where
    :func:`~cim.store.projection.hashes_rows`, ``id`` and ``row_hash`` of every row
    read (tiled or not), ordered by id."""
    table = read_projection(store, columns=COLUMNS, kinds=TILED_KINDS, ids=ids)
    hashes = table.select(["id", "row_hash"]) if "row_hash" in table.column_names else None
    table = table.append_column("group", _groups(table))
    table = table.filter(pc.not_equal(table.column("group"), ""))
    return _derive(table), hashes


def read_row_hashes(store: Store) -> pa.Table:
    """``id`` and ``row_hash`` of every asset :func:`read_assets` reads (and of those it leaves out: not tiled),
    ordered by id; only where :func:`~cim.store.projection.hashes_rows`."""
    return row_hashes(store, columns=COLUMNS, kinds=TILED_KINDS)


def _groups(table: pa.Table) -> pa.Array:
    """:func:`~cim.tiling.groups.group_of` decided once per distinct (kind, source), with no Python object per
    row."""
    if not table.num_rows:
        return pa.array([], pa.string())
    pairs = pc.binary_join_element_wise(
        pc.fill_null(table.column("kind"), ""), pc.fill_null(table.column("source"), "None"), "\x00"
    )
    encoded = pairs.combine_chunks().dictionary_encode()
    split = [pair.split("\x00", 1) for pair in encoded.dictionary.to_pylist()]
    decided = group_of([k for k, _ in split], [source for _, source in split])
    return pa.array(decided.tolist(), pa.string()).take(encoded.indices)


def _derive(table: pa.Table) -> pa.Table:
    dates = table.column("install_date")
    years = pc.fill_null(pc.year(dates), 0) if table.num_rows else pa.array([], pa.int64())
    table = table.set_column(table.schema.get_field_index("install_date"), "install_date", dates.cast(pa.string()))
    table = table.append_column("install_year", years)
    table = table.append_column("year_built", years)
    table = table.append_column("lift_count", pa.array(lift_counts(table)))
    return table.append_column("size_m", pa.array(_sizes(table)))


def _floats(table: pa.Table, name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _sizes(table: pa.Table) -> np.ndarray[Any, np.dtype[np.float64]]:
    lat = np.nan_to_num((_floats(table, "min_y") + _floats(table, "max_y")) / 2)
    dx = (_floats(table, "max_x") - _floats(table, "min_x")) * METRES_PER_DEGREE * np.cos(np.radians(lat))
    dy = (_floats(table, "max_y") - _floats(table, "min_y")) * METRES_PER_DEGREE
    dz = _floats(table, "z_max") - _floats(table, "z_min")
    return np.nan_to_num(np.fmax(np.hypot(dx, dy), dz))


def lift_counts(table: pa.Table) -> np.ndarray[Any, np.dtype[np.uint16]]:
    """For each row, how many lifts have it on their parent chain (non-zero only for buildings)."""
    n = table.num_rows
    counts = np.zeros(n, np.int64)
    kinds = np.asarray(table.column("kind").to_numpy(zero_copy_only=False), dtype=object)
    lifts = np.flatnonzero(kinds == "lift")
    if not len(lifts):
        return counts.astype(np.uint16)
    ids = table.column("id")
    parent_row = np.asarray(
        pc.fill_null(pc.index_in(table.column("parent_id"), value_set=ids), -1).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    current = parent_row[lifts]
    for _ in range(MAX_CHAIN):
        alive = current >= 0
        if not alive.any():
            break
        at_building = alive & (kinds[np.where(alive, current, 0)] == "building")
        np.add.at(counts, current[at_building], 1)
        current = np.where(alive & ~at_building, parent_row[np.where(alive, current, 0)], -1)
    return np.minimum(counts, 65534).astype(np.uint16)
