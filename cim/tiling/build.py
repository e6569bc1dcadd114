"""Build the city's 3D Tiles from the store: plan, encode in parallel, swap in atomically, skip unchanged tiles.

1. **Plan** (this process): the tiled assets (:mod:`cim.tiling.assets`) joined to the mesh index (origin, sizes,
   a 64-bit digest of each mesh — no mesh is read yet); a quadtree per group; per tile a content hash of its
   metadata rows and mesh digests (:mod:`cim.tiling.plan`).
2. **Encode** (:mod:`cim.tiling.encode`), only the tiles whose hash is not in the previous version (unchanged
   tiles are hard-linked from it): runs of consecutive tiles are tasks on a Dask distributed cluster
   (:mod:`cim.tiling.cluster`: one at ``cluster``, else a local one started while this process plans), whose
   workers read their meshes themselves and write one glb per tile (:mod:`cim.tiling.glb`, meshopt-compressed by
   default) into the version folder (a folder the workers share), so this process only plans. At most two runs per
   worker thread are in flight: memory holds a few runs whatever the size of the city. A rebuild of few assets
   encodes here (without a ``cluster`` given): starting a local cluster would cost more than it saves.
3. **Publish**: tileset.json files (:mod:`cim.tiling.tileset`) and ``build.json`` (hash, box and size of every
   tile), with the external tilesets the previous version had mounted (:mod:`cim.tiling.external`), go into a new
   version folder ``.<name>.versions/<version>`` beside ``<name>``, which is a symbolic link
   swapped to the new version by one atomic rename. A build that fails or is killed leaves the link on the
   previous, complete version.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.errors import InvalidInput
from cim.store.base import Store
from cim.store.meshes import MeshStore
from cim.tiling.assets import read_assets_and_hashes
from cim.tiling.cluster import ClusterStart
from cim.tiling.encode import IN_PROCESS_ASSETS, Encoder, Progress
from cim.tiling.external import carry_mounts
from cim.tiling.implicit import (
    AUTO_TILES,
    ImplicitTile,
    content_region,
    group_implicit_tileset,
    implicit_plan,
    reframe_written,
)
from cim.tiling.implicit import directories as implicit_directories
from cim.tiling.implicit import root_tileset as implicit_root_tileset
from cim.tiling.incremental import plan_changes, save_state, sorted_digests, state_of
from cim.tiling.plan import FORMAT, Plan, plan_tiles
from cim.tiling.quadtree import TreeLimits
from cim.tiling.tileset import TileNode, group_tileset, root_tileset, write_json

MANIFEST = "build.json"
#: Mesh compression of the tiles' glbs: EXT_meshopt_compression (:mod:`cim.tiling.compress`), or plain glbs.
#: Measured on 100,000 LOD1 buildings (``bench/tiles_bench.py -n 100000``), bytes per building with metadata: 677
#: plain, 276 meshopt; gzipped on the wire (level 6, as ``cim serve`` sends glb) 171 plain, 145 meshopt.
COMPRESSIONS = ("meshopt", "none")


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
    planned_from_changes: bool = False  # planned from the previous build's state, reading only what changed

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
    implicit: bool | None = None,
    compress: str = "meshopt",
    cluster: str | None = None,
) -> BuildSummary:
    """Build the tilesets of ``store`` (meshes from ``meshes``) into ``out_dir`` (e.g. ``tiles/city``), swapping the
    new version in only when complete. ``progress(done, total)`` is called per tile as tasks complete.
    ``cluster``: the address of a Dask scheduler (e.g. ``tcp://scheduler:8786``) whose workers encode the tiles;
    they read the meshes from ``meshes.location`` and write into the folder beside ``out_dir``, so both must be
    shared with them. Without it, a local cluster of ``workers`` processes (default: one per CPU, and a rebuild of
    fewer than :data:`IN_PROCESS_ASSETS` assets in this process; 1 encodes in this process). Workers read their
    tiles' meshes themselves when ``meshes`` is open read-only; else this process reads and hands them over.
    ``compress`` is one of :data:`COMPRESSIONS`; a previous version written with another one is not reused.
    ``implicit``: write every group as an implicit tileset (:mod:`cim.tiling.implicit`); None decides by size (a
    group of more than :data:`~cim.tiling.implicit.AUTO_TILES` tiles), False keeps the explicit tree."""
    if compress not in COMPRESSIONS:
        raise InvalidInput(f"compression {compress!r}", f"is not one of {', '.join(COMPRESSIONS)}")
    started = time.perf_counter()
    limits = limits or TreeLimits()
    out = Path(out_dir)
    versions = _check_output(out)
    previous_dir = out.resolve() if out.is_symlink() else None
    # a previous version whose tiles are encoded otherwise has nothing to reuse (but is kept for its readers)
    reusable = previous_dir if previous_dir is not None and compression_of(previous_dir) == compress else None
    count = workers or os.cpu_count() or 1
    start: ClusterStart | None = None

    def use_cluster(assets: int) -> ClusterStart | None:
        """The cluster to encode on, reached or started now (while this process plans); None: encode here."""
        if cluster is not None or (count > 1 and (workers or assets >= IN_PROCESS_ASSETS)):
            return ClusterStart(cluster, count)
        return None

    partial: Path | None = None
    try:
        previous = _read_manifest(reusable)
        changes = plan_changes(store, meshes, reusable, limits) if reusable is not None else None
        if changes is not None and not _keeps_unchanged(_written(changes[0], changes[1], True, implicit), previous):
            changes = None  # the previous build named its tiles otherwise (explicit ↔ implicit): plan in full
        if changes is not None:
            plan, state, rows, mesh_digests, extra = changes
            missing = [""] * int(extra["without_mesh"])
            missing[: len(extra["without_mesh_examples"])] = extra["without_mesh_examples"]
            start = use_cluster(plan.assets.num_rows)
        else:
            assets, hashes = read_assets_and_hashes(store)
            if not assets.num_rows:
                raise InvalidInput(
                    f"store {store.url}", "holds no assets to tile (buildings, BIM, pipes and nodes, points)"
                )
            start = use_cluster(assets.num_rows)  # a local cluster starts while this process plans
            assets, missing, index = _join_meshes(assets, meshes)
            if not assets.num_rows:
                raise InvalidInput(
                    f"store {store.url}",
                    f"none of its {len(missing)} tiled assets has a mesh in {meshes.path}; ingest their meshes first",
                )
            plan = plan_tiles(assets, limits)
            rows, mesh_digests, state = hashes, sorted_digests(index), state_of(plan) if hashes is not None else None
        stamp = f"v{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
        version = versions / stamp
        partial = versions / f"{stamp}.partial"
        partial.mkdir(parents=True)
        written_plan = _written(plan, state, changes is not None, implicit)
        if written_plan is not plan:
            implicit_directories(written_plan, partial)
        encoder = Encoder(written_plan, partial, previous, reusable, progress, compress)
        encoder.run(meshes, start.client if start is not None else None, auto=workers is None and cluster is None)
        summary = _publish(partial, written_plan, encoder.tiles, limits, compress)
        carry_mounts(previous_dir, partial)  # external tilesets mounted beside the previous version stay
        if rows is not None and state is not None:
            extra = {"without_mesh": len(missing), "without_mesh_examples": missing[:5]}
            save_state(partial, plan, state, rows, mesh_digests, limits, extra)
        partial.rename(version)
        _swap(out, version)
    except BaseException:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if start is not None:
            start.close()
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
        planned_from_changes=changes is not None,
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


def _join_meshes(assets: pa.Table, meshes: MeshStore) -> tuple[pa.Table, list[str], pa.Table]:
    """Assets with their mesh's origin, counts and digest; the ids of those without a mesh; the mesh index."""
    index = meshes.digests()
    row = pc.index_in(assets.column("id"), value_set=index.column("asset_id"))
    has = pc.is_valid(row)
    missing = pc.filter(assets.column("id"), pc.invert(has)).to_pylist()
    assets = assets.filter(has)
    picked = index.take(pc.filter(row, has))
    for name in ("lon", "lat", "h", "vertex_count", "triangle_count", "digest"):
        assets = assets.append_column(name, picked.column(name))
    return assets, missing, index


def compression_of(folder: Path) -> str:
    """The compression the build in ``folder`` wrote its tiles with (builds before the option wrote plain glbs)."""
    return str(_manifest(folder).get("compress", "none"))


def implicit_of(folder: Path) -> bool | None:
    """Whether the build in ``folder`` wrote implicit tilesets (None: unknown, e.g. a build before the option), so a
    rebuild after edits keeps the tiling its operator chose."""
    value = _manifest(folder).get("implicit")
    return value if isinstance(value, bool) else None


def _read_manifest(folder: Path | None) -> dict[str, Any]:
    """The tiles of the build in ``folder`` (hash, box and size of each), when it was written in this format."""
    manifest = _manifest(folder) if folder is not None else {}
    tiles: dict[str, Any] = manifest.get("tiles", {}) if manifest.get("format") == FORMAT else {}
    return tiles


def _manifest(folder: Path) -> dict[str, Any]:
    """``build.json`` of the build in ``folder``; empty when there is none or it cannot be read."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _written(plan: Plan, state: pa.Table | None, partial_plan: bool, implicit: bool | None) -> Plan:
    """The plan whose tiles are written: ``plan`` itself (explicit), or its tiles named below each group's implicit
    root (found from every asset: the saved state when ``plan`` holds only the changed tiles' assets)."""
    if implicit is None:
        if max(Counter(t.group for t in plan.tiles).values(), default=0) <= AUTO_TILES:
            return plan
        try:
            return _written(plan, state, partial_plan, True)
        except InvalidInput:
            return plan  # a layer across a hemisphere's edge: explicit after all
    if not implicit:
        return plan
    if partial_plan and state is None:
        raise InvalidInput("implicit tiling", "the previous build left no plan state; build in full")
    return implicit_plan(plan, state if partial_plan and state is not None else plan.assets)


def _keeps_unchanged(plan: Plan, previous: dict[str, Any]) -> bool:
    """Whether every tile a plan from changes left unread (no rows) is in the previous build under the same name
    and hash, so it can be linked."""
    return all(previous.get(f"{t.group}/{t.file}", {}).get("hash") == t.digest for t in plan.tiles if t.lo == t.hi)


def _publish(
    folder: Path, plan: Plan, tiles: dict[str, dict[str, Any]], limits: TreeLimits, compress: str
) -> dict[str, GroupSummary]:
    """Write the tileset.json files and the manifest; return the per-group figures."""
    if plan.tiles and isinstance(plan.tiles[0], ImplicitTile):
        return _publish_implicit(folder, plan, tiles, limits, compress)
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
    write_json(
        folder / MANIFEST,
        {"format": FORMAT, "compress": compress, "implicit": False, "tiles": _in_plan_order(plan, tiles)},
    )
    return summary


def _publish_implicit(
    folder: Path, plan: Plan, tiles: dict[str, dict[str, Any]], limits: TreeLimits, compress: str
) -> dict[str, GroupSummary]:
    """Implicit groups: re-frame the glbs encoded by this build into their root's frame, then write subtrees and
    tileset.json files (:mod:`cim.tiling.implicit`) and the manifest."""
    summary: dict[str, GroupSummary] = {}
    regions: dict[str, dict[int, Any]] = {}
    for tile in plan.tiles:
        assert isinstance(tile, ImplicitTile)
        info = tiles[f"{tile.group}/{tile.file}"]
        reframe_written(folder, tile, info)
        group = summary.setdefault(tile.group, GroupSummary())
        group.tiles += 1
        group.features += int(info["features"])
        group.bytes += int(info["bytes"])
        regions.setdefault(tile.group, {})[tile.key] = content_region(tile, info)
    written = {}
    for name, content in regions.items():
        tileset, region, subtree_bytes = group_implicit_tileset(
            folder / name, plan.roots[name], content, limits.keep_ratio
        )
        written[name] = (tileset, region)
        summary[name].bytes += write_json(folder / name / "tileset.json", tileset) + subtree_bytes
    write_json(folder / "tileset.json", implicit_root_tileset(written))
    write_json(
        folder / MANIFEST,
        {"format": FORMAT, "compress": compress, "implicit": True, "tiles": _in_plan_order(plan, tiles)},
    )
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


def _in_plan_order(plan: Plan, tiles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The manifest's tiles in plan order, not in the order tasks completed: the same build, the same bytes."""
    return {name: tiles[name] for name in (f"{t.group}/{t.file}" for t in plan.tiles)}
