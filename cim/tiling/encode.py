"""Encoding a build's tiles: runs of consecutive tiles (:data:`CHUNK_ASSETS` assets at most) go to worker processes,
which fetch the run's meshes from the mesh file in one query each (:meth:`~cim.store.meshes.MeshStore.get_table`;
the file is opened read-only by every worker), write one glb per tile (:mod:`cim.tiling.glb`, compressed by
:mod:`cim.tiling.compress` when the build asks) and return what the tileset and manifest need. Unchanged tiles are
hard-linked from the previous version instead. A rebuild of few assets encodes in the calling process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cim.errors import CimError, InvalidInput
from cim.model import MeshBatch
from cim.store.meshes import MeshStore
from cim.tiling.compress import compress_glb
from cim.tiling.glb import encode_tile
from cim.tiling.plan import PROPERTY_COLUMNS, Plan, PlannedTile

Progress = Callable[[int, int], None]

#: Assets per job: a job is a run of consecutive tiles whose meshes one query fetches (a tile larger than this
#: is a job of its own). Bounds what a worker holds: a few MB of meshes for LOD1 buildings.
CHUNK_ASSETS = 100_000
#: Fewer assets than this to encode (an incremental build): encode in this process, starting workers costs more.
IN_PROCESS_ASSETS = 60_000
_ROW_COLUMNS = ("id", "kind", *(c for c in PROPERTY_COLUMNS if c not in ("id", "kind")))


@dataclass
class _Chunk:
    """A job: tiles ``(number, path, origin, lo, hi)`` with rows ``lo:hi`` of ``rows`` (asset id, kind and
    properties, in plan order). Its meshes come as ``meshes`` (fetched by the parent) or the worker reads them from
    the mesh file at ``mesh_path`` (opened read-only once per worker)."""

    tiles: list[tuple[int, str, tuple[float, float, float], int, int]]
    rows: pa.Table
    mesh_path: str | None = None
    meshes: pa.Table | None = None
    compress: str = "meshopt"


@dataclass
class _Failed:
    """A chunk whose meshes could not be decoded; the parent finds the asset."""

    why: str


_WORKER_MESHES: dict[str, MeshStore] = {}
#: A worker's mesh file connection: one thread (there is a worker per CPU) and a small cache, else each worker
#: keeps the blocks of the whole file it scanned.
_WORKER_DUCKDB: dict[str, str | int] = {"threads": 1, "memory_limit": "300MB"}


def start_pool(workers: int) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    for _ in range(workers):
        pool.submit(_warm_up)  # one process each: spawned on submit while none is idle
    return pool


def _warm_up() -> None:
    """Worker: nothing; unpickling this imported the encoder."""


def _encode_chunk(chunk: _Chunk) -> list[tuple[int, dict[str, Any]]] | _Failed:
    """Worker (or this process): encode and write the chunk's tiles; return per tile what the tileset and manifest
    need."""
    table = chunk.meshes
    if table is None:
        assert chunk.mesh_path is not None
        meshes = _WORKER_MESHES.get(chunk.mesh_path)
        if meshes is None:
            meshes = _WORKER_MESHES[chunk.mesh_path] = MeshStore(
                chunk.mesh_path, read_only=True, settings=_WORKER_DUCKDB
            )
        table = meshes.get_table(chunk.rows.column("id"))
    if table.num_rows != chunk.rows.num_rows:
        return _Failed("the mesh file changed during the build (meshes added or removed); build again")
    out = []
    for number, path, origin, lo, hi in chunk.tiles:
        try:
            batch = MeshBatch.from_table(table.slice(lo, hi - lo))
        except CimError as exc:
            return _Failed(exc.why)
        rows = chunk.rows.slice(lo, hi - lo)
        kinds = rows.column("kind")
        distinct = pc.unique(kinds).to_pylist()
        tables = (
            {str(distinct[0]): rows}
            if len(distinct) == 1
            else {str(k): rows.filter(pc.equal(kinds, k)) for k in distinct}
        )
        content = encode_tile(origin, batch, tables)
        glb = compress_glb(content.glb) if chunk.compress == "meshopt" else content.glb
        Path(path).write_bytes(glb)
        info = {
            "bytes": len(glb),
            "features": content.features,
            "box_min": list(content.box_min),
            "box_max": list(content.box_max),
            "degenerate": content.degenerate,
        }
        out.append((number, info))
    return out


class Encoder:
    """Links unchanged tiles and encodes the others in chunks of consecutive tiles: in worker processes that read
    their meshes from the mesh file themselves (so this process only plans), or here when few assets changed."""

    def __init__(
        self,
        plan: Plan,
        folder: Path,
        previous: dict[str, Any],
        previous_dir: Path | None,
        progress: Progress | None,
        compress: str,
    ) -> None:
        self.plan, self.folder, self.previous, self.previous_dir = plan, folder, previous, previous_dir
        self.progress, self.compress = progress, compress
        self.tiles: dict[str, dict[str, Any]] = {}
        self.written = self.degenerate = self.done = 0

    def run(self, meshes: MeshStore, pool: ProcessPoolExecutor | None, workers: int, *, auto: bool) -> None:
        plan = self.plan
        todo: list[int] = []
        for group in {t.group for t in plan.tiles}:
            (self.folder / group).mkdir(exist_ok=True)
        for number, tile in enumerate(plan.tiles):
            if not self._reuse(tile):
                todo.append(number)
        self._tick(0)
        if not todo:
            return
        assets = sum(plan.tiles[n].hi - plan.tiles[n].lo for n in todo)
        chunks = self._chunks(todo, min(CHUNK_ASSETS, -(-assets // (2 * workers))))
        if pool is None or len(chunks) == 1 or (auto and assets < IN_PROCESS_ASSETS):
            for numbers in self._chunks(todo, CHUNK_ASSETS):  # each query costs a scan of the mesh ids: few
                chunk = self._chunk(numbers)
                chunk.meshes = meshes.get_table(chunk.rows.column("id"))
                self._collect(numbers, _encode_chunk(chunk), meshes)
            return
        own_reads = bool(getattr(meshes, "read_only", False))  # else the file is locked to this process
        pending: dict[Future[Any], list[int]] = {}
        for numbers in chunks:
            chunk = self._chunk(numbers, compact=True)
            if own_reads:
                chunk.mesh_path = str(meshes.path)
            else:
                chunk.meshes = meshes.get_table(chunk.rows.column("id"))
            pending[pool.submit(_encode_chunk, chunk)] = numbers
            if len(pending) >= 2 * workers:
                self._drain(pending, wait(pending, return_when="FIRST_COMPLETED").done, meshes)
        self._drain(pending, wait(pending).done, meshes)

    def _chunks(self, todo: list[int], most: int) -> list[list[int]]:
        """The tiles to encode in runs of at most ``most`` assets (or one tile), in plan order: each run's meshes
        are fetched by one query, which scans the mesh file's ids whatever the run's size, so runs are few."""
        chunks: list[list[int]] = []
        size = most
        for number in todo:
            tile = self.plan.tiles[number]
            n = tile.hi - tile.lo
            if size + n > most:
                chunks.append([])
                size = 0
            chunks[-1].append(number)
            size += n
        return chunks

    def _chunk(self, numbers: list[int], *, compact: bool = False) -> _Chunk:
        """The job of these tiles; ``compact`` copies their rows out of the plan's table (what a worker is sent)."""
        tiles = [self.plan.tiles[n] for n in numbers]
        assets = self.plan.assets
        assets = assets.select([c for c in _ROW_COLUMNS if c in assets.column_names])
        slices, entries, at = [], [], 0
        for n, t in zip(numbers, tiles, strict=True):
            slices.append(assets.slice(t.lo, t.hi - t.lo))
            entries.append((n, str(self.folder / t.group / t.file), t.origin, at, at + t.hi - t.lo))
            at += t.hi - t.lo
        rows = pa.concat_tables(slices)
        if compact:
            rows = pa.Table.from_arrays([pa.concat_arrays(c.chunks) for c in rows.columns], schema=rows.schema)
        return _Chunk(tiles=entries, rows=rows, compress=self.compress)

    def _drain(self, pending: dict[Future[Any], list[int]], done: set[Future[Any]], meshes: MeshStore) -> None:
        for future in done:
            self._collect(pending.pop(future), future.result(), meshes)

    def _reuse(self, tile: PlannedTile) -> bool:
        name = f"{tile.group}/{tile.file}"
        old = self.previous.get(name)
        if not old or old.get("hash") != tile.digest or self.previous_dir is None:
            return False
        source = self.previous_dir / name
        try:
            os.link(source, self.folder / name)
        except FileNotFoundError:
            return False
        except OSError:
            shutil.copyfile(source, self.folder / name)
        self.tiles[name] = old
        self._tick(1)
        return True

    def _collect(
        self, numbers: list[int], results: list[tuple[int, dict[str, Any]]] | _Failed, meshes: MeshStore
    ) -> None:
        if isinstance(results, _Failed):
            raise _unreadable(self.plan, meshes, numbers, results.why)
        for number, result in results:
            tile = self.plan.tiles[number]
            self.degenerate += result.pop("degenerate")
            self.tiles[f"{tile.group}/{tile.file}"] = {"hash": tile.digest, **result}
            self.written += 1
        self._tick(len(results))

    def _tick(self, step: int) -> None:
        self.done += step
        if self.progress is not None:
            self.progress(self.done, len(self.plan.tiles))


def _unreadable(plan: Plan, meshes: MeshStore, numbers: list[int], why: str) -> CimError:
    """The error for tiles whose meshes cannot be decoded, naming the bad asset (found by halving its chunk)."""
    column = plan.assets.column("id")
    ids: list[str] = [
        i for n in numbers for i in column.slice(plan.tiles[n].lo, plan.tiles[n].hi - plan.tiles[n].lo).to_pylist()
    ]
    if not _fails(meshes, ids):
        return InvalidInput("meshes", why)
    while len(ids) > 1:
        half = ids[: len(ids) // 2]
        ids = half if _fails(meshes, half) else ids[len(ids) // 2 :]
    return InvalidInput(f"mesh of asset {ids[0]!r}", f"{why}; re-ingest its source")


def _fails(meshes: MeshStore, ids: list[str]) -> bool:
    try:
        meshes.get(ids)
    except CimError:
        return True
    return False
