"""The embedded store: one DuckDB file with the spatial extension, no server.

The spatial extension is LOADed from the file the PyPI package ``duckdb-extension-spatial`` installs; DuckDB's own
``INSTALL`` would download it, which fails offline. DuckDB lets one process at a time write a file, so a second
writer gets a clear "busy" error instead of DuckDB's lock message.

Inside the process, reads run concurrently: each read takes a cursor no other thread is using (a DuckDB cursor is
a second connection to the same database, with its own snapshot), so a server's request threads never wait for one
another. Changes go through the store's own connection, one transaction at a time under a write lock; a thread
inside a change reads through that connection, so it sees its own uncommitted rows.

Window queries take one of two paths. The R-tree index answers small windows fastest, but it fetches each matching
row on its own, which costs about 25 µs a row; a window holding thousands of assets is answered an order of magnitude
faster by comparing the derived bbox columns, which DuckDB prunes with its zone maps because each batch is written
in Hilbert order (bench/store_bench.py measures both).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from cim.errors import StoreError, StoreTimeout, StoreUnavailable
from cim.model import AssetBatch
from cim.model.schema import COLUMN_NAMES
from cim.store.base import BBox
from cim.store.duckdb_watchdog import Watchdog
from cim.store.history import MERGED, ROLLUP_COLUMNS, ROLLUPS, instant_sql
from cim.store.migrations import MIGRATIONS, Database, Migration, Upgrade, announce, apply, copy_aside, pending
from cim.store.migrations.v007_asset_versions import DUCKDB as V007_DUCKDB
from cim.store.schema import BBOX_COLUMNS
from cim.store.spatial_extension import load_spatial
from cim.store.spatial_extension import spatial_extension_path as spatial_extension_path  # where benches import it
from cim.store.sql import Dialect, Where, bbox_clause
from cim.store.sqlstore import SqlStore

#: Read cursors kept open between reads; more are opened while more threads read at once, and closed after.
MAX_IDLE_CURSORS = 32
#: Longest a read may run (a server's request) before it is interrupted; changes have no limit.
READ_TIMEOUT_S = 60.0
#: Rows per Arrow batch of a result. DuckDB's default (a million) costs a one-row answer 0.45 ms of its ~1.7
#: (a server's asset lookups); a million rows come back as well in batches of this size.
ARROW_BATCH_ROWS = 8192
#: Key lists up to this long are spelled as literals (see DuckDBDialect.key_in).
MAX_LITERAL_KEYS = 64
#: Windows smaller than this share of the table's extent go through the R-tree (see the module docstring).
RTREE_WINDOW_SHARE = 0.0005

# enable_progress_bar: it would print to the user's terminal
_SESSION_SETTINGS = ("SET TimeZone = 'UTC'", "SET enable_progress_bar = false")
_HILBERT_BOUNDS = "{'min_x': -180.0, 'min_y': -90.0, 'max_x': 180.0, 'max_y': 90.0}::BOX_2D"
_DUCKDB_TYPES = {
    "id": "VARCHAR PRIMARY KEY",
    "kind": "VARCHAR NOT NULL",
    "geom": "GEOMETRY",
    "install_date": "DATE",
    "z_min": "DOUBLE",
    "z_max": "DOUBLE",
    "height_m": "DOUBLE",
    "diameter_mm": "DOUBLE",
    "depth_m": "DOUBLE",
    "storeys": "INTEGER",
    "props": "JSON",
}


class DuckDBDialect(Dialect):
    param = "?"
    snapshots_as_of = True

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store

    def column_type(self, name: str) -> str:
        return _DUCKDB_TYPES.get(name, "VARCHAR")

    def geom_as_wkb(self, column: str) -> str:
        return f"ST_AsWKB({column})"

    def props_text(self) -> str:
        return "json_extract_string(props, ?)"

    def props_key(self, key: str) -> str:
        # a JSON Pointer (RFC 6901): a "$." path mis-reads keys with backslashes
        return "/" + key.replace("~", "~0").replace("/", "~1")

    def key_in(self, column: str, keys: Sequence[str]) -> Where:
        """Short key lists are spelled as SQL literals: DuckDB plans a prepared statement before it sees the
        parameters, so ``id = ?`` scans the table while ``id = 'x'`` uses the key's index (a whole asset row by id:
        1.8 → 0.9 ms on the demo city's 100,000 assets)."""
        if len(keys) > MAX_LITERAL_KEYS or any("\x00" in key for key in keys):
            return super().key_in(column, keys)
        return Where(f"{column} IN ({', '.join(_literal(key) for key in keys)})", [])

    def props_value(self, key: str, *, numeric: bool) -> Where:
        # a JSON Pointer, not a "$." path: its only escapes are ~0 and ~1, so every key, whatever quotes,
        # backslashes, dots, brackets or wildcards it holds, names exactly itself
        text = self.props_text()
        return Where(f"TRY_CAST({text} AS DOUBLE)" if numeric else text, [self.props_key(key)])

    def geom_param(self) -> str:
        return "ST_GeomFromWKB(?)"

    def length_m(self, expr: str) -> str:
        return f"ST_Length_Spheroid(ST_FlipCoordinates({expr}))"

    def area_m2(self, expr: str) -> str:
        return f"ST_Area_Spheroid(ST_FlipCoordinates({expr}))"  # lat/lon order, as ST_Length_Spheroid reads

    def distance_m(self, a: str, b: str, *, utm_epsg: int) -> str:
        to_utm = f"'EPSG:4326', 'EPSG:{utm_epsg}', true"
        return f"ST_Distance(ST_Transform({a}, {to_utm}), ST_Transform({b}, {to_utm}))"

    def row_hash(self, columns: Sequence[str]) -> str:
        return f"hash({', '.join(columns)})"

    def version_hash(self, alias: str) -> str:
        return f"CAST(hash({', '.join(f'{alias}.{c}' for c in COLUMN_NAMES)}) AS VARCHAR)"

    def in_list(self, column: str) -> str:
        return f"{column} IN (SELECT unnest(CAST(? AS VARCHAR[])))"

    def quantile(self, expr: str, fraction: float) -> str:
        return f"quantile_cont({expr}, {float(fraction)!r})"

    def window(self, bbox: BBox, polygon: BaseGeometry | None) -> Where:
        west, south, east, north = bbox
        exact = shapely.to_wkb(polygon if polygon is not None else shapely.box(*bbox))
        if self.indexed_assets and self._store.window_share(bbox) < RTREE_WINDOW_SHARE:
            # Written so DuckDB's optimizer picks the R-tree index scan.
            return Where("ST_Intersects(geom, ST_GeomFromWKB(?))", [exact])
        # ST_Force2D hides the column from the R-tree optimizer, so the bbox columns prune instead.
        return Where(
            f"{bbox_clause('?')} AND ST_Intersects(ST_Force2D(geom), ST_GeomFromWKB(?))",
            [west, east, south, north, exact],
        )


class DuckDBStore(SqlStore):
    """The embedded store. ``DuckDBStore(path)`` creates the file (and its folder) when missing.

    >>> import tempfile, pathlib
    >>> with DuckDBStore(pathlib.Path(tempfile.mkdtemp()) / "city.duckdb") as store:
    ...     store.count_by_kind()
    {}
    """

    def __init__(
        self,
        path: str | Path,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        upgrade: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
        spatial: bool = True,
    ) -> None:
        self.path = Path(path)
        # spatial=False: the extension is not loaded (GEOMETRY columns are DuckDB's own since 1.5, so the file opens
        # and its other columns read without it); a schema upgrade loads it (R-tree indexes, ST_ functions)
        self._spatial = spatial
        self.dialect = DuckDBDialect(self)
        self._lock = threading.RLock()  # changes: one transaction at a time, on self._con
        self._local = threading.local()  # whether this thread is inside a change
        self._idle: list[duckdb.DuckDBPyConnection] = []  # read cursors between two reads
        self._cursors_lock = threading.Lock()
        self._closed = False
        self._watchdog = Watchdog(read_timeout_s)
        self._extent_area: float | None = None
        self._con = self._connect()
        try:
            self.schema_upgrade = self._migrate(migrations) if upgrade else None
        except Exception:
            self._con.close()
            raise

    @property
    def url(self) -> str:
        return str(self.path)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.path.is_dir():
            raise StoreUnavailable(f"store {self.path}", "is a directory; give a file path such as city.duckdb")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"store {self.path}", f"cannot create its folder: {exc.strerror}") from None
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreUnavailable(
                    f"store {self.path}",
                    "is busy: another process (a running `cim serve`?) "
                    "has it open; stop it, or use PostGIS for several writers",
                ) from None
            raise StoreUnavailable(f"store {self.path}", f"cannot be opened: {str(exc).splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreUnavailable(f"store {self.path}", f"is not a DuckDB store: {str(exc).splitlines()[0]}") from None
        try:
            if self._spatial:
                load_spatial(con)
            for statement in _SESSION_SETTINGS:
                con.execute(statement)
        except duckdb.Error as exc:
            con.close()
            raise StoreUnavailable(f"store {self.path}", f"cannot be set up: {exc}") from None
        except BaseException:
            con.close()
            raise
        return con

    def _migrate(self, migrations: Sequence[Migration]) -> Upgrade | None:
        """Bring the file to this release's schema (:mod:`cim.store.migrations`) in one transaction; a store
        written by an older release is first copied aside, closed so the copy holds all it has written."""
        current = self.schema_database().version()
        if not pending(f"{self.path}", current, migrations):
            return None
        if not self._spatial:  # migrations create R-tree indexes and read geometries
            self._spatial = True
            load_spatial(self._con)
        backup = None
        if current:
            self._con.close()
            backup = copy_aside(self.path, current)
            self._con = self._connect()
        self._con.begin()
        try:
            done = apply(self.schema_database(), str(self.path), current, migrations, backup=backup)
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()
        announce(done)
        return done

    def schema_database(self) -> Database:
        return Database(self._rows, "duckdb", "main")

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, list(params)).fetchall()

    def _create_asset_indexes(self) -> None:
        self._con.execute("CREATE INDEX IF NOT EXISTS assets_geom ON assets USING RTREE (geom)")
        self._con.execute("CREATE INDEX IF NOT EXISTS assets_parent ON assets (parent_id)")

    # --- the backend's part ---
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        if getattr(self._local, "changing", False):
            return self._con.execute(sql, list(params)).to_arrow_table(ARROW_BATCH_ROWS)
        cursor = self._take_cursor()
        self._watchdog.watch(cursor)
        try:
            return cursor.execute(sql, list(params)).to_arrow_table(ARROW_BATCH_ROWS)
        except duckdb.InterruptException:
            raise StoreTimeout("the query", f"ran longer than {self._watchdog.limit:g} s and was stopped") from None
        finally:
            self._watchdog.forget(cursor)
            self._give_back(cursor)

    def _fetch_batches(self, sql: str, params: Sequence[Any], rows: int) -> Iterator[pa.Table]:
        # a cursor of its own, outside the watchdog: the query runs as long as its reader keeps reading
        cursor = self._take_cursor()
        try:
            for record_batch in cursor.execute(sql, list(params)).to_arrow_reader(rows):
                yield pa.Table.from_batches([record_batch])
        finally:
            self._give_back(cursor)

    def _fetch_rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if getattr(self._local, "changing", False):
            return _dicts(self._con.execute(sql, list(params)))
        cursor = self._take_cursor()
        self._watchdog.watch(cursor)
        try:
            return _dicts(cursor.execute(sql, list(params)))
        except duckdb.InterruptException:
            raise StoreTimeout("the query", f"ran longer than {self._watchdog.limit:g} s and was stopped") from None
        finally:
            self._watchdog.forget(cursor)
            self._give_back(cursor)

    def _take_cursor(self) -> duckdb.DuckDBPyConnection:
        """An idle read cursor, or a new one: as many exist as threads have read at once."""
        with self._cursors_lock:
            if self._closed:
                raise StoreUnavailable(f"store {self.path.name}", "is closed")
            if self._idle:
                return self._idle.pop()
            cursor = self._con.cursor()
        for statement in _SESSION_SETTINGS:  # a cursor is a new session: settings are per session
            cursor.execute(statement)
        return cursor

    def _give_back(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._cursors_lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CURSORS:
                self._idle.append(cursor)
                return
        cursor.close()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            row = self._con.execute(sql, list(params)).fetchone()
        return int(row[0]) if row else -1

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            outer = getattr(self._local, "changing", False)
            self._local.changing = True
            try:
                self._con.begin()
                try:
                    yield
                except BaseException:
                    self._con.rollback()
                    raise
                self._con.commit()
            finally:
                self._local.changing = outer

    def _load_assets(self, batch: AssetBatch) -> None:
        # each geometry is read from WKB once (a subquery column): not again for its bbox and Hilbert key (-8%)
        columns = ["shape" if c == "geom" else (f"{c}::JSON" if c == "props" else c) for c in COLUMN_NAMES]
        bbox = [f"ST_{f}(shape)" for f in ("XMin", "YMin", "XMax", "YMax")]
        self._con.register("cim_batch", batch.table)
        try:
            # replace = delete the ids that are taken, then a plain insert: an insert ... ON CONFLICT keeps 4-5× the
            # memory in an open transaction (8 batches of 5,000 assets: 97 MB against 21), and an ingest writes
            # a whole file's assets in one; the delete costs ~2 ms a batch in a store of a million assets
            self._con.execute("DELETE FROM assets WHERE id IN (SELECT id FROM cim_batch)")
            self._con.execute(
                f"INSERT INTO assets ({', '.join(COLUMN_NAMES + BBOX_COLUMNS)}) "
                f"SELECT {', '.join(columns + bbox)} FROM (SELECT *, ST_GeomFromWKB(geom) AS shape FROM cim_batch) "
                f"ORDER BY ST_Hilbert(shape, {_HILBERT_BOUNDS})"
            )
        finally:
            self._con.unregister("cim_batch")

    def _load_readings(self, table: pa.Table) -> None:
        self._con.register("cim_readings", table)
        try:
            self._con.execute("INSERT INTO readings SELECT sensor_id, time, value, status FROM cim_readings")
            self._con.execute(
                "INSERT INTO sensor_state SELECT sensor_id, time, value, status FROM cim_readings "
                "QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY time DESC) = 1 "
                "ON CONFLICT (sensor_id) DO UPDATE SET time = excluded.time, value = excluded.value, "
                "status = excluded.status WHERE excluded.time >= sensor_state.time"
            )
            self._merge_rollups()
        finally:
            self._con.unregister("cim_readings")

    def _merge_rollups(self) -> None:
        """The batch's minute aggregates, the hours' from those and the days' from those (a batch of fast sensors
        shrinks at each level), each merged into its rollup: rows already there updated, new ones inserted.

        The rollups have no key index (see the schema step), so each merge is a join with the rollup, and a join
        reads the whole rollup unless told where to look: both statements name the batch's range of buckets and of
        sensor ids as constants, which DuckDB checks against each row group's zone maps. A live batch touches the
        newest buckets (the rollups are in time order), a bulk load a block of sensors; without the ranges a load
        of 200M readings slowed batch by batch as its minute rollup grew. New rows go in in (bucket, sensor)
        order, which also compresses better than a MERGE's hash order (2M metered readings: 7.9 → 7.0 bytes a
        reading)."""
        source = "cim_readings"
        for rollup in ROLLUPS:
            stage = f"cim_agg_{rollup.step}"
            select = rollup.aggregate_sql(source) if source == "cim_readings" else rollup.reaggregate_sql(source)
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS {select}")
            first, last, low, high = self._con.execute(
                f"SELECT min(bucket), max(bucket), min(sensor_id), max(sensor_id) FROM {stage}"
            ).fetchone() or (None, None, None, None)
            if first is None:
                break  # an empty batch
            where = f"r.bucket BETWEEN {instant_sql(first)} AND {instant_sql(last)}"
            if "\x00" not in low + high:
                where += f" AND r.sensor_id BETWEEN {_literal(low)} AND {_literal(high)}"
            merged = ", ".join(f"{c} = {e.format(t='r', a='a')}" for c, e in MERGED.items())
            self._con.execute(
                f"UPDATE {rollup.table} r SET {merged} FROM {stage} a "
                f"WHERE r.sensor_id = a.sensor_id AND r.bucket = a.bucket AND {where}"
            )
            self._con.execute(
                f"INSERT INTO {rollup.table} SELECT {', '.join(f'a.{c}' for c in ROLLUP_COLUMNS)} FROM {stage} a "
                f"WHERE NOT EXISTS (SELECT 1 FROM {rollup.table} r WHERE r.sensor_id = a.sensor_id "
                f"AND r.bucket = a.bucket AND {where}) ORDER BY a.bucket, a.sensor_id"
            )
            source = stage
        for rollup in ROLLUPS:
            self._con.execute(f"DROP TABLE IF EXISTS cim_agg_{rollup.step}")

    def _drop_raw_before(self, cutoff: datetime) -> dict[str, int]:
        # one table (no partitions in DuckDB): a delete, which the zone maps on time keep to the old row groups;
        # their space is reused by later inserts and given back to the file system by none (DuckDB does not shrink)
        return {"readings": max(self._execute(f"DELETE FROM readings WHERE time < {instant_sql(cutoff)}"), 0)}

    def _is_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()

    def _changed(self) -> None:
        self._extent_area = None

    def window_share(self, bbox: BBox) -> float:
        """The window's area as a share of the whole table's extent (cached until the next change)."""
        if self._extent_area is None:
            extent = self.extent()
            self._extent_area = 0.0 if extent is None else (extent[2] - extent[0]) * (extent[3] - extent[1])
        if self._extent_area <= 0:
            return 1.0
        return (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) / self._extent_area

    def optimize(self) -> None:
        """Rewrite the asset table by kind, then in Hilbert order: each row group covers one kind (nearly every
        query names one) and a compact area, so the bbox-column path prunes most of them. With kinds mixed, an
        items page of 100 pipes among 1.2M assets read a hundred vectors of geometry (bench/api_bench.py: 30 ms,
        18 ms by kind; buried gas pipes 8 → 7 ms). A new table is swapped in: deleting and re-inserting a million
        keys in place takes DuckDB about 60 s, the swap about 5 s."""
        con = self._con
        with self._changing("reordering assets"):
            con.execute(self.dialect.create_assets_table("assets_sorted"))
            order = f"kind, ST_Hilbert(geom, {_HILBERT_BOUNDS})"
            con.execute(f"INSERT INTO assets_sorted SELECT * FROM assets ORDER BY {order}")
            con.execute("DROP TABLE assets")
            con.execute("ALTER TABLE assets_sorted RENAME TO assets")
            self._create_asset_indexes()
            # the versions in the same order: an as-of query's zone maps prune by kind and bbox as the assets' do
            con.execute(V007_DUCKDB[0].replace("asset_versions", "versions_sorted", 1))
            con.execute(f"INSERT INTO versions_sorted SELECT * FROM asset_versions ORDER BY {order}, id, valid_from")
            con.execute("DROP TABLE asset_versions")
            con.execute("ALTER TABLE versions_sorted RENAME TO asset_versions")

    def close(self) -> None:
        with self._lock, self._cursors_lock:
            self._closed = True
            self._watchdog.stop()
            for cursor in self._idle:
                cursor.close()
            self._idle.clear()
            self._con.close()


def _literal(text: str) -> str:
    """``text`` as a DuckDB string literal: quotes doubled (DuckDB's strings know no backslash escapes)."""
    return "'" + text.replace("'", "''") + "'"


def open_duckdb(path: str | Path) -> DuckDBStore:
    try:
        return DuckDBStore(path)
    except duckdb.Error as exc:
        raise StoreError(f"store {path}", str(exc).splitlines()[0]) from None


def _dicts(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or ()]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
