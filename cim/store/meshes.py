"""Asset meshes: a columnar :class:`MeshBatch` and the :class:`MeshStore` file that keeps them beside the store.

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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cim.errors import InvalidInput, StoreError, StoreUnavailable
from cim.model import Mesh

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


@dataclass(frozen=True, slots=True)
class MeshBatch:
    """Meshes of many assets as flat arrays: asset ``i`` owns ``vertices[vertex_offsets[i]:vertex_offsets[i+1]]``
    (float32 ENU metres around ``origins[i]`` = lon, lat, ellipsoidal height) and the triangles
    ``triangles[triangle_offsets[i]:triangle_offsets[i+1]]``, whose indices count from its own first vertex.
    ``colors`` is RGBA in 0…1, NaN where the asset has no colour of its own.

    >>> m = Mesh(asset_id="a", origin=(121.5, 31.2, 0.0), vertices=np.eye(3, dtype=np.float32),
    ...          triangles=np.array([[0, 1, 2]], dtype=np.uint32))
    >>> batch = MeshBatch.from_meshes([m, m])
    >>> len(batch), batch.triangle_offsets.tolist(), batch.to_meshes()[1].triangles.tolist()
    (2, [0, 1, 2], [[0, 1, 2]])
    """

    asset_ids: Sequence[str]
    origins: npt.NDArray[np.float64]
    vertices: npt.NDArray[np.float32]
    vertex_offsets: npt.NDArray[np.int64]
    triangles: npt.NDArray[np.uint32]
    triangle_offsets: npt.NDArray[np.int64]
    colors: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        n = len(self.asset_ids)
        shapes_ok = (
            self.origins.shape == (n, 3)
            and self.vertex_offsets.shape == (n + 1,)
            and self.triangle_offsets.shape == (n + 1,)
            and self.colors.shape == (n, 4)
            and self.vertices.ndim == 2
            and self.vertices.shape[1] == 3
            and self.triangles.ndim == 2
            and self.triangles.shape[1] == 3
            and int(self.vertex_offsets[-1]) == len(self.vertices)
            and int(self.triangle_offsets[-1]) == len(self.triangles)
        )
        if not shapes_ok:
            raise InvalidInput("mesh batch", "arrays and offsets do not agree in length")
        if self.vertices.dtype != np.float32 or self.triangles.dtype != np.uint32:
            raise InvalidInput("mesh batch", "vertices must be float32 and triangles uint32")
        if len(self.triangles):
            counts = np.diff(self.vertex_offsets)
            owner = np.repeat(np.arange(n), np.diff(self.triangle_offsets))
            if bool((self.triangles.max(axis=1) >= counts[owner]).any()):
                raise InvalidInput("mesh batch", "a triangle refers to a vertex its asset does not have")
        if not np.isfinite(self.vertices).all() or not np.isfinite(self.origins).all():
            raise InvalidInput("mesh batch", "vertices and origins must be finite numbers")

    def __len__(self) -> int:
        return len(self.asset_ids)

    @classmethod
    def empty(cls) -> MeshBatch:
        return cls.build([], np.zeros((0, 3)), [], [])

    @classmethod
    def build(
        cls,
        asset_ids: Sequence[str],
        origins: npt.ArrayLike,
        vertices: Sequence[npt.NDArray[np.float32]],
        triangles: Sequence[npt.NDArray[np.uint32]],
        colors: npt.ArrayLike | None = None,
    ) -> MeshBatch:
        """A batch from per-asset arrays (for producers that make one mesh at a time, such as IFC geometry)."""
        n = len(asset_ids)
        vcounts = np.array([len(v) for v in vertices], dtype=np.int64)
        tcounts = np.array([len(t) for t in triangles], dtype=np.int64)
        return cls(
            asset_ids=list(asset_ids),
            origins=np.asarray(origins, dtype=np.float64).reshape(n, 3),
            vertices=np.concatenate(vertices).astype(np.float32, copy=False) if n else np.zeros((0, 3), np.float32),
            vertex_offsets=np.concatenate([[0], np.cumsum(vcounts)]).astype(np.int64),
            triangles=np.concatenate(triangles).astype(np.uint32, copy=False) if n else np.zeros((0, 3), np.uint32),
            triangle_offsets=np.concatenate([[0], np.cumsum(tcounts)]).astype(np.int64),
            colors=(
                np.full((n, 4), np.nan, np.float32)
                if colors is None
                else np.asarray(colors, dtype=np.float32).reshape(n, 4)
            ),
        )

    @classmethod
    def from_meshes(cls, meshes: Sequence[Mesh]) -> MeshBatch:
        return cls.build(
            [m.asset_id for m in meshes],
            [m.origin for m in meshes],
            [m.vertices for m in meshes],
            [m.triangles for m in meshes],
            [m.color if m.color is not None else (np.nan,) * 4 for m in meshes],
        )

    @classmethod
    def concat(cls, batches: Sequence[MeshBatch]) -> MeshBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        v_shift = np.cumsum([0] + [len(b.vertices) for b in batches[:-1]])
        t_shift = np.cumsum([0] + [len(b.triangles) for b in batches[:-1]])
        return cls(
            asset_ids=[i for b in batches for i in b.asset_ids],
            origins=np.concatenate([b.origins for b in batches]),
            vertices=np.concatenate([b.vertices for b in batches]),
            vertex_offsets=np.concatenate(
                [[0]] + [b.vertex_offsets[1:] + s for b, s in zip(batches, v_shift, strict=True)]
            ).astype(np.int64),
            triangles=np.concatenate([b.triangles for b in batches]),
            triangle_offsets=np.concatenate(
                [[0]] + [b.triangle_offsets[1:] + s for b, s in zip(batches, t_shift, strict=True)]
            ).astype(np.int64),
            colors=np.concatenate([b.colors for b in batches]),
        )

    def to_meshes(self) -> list[Mesh]:
        out = []
        for i, asset_id in enumerate(self.asset_ids):
            color = self.colors[i]
            out.append(
                Mesh(
                    asset_id=asset_id,
                    origin=(float(self.origins[i, 0]), float(self.origins[i, 1]), float(self.origins[i, 2])),
                    vertices=self.vertices[self.vertex_offsets[i] : self.vertex_offsets[i + 1]],
                    triangles=self.triangles[self.triangle_offsets[i] : self.triangle_offsets[i + 1]],
                    color=None
                    if np.isnan(color).any()
                    else (float(color[0]), float(color[1]), float(color[2]), float(color[3])),
                )
            )
        return out

    def to_table(self, source: str | None) -> pa.Table:
        """One row per asset, vertices and triangles as blobs sliced straight from the flat arrays (no copy per
        asset)."""
        n = len(self)
        vertex_bytes = pa.py_buffer(np.ascontiguousarray(self.vertices).tobytes())
        triangle_bytes = pa.py_buffer(np.ascontiguousarray(self.triangles).tobytes())
        vertices = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer((self.vertex_offsets * 12).astype(np.int64)), vertex_bytes]
        )
        triangles = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer((self.triangle_offsets * 12).astype(np.int64)), triangle_bytes]
        )
        no_color = np.isnan(self.colors).any(axis=1)
        colors = pa.FixedSizeListArray.from_arrays(
            pa.array(np.nan_to_num(self.colors).ravel()), 4, mask=pa.array(no_color)
        )
        return pa.table(
            {
                "asset_id": pa.array(list(self.asset_ids), pa.string()),
                "source": pa.array([source] * n, pa.string()),
                "lon": self.origins[:, 0],
                "lat": self.origins[:, 1],
                "h": self.origins[:, 2],
                "vertex_count": np.diff(self.vertex_offsets).astype(np.int32),
                "triangle_count": np.diff(self.triangle_offsets).astype(np.int32),
                "vertices": vertices,
                "triangles": triangles,
                "color": colors,
            }
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> MeshBatch:
        """The inverse of :meth:`to_table` (the ``source`` column may be absent)."""
        vertices, vertex_offsets = _unpack_blobs(table.column("vertices"), 12)
        triangles, triangle_offsets = _unpack_blobs(table.column("triangles"), 12)
        color_column = table.column("color").combine_chunks()
        colors = np.full((table.num_rows, 4), np.nan, np.float32)
        if table.num_rows:
            valid = ~np.asarray(color_column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            if valid.any():
                flat = np.asarray(color_column.filter(pa.array(valid)).flatten().to_numpy(), dtype=np.float32)
                colors[valid] = flat.reshape(-1, 4)
        return cls(
            asset_ids=table.column("asset_id").to_pylist(),
            origins=np.stack(
                [table.column(c).to_numpy().astype(np.float64) for c in ("lon", "lat", "h")], axis=-1
            ).reshape(-1, 3),
            vertices=np.frombuffer(vertices, dtype=np.float32).reshape(-1, 3),
            vertex_offsets=vertex_offsets,
            triangles=np.frombuffer(triangles, dtype=np.uint32).reshape(-1, 3),
            triangle_offsets=triangle_offsets,
            colors=colors,
        )


def _unpack_blobs(column: pa.ChunkedArray, item_size: int) -> tuple[bytes, npt.NDArray[np.int64]]:
    """The concatenated bytes of a binary column and the offsets (in items) where each row starts."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_large_binary(array.type):
        array = array.cast(pa.large_binary())
    if len(array) == 0:
        return b"", np.zeros(1, np.int64)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    blob = data.to_pybytes()[start:end] if data is not None else b""
    return blob, ((offsets - start) // item_size).astype(np.int64)


def mesh_path_for(store_url: str) -> Path:
    """Where the meshes of the store at ``store_url`` live: beside a DuckDB file, or under ``data/meshes/`` for a
    PostgreSQL store (one file per database and schema)."""
    scheme, sep, rest = store_url.partition("://")
    if not sep or scheme == "duckdb":
        path = Path(rest if sep else store_url)
        return path.with_name(path.name.removesuffix(".duckdb") + ".meshes.duckdb")
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", rest.split("@")[-1])[:80]
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


class MeshStore:
    """The mesh file of one store. Open read-only to share it between tiling processes.

    >>> import tempfile, os
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

    def _forget_dead_writers(self) -> None:
        """Delete rows staged by another process, which died inside a :meth:`replacing` block: DuckDB lets one
        process at a time open the file for writing, so no other process is writing now (this one's own writers
        are left alone)."""
        self._con.execute(
            "DELETE FROM meshes WHERE token IS NOT NULL AND NOT starts_with(token, ?)", [f"{os.getpid()}-"]
        )

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

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
            pending: list[pa.Table] = []
            current: int | None = None
            for record_batch in reader:
                table = pa.Table.from_batches([record_batch])
                key_column = table.column("key").to_numpy()
                starts = np.flatnonzero(np.diff(key_column)) + 1
                bounds = [0, *starts.tolist(), len(key_column)]
                for lo, hi in itertools.pairwise(bounds):
                    key = int(key_column[lo])
                    if current is not None and key != current:
                        yield current, MeshBatch.from_table(pa.concat_tables(pending))
                        pending = []
                    current = key
                    pending.append(table.slice(lo, hi - lo))
            if current is not None:
                yield current, MeshBatch.from_table(pa.concat_tables(pending))
        finally:
            self._con.unregister("mesh_keys")
