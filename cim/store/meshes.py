"""Asset meshes: the :class:`MeshStore` file that keeps mesh batches beside the store.

Meshes are bulky (a city's buildings take gigabytes) and only tiling reads them, so they live in a DuckDB file of
their own next to the relational store (``city.duckdb`` → ``city.meshes.duckdb``): one row per asset with its
origin, vertices and triangles as packed little-endian blobs. Producers (GIS shapes, IFC geometry) hand over whole
batches; nothing here loops over vertices in Python.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from cim.errors import InvalidInput, StoreError, StoreUnavailable
from cim.model import MeshBatch
from cim.store import Store, duckdb_path
from cim.store.base import ClosedOnExit

# One row per asset: replacing() deletes an id before writing it again, so no index is needed to keep ids unique
# (an ART primary key made a million-mesh load 40% slower and much larger in memory). A row whose ``token`` is set
# is staged by a MeshWriter and not yet in place: every read keeps to ``token IS NULL`` (_LIVE). Rows staged by a
# process that died before its block ended are deleted when the file is next opened for writing.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meshes (
    asset_id VARCHAR NOT NULL,
    source VARCHAR,
    lon DOUBLE NOT NULL, lat DOUBLE NOT NULL, h DOUBLE NOT NULL,
    vertex_count INTEGER NOT NULL,
    triangle_count INTEGER NOT NULL,
    vertices BLOB NOT NULL,
    triangles BLOB NOT NULL,
    color FLOAT[4],
    token VARCHAR
);
ALTER TABLE meshes ADD COLUMN IF NOT EXISTS token VARCHAR;  -- a file written before staging in place
DROP TABLE IF EXISTS mesh_staging;  -- ... and its old staging table
"""
_LIVE = "token IS NULL"
#: A writing connection's memory cap: DuckDB keeps written blocks cached up to it (default 80% of RAM).
WRITER_MEMORY_LIMIT = "1GB"
_COLUMNS = "asset_id, source, lon, lat, h, vertex_count, triangle_count, vertices, triangles, color"


def mesh_path_for(store_url: str) -> Path:
    """Where the meshes of the store at ``store_url`` live: beside a DuckDB file, or under ``data/meshes/`` for a
    PostgreSQL store (one file per database and schema)."""
    if (path := duckdb_path(store_url)) is not None:
        return path.with_name(path.name.removesuffix(".duckdb") + ".meshes.duckdb")
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", store_url.partition("://")[2].split("@")[-1])[:80]
    digest = hashlib.sha1(store_url.encode()).hexdigest()[:8]
    return Path("data") / "meshes" / f"{readable}-{digest}.duckdb"


class MeshWriter:
    """Stages mesh batches for one :meth:`MeshStore.replacing` block: each batch is committed at once, with the
    block's token, so memory stays bounded however large the source; the block's end puts them in place in one
    transaction by clearing their token, which copies nothing (copying the staged rows into place held them all in
    the transaction's memory: 100,000 meshes, 130 MB)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, token: str) -> None:
        self._con = con
        self._source = source
        self._token = token
        self.written = 0
        self.prepared = False

    def prepare(self) -> None:
        """Put the staged meshes in place in a transaction left open, for the block's end to commit: after the
        last :meth:`add`, a caller that has other work to finish first (the ingest writing its assets) does this
        meanwhile, and only the commit is left for the end."""
        con = self._con
        con.execute("BEGIN TRANSACTION")
        self.prepared = True
        staged = "SELECT asset_id FROM meshes WHERE token = ?"
        last = "SELECT max(rowid) FROM meshes WHERE token = ? GROUP BY asset_id"  # rows are appended in order
        try:
            con.execute(
                f"DELETE FROM meshes WHERE {_LIVE} AND (source = ? OR asset_id IN ({staged}))",
                [self._source, self._token],
            )
            # an asset staged twice keeps its last mesh, as the store keeps an asset's last row
            con.execute(f"DELETE FROM meshes WHERE token = ? AND rowid NOT IN ({last})", [self._token] * 2)
            con.execute("UPDATE meshes SET token = NULL WHERE token = ?", [self._token])
        except duckdb.Error as exc:
            raise StoreError(
                f"meshes of source {self._source!r}", f"could not be saved, nothing was written: {exc}"
            ) from None

    def add(self, batch: MeshBatch) -> None:
        if self.prepared:
            raise RuntimeError("MeshWriter.add after prepare: the staged meshes were already put in place")
        if not len(batch):
            return
        table = batch.to_table(self._source)
        self._con.register("incoming_meshes", table)
        try:
            self._con.execute(
                f"INSERT INTO meshes (token, {_COLUMNS}) SELECT ?, {_COLUMNS} FROM incoming_meshes", [self._token]
            )
        finally:
            self._con.unregister("incoming_meshes")
        self.written += len(batch)


class MeshStore(ClosedOnExit):
    """The mesh file of one store. Open read-only to share it between tiling processes.

    >>> import tempfile, os
    >>> from cim.model import Mesh
    >>> m = Mesh(asset_id="a", origin=(121.5, 31.2, 0.0), vertices=np.eye(3, dtype=np.float32),
    ...          triangles=np.array([[0, 1, 2]], dtype=np.uint32), color=(1.0, 0.0, 0.0, 1.0))
    >>> with MeshStore(os.path.join(tempfile.mkdtemp(), "m.duckdb")) as meshes:
    ...     meshes.replace_source("test", [MeshBatch.from_meshes([m])])
    ...     meshes.get(["a", "nope"]).to_meshes()[0].color
    1
    (1.0, 0.0, 0.0, 1.0)
    """

    def __init__(
        self, path: str | Path, *, read_only: bool = False, settings: dict[str, str | int] | None = None
    ) -> None:
        """``settings``: DuckDB settings for this connection, e.g. ``{"threads": 1, "memory_limit": "300MB"}``."""
        self.path = Path(path)
        self.read_only = read_only  # other processes may then open the file read-only too
        try:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            config: dict[str, str | bool | int | float | list[str]] = dict(settings or {})
            if not read_only:
                config.setdefault("memory_limit", WRITER_MEMORY_LIMIT)
            self._con = duckdb.connect(str(self.path), read_only=read_only, config=config)
            self._con.execute("SET enable_progress_bar = false")
            self._live = _LIVE
            if not read_only:
                self._con.execute(_SCHEMA)
                self._forget_dead_writers()
            elif not self._con.execute(
                "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'meshes' AND column_name = 'token'"
            ).fetchall()[0][0]:
                self._live = "TRUE"  # a file of the earlier layout, read as it is: it staged rows elsewhere
        except duckdb.IOException as exc:
            raise StoreUnavailable(f"mesh file {self.path}", f"cannot be opened: {exc}") from None

    @property
    def location(self) -> str:
        """Where another process opens these meshes for reading (:func:`open_mesh_reader`)."""
        return str(self.path)

    def _forget_dead_writers(self) -> None:
        """Delete rows staged by another process, which died inside a :meth:`replacing` block: DuckDB lets one
        process at a time open the file for writing, so no other process is writing now (this one's own writers
        are left alone)."""
        self._con.execute(
            "DELETE FROM meshes WHERE token IS NOT NULL AND NOT starts_with(token, ?)", [f"{os.getpid()}-"]
        )

    @property
    def shared_reads(self) -> bool:
        """Whether other processes (a build's workers) may open :attr:`location` to read while this one has it: a
        mesh file opened read-only; one opened for writing is locked to this process."""
        return self.read_only

    def scan(self, *, rows_per_fetch: int = 20_000) -> Iterator[pa.Table]:
        """Every mesh row (as :meth:`get_table` gives them), a fetch at a time."""
        reader = self._con.execute(f"SELECT {_COLUMNS} FROM meshes WHERE {self._live}").to_arrow_reader(rows_per_fetch)
        for record_batch in reader:
            yield pa.Table.from_batches([record_batch])

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def replacing(self, source: str) -> Iterator[MeshWriter]:
        """Replace the meshes of ``source`` by what the writer receives: all of them, when the block ends, in one
        transaction (an id another source had moves to this one); none of them if the block raises."""
        con = self._con
        token = f"{os.getpid()}-{uuid.uuid4().hex}"  # the process first: see _forget_dead_writers
        writer = MeshWriter(con, source, token)
        try:
            yield writer
            if not writer.prepared:
                writer.prepare()
            con.execute("COMMIT")  # the staged rows went in the same transaction
        except BaseException as exc:
            if writer.prepared:
                con.execute("ROLLBACK")
            con.execute("DELETE FROM meshes WHERE token = ?", [token])
            if isinstance(exc, duckdb.Error):
                raise StoreError(
                    f"meshes of source {source!r}", f"could not be saved, nothing was written: {exc}"
                ) from None
            raise

    def replace_source(self, source: str, batches: Iterable[MeshBatch]) -> int:
        with self.replacing(source) as writer:
            for batch in batches:
                writer.add(batch)
        return writer.written

    def add(self, source: str, batch: MeshBatch) -> int:
        """Insert or replace these meshes (by asset id) under ``source``, keeping the source's other meshes."""
        table = batch.to_table(source)
        self._con.register("incoming_meshes", table)
        try:
            self._con.execute("BEGIN TRANSACTION")
            try:
                self._con.execute(
                    f"DELETE FROM meshes WHERE {self._live} AND asset_id IN (SELECT asset_id FROM incoming_meshes)"
                )
                self._con.execute(f"INSERT INTO meshes ({_COLUMNS}) SELECT {_COLUMNS} FROM incoming_meshes")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
        finally:
            self._con.unregister("incoming_meshes")
        return len(batch)

    def delete(self, *, ids: Sequence[str] | None = None, source: str | None = None) -> int:
        if ids is None and source is None:
            raise InvalidInput("mesh delete", "give ids, a source, or both")
        clauses: list[str] = [self._live]
        params: list[object] = []
        if ids is not None:
            clauses.append("list_contains(?, asset_id)")
            params.append(list(ids))
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        row = self._con.execute(f"DELETE FROM meshes WHERE {' AND '.join(clauses)} RETURNING 1", params).fetchall()
        return len(row)

    def count(self) -> int:
        row = self._con.execute(f"SELECT count(*) FROM meshes WHERE {self._live}").fetchone()
        return int(row[0]) if row else 0

    def digests(self) -> pa.Table:
        """One row per mesh: ``asset_id``, origin ``lon``/``lat``/``h``, ``vertex_count``, ``triangle_count`` and
        ``digest`` (a 64-bit hash of the whole mesh) — for tiling, to plan tiles and find changed ones without
        reading the blobs into Python."""
        return self._con.execute(
            "SELECT asset_id, lon, lat, h, vertex_count, triangle_count,"
            f" hash(lon, lat, h, vertices, triangles, color) AS digest FROM meshes WHERE {self._live}"
        ).to_arrow_table()

    def get(self, asset_ids: Sequence[str]) -> MeshBatch:
        """The meshes of these assets that exist, in the order given."""
        return MeshBatch.from_table(self.get_table(asset_ids))

    def get_table(self, asset_ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Table:
        """The rows (as :meth:`MeshBatch.to_table` makes them) of these assets' meshes that exist, in the order
        given — not decoded, for callers that decode them a slice at a time (:meth:`MeshBatch.from_table`)."""
        ids = asset_ids if isinstance(asset_ids, pa.Array | pa.ChunkedArray) else pa.array(list(asset_ids), pa.string())
        wanted = pa.table({"asset_id": ids, "ord": np.arange(len(ids))})
        self._con.register("wanted_meshes", wanted)
        try:
            return self._con.execute(
                f"SELECT {_COLUMNS} FROM meshes JOIN wanted_meshes USING (asset_id) WHERE {self._live} ORDER BY ord"
            ).to_arrow_table()
        finally:
            self._con.unregister("wanted_meshes")

    def iter_grouped(self, keys: pa.Table, *, rows_per_fetch: int = 20_000) -> Iterator[tuple[int, MeshBatch]]:
        """Stream meshes grouped by an integer key: ``keys`` has columns ``asset_id`` and ``key`` (e.g. the tile
        each asset goes to); yields ``(key, meshes)`` in key order, each key once. Memory holds one group plus one
        fetch, whatever the number of meshes."""
        self._con.register("mesh_keys", keys)
        try:
            reader = self._con.execute(
                f"SELECT k.key, {_COLUMNS} FROM meshes JOIN mesh_keys k USING (asset_id) WHERE {self._live} "
                "ORDER BY k.key, asset_id"
            ).to_arrow_reader(rows_per_fetch)
            yield from group_by_key(pa.Table.from_batches([record_batch]) for record_batch in reader)
        finally:
            self._con.unregister("mesh_keys")


def group_by_key(tables: Iterable[pa.Table]) -> Iterator[tuple[int, MeshBatch]]:
    """Mesh rows with an integer ``key`` column, sorted by it and fetched a table at a time, as ``(key, meshes)``
    once per key."""
    pending: list[pa.Table] = []
    current: int | None = None
    for table in tables:
        key_column = table.column("key").to_numpy()
        starts = np.flatnonzero(np.diff(key_column)) + 1
        bounds = [0, *starts.tolist(), len(key_column)]
        for lo, hi in itertools.pairwise(bounds):
            if hi == lo:
                continue
            key = int(key_column[lo])
            if current is not None and key != current:
                yield current, MeshBatch.from_table(pa.concat_tables(pending))
                pending = []
            current = key
            pending.append(table.slice(lo, hi - lo))
    if current is not None:
        yield current, MeshBatch.from_table(pa.concat_tables(pending))


#: A tile worker's DuckDB settings: one thread and a small cache each, as the build's processes share the machine.
READER_SETTINGS: dict[str, str | int] = {"threads": 1, "memory_limit": "300MB"}


def open_meshes(store: str | Store, *, read_only: bool = False) -> MeshStore:
    """The meshes of the store (its URL, or the opened store): the mesh file beside a DuckDB store
    (:class:`MeshStore`), the ``meshes`` table of a PostgreSQL store (:class:`~cim.store.pg_meshes.PgMeshStore`)."""
    # an opened PostgreSQL store's url has no password; its connect_url is the one it was opened with
    store_url = store if isinstance(store, str) else str(getattr(store, "connect_url", store.url))
    if duckdb_path(store_url) is not None:
        return MeshStore(mesh_path_for(store_url), read_only=read_only)
    from cim.store.pg_meshes import PgMeshStore

    return PgMeshStore(store_url, read_only=read_only)


def open_mesh_reader(location: str) -> MeshStore:
    """A read-only mesh store from its :attr:`~MeshStore.location` (a mesh file's path or a PostgreSQL store URL):
    how a tile worker, in another process or on another machine, opens the meshes the build was given."""
    if "://" in location and not location.startswith("duckdb://"):
        from cim.store.pg_meshes import PgMeshStore

        return PgMeshStore(location, read_only=True, pool_size=1)
    return MeshStore(location.removeprefix("duckdb://"), read_only=True, settings=READER_SETTINGS)


def has_meshes(store: Store) -> bool:
    """Whether the store has meshes to tile: its mesh file exists (DuckDB) or its mesh table has a row
    (PostgreSQL)."""
    if duckdb_path(store.url) is not None:
        return mesh_path_for(store.url).is_file()
    with open_meshes(store, read_only=True) as meshes:
        return meshes.count() > 0
