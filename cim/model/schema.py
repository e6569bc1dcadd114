"""The asset table's columns, declared once for both store backends and for the columnar batches.

Both stores keep the same table: the typed columns of :class:`cim.model.Asset` and the geometry (as WKB in a batch).
Each column says its Arrow type (the batches) and its SQL type in each backend (the stores).
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

ASSET_SCHEMA = pa.schema([pa.field(c.name, c.arrow) for c in ASSET_COLUMNS])
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in ASSET_COLUMNS)
