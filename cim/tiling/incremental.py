"""Plan a rebuild from the previous build's plan, reading only what changed — or say it cannot.

A build leaves beside its tiles (in ``.state/``, which the tiles server does not serve) what it planned: per asset its
tile, what the quadtree read (group, position, size, estimated bytes) and lift count; the hash of every store row
it read (``row_hash``, computed by the store) and the digest of every mesh. A rebuild reads only those hashes (no
asset column, no mesh), finds the changed assets, re-reads their rows, re-runs the quadtree on the kept inputs with
theirs updated, and — when every asset keeps its tile — re-reads and re-hashes only the tiles holding a changed
asset. Anything else (assets or meshes added or removed, an asset changing tile, group or mesh presence, a change to
BIM assets, whose lifts count into buildings, other limits, another format) returns None: the caller plans in full.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from cim.store.base import Store
from cim.store.meshes import MeshStore
from cim.store.projection import hashes_rows
from cim.tiling.assets import read_assets, read_row_hashes
from cim.tiling.groups import GROUPS
from cim.tiling.plan import FORMAT, Plan, PlannedTile, assign_keys, planned_tiles, planning_inputs
from cim.tiling.quadtree import TreeLimits

#: The folder, inside a version, of what the next build reads (hidden: the tiles server refuses hidden paths).
FOLDER = ".state"
PLAN, ROWS, MESHES = "plan.arrow", "rows.arrow", "meshes.arrow"
STATE = "plan.json"
#: More changed assets than this share of the city (and than 100): plan in full (it is then about as fast).
MOST_CHANGED = 0.05
_BIM_KINDS = frozenset({"site", "storey", "space", "element", "lift"})


def state_of(plan: Plan) -> pa.Table:
    """What a full build's plan leaves for the next one: per asset, in id order, its tile and planning inputs."""
    assert plan.keys is not None and plan.order is not None
    inputs = planning_inputs(plan.assets)
    tile_of = np.zeros(plan.assets.num_rows, np.int32)
    for number, tile in enumerate(plan.tiles):
        tile_of[tile.lo : tile.hi] = number
    table = pa.table(
        {
            "id": plan.assets.column("id"),
            "key": plan.keys,
            "tile": tile_of,
            "group": plan.assets.column("group"),
            "kind": plan.assets.column("kind"),
            "lon": inputs["lon"],
            "lat": inputs["lat"],
            "size_m": inputs["size_m"],
            "nbytes": inputs["nbytes"],
            "lift_count": plan.assets.column("lift_count"),
        }
    )
    back = np.empty_like(plan.order)
    back[plan.order] = np.arange(len(plan.order))
    return table.take(pa.array(back))


def save_state(
    folder: Path,
    plan: Plan,
    state: pa.Table,
    rows: pa.Table,
    meshes: pa.Table,
    limits: TreeLimits,
    extra: dict[str, Any],
) -> None:
    """Write what the next build needs to plan from this one: ``state`` (:func:`state_of`), ``rows`` (``id``,
    ``row_hash`` of every asset read) and ``meshes`` (``asset_id``, ``digest``, sorted by id)."""
    folder = folder / FOLDER
    folder.mkdir()
    feather.write_feather(state, folder / PLAN, compression="uncompressed")
    feather.write_feather(rows, folder / ROWS, compression="uncompressed")
    feather.write_feather(meshes, folder / MESHES, compression="uncompressed")
    saved = {
        "format": FORMAT,
        "limits": [limits.max_features, limits.max_bytes, limits.keep_ratio],
        "roots": plan.roots,
        "tiles": [[t.group, t.key, *t.origin, t.digest] for t in plan.tiles],
        **extra,
    }
    (folder / STATE).write_text(json.dumps(saved))


def plan_changes(
    store: Store, meshes: MeshStore, previous: Path, limits: TreeLimits
) -> tuple[Plan, pa.Table, pa.Table, pa.Table, dict[str, Any]] | None:
    """The plan of a rebuild from what the build in ``previous`` left — with the new state, row hashes, mesh
    digests and extras to save — or None when it has to be planned in full."""
    previous = previous / FOLDER
    if not hashes_rows(store) or not all((previous / name).is_file() for name in (PLAN, ROWS, MESHES, STATE)):
        return None
    try:
        saved = json.loads((previous / STATE).read_text())
        if saved.get("format") != FORMAT or saved.get("limits") != [
            limits.max_features,
            limits.max_bytes,
            limits.keep_ratio,
        ]:
            return None
        old = feather.read_table(previous / PLAN, memory_map=True)
        old_rows = feather.read_table(previous / ROWS, memory_map=True)
        old_meshes = feather.read_table(previous / MESHES, memory_map=True)
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None
    rows = read_row_hashes(store)
    index = meshes.digests()
    mesh_digests = sorted_digests(index)
    changed_rows = _changed(old_rows, rows, "id", "row_hash")
    changed_meshes = _changed(old_meshes, mesh_digests, "asset_id", "digest")
    if changed_rows is None or changed_meshes is None:
        return None
    changed = pc.unique(pa.concat_arrays([changed_rows, changed_meshes]))
    if len(changed) > max(MOST_CHANGED * old.num_rows, 100):
        return None
    extra = {k: saved[k] for k in ("without_mesh", "without_mesh_examples")}
    tiles = [PlannedTile(g, int(k), 0, 0, (float(x), float(y), float(z)), d) for g, k, x, y, z, d in saved["tiles"]]
    roots = {g: int(k) for g, k in saved["roots"].items()}
    if not len(changed):
        return Plan(old.slice(0, 0), tiles, roots), old, rows, mesh_digests, extra
    # rows of the changed assets in the old state (both in id order); one missing was not tiled (no mesh, not a
    # tiled kind) and may become tiled: plan in full
    where = np.flatnonzero(np.asarray(pc.is_in(old.column("id"), value_set=changed).to_numpy(zero_copy_only=False)))
    fresh = _with_meshes(read_assets(store, ids=changed), index)
    if (
        len(where) != len(changed)
        or fresh is None
        or fresh.num_rows != len(where)
        or not pc.all(pc.equal(fresh.column("id"), old.column("id").take(pa.array(where)))).as_py()
    ):
        return None
    kinds = _array(old, "kind")
    if (set(kinds[where]) | set(fresh.column("kind").to_pylist())) & _BIM_KINDS:
        return None  # lifts count into their buildings: plan in full
    # the quadtree again (in id order, as a full plan runs it), the changed assets with their new inputs
    inputs = {name: _array(old, name) for name in ("group", "lon", "lat", "size_m", "nbytes")}
    new = planning_inputs(fresh)
    if not np.array_equal(inputs["group"][where], new["group"]):
        return None
    moved = not all(np.array_equal(inputs[name][where], values) for name, values in new.items())
    for name, values in new.items():
        inputs[name][where] = values
    kinds[where] = np.asarray(fresh.column("kind").to_pylist(), dtype=object)
    if moved:  # position, size or bytes changed: the quadtree again
        keys, rank, new_roots = assign_keys(inputs, limits)
        if not np.array_equal(keys, _array(old, "key")) or new_roots != roots:
            return None  # an asset changes tile: plan in full
    else:
        keys, rank = _array(old, "key"), np.zeros(old.num_rows, np.int64)
        for g, name in enumerate(GROUPS):
            rank[inputs["group"] == name] = g
    # re-read the tiles that hold a changed asset
    tile_of = _array(old, "tile")
    touched = np.unique(tile_of[where])
    rows_of = np.flatnonzero(np.isin(tile_of, touched))  # id order
    ids = old.column("id").take(pa.array(rows_of))
    assets = _with_meshes(read_assets(store, ids=ids), index)
    if assets is None or assets.num_rows != len(rows_of) or not pc.all(pc.equal(assets.column("id"), ids)).as_py():
        return None
    lifts = old.column("lift_count").take(pa.array(rows_of))
    assets = assets.set_column(assets.schema.get_field_index("lift_count"), "lift_count", lifts)
    order = np.lexsort((rows_of, keys[rows_of], rank[rows_of]))  # plan order: (group, tile, id)
    ordered = assets.take(pa.array(order))
    fresh_tiles = planned_tiles(ordered, keys[rows_of][order], rank[rows_of][order])
    if [t.key for t in fresh_tiles] != [tiles[n].key for n in touched.tolist()]:
        return None
    for number, tile in zip(touched.tolist(), fresh_tiles, strict=True):
        tiles[number] = tile
    state = old.select(["id", "key", "tile", "group"])
    for name in ("kind", "lon", "lat", "size_m", "nbytes"):
        values = kinds if name == "kind" else inputs[name]
        state = state.append_column(name, pa.array(values, old.schema.field(name).type))
    state = state.append_column("lift_count", old.column("lift_count"))
    return Plan(ordered, tiles, roots, keys[rows_of][order]), state, rows, mesh_digests, extra


def sorted_digests(index: pa.Table) -> pa.Table:
    """``asset_id`` and ``digest`` of a mesh index (:meth:`MeshStore.digests`), sorted by id."""
    return index.select(["asset_id", "digest"]).sort_by("asset_id")


def _changed(old: pa.Table, new: pa.Table, id_name: str, hash_name: str) -> pa.Array | None:
    """Ids whose hash differs between two tables of the same ids in the same order; None if the ids differ."""
    if old.num_rows != new.num_rows:
        return None
    old_ids, new_ids = old.column(id_name), new.column(id_name)
    if old.num_rows and not pc.all(pc.equal(old_ids, new_ids)).as_py():
        return None
    differs = pc.not_equal(old.column(hash_name), new.column(hash_name))
    return pc.filter(new_ids, differs).combine_chunks().cast(pa.string())


def _with_meshes(assets: pa.Table, index: pa.Table) -> pa.Table | None:
    """``assets`` (a few of the index's) joined to their mesh index rows; None if one has no mesh."""
    index = index.filter(pc.is_in(index.column("asset_id"), value_set=assets.column("id")))
    row = pc.index_in(assets.column("id"), value_set=index.column("asset_id"))
    if row.null_count:
        return None
    picked = index.take(row)
    for name in ("lon", "lat", "h", "vertex_count", "triangle_count", "digest"):
        assets = assets.append_column(name, picked.column(name))
    return assets


def _array(table: pa.Table, name: str) -> Any:
    column = table.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
    return np.array(column.to_numpy(), copy=True)
