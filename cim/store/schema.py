"""The asset table's columns, declared once for both backends and for the columnar batches.

Both stores keep the same table: the typed columns of :class:`cim.model.Asset`, the geometry, and its bounding box
(``min_x`` … ``max_y``). The bounding-box columns are derived by the store on write; they let a window query prune by
plain comparisons, which DuckDB answers from its zone maps far faster than by fetching rows through the R-tree when
a window holds thousands of assets (see bench/store_bench.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    arrow: pa.DataType
    duckdb: str
    postgres: str


ASSET_COLUMNS: tuple[Column, ...] = (
    Column("id", pa.string(), "VARCHAR PRIMARY KEY", "TEXT PRIMARY KEY"),
    Column("kind", pa.string(), "VARCHAR NOT NULL", "TEXT NOT NULL"),
    Column("name", pa.string(), "VARCHAR", "TEXT"),
    Column("parent_id", pa.string(), "VARCHAR", "TEXT"),
    Column("source", pa.string(), "VARCHAR", "TEXT"),
    Column("geom", pa.binary(), "GEOMETRY", "geometry(Geometry, 4326)"),
    Column("z_min", pa.float64(), "DOUBLE", "DOUBLE PRECISION"),
    Column("z_max", pa.float64(), "DOUBLE", "DOUBLE PRECISION"),
    Column("install_date", pa.date32(), "DATE", "DATE"),
    Column("status", pa.string(), "VARCHAR", "TEXT"),
    Column("material", pa.string(), "VARCHAR", "TEXT"),
    Column("height_m", pa.float64(), "DOUBLE", "DOUBLE PRECISION"),
    Column("network", pa.string(), "VARCHAR", "TEXT"),
    Column("diameter_mm", pa.float64(), "DOUBLE", "DOUBLE PRECISION"),
    Column("depth_m", pa.float64(), "DOUBLE", "DOUBLE PRECISION"),
    Column("storeys", pa.int32(), "INTEGER", "INTEGER"),
    Column("props", pa.string(), "JSON", "JSONB"),
)

#: Columns the store derives from ``geom``; not part of a batch.
BBOX_COLUMNS: tuple[str, ...] = ("min_x", "min_y", "max_x", "max_y")

ASSET_SCHEMA = pa.schema([pa.field(c.name, c.arrow) for c in ASSET_COLUMNS])
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in ASSET_COLUMNS)

#: Typed columns a filter may compare by name (``geom`` and ``props`` have their own filters).
FILTERABLE_COLUMNS: frozenset[str] = frozenset(COLUMN_NAMES) - {"geom", "props"}
# The tables themselves, and the schema version, are the numbered steps of cim/store/migrations.
