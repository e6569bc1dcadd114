"""Tiles rebuilt after edits through the API: the shapes of the edited assets made again, then an incremental build
of every built tileset, as a job of the server's :class:`~cim.api.jobs.JobRunner`.

Edits come in bursts (a QGIS session saves its edits one request each), so builds are coalesced: while a rebuild
job waits in the queue, the assets of every further edit join it and the edit is told that job's id; once the job
has started (it takes the touched ids first), the next edit queues one more. So at most one rebuild waits, and a
build running when edits arrive is followed by exactly one more.

The mesh file is written only here, in the runner's one worker thread, like every other mesh write of the
server (ingest jobs), never by a request. An asset from an IFC file keeps its mesh (only the IFC reader makes it);
its changed attributes still reach the tiles.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from cim.api.jobs import Job, JobRunner, QueueFull
from cim.errors import InvalidInput
from cim.model import AssetBatch, Kind
from cim.store import AssetQuery
from cim.store.meshes import MeshStore, has_meshes
from cim.tiling.groups import TILED_KINDS, is_ifc_source

log = logging.getLogger("cim.api.tile_refresh")
MANIFEST = "build.json"


class TileRefresher:
    """Queues one coalesced rebuild job for the assets edited since the last one started."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self._lock = threading.Lock()
        self._waiting: Job | None = None  # queued, has not taken its ids yet
        self._touched: set[str] = set()

    def assets_changed(self, ids: Iterable[str], kinds: Iterable[Kind]) -> str | None:
        """Note edited assets (of these kinds, before and after the edit); the id of the rebuild job that will
        cover them, or None when nothing needs one (no tiled kind, no tileset built yet, or the queue is full:
        the ids then go with the next rebuild)."""
        if not set(kinds) & TILED_KINDS or not built_tilesets(self.runner.tiles_dir):
            return None
        with self._lock:
            self._touched.update(ids)
            if self._waiting is not None:
                return self._waiting.id
            job = Job(id=uuid.uuid4().hex, action="build", work=self._rebuild)
            job.labels = {
                str(self.runner.tiles_dir.resolve()): "(tiles folder)",
                str(self.runner.tiles_dir): "(tiles folder)",
            }
            self._waiting = job
            try:
                self.runner.submit(job)
            except QueueFull as exc:
                self._waiting = None
                log.warning("no tile rebuild queued after an edit (%s); the next edit's rebuild includes it", exc)
                return None
            return job.id

    def _rebuild(self, job: Job) -> dict[str, Any]:
        """The job's work, in the runner's thread: take the ids edited so far, make their shapes again, build."""
        from cim.tiling.build import build_tiles, compression_of, implicit_of

        with self._lock:
            ids, self._touched = sorted(self._touched), set()
            self._waiting = None
        store = self.runner.store
        if not has_meshes(store):
            raise InvalidInput("store", "has no meshes yet: ingest layers before building tiles")
        with self.runner.open_meshes(read_only=False) as meshes:
            reshaped = refresh_meshes(store.find_batch(AssetQuery(ids=ids)), ids, meshes)
        results: dict[str, Any] = {}
        bars = job.bars()
        for tileset in built_tilesets(self.runner.tiles_dir):
            task = bars.add_task(tileset.name, total=None)
            with self.runner.open_meshes(read_only=True) as meshes:
                summary = build_tiles(
                    store,
                    meshes,
                    tileset,
                    progress=_progress(bars, task),
                    compress=compression_of(tileset.resolve()),  # as the tileset was built
                    implicit=implicit_of(tileset.resolve()),
                )
            results[tileset.name] = {
                **summary.to_json(),
                "version": Path(summary.path).name,
                "written": summary.written,
                "reused": summary.reused,
                "planned_from_changes": summary.planned_from_changes,
            }
        return {"assets": ids, "meshes": reshaped, "tilesets": results}


def _progress(bars: Progress, task: TaskID) -> Callable[[int, int], None]:
    return lambda done, total: bars.update(task, completed=done, total=total)


def refresh_meshes(found: AssetBatch, ids: list[str], meshes: MeshStore) -> int:
    """Make the shapes of the edited assets ``ids`` (``found``: those still in the store) again: a deleted asset
    loses its mesh, one from an IFC file keeps its own, the others get the shape their geometry and heights give
    (none, when they have no geometry). Returns the number of meshes written."""
    from cim.model.shapes import shapes_of_batch

    table = found.table
    found_ids = table.column("id").to_pylist()
    sources = table.column("source").to_pylist()
    keep_ifc = {i for i, s in zip(found_ids, sources, strict=True) if is_ifc_source(s)}
    by_source: dict[str | None, list[int]] = defaultdict(list)
    for row, (asset_id, source) in enumerate(zip(found_ids, sources, strict=True)):
        if asset_id not in keep_ifc:
            by_source[source].append(row)
    shaped: set[str] = set()
    for source, rows in by_source.items():  # each add replaces those ids' meshes in one transaction
        shapes = shapes_of_batch(AssetBatch(table.take(rows)))
        if len(shapes):
            meshes.add(source or "api", shapes)
            shaped.update(shapes.asset_ids)
    gone = [i for i in ids if i not in keep_ifc and i not in shaped]  # deleted, or no shape any more
    if gone:
        meshes.delete(ids=gone)
    return len(shaped)


def built_tilesets(tiles_dir: Path) -> list[Path]:
    """The tilesets ``cim build`` wrote in the tiles folder (a link to a version holding a manifest), by name."""
    if not tiles_dir.is_dir():
        return []
    return sorted(
        entry
        for entry in tiles_dir.iterdir()
        if not entry.name.startswith(".") and entry.is_symlink() and (entry / MANIFEST).is_file()
    )
