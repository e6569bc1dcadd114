"""The server store: PostgreSQL with PostGIS, for concurrent writers and many servers.

The URL is a libpq URL with one addition, ``?schema=NAME``, which keeps one city's tables in their own schema (so
several cities, or test runs, share one database). Batches arrive by ``COPY`` into a temporary table and move into
``assets`` with one ``INSERT … ON CONFLICT``, so a failed batch leaves nothing behind.

Statements run on connections of a pool (psycopg_pool), so a server's request threads query side by side, and a
change holds one connection for its whole transaction. The pool checks a connection before lending it, so after
the database restarts the dead ones are dropped and new ones made; a read that meets a connection dying under it is
tried once more on another. While the database does not answer, reads and changes fail within
:data:`POOL_TIMEOUT_S` with :class:`~cim.errors.StoreUnavailable`, never hang.
"""

from __future__ import annotations

import io
import re
import select
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput, StoreTimeout, StoreUnavailable
from cim.model import AssetBatch, Reading
from cim.model.schema import ASSET_COLUMNS, COLUMN_NAMES
from cim.store.base import BBox
from cim.store.history import MERGED, ROLLUPS
from cim.store.migrations import MIGRATIONS, Database, Migration, Upgrade, announce, apply, pending
from cim.store.partitions import days_of, drop_partitions_before, make_partitions, wanted_days
from cim.store.schema import BBOX_COLUMNS
from cim.store.sql import Dialect, Where
from cim.store.sqlstore import SqlStore

CONNECT_TIMEOUT_S = 5
_BYTEA_OID = 17
#: Connections the pool keeps at most: a server's request threads beyond this wait for one.
POOL_SIZE = 16
#: Seconds a statement waits for a connection before the store is reported unavailable.
POOL_TIMEOUT_S = 3.0
#: Seconds the pool keeps retrying a connection it lost before it gives up until the next request asks; short, so a
#: database that is back is found within about a second (psycopg_pool doubles its delay between attempts).
RECONNECT_WINDOW_S = 2.0
#: Longest a read may run, in seconds (a server's request); changes lift the limit for their transaction.
READ_TIMEOUT_S = 60.0
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Measured on 2 cores: JIT and parallel workers cost more than they give on short queries (533 ms → 10 ms); sorts
# of ~100k rows (the old-lifts answer) spilled to disk at the default 4 MB of work_mem. psycopg prepares a statement
# run five times, and PostgreSQL then plans it once for any parameters: a page of the 78 buildings over 300 m
# walked the whole primary key (42 ms) where a plan for the values reads the buildings (7 ms).
_SESSION_SETTINGS = (
    "SET jit = off",
    "SET plan_cache_mode = force_custom_plan",
    "SET max_parallel_workers_per_gather = 0",
    "SET TimeZone = 'UTC'",
    "SET work_mem = '64MB'",
)


class PostGISDialect(Dialect):
    near_side_first = True
    param = "%s"
    joins_text_rows = True  # psycopg makes a Python string of each row (65k: 90 ms)

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

    def props_value(self, key: str, *, numeric: bool) -> Where:
        if numeric:
            return Where(
                "(CASE WHEN jsonb_typeof(props -> %s) = 'number' THEN (props ->> %s)::double precision END)",
                [key, key],
            )
        return Where(self.props_text(), [key])

    def geom_param(self) -> str:
        return "ST_GeomFromWKB(%s, 4326)"

    def version_hash(self, alias: str) -> str:
        return f"md5(CAST(ROW({', '.join(f'{alias}.{c}' for c in COLUMN_NAMES)}) AS TEXT))"

    def in_list(self, column: str) -> str:
        return f"{column} = ANY(%s)"

    def point(self, x: str, y: str) -> str:
        return f"ST_SetSRID(ST_MakePoint({x}, {y}), 4326)"

    def length_m(self, expr: str) -> str:
        return f"ST_Length(({expr})::geography)"

    def area_m2(self, expr: str) -> str:
        return f"ST_Area(({expr})::geography)"

    def distance_m(self, a: str, b: str, *, utm_epsg: int) -> str:
        return f"ST_Distance(({a})::geography, ({b})::geography)"

    def near(self, a: str, b: str, dlon: float, dlat: float) -> Where:
        return Where(f"{b}.geom && ST_Expand({a}.geom, %s, %s)", [dlon, dlat])

    def quantile(self, expr: str, fraction: float) -> str:
        return f"percentile_cont({float(fraction)!r}) WITHIN GROUP (ORDER BY {expr})"

    def point_in_bbox(self, bbox: BBox) -> Where:
        # the GiST index on geom; && compares bounding boxes, exact for points (edges included)
        return Where("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)", list(bbox))

    def bytewise(self, expr: str) -> str:
        # PostgreSQL then also skips the locale's collation rules (several times slower to compare)
        return f'{expr} COLLATE "C"'


class PostGISStore(SqlStore):
    """A store in PostgreSQL + PostGIS at ``url`` (``postgresql://user@host:port/db[?schema=name]``)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        read_timeout_s: float = READ_TIMEOUT_S,
        upgrade: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self._conninfo, self.schema, self._display = _parse_url(url)
        #: The URL as given, credentials included, for the mesh store (:func:`cim.store.meshes.open_meshes`).
        self.connect_url = url
        self.read_timeout_s = read_timeout_s
        self.dialect = PostGISDialect()
        self._local = threading.local()  # the connection of the change this thread is in, if any
        self._partition_days: set[date] = set()  # days of readings partitions known to exist (cim.store.partitions)
        self._raw_days: tuple[date, int] | None = None  # (when read, the raw retention in days)
        con = self._connect()  # once directly: a database that is down or lacks PostGIS gets a clear message now
        try:
            self.schema_upgrade = self._migrate(con, migrations, upgrade=upgrade)
        finally:
            con.close()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            min_size=1,
            max_size=pool_size,
            configure=self._configure,
            check=_alive,
            timeout=POOL_TIMEOUT_S,
            reconnect_timeout=RECONNECT_WINDOW_S,
            name=f"cim-{self.schema}",
            open=True,
        )

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
        self._configure(con)
        return con

    def _configure(self, con: psycopg.Connection[Any]) -> None:
        """Each new connection's session: the planner settings and this store's schema first on the path."""
        for statement in _SESSION_SETTINGS:
            con.execute(statement)
        con.execute(f"SET statement_timeout = {round(self.read_timeout_s * 1000)}")
        con.execute(pgsql.SQL("SET search_path TO {}, public").format(pgsql.Identifier(self.schema)))

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection of this thread's change, or one lent by the pool for one statement."""
        current: psycopg.Connection[Any] | None = getattr(self._local, "con", None)
        if current is not None:
            yield current
            return
        try:
            with self._pool.connection() as con:
                yield con
        except PoolTimeout:
            raise _unavailable("no connection could be made") from None

    def _migrate(
        self, con: psycopg.Connection[Any], migrations: Sequence[Migration], *, upgrade: bool
    ) -> Upgrade | None:
        """Bring the schema to this release's version (:mod:`cim.store.migrations`) in one transaction. An advisory
        lock keeps other processes opening the same schema out until it commits: they find it done."""
        db = Database(lambda sql, params: _rows(con, sql, params), "postgres", self.schema)
        with con.transaction():
            con.execute("SET LOCAL statement_timeout = 0")  # a step may rewrite a large table; openers wait for it
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"cim-schema:{self.schema}"])
            current = db.version()
            if not upgrade or not pending(self._display, current, migrations):
                return None
            try:
                con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            except psycopg.Error as exc:
                raise StoreUnavailable(
                    f"PostGIS on {self._display}",
                    "the extension is not available on the server "
                    f"(on Debian: apt-get install postgresql-15-postgis-3): {exc}",
                ) from None
            con.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
            done = apply(db, self._display, current, migrations)
        announce(done)
        return done

    def schema_database(self) -> Database:
        return Database(self._rows, "postgres", self.schema)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connection() as con:
            return _rows(con, sql, params)

    # --- the backend's part ---
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        names, binary, rows = self._run_read(sql, params)
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return pa.table({name: _arrow(values, b) for name, values, b in zip(names, columns, binary, strict=True)})

    def _fetch_batches(self, sql: str, params: Sequence[Any], rows: int) -> Iterator[pa.Table]:
        # a server-side cursor in a transaction of its own connection; no statement time limit for its fetches
        try:
            with self._connection() as con, con.transaction():
                con.execute("SET LOCAL statement_timeout = 0")
                with con.cursor(name="cim_batches") as cur:
                    cur.execute(sql, list(params))
                    described = cur.description or ()
                    names = [d.name for d in described]
                    binary = [d.type_code == _BYTEA_OID for d in described]
                    while fetched := cur.fetchmany(rows):
                        columns = list(zip(*fetched, strict=True))
                        yield pa.table({n: _arrow(v, b) for n, v, b in zip(names, columns, binary, strict=True)})
        except psycopg.OperationalError as exc:
            raise _unavailable(_first_line(exc)) from None

    def _fetch_rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        names, binary, rows = self._run_read(sql, params)
        return [
            {name: bytes(v) if b and v is not None else v for name, v, b in zip(names, row, binary, strict=True)}
            for row in rows
        ]

    def _run_read(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[bool], list[tuple[Any, ...]]]:
        """A read's column names, which of them are ``bytea``, and its rows."""
        inside_change = getattr(self._local, "con", None) is not None
        for attempt in range(2):
            try:
                with self._connection() as con, self._reading(con, inside_change), con.cursor() as cur:
                    cur.execute(sql, list(params))
                    described = cur.description or ()
                    names = [d.name for d in described]
                    binary = [d.type_code == _BYTEA_OID for d in described]
                    rows = cur.fetchall()
                break
            except psycopg.errors.QueryCanceled:
                raise StoreTimeout("the query", f"ran longer than {self.read_timeout_s:g} s and was stopped") from None
            except psycopg.OperationalError as exc:
                # a connection that died under the read (the server restarted): the pool drops it; once more
                if inside_change or attempt:
                    raise _unavailable(_first_line(exc)) from None
        return names, binary, rows

    @staticmethod
    def _reading(con: psycopg.Connection[Any], inside_change: bool) -> AbstractContextManager[Any]:
        """Inside a change, a savepoint (a failed read leaves the change usable); else nothing: the connection is in
        autocommit, so the one statement is its own transaction, without a BEGIN and a COMMIT round trip each
        (an asset by id: 0.93 → 0.74 ms)."""
        return con.transaction() if inside_change else nullcontext()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._connection() as con:
            return con.execute(sql, list(params)).rowcount

    def _derived(self, name: str) -> None:
        self._execute(f"ANALYZE {name}")  # fresh statistics, else the planner guesses the new table's size

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        current: psycopg.Connection[Any] | None = getattr(self._local, "con", None)
        if current is not None:  # a change inside a change: a savepoint
            with current.transaction():
                yield
            return
        with self._connection() as con:
            self._local.con = con
            try:
                with con.transaction():
                    con.execute("SET LOCAL statement_timeout = 0")  # a load may take minutes
                    yield
            finally:
                self._local.con = None

    def _lock_derived(self, stamp_key: str) -> None:
        self._execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{self.schema}.{stamp_key}"])

    def _is_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected)

    def _is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | PoolTimeout)

    def _load_assets(self, batch: AssetBatch) -> None:
        con = self._local.con
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
        con = self._local.con
        self._ensure_partitions(con, table)
        con.execute("CREATE TEMP TABLE IF NOT EXISTS cim_stage_readings (LIKE readings) ON COMMIT DELETE ROWS")
        columns = "sensor_id, time, value, status"
        with con.cursor().copy(f"COPY cim_stage_readings ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in _csv_chunks(table):
                copy.write(chunk)
        # each reading once per (sensor, time): a QoS-1 redelivery or a spool replay after a crash is left out by the
        # anti-join on readings_sensor_time (Mosquitto redelivers to the same session, so one server holds a message
        # at a time), and two servers racing by its unique index (ON CONFLICT). Cost (bench/iot_bench.py --only
        # dedupe, 20,000-reading batches into 2M, a busy 2-core machine): plain INSERT 5-7 µs a reading, this 8-9.5.
        # The rollups take the rows really inserted (RETURNING), so a duplicate is not counted in them either.
        con.execute("CREATE TEMP TABLE IF NOT EXISTS cim_added_readings (LIKE readings) ON COMMIT DELETE ROWS")
        con.execute(
            "WITH added AS (INSERT INTO readings SELECT DISTINCT ON (sensor_id, time) * FROM cim_stage_readings s "
            "WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.sensor_id = s.sensor_id AND r.time = s.time) "
            "ON CONFLICT DO NOTHING RETURNING *) INSERT INTO cim_added_readings SELECT * FROM added"
        )
        con.execute(
            "INSERT INTO sensor_state SELECT DISTINCT ON (sensor_id) sensor_id, time, value, status "
            "FROM cim_stage_readings ORDER BY sensor_id, time DESC "
            "ON CONFLICT (sensor_id) DO UPDATE SET time = excluded.time, value = excluded.value, "
            "status = excluded.status WHERE excluded.time >= sensor_state.time"
        )
        for rollup in ROLLUPS:
            # in key order: two processes merging overlapping batches lock the rows in the same order, no deadlock
            merged = ", ".join(f"{c} = {e.format(t=rollup.table, a='excluded')}" for c, e in MERGED.items())
            con.execute(
                f"INSERT INTO {rollup.table} SELECT * FROM ({rollup.aggregate_sql('cim_added_readings')}) a "
                f"ORDER BY sensor_id, bucket ON CONFLICT (sensor_id, bucket) DO UPDATE SET {merged}"
            )
        con.execute("TRUNCATE cim_stage_readings, cim_added_readings")

    def _ensure_partitions(self, con: psycopg.Connection[Any], table: pa.Table) -> None:
        """The day partitions the batch needs (:mod:`cim.store.partitions`); a set lookup when they are known."""
        now = datetime.now(UTC)
        if self._raw_days is None or now.date() != self._raw_days[0]:
            raw_days = self.retention().raw_days or 36_500
            self._raw_days = (now.date(), raw_days)
        oldest = now.date() - timedelta(days=self._raw_days[1])
        wanted = wanted_days(days_of(table), today=now.date(), oldest=oldest)
        if wanted <= self._partition_days:
            return
        have = make_partitions(con, wanted, lock_key=f"cim-partitions:{self.schema}")
        self._local.partition_days = have  # known once the transaction commits (append_readings)

    def append_readings(self, readings: Sequence[Reading]) -> int:
        return self._known_after(super().append_readings, readings)

    def load_history(self, tables: Iterable[pa.Table]) -> int:
        return self._known_after(super().load_history, tables)

    def _known_after(self, write: Callable[[Any], int], arg: Any) -> int:
        """Run ``write``; the partitions its transactions made become known once they committed."""
        self._local.partition_days = None
        try:
            written = write(arg)
        except BaseException:
            self._local.partition_days = None
            raise
        made: set[date] | None = self._local.partition_days
        if made is not None:
            self._partition_days = self._partition_days | made
        self._local.partition_days = None
        return written

    def _drop_raw_before(self, cutoff: datetime) -> dict[str, int]:
        dropped, have = drop_partitions_before(self._local.con, cutoff)
        self._partition_days = self._partition_days & have
        self._raw_days = None  # read again: the retention may have been changed meanwhile
        return dropped

    def optimize(self) -> None:
        """Order the table by its GiST index and refresh the planner's statistics."""
        with self._changing("clustering assets"):
            self._execute("CLUSTER assets USING assets_geom")
        with self._pool.connection() as con:
            con.execute("SET statement_timeout = 0")
            con.execute("ANALYZE assets")
            con.execute(f"SET statement_timeout = {round(self.read_timeout_s * 1000)}")

    def close(self) -> None:
        self._pool.close()


def _rows(con: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cursor = con.execute(sql, list(params))
    return cursor.fetchall() if cursor.description else []


def _unavailable(reason: str) -> StoreUnavailable:
    """The database did not answer; the message names no host, user or schema (it may reach an HTTP client)."""
    return StoreUnavailable("the PostgreSQL store", f"does not answer ({reason}); try again shortly")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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


def _alive(con: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection before lending it, without a round trip (``check_connection`` sends one:
    a tenth of a loaded server's time on item reads, py-spy under bench/ogc_bench.py). A connection the server
    closed — a restart, a terminated backend — has the server's farewell or the end of the stream waiting on its
    socket; an idle healthy one, in autocommit and listening to nothing, has nothing to read. A false alarm costs one
    new connection."""
    if con.closed or con.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([con.fileno()], [], [], 0)
    if readable:
        con.close()  # closed, the pool discards it (one merely failing the check would be put back)
        raise psycopg.OperationalError("the server closed the connection")


def _csv_chunks(table: pa.Table, rows: int = 50_000) -> Iterator[bytes]:
    """CSV as PostgreSQL's COPY reads it: nulls unquoted and empty, strings quoted when needed."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for offset in range(0, table.num_rows, rows):
        buffer = io.BytesIO()
        pacsv.write_csv(table.slice(offset, rows), buffer, options)
        yield buffer.getvalue()


def _arrow(values: Sequence[Any], binary: bool) -> pa.Array:
    """A column of fetched values as Arrow; psycopg gives ``bytea`` as memoryviews, which Arrow does not take. The
    column type says which columns those are: scanning every value for them cost 14% of a server's time under load
    (py-spy, bench/load_bench.py)."""
    if binary:
        return pa.array([None if v is None else bytes(v) for v in values], pa.binary())
    return pa.array(values)
