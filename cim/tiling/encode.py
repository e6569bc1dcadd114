"""Encoding a build's tiles: runs of consecutive tiles (:data:`CHUNK_ASSETS` assets at most) are tasks on a Dask
distributed cluster (:mod:`cim.tiling.cluster`). A task carries its tiles' property rows (compact Arrow) and the
meshes' location; the worker fetches the run's meshes in one query (:func:`~cim.store.meshes.open_mesh_reader`,
opened once per worker), writes one glb per tile (:mod:`cim.tiling.glb`, compressed by :mod:`cim.tiling.compress`
when the build asks) under a temporary name renamed into place, and returns what the tileset and manifest need. A
task rerun (it raised, or its worker died) writes the same bytes again. Unchanged tiles are hard-linked from the
previous version instead. A rebuild of few assets encodes in the calling process through the same function.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from cim.errors import CimError, InvalidInput
from cim.model import MeshBatch
from cim.store.meshes import MeshStore, open_mesh_reader
from cim.tiling.cluster import TASK_RETRIES, encoding_threads
from cim.tiling.compress import compress_glb
from cim.tiling.glb import encode_tile
from cim.tiling.plan import PROPERTY_COLUMNS, Plan, PlannedTile

if TYPE_CHECKING:
    from distributed import Client

Progress = Callable[[int, int], None]

#: Assets per job: a job is a run of consecutive tiles whose meshes one query fetches (a tile larger than this
#: is a job of its own). Bounds what a worker holds: a few MB of meshes for LOD1 buildings.
CHUNK_ASSETS = 100_000
#: Fewer assets than this to encode (an incremental build): encode in this process, starting workers costs more.
IN_PROCESS_ASSETS = 60_000
#: The suffix of a glb being written; what a killed task leaves under it is removed before the build is published.
PART_SUFFIX = ".part"
_ROW_COLUMNS = ("id", "kind", *(c for c in PROPERTY_COLUMNS if c not in ("id", "kind")))


@dataclass
class _Chunk:
    """A job: tiles ``(number, path, origin, lo, hi)`` with rows ``lo:hi`` of ``rows`` (asset id, kind and
    properties, in plan order). Its meshes come as ``meshes`` (fetched by the parent) or the worker reads them from
    ``mesh_location`` (:func:`~cim.store.meshes.open_mesh_reader`, once per worker)."""

    tiles: list[tuple[int, str, tuple[float, float, float], int, int]]
    rows: pa.Table
    mesh_location: str | None = None
    meshes: pa.Table | None = None
    compress: str = "meshopt"


@dataclass
class _Failed:
    """A chunk whose meshes could not be decoded; the parent finds the asset."""

    why: str


#: A worker's mesh readers by location, opened by its first task and kept for the next ones.
_WORKER_MESHES: dict[str, MeshStore] = {}


def _encode_chunk(chunk: _Chunk) -> list[tuple[int, dict[str, Any]]] | _Failed:
    """Worker (or this process): encode and write the chunk's tiles; return per tile what the tileset and manifest
    need."""
    table = chunk.meshes
    if table is None:
        assert chunk.mesh_location is not None
        meshes = _WORKER_MESHES.get(chunk.mesh_location)
        if meshes is None:
            meshes = _WORKER_MESHES[chunk.mesh_location] = open_mesh_reader(chunk.mesh_location)
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
        _write_whole(Path(path), glb)
        info = {
            "bytes": len(glb),
            "features": content.features,
            "box_min": list(content.box_min),
            "box_max": list(content.box_max),
            "degenerate": content.degenerate,
        }
        out.append((number, info))
    return out


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` under a name of this attempt's own, then rename it into place: a task killed half-way leaves
    a part file (removed before publishing), never a torn glb, and a rerun replaces the file with the same bytes."""
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex}{PART_SUFFIX}")
    part.write_bytes(data)
    os.replace(part, path)


def remove_parts(folder: Path) -> None:
    """Remove what tasks killed mid-write left in ``folder`` (they reran and wrote their glbs whole)."""
    for part in folder.rglob(f".*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)


class Encoder:
    """Links unchanged tiles and encodes the others in chunks of consecutive tiles: as tasks on a Dask cluster whose
    workers read their meshes themselves (so this process only plans), or here when few assets changed."""

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

    def run(self, meshes: MeshStore, cluster: Callable[[], Client] | None, *, auto: bool) -> None:
        """Encode what is not reused: on the cluster ``cluster()`` connects to, or here when there is none (or,
        ``auto``, when few assets are to encode); ``cluster`` is only called when the cluster is used."""
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
        if cluster is None or (auto and assets < IN_PROCESS_ASSETS):
            for numbers in self._chunks(todo, CHUNK_ASSETS):  # each query costs a scan of the mesh ids: few
                chunk = self._chunk(numbers)
                chunk.meshes = meshes.get_table(chunk.rows.column("id"))
                self._collect(numbers, _encode_chunk(chunk), meshes)
            return
        self._run_on(cluster(), todo, assets, meshes)
        remove_parts(self.folder)

    def _run_on(self, client: Client, todo: list[int], assets: int, meshes: MeshStore) -> None:
        """Submit the chunks as tasks, at most two per worker thread in flight (memory holds a few chunks whatever
        the size of the city), collecting each as it completes; a failure cancels the rest."""
        from distributed import as_completed

        threads = encoding_threads(client)
        chunks = iter(self._chunks(todo, min(CHUNK_ASSETS, -(-assets // (2 * threads)))))
        own_reads = meshes.shared_reads  # else the mesh file is locked to this process: it reads for the tasks
        build = uuid.uuid4().hex[:12]
        pending: dict[Any, list[int]] = {}  # by task key

        def submit(numbers: list[int]) -> Any:
            chunk = self._chunk(numbers, compact=True)
            if own_reads:
                chunk.mesh_location = meshes.location
            else:
                chunk.meshes = meshes.get_table(chunk.rows.column("id"))
            future = client.submit(
                _encode_chunk, chunk, key=f"cim-encode-{build}-{numbers[0]}", retries=TASK_RETRIES, pure=False
            )
            pending[future.key] = numbers
            return future

        first = [submit(numbers) for numbers in _take(chunks, 2 * threads)]
        running = as_completed(first, loop=client.loop)
        try:
            for future in running:
                self._collect(pending.pop(future.key), future.result(), meshes)
                for numbers in _take(chunks, 1):
                    running.add(submit(numbers))
        except BaseException:
            client.cancel(list(running.futures), force=True)
            raise

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


def _take(items: Iterator[list[int]], count: int) -> list[list[int]]:
    return [item for _, item in zip(range(count), items, strict=False)]


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
