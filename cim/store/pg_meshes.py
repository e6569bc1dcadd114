"""Asset meshes in PostgreSQL: :class:`PgMeshStore`, the mesh store of a PostgreSQL store.

A cluster's tile tasks run on machines that never see the machine that ingested, so the meshes of a PostgreSQL store
live in its own database (table ``meshes``, schema step 8), one row per asset as in the DuckDB mesh file
(:mod:`cim.store.meshes`). Writes go by binary ``COPY``, the rows encoded column-wise by Arrow (no Python loop per
row or vertex). A replace stages its batches in a temporary table of one transaction: readers see the old meshes
until it commits, and a writer killed meanwhile leaves them (PostgreSQL rolls the transaction back).

Each row keeps ``digest``, the 64-bit hash the DuckDB mesh file computes on the fly (DuckDB's ``hash`` of origin,
vertices, triangles and colour), computed once on write by an in-memory DuckDB over the same Arrow columns: tiles'
content hashes depend on it, so a city tiles to the same bytes on either store.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from cim.errors import InvalidInput, StoreError, StoreUnavailable
from cim.model import MeshBatch
from cim.store.meshes import MeshStore, MeshWriter, group_by_key, mesh_path_for
from cim.store.postgis import CONNECT_TIMEOUT_S, POOL_TIMEOUT_S, _csv_chunks, _parse_url

log = logging.getLogger("cim.store")

_COLUMNS = "asset_id, source, lon, lat, h, vertex_count, triangle_count, vertices, triangles, color"
# The order rows are encoded in for COPY: the fixed-size fields first, so one numpy record holds them all.
_COPY_COLUMNS = "lon, lat, h, vertex_count, triangle_count, digest, color, asset_id, source, vertices, triangles"
_FIXED = np.dtype(
    [
        ("fields", ">i2"),
        ("lon_n", ">i4"), ("lon_v", ">f8"),
        ("lat_n", ">i4"), ("lat_v", ">f8"),
        ("h_n", ">i4"), ("h_v", ">f8"),
        ("vc_n", ">i4"), ("vc_v", ">i4"),
        ("tc_n", ">i4"), ("tc_v", ">i4"),
        ("digest_n", ">i4"), ("digest_v", ">i8"),
    ]
)  # fmt: skip
# float4[4] in PostgreSQL's binary array form: ndim, has-nulls, element type (700 = float4), length, lower bound,
# then each element's length and value
_COLOR = np.dtype([("n", ">i4"), ("head", ">i4", 5), ("items", [("n", ">i4"), ("v", ">f4")], 4)])
_NULL = b"\xff\xff\xff\xff"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
#: Rows encoded and sent per COPY chunk: bounds the memory of a write whatever the batch size.
_ROWS_PER_CHUNK = 10_000
_ARROW_TYPES = {
    "asset_id": pa.string(),
    "source": pa.string(),
    "lon": pa.float64(),
    "lat": pa.float64(),
    "h": pa.float64(),
    "vertex_count": pa.int32(),
    "triangle_count": pa.int32(),
    "vertices": pa.binary(),
    "triangles": pa.binary(),
    "color": pa.list_(pa.float32(), 4),
}
_HASHER = duckdb.connect()  # in memory; each call takes a cursor of its own (threads)


def with_digests(table: pa.Table) -> pa.Table:
    """The mesh rows with ``digest`` as the DuckDB mesh file's :meth:`~cim.store.meshes.MeshStore.digests` gives it
    (an unsigned 64-bit DuckDB ``hash``), computed by DuckDB over the same Arrow columns."""
    cursor = _HASHER.cursor()
    try:
        cursor.register("incoming_meshes", table)
        digests = cursor.execute(
            "SELECT hash(lon, lat, h, vertices, triangles, color) AS digest FROM incoming_meshes"
        ).to_arrow_table()
    finally:
        cursor.close()
    return table.append_column("digest", digests.column("digest"))


def encode_copy_rows(table: pa.Table, source: str | None) -> pa.LargeBinaryArray:
    """Each row of ``table`` (:meth:`MeshBatch.to_table` columns plus ``digest``) as one row of PostgreSQL's binary
    COPY format, in :data:`_COPY_COLUMNS` order; their concatenation is the COPY's body."""
    n = table.num_rows
    fixed = np.zeros(n, _FIXED)
    fixed["fields"] = 11
    for name in ("lon", "lat", "h", "digest"):
        fixed[f"{name}_n"] = 8
    for short, name in (("vc", "vertex_count"), ("tc", "triangle_count")):
        fixed[f"{short}_n"] = 4
        fixed[f"{short}_v"] = table.column(name).to_numpy()
    for name in ("lon", "lat", "h"):
        fixed[f"{name}_v"] = table.column(name).to_numpy()
    fixed["digest_v"] = table.column("digest").to_numpy().view(np.int64)

    color = table.column("color").combine_chunks()
    no_color = np.asarray(color.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    colors = np.zeros(n, _COLOR)
    colors["n"] = _COLOR.itemsize - 4
    colors["head"] = (1, 0, 700, 4, 1)
    colors["items"]["n"] = 4
    if n:
        colors["items"]["v"] = np.nan_to_num(
            np.asarray(color.values.slice(color.offset * 4, n * 4).to_numpy(zero_copy_only=False), np.float32).reshape(
                n, 4
            )
        )
    colors["n"][no_color] = -1
    color_lengths = np.where(no_color, 4, _COLOR.itemsize)
    keep = np.arange(_COLOR.itemsize) < color_lengths[:, None]
    color_bytes = colors.view(np.uint8).reshape(n, _COLOR.itemsize)[keep]
    color_offsets = np.concatenate([[0], np.cumsum(color_lengths)]).astype(np.int64)

    parts: list[pa.Array | pa.Scalar] = [
        _fixed_binary(fixed.tobytes(), _FIXED.itemsize, n),
        pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer(color_offsets.tobytes()), pa.py_buffer(color_bytes.tobytes())]
        ),
    ]
    ids = table.column("asset_id").combine_chunks().cast(pa.large_binary())
    parts += [_length_prefixes(ids), ids]
    encoded_source = b"" if source is None else source.encode()
    parts.append(pa.scalar(_NULL if source is None else struct.pack(">i", len(encoded_source)) + encoded_source))
    for name in ("vertices", "triangles"):
        blobs = table.column(name).combine_chunks().cast(pa.large_binary())
        parts += [_length_prefixes(blobs), blobs]
    parts = [p.cast(pa.large_binary()) for p in parts]
    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))


def _fixed_binary(data: bytes, size: int, n: int) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), n, [None, pa.py_buffer(data)])


def _length_prefixes(values: pa.Array) -> pa.Array:
    """Each value's length in bytes as a 4-byte big-endian field length."""
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(">i4")
    return _fixed_binary(lengths.tobytes(), 4, len(values))


def _copy_body(rows: pa.LargeBinaryArray) -> memoryview:
    offsets = np.frombuffer(rows.buffers()[1], np.int64)[rows.offset : rows.offset + len(rows) + 1]
    return memoryview(rows.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


class PgMeshWriter(MeshWriter):
    """Stages mesh batches of one :meth:`PgMeshStore.replacing` block in a temporary table of the block's transaction
    (PostgreSQL keeps them on disk: memory stays bounded however large the source). A subclass of the DuckDB
    writer for the type checker: it overrides all it has."""

    def __init__(self, con: psycopg.Connection[Any], source: str) -> None:
        self._pg = con
        self._source = source
        self.written = 0
        self.prepared = False
        con.execute(
            "CREATE TEMP TABLE cim_mesh_stage (LIKE meshes, seq bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP"
        )

    def add(self, batch: MeshBatch) -> None:
        if self.prepared:
            raise RuntimeError("PgMeshWriter.add after prepare: the staged meshes were already put in place")
        if not len(batch):
            return
        copy_table(self._pg, "cim_mesh_stage", batch.to_table(self._source), self._source)
        self.written += len(batch)

    def prepare(self) -> None:
        """Put the staged meshes in place inside the block's transaction, for its end to commit (as
        :meth:`cim.store.meshes.MeshWriter.prepare`)."""
        self.prepared = True
        try:
            self._pg.execute(
                "DELETE FROM meshes WHERE source = %s OR asset_id IN (SELECT asset_id FROM cim_mesh_stage)",
                [self._source],
            )
            # an asset staged twice keeps its last mesh, as the store keeps an asset's last row
            self._pg.execute(
                f"INSERT INTO meshes ({_COLUMNS}, digest) SELECT DISTINCT ON (asset_id) {_COLUMNS}, digest "
                "FROM cim_mesh_stage ORDER BY asset_id, seq DESC"
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"meshes of source {self._source!r}", f"could not be saved, nothing was written: {_first_line(exc)}"
            ) from None


def copy_table(con: psycopg.Connection[Any], target: str, table: pa.Table, source: str | None) -> None:
    """COPY mesh rows (:meth:`MeshBatch.to_table` columns) into ``target``, their digests computed on the way."""
    for offset in range(0, table.num_rows, _ROWS_PER_CHUNK):
        chunk = with_digests(table.slice(offset, _ROWS_PER_CHUNK))
        with con.cursor().copy(f"COPY {target} ({_COPY_COLUMNS}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(_COPY_HEADER)
            copy.write(_copy_body(encode_copy_rows(chunk, source)))
            copy.write(_COPY_TRAILER)


class PgMeshStore(MeshStore):
    """The meshes of the PostgreSQL store at ``store_url``, with the interface of
    :class:`~cim.store.meshes.MeshStore`. It subclasses it so that code typed against the mesh file (tiling) takes
    it too, and overrides every method that reads or writes (``replace_source`` is inherited: it calls
    :meth:`replacing`); it shares no state with it. ``read_only`` sessions refuse writes (PostgreSQL's
    ``default_transaction_read_only``); many may read at once, on any machine that reaches the database."""

    def __init__(self, store_url: str, *, read_only: bool = False, pool_size: int = 4) -> None:
        self._url = store_url
        self._conninfo, self._schema, self._display = _parse_url(store_url)
        self.refuses_writes = self.read_only = read_only
        #: The local file a release before schema step 8 kept the meshes in (and beside which run state is kept).
        self.path = mesh_path_for(self._display)
        try:
            with psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as con:
                self._configure(con)
                missing = not con.execute("SELECT to_regclass('meshes') IS NOT NULL").fetchone()[0]  # type: ignore[index]
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"meshes in PostgreSQL at {self._display}", f"cannot be read: {_first_line(exc)}"
            ) from None
        if missing:  # a store of an earlier schema: opening it upgrades it (schema step 8 makes the table)
            from cim.store import open_store

            open_store(store_url).close()
        self._copy_legacy_file()  # a reader's open too: a first build after the upgrade finds the meshes
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            min_size=1,
            max_size=pool_size,
            configure=self._configure,
            timeout=POOL_TIMEOUT_S,
            name=f"cim-meshes-{self._schema}",
            open=True,
        )

    @property
    def shared_reads(self) -> bool:
        """Always: any number of sessions, on any machine that reaches the database, read while one writes."""
        return True

    @property
    def location(self) -> str:
        """Where a worker opens these meshes (:func:`cim.store.meshes.open_mesh_reader`): the store URL as given,
        credentials included — never show it to a user."""
        return self._url

    def _configure(self, con: psycopg.Connection[Any]) -> None:
        con.execute("SET jit = off")
        con.execute("SET max_parallel_workers_per_gather = 0")
        con.execute("SET statement_timeout = 0")  # a city's meshes take minutes to write
        con.execute(pgsql.SQL("SET search_path TO {}, public").format(pgsql.Identifier(self._schema)))
        if self.refuses_writes:
            con.execute("SET default_transaction_read_only = on")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as con:
                yield con
        except PoolTimeout:
            raise StoreUnavailable(f"meshes in PostgreSQL at {self._display}", "no connection could be made") from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"meshes in PostgreSQL at {self._display}", _first_line(exc)) from None

    def _copy_legacy_file(self) -> None:
        """Copy the meshes of the local mesh file a release before schema step 8 wrote, once: when the table is
        empty and the file is on this machine. An advisory lock makes two processes opening at once copy once."""
        if not self.path.is_file():
            return
        with (
            psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as con,
            con.transaction(),
        ):
            con.execute(pgsql.SQL("SET LOCAL search_path TO {}, public").format(pgsql.Identifier(self._schema)))
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"cim-meshes:{self._schema}"])
            if con.execute("SELECT EXISTS (SELECT 1 FROM meshes)").fetchone()[0]:  # type: ignore[index]
                return
            try:
                legacy = MeshStore(self.path, read_only=True)
            except (StoreUnavailable, duckdb.Error) as exc:  # held by a writer of this process, or not DuckDB's
                log.warning("meshes of %s: the old mesh file %s was not copied in (%s)", self._display, self.path, exc)
                return
            copied = 0
            with legacy:
                for table in legacy.scan():
                    for source in pc.unique(table.column("source")).to_pylist():
                        rows = table.filter(
                            pc.is_null(table.column("source"))
                            if source is None
                            else pc.equal(table.column("source"), source)
                        )
                        copy_table(con, "meshes", rows, source)
                        copied += rows.num_rows
            log.warning(
                "meshes of %s: copied %d meshes from the old mesh file %s into the database (once; the file is "
                "no longer read)",
                self._display,
                copied,
                self.path,
            )

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def replacing(self, source: str) -> Iterator[PgMeshWriter]:
        """Replace the meshes of ``source`` by what the writer receives, in one transaction when the block ends (an
        id another source had moves to this one); none of them if the block raises or the process dies."""
        with self._connection() as con:
            try:
                with con.transaction():
                    writer = PgMeshWriter(con, source)
                    yield writer
                    if not writer.prepared:
                        writer.prepare()
            except psycopg.Error as exc:
                raise StoreError(
                    f"meshes of source {source!r}", f"could not be saved, nothing was written: {_first_line(exc)}"
                ) from None

    def add(self, source: str, batch: MeshBatch) -> int:
        """Insert or replace these meshes (by asset id) under ``source``, keeping the source's other meshes."""
        if not len(batch):
            return 0
        with self._connection() as con, con.transaction():
            con.execute("CREATE TEMP TABLE cim_mesh_add (LIKE meshes) ON COMMIT DROP")
            copy_table(con, "cim_mesh_add", batch.to_table(source), source)
            con.execute("DELETE FROM meshes WHERE asset_id IN (SELECT asset_id FROM cim_mesh_add)")
            con.execute("INSERT INTO meshes SELECT DISTINCT ON (asset_id) * FROM cim_mesh_add")
        return len(batch)

    def delete(self, *, ids: Sequence[str] | None = None, source: str | None = None) -> int:
        if ids is None and source is None:
            raise InvalidInput("mesh delete", "give ids, a source, or both")
        clauses: list[str] = ["TRUE"]
        params: list[object] = []
        if ids is not None:
            clauses.append("asset_id = ANY(%s::text[])")
            params.append(list(ids))
        if source is not None:
            clauses.append("source = %s")
            params.append(source)
        with self._connection() as con:
            return con.execute(f"DELETE FROM meshes WHERE {' AND '.join(clauses)}", params).rowcount

    def count(self) -> int:
        with self._connection() as con:
            return int(con.execute("SELECT count(*) FROM meshes").fetchone()[0])  # type: ignore[index]

    def digests(self) -> pa.Table:
        """As :meth:`MeshStore.digests`: ``asset_id``, ``lon``/``lat``/``h``, the counts and ``digest`` (uint64)."""
        names = ["asset_id", "lon", "lat", "h", "vertex_count", "triangle_count", "digest"]
        buffer = bytearray()
        # CSV read by Arrow: a million rows without a Python object each (float8 prints exactly since PG 12)
        query = f"COPY (SELECT {', '.join(names)} FROM meshes) TO STDOUT (FORMAT csv)"
        with self._connection() as con, con.cursor() as cur, cur.copy(query) as copy:
            for data in copy:
                buffer += data
        types = {**{n: _ARROW_TYPES[n] for n in names[:-1]}, "digest": pa.int64()}
        if not buffer:  # Arrow reads no empty CSV
            return pa.table({n: pa.array([], types[n]) for n in names[:-1]} | {"digest": pa.array([], pa.uint64())})
        table = pacsv.read_csv(
            pa.py_buffer(bytes(buffer)),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
        digest = table.column("digest").combine_chunks().to_numpy().view(np.uint64)
        return table.set_column(names.index("digest"), "digest", pa.array(digest))

    def get(self, asset_ids: Sequence[str]) -> MeshBatch:
        """The meshes of these assets that exist, in the order given."""
        return MeshBatch.from_table(self.get_table(asset_ids))

    def get_table(self, asset_ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Table:
        """As :meth:`MeshStore.get_table`: the rows of these assets' meshes that exist, in the order given."""
        ids = asset_ids.to_pylist() if isinstance(asset_ids, pa.Array | pa.ChunkedArray) else list(asset_ids)
        if any(not isinstance(i, str) for i in ids):
            raise InvalidInput("mesh asset ids", "must be strings")
        tables = []
        with self._connection() as con, con.cursor(binary=True) as cur:
            for lo in range(0, len(ids), _IDS_PER_READ):
                cur.execute(_READ_COLUMNS, [ids[lo : lo + _IDS_PER_READ]])
                row = cur.fetchone()
                tables.append(_columns_to_arrow(row))
        return pa.concat_tables(tables) if tables else _to_arrow([])

    def iter_grouped(self, keys: pa.Table, *, rows_per_fetch: int = 20_000) -> Iterator[tuple[int, MeshBatch]]:
        """As :meth:`MeshStore.iter_grouped`: meshes grouped by the integer ``key`` of each ``asset_id``, in key
        order, streamed from a server-side cursor (memory holds one group plus one fetch)."""
        with self._connection() as con, con.transaction():
            con.execute("CREATE TEMP TABLE cim_mesh_keys (asset_id text, key bigint) ON COMMIT DROP")
            with con.cursor().copy("COPY cim_mesh_keys (asset_id, key) FROM STDIN (FORMAT csv)") as copy:
                for chunk in _csv_chunks(keys.select(["asset_id", "key"])):
                    copy.write(chunk)
            with con.cursor(name="cim_mesh_groups", binary=True) as cur:
                cur.execute(
                    f"SELECT k.key, {', '.join(f'm.{c}' for c in _COLUMNS.split(', '))} FROM meshes m "
                    "JOIN cim_mesh_keys k USING (asset_id) ORDER BY k.key, m.asset_id"
                )
                tables = (
                    _to_arrow([row[1:] for row in rows], keys=[row[0] for row in rows])
                    for rows in _fetches(cur, rows_per_fetch)
                )
                yield from group_by_key(tables)


# One row of whole columns, each packed into a bytea in the order asked (ord): Arrow takes them with np.frombuffer,
# where a row per mesh made a Python tuple and objects each (measured in bench/mesh_store_bench.py).
_READ_COLUMNS = """
SELECT array_agg(m.asset_id ORDER BY w.ord), array_agg(m.source ORDER BY w.ord),
  string_agg(float8send(m.lon) || float8send(m.lat) || float8send(m.h), '' ORDER BY w.ord),
  string_agg(int4send(m.vertex_count) || int4send(m.triangle_count), '' ORDER BY w.ord),
  string_agg(int4send(octet_length(m.vertices)) || int4send(octet_length(m.triangles)), '' ORDER BY w.ord),
  string_agg(m.vertices, '' ORDER BY w.ord), string_agg(m.triangles, '' ORDER BY w.ord),
  string_agg(CASE WHEN m.color IS NULL THEN '\\x00000000000000000000000000000000'::bytea ELSE float4send(m.color[1])
    || float4send(m.color[2]) || float4send(m.color[3]) || float4send(m.color[4]) END, '' ORDER BY w.ord),
  string_agg(CASE WHEN m.color IS NULL THEN '\\x00'::bytea ELSE '\\x01'::bytea END, '' ORDER BY w.ord)
FROM unnest(%s::text[]) WITH ORDINALITY AS w(asset_id, ord) JOIN meshes m USING (asset_id)
"""
#: Ids per read: a read's blobs go in one bytea value (at most 1 GB in PostgreSQL).
_IDS_PER_READ = 20_000


def _columns_to_arrow(row: tuple[Any, ...] | None) -> pa.Table:
    """:data:`_READ_COLUMNS`'s row as the DuckDB mesh file's Arrow table (same names, types and order)."""
    if row is None or row[0] is None:
        return _to_arrow([])
    ids, sources, origins, counts, lengths, vertices, triangles, colors, has_color = row
    n = len(ids)
    origin = np.frombuffer(origins, ">f8").reshape(n, 3).astype(np.float64)
    count = np.frombuffer(counts, ">i4").reshape(n, 2).astype(np.int32)
    length = np.frombuffer(lengths, ">i4").reshape(n, 2).astype(np.int64)
    blobs = []
    for k, data in enumerate((vertices, triangles)):
        offsets = np.concatenate([[0], np.cumsum(length[:, k])]).astype(np.int64)
        large = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )
        blobs.append(large.cast(pa.binary()))
    mask = np.frombuffer(has_color, np.uint8) == 0
    values = pa.array(np.frombuffer(colors, ">f4").astype(np.float32))
    return pa.table(
        {
            "asset_id": pa.array(ids, pa.string()),
            "source": pa.array(sources, pa.string()),
            "lon": origin[:, 0],
            "lat": origin[:, 1],
            "h": origin[:, 2],
            "vertex_count": count[:, 0],
            "triangle_count": count[:, 1],
            "vertices": blobs[0],
            "triangles": blobs[1],
            "color": pa.FixedSizeListArray.from_arrays(values, 4, mask=pa.array(mask)),
        }
    )


def _fetches(cur: psycopg.Cursor[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cur.fetchmany(size):
        yield rows


def _to_arrow(rows: list[tuple[Any, ...]], keys: list[int] | None = None) -> pa.Table:
    """Fetched mesh rows as the DuckDB mesh file's Arrow table (same names, types and order)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in _ARROW_TYPES]
    table = pa.table(
        {
            name: pa.array(
                [None if v is None else bytes(v) for v in values] if pa.types.is_binary(kind) else values, kind
            )
            for (name, kind), values in zip(_ARROW_TYPES.items(), columns, strict=True)
        }
    )
    return table if keys is None else table.add_column(0, "key", pa.array(keys, pa.int64()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
