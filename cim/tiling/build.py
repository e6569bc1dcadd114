"""Build the city's 3D Tiles from the store: plan, encode in parallel, swap in atomically, skip unchanged tiles.

1. **Plan** (this process): the tiled assets (:mod:`cim.tiling.assets`) joined to the mesh index (origin, sizes,
   a 64-bit digest of each mesh — no mesh is read yet); a quadtree per group; per tile a content hash of its
   metadata rows and mesh digests (:mod:`cim.tiling.plan`).
2. **Encode** (worker processes): meshes stream out of the mesh file grouped by tile
   (:meth:`~cim.store.meshes.MeshStore.iter_grouped`), only for tiles whose hash is not in the previous version;
   each worker writes one glb (:mod:`cim.tiling.glb`). At most ``2 × workers`` tiles are in flight, so memory holds
   a few tiles whatever the size of the city. Unchanged tiles are hard-linked from the previous version.
3. **Publish**: tileset.json files (:mod:`cim.tiling.tileset`) and ``build.json`` (hash, box and size of every
   tile) go into a new version folder ``.<name>.versions/<version>`` beside ``<name>``, which is a symbolic link
   swapped to the new version by one atomic rename. A build that fails or is killed leaves the link on the
   previous, complete version.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.errors import CimError, InvalidInput
from cim.store.base import Store
from cim.store.meshes import MeshBatch, MeshStore
from cim.tiling.assets import read_assets
from cim.tiling.glb import encode_tile
from cim.tiling.plan import FORMAT, Plan, PlannedTile, plan_tiles
from cim.tiling.quadtree import TreeLimits
from cim.tiling.tileset import TileNode, group_tileset, root_tileset, write_json

MANIFEST = "build.json"
Progress = Callable[[int, int], None]


@dataclass
class GroupSummary:
    tiles: int = 0
    features: int = 0
    bytes: int = 0


@dataclass
class BuildSummary:
    """What a build wrote. ``written`` tiles were encoded, ``reused`` linked unchanged from the previous version."""

    path: str
    tilesets: dict[str, GroupSummary]
    seconds: float
    written: int = 0
    reused: int = 0
    without_mesh: int = 0
    without_mesh_examples: list[str] = field(default_factory=list)
    degenerate_triangles: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"tilesets": {group: {"tiles", "features", "bytes"}}, "seconds": …}`` as ``cim build --json`` prints."""
        groups = {g: {"tiles": s.tiles, "features": s.features, "bytes": s.bytes} for g, s in self.tilesets.items()}
        return {"tilesets": groups, "seconds": round(self.seconds, 3)}


def build_tiles(
    store: Store,
    meshes: MeshStore,
    out_dir: str | Path,
    *,
    progress: Progress | None = None,
    limits: TreeLimits | None = None,
    workers: int | None = None,
) -> BuildSummary:
    """Build the tilesets of ``store`` (meshes from ``meshes``) into ``out_dir`` (e.g. ``tiles/city``), swapping the
    new version in only when complete. ``progress(done, total)`` is called per tile; ``workers`` is the number of
    encoding processes (default: one per CPU; 1 encodes in this process)."""
    started = time.perf_counter()
    limits = limits or TreeLimits()
    out = Path(out_dir)
    versions = _check_output(out)
    assets = read_assets(store)
    if not assets.num_rows:
        raise InvalidInput(f"store {store.url}", "holds no assets to tile (buildings, BIM, pipes and nodes, points)")
    assets, missing = _join_meshes(assets, meshes)
    if not assets.num_rows:
        raise InvalidInput(
            f"store {store.url}",
            f"none of its {len(missing)} tiled assets has a mesh in {meshes.path}; ingest them with meshes first",
        )
    plan = plan_tiles(assets, limits)
    previous_dir = out.resolve() if out.is_symlink() else None
    previous = _read_manifest(previous_dir)
    stamp = f"v{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    version = versions / stamp
    partial = versions / f"{stamp}.partial"
    partial.mkdir(parents=True)
    try:
        encoder = _Encoder(plan, partial, previous, previous_dir, progress)
        encoder.run(meshes, workers or os.cpu_count() or 1)
        summary = _publish(partial, plan, encoder.tiles, limits)
        partial.rename(version)
        _swap(out, version)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _clean(versions, keep={version.name, previous_dir.name if previous_dir else ""})
    return BuildSummary(
        path=str(version),
        tilesets=summary,
        seconds=time.perf_counter() - started,
        written=encoder.written,
        reused=len(plan.tiles) - encoder.written,
        without_mesh=len(missing),
        without_mesh_examples=missing[:5],
        degenerate_triangles=encoder.degenerate,
    )


def _check_output(out: Path) -> Path:
    """The versions folder beside ``out``, after checking that ``out`` can become a swapped link."""
    if out.is_symlink():
        if not out.resolve().is_dir():
            raise InvalidInput(f"output {out}", "is a link to something that is not a folder; remove it")
    elif out.is_file():
        raise InvalidInput(f"output {out}", "is a file; give a folder path such as tiles/city")
    elif out.is_dir() and any(out.iterdir()):
        raise InvalidInput(f"output {out}", "is a folder cim build did not write (not a link to a version)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"output {out}", f"its folder cannot be created: {exc.strerror}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"output {out}", f"folder {out.parent} is not writable")
    return out.parent / f".{out.name}.versions"


def _join_meshes(assets: pa.Table, meshes: MeshStore) -> tuple[pa.Table, list[str]]:
    """Assets with their mesh's origin, counts and digest; and the ids of those without a mesh."""
    index = meshes.digests()
    row = pc.index_in(assets.column("id"), value_set=index.column("asset_id"))
    has = pc.is_valid(row)
    missing = pc.filter(assets.column("id"), pc.invert(has)).to_pylist()
    assets = assets.filter(has)
    picked = index.take(pc.filter(row, has))
    for name in ("lon", "lat", "h", "vertex_count", "triangle_count", "digest"):
        assets = assets.append_column(name, picked.column(name))
    return assets, missing


def _read_manifest(folder: Path | None) -> dict[str, Any]:
    if folder is None or not (folder / MANIFEST).is_file():
        return {}
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    tiles: dict[str, Any] = manifest.get("tiles", {}) if manifest.get("format") == FORMAT else {}
    return tiles


@dataclass
class _Job:
    path: str
    origin: tuple[float, float, float]
    meshes: MeshBatch
    tables: dict[str, pa.Table]


def _encode_job(job: _Job) -> dict[str, Any]:
    """Worker: encode and write one tile; return what the tileset and manifest need."""
    content = encode_tile(job.origin, job.meshes, job.tables)
    Path(job.path).write_bytes(content.glb)
    return {
        "bytes": len(content.glb),
        "features": content.features,
        "box_min": list(content.box_min),
        "box_max": list(content.box_max),
        "degenerate": content.degenerate,
    }


class _Encoder:
    """Links unchanged tiles, streams the meshes of the others to worker processes, collects the results."""

    def __init__(
        self, plan: Plan, folder: Path, previous: dict[str, Any], previous_dir: Path | None, progress: Progress | None
    ) -> None:
        self.plan, self.folder, self.previous, self.previous_dir = plan, folder, previous, previous_dir
        self.progress = progress
        self.tiles: dict[str, dict[str, Any]] = {}
        self.written = self.degenerate = self.done = 0

    def run(self, meshes: MeshStore, workers: int) -> None:
        plan = self.plan
        todo: list[int] = []
        for number, tile in enumerate(plan.tiles):
            (self.folder / tile.group).mkdir(exist_ok=True)
            if not self._reuse(tile):
                todo.append(number)
        self._tick(0)
        if not todo:
            return
        ids = plan.assets.column("id")
        rows = np.concatenate([np.arange(plan.tiles[n].lo, plan.tiles[n].hi) for n in todo])
        numbers = np.concatenate([np.full(plan.tiles[n].hi - plan.tiles[n].lo, n) for n in todo])
        keys = pa.table({"asset_id": ids.take(pa.array(rows)), "key": pa.array(numbers, pa.int64())})
        groups = meshes.iter_grouped(keys)
        try:
            self._stream(groups, meshes, workers)
        finally:
            if isinstance(groups, Generator):
                groups.close()  # release the query before the mesh file closes

    def _stream(self, groups: Iterator[tuple[int, MeshBatch]], meshes: MeshStore, workers: int) -> None:
        if workers <= 1:
            for number, batch in self._guarded(groups, meshes):
                self._collect(number, _encode_job(self._job(number, batch)))
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            pending: dict[Future[dict[str, Any]], int] = {}
            for number, batch in self._guarded(groups, meshes):
                pending[pool.submit(_encode_job, self._job(number, batch))] = number
                if len(pending) >= 2 * workers:
                    self._drain(pending, wait(pending, return_when="FIRST_COMPLETED").done)
            self._drain(pending, wait(pending).done)

    def _guarded(self, groups: Any, meshes: MeshStore) -> Any:
        """The mesh groups; a group that cannot be read fails the build naming its assets."""
        last = -1
        try:
            for number, batch in groups:
                last = number
                yield number, batch
        except CimError as exc:
            raise _unreadable(self.plan, meshes, last, exc) from None

    def _drain(self, pending: dict[Future[dict[str, Any]], int], done: set[Future[dict[str, Any]]]) -> None:
        for future in done:
            self._collect(pending.pop(future), future.result())

    def _reuse(self, tile: PlannedTile) -> bool:
        name = f"{tile.group}/{tile.file}"
        old = self.previous.get(name)
        if not old or old.get("hash") != tile.digest or self.previous_dir is None:
            return False
        source = self.previous_dir / name
        if not source.is_file():
            return False
        try:
            os.link(source, self.folder / name)
        except OSError:
            shutil.copyfile(source, self.folder / name)
        self.tiles[name] = old
        self._tick(1)
        return True

    def _job(self, number: int, batch: MeshBatch) -> _Job:
        tile = self.plan.tiles[number]
        rows = self.plan.assets.slice(tile.lo, tile.hi - tile.lo)
        kinds = rows.column("kind")
        tables = {str(k): rows.filter(pc.equal(kinds, k)) for k in pc.unique(kinds).to_pylist()}
        return _Job(str(self.folder / tile.group / tile.file), tile.origin, batch, tables)

    def _collect(self, number: int, result: dict[str, Any]) -> None:
        tile = self.plan.tiles[number]
        self.degenerate += result.pop("degenerate")
        self.tiles[f"{tile.group}/{tile.file}"] = {"hash": tile.digest, **result}
        self.written += 1
        self._tick(1)

    def _tick(self, step: int) -> None:
        self.done += step
        if self.progress is not None:
            self.progress(self.done, len(self.plan.tiles))


def _unreadable(plan: Plan, meshes: MeshStore, last: int, exc: CimError) -> CimError:
    """The error for a tile whose meshes cannot be read, naming the first bad asset when it can be found."""
    following = [t for n, t in enumerate(plan.tiles) if n > last][:1]
    for tile in following:
        for asset_id in plan.assets.column("id").slice(tile.lo, min(tile.hi - tile.lo, 5000)).to_pylist():
            try:
                meshes.get([asset_id])
            except CimError as inner:
                return InvalidInput(f"mesh of asset {asset_id!r}", f"{inner.why}; re-ingest its source")
    return InvalidInput("meshes", exc.why)


def _publish(folder: Path, plan: Plan, tiles: dict[str, dict[str, Any]], limits: TreeLimits) -> dict[str, GroupSummary]:
    """Write the tileset.json files and the manifest; return the per-group figures."""
    summary: dict[str, GroupSummary] = {}
    nodes: dict[str, dict[int, TileNode]] = {}
    for tile in plan.tiles:
        info = tiles[f"{tile.group}/{tile.file}"]
        group = summary.setdefault(tile.group, GroupSummary())
        group.tiles += 1
        group.features += int(info["features"])
        group.bytes += int(info["bytes"])
        nodes.setdefault(tile.group, {})[tile.key] = TileNode(
            tile.key,
            origin=tile.origin,
            box_min=np.asarray(info["box_min"], np.float64),
            box_max=np.asarray(info["box_max"], np.float64),
            file=tile.file,
        )
    written = {}
    for name, group_nodes in nodes.items():
        written[name] = group_tileset(group_nodes, plan.roots[name], limits.keep_ratio)
        summary[name].bytes += write_json(folder / name / "tileset.json", written[name][0])
    write_json(folder / "tileset.json", root_tileset(written))
    write_json(folder / MANIFEST, {"format": FORMAT, "tiles": tiles})
    return summary


def _swap(out: Path, version: Path) -> None:
    """Point ``out`` at ``version`` with one atomic rename of a fresh link over it."""
    link = out.parent / f".{out.name}.swap-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(version, out.parent), link)
    if out.is_dir() and not out.is_symlink():
        out.rmdir()  # an empty folder made by hand: nothing served is lost
    os.replace(link, out)


def _clean(versions: Path, keep: set[str]) -> None:
    """Drop versions but the new and the previous one (clients may still be reading it), and leftovers of killed
    builds."""
    for entry in versions.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
