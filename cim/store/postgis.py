"""The server store: PostgreSQL with PostGIS, for concurrent writers and many servers.

The URL is a libpq URL with one addition, ``?schema=NAME``, which keeps one city's tables in their own schema (so
several cities, or test runs, share one database). Batches arrive by ``COPY`` into a temporary table and move into
``assets`` with one ``INSERT … ON CONFLICT``, so a failed batch leaves nothing behind.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely
from psycopg import sql as pgsql
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput, StoreUnavailable
from cim.store.base import BBox
from cim.store.batch import AssetBatch
from cim.store.schema import ASSET_COLUMNS, BBOX_COLUMNS, COLUMN_NAMES, SCHEMA_VERSION
from cim.store.sql import CREATE_ALERTS_TABLE, Dialect, Where
from cim.store.sqlstore import SqlStore

CONNECT_TIMEOUT_S = 5
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Measured on 2 cores: JIT and parallel workers cost more than they give on short queries (533 ms → 10 ms); sorts
# of ~100k rows (the old-lifts answer) spilled to disk at the default 4 MB of work_mem.
_SESSION_SETTINGS = (
    "SET jit = off",
    "SET max_parallel_workers_per_gather = 0",
    "SET TimeZone = 'UTC'",
    "SET work_mem = '64MB'",
)


class PostGISDialect(Dialect):
    param = "%s"

    def column_type(self, name: str) -> str:
        return next(c.postgres for c in ASSET_COLUMNS if c.name == name)

    def geom_as_wkb(self, column: str) -> str:
        return f"ST_AsBinary({column})"

    def props_as_text(self) -> str:
        return "props::text"

    def props_text(self) -> str:
        return "(props ->> %s)"

    def window(self, bbox: BBox, polygon: BaseGeometry | None) -> Where:
        exact = shapely.to_wkb(polygon if polygon is not None else shapely.box(*bbox))
        return Where("ST_Intersects(geom, ST_GeomFromWKB(%s, 4326))", [exact])


class PostGISStore(SqlStore):
    """A store in PostgreSQL + PostGIS at ``url`` (``postgresql://user@host:port/db[?schema=name]``)."""

    def __init__(self, url: str) -> None:
        self._conninfo, self.schema, self._display = _parse_url(url)
        self.dialect = PostGISDialect()
        self._con = self._connect()
        try:
            self._create_schema()
        except Exception:
            self._con.close()
            raise

    @property
    def url(self) -> str:
        return self._display

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            # autocommit: every change opens its own explicit transaction (SqlStore._changing)
            con = psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
            raise StoreUnavailable(f"PostgreSQL at {self._display}", f"does not answer: {reason}") from None
        for statement in _SESSION_SETTINGS:
            con.execute(statement)
        return con

    def _create_schema(self) -> None:
        con = self._con
        with con.transaction():
            try:
                con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            except psycopg.Error as exc:
                raise StoreUnavailable(
                    f"PostGIS on {self._display}",
                    "the extension is not available on the server "
                    f"(on Debian: apt-get install postgresql-15-postgis-3): {exc}",
                ) from None
            schema = pgsql.Identifier(self.schema)
            con.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            con.execute(pgsql.SQL("SET search_path TO {}, public").format(schema))
            con.execute("CREATE TABLE IF NOT EXISTS cim_meta (key TEXT PRIMARY KEY, value TEXT)")
            row = con.execute("SELECT value FROM cim_meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) != SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"store {self._display}", f"has schema version {row[0]}, this cim reads version {SCHEMA_VERSION}"
                )
            con.execute(self.dialect.create_assets_table())
            con.execute("CREATE INDEX IF NOT EXISTS assets_geom ON assets USING GIST (geom)")
            con.execute("CREATE INDEX IF NOT EXISTS assets_parent ON assets (parent_id)")
            con.execute("CREATE INDEX IF NOT EXISTS assets_kind ON assets (kind)")
            con.execute(
                "CREATE TABLE IF NOT EXISTS readings (sensor_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, "
                "value DOUBLE PRECISION, status TEXT)"
            )
            con.execute("CREATE INDEX IF NOT EXISTS readings_sensor_time ON readings (sensor_id, time)")
            con.execute(
                "CREATE TABLE IF NOT EXISTS sensor_state (sensor_id TEXT PRIMARY KEY, "
                "time TIMESTAMPTZ NOT NULL, value DOUBLE PRECISION, status TEXT)"
            )
            con.execute(CREATE_ALERTS_TABLE)
            con.execute("CREATE INDEX IF NOT EXISTS alerts_open ON alerts (closed_at, opened_at)")
            con.execute(
                "INSERT INTO cim_meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING", [str(SCHEMA_VERSION)]
            )

    # --- the backend's part ---
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with self._con.transaction(), self._con.cursor() as cur:
            cur.execute(sql, list(params))
            names = [d.name for d in cur.description or ()]
            rows = cur.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return pa.table({name: _arrow(values) for name, values in zip(names, columns, strict=True)})

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._con.execute(sql, list(params))
        return cur.rowcount

    def _derived(self, name: str) -> None:
        self._con.execute(f"ANALYZE {name}")  # fresh statistics, else the planner guesses the new table's size

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._con.transaction():
            yield

    def _load_assets(self, batch: AssetBatch) -> None:
        con = self._con
        con.execute("CREATE TEMP TABLE IF NOT EXISTS cim_stage (LIKE assets) ON COMMIT DELETE ROWS")
        columns = ", ".join(COLUMN_NAMES)
        with con.cursor().copy(f"COPY cim_stage ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in _csv_chunks(_with_ewkb(batch.table)):
                copy.write(chunk)
        bbox = ", ".join(f"ST_{f}(geom)" for f in ("XMin", "YMin", "XMax", "YMax"))
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*COLUMN_NAMES[1:], *BBOX_COLUMNS))
        con.execute(
            f"INSERT INTO assets ({columns}, {', '.join(BBOX_COLUMNS)}) SELECT {columns}, {bbox} "
            f"FROM cim_stage ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        con.execute("TRUNCATE cim_stage")

    def _load_readings(self, table: pa.Table) -> None:
        con = self._con
        con.execute("CREATE TEMP TABLE IF NOT EXISTS cim_stage_readings (LIKE readings) ON COMMIT DELETE ROWS")
        columns = "sensor_id, time, value, status"
        with con.cursor().copy(f"COPY cim_stage_readings ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in _csv_chunks(table):
                copy.write(chunk)
        con.execute("INSERT INTO readings SELECT * FROM cim_stage_readings")
        con.execute(
            "INSERT INTO sensor_state SELECT DISTINCT ON (sensor_id) sensor_id, time, value, status "
            "FROM cim_stage_readings ORDER BY sensor_id, time DESC "
            "ON CONFLICT (sensor_id) DO UPDATE SET time = excluded.time, value = excluded.value, "
            "status = excluded.status WHERE excluded.time >= sensor_state.time"
        )
        con.execute("TRUNCATE cim_stage_readings")

    def optimize(self) -> None:
        """Order the table by its GiST index and refresh the planner's statistics."""
        with self._changing("clustering assets"):
            self._con.execute("CLUSTER assets USING assets_geom")
        self._con.execute("ANALYZE assets")

    def close(self) -> None:
        self._con.close()


def _parse_url(url: str) -> tuple[str, str, str]:
    """(libpq URL without our ``schema`` parameter, the schema, the URL without password for messages)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    if not _SCHEMA_NAME.match(schema):
        raise InvalidInput(f"store URL parameter schema={schema!r}", "must be a lower-case SQL name")
    conninfo = urlunsplit(parts._replace(query=urlencode(query)))
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1]
    user = netloc[0].split(":", 1)[0] + "@" if len(netloc) == 2 else ""
    display = f"{parts.scheme}://{user}{host}{parts.path}" + (f"?schema={schema}" if schema != "public" else "")
    return conninfo, schema, display


def _with_ewkb(table: pa.Table) -> pa.Table:
    """The batch with its WKB geometry as hex EWKB (SRID 4326), the text form PostGIS reads in COPY."""
    wkb = table.column("geom").to_numpy(zero_copy_only=False)
    geoms = shapely.set_srid(shapely.from_wkb(wkb), 4326)
    hexed = shapely.to_wkb(geoms, hex=True, include_srid=True).astype(object)
    hexed[shapely.is_missing(geoms)] = None
    return table.set_column(table.schema.get_field_index("geom"), "geom", pa.array(hexed, pa.string()))


def _csv_chunks(table: pa.Table, rows: int = 50_000) -> Iterator[bytes]:
    """CSV as PostgreSQL's COPY reads it: nulls unquoted and empty, strings quoted when needed."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for offset in range(0, table.num_rows, rows):
        buffer = io.BytesIO()
        pacsv.write_csv(table.slice(offset, rows), buffer, options)
        yield buffer.getvalue()


def _arrow(values: Sequence[Any]) -> pa.Array:
    if any(isinstance(v, memoryview) for v in values):
        values = [bytes(v) if isinstance(v, memoryview) else v for v in values]
    return pa.array(values)
