"""tileset.json size, explicit vs implicit tiling, for 1M and 10M buildings — and a real build both ways.

**Plan only** (no meshes): N building positions uniform over the 50 km × 50 km square of ``bench/tiles_bench.py``
(footprint radius 4–20 m, 6–96 m high, as there), each estimated at :data:`BYTES_PER_BUILDING` tile bytes (an LOD1
building of ≈ 5.3 corners: 32 vertices × 16 B + 17 triangles × 12 B + 80 B of metadata, the plan's own estimate);
the vectorised quadtree (:func:`cim.tiling.plan.assign_keys`, default limits) assigns them to tiles. Then:

- explicit: today's writer (:func:`cim.tiling.tileset.group_tileset`) on those tiles, with boxes from each tile's
  positions, written — the bytes of tileset.json;
- implicit: :func:`cim.tiling.implicit.group_implicit_tileset` writes tileset.json and the subtree files, for each
  ``subtreeLevels`` asked (default 3–8): bytes of tileset.json, the number and bytes of subtree files, the largest;
  and which one :func:`cim.tiling.implicit.subtree_levels_for` picks (what ``cim build`` writes).

**A real build** (``--real N``, default 100,000; 0 skips): tiles_bench's city generator writes N buildings and their
meshes, then ``build_tiles`` runs explicit, implicit, explicit, implicit (fresh folders; the first run pays for
cold caches): seconds, tile bytes, tileset bytes.

    .venv/bin/python bench/implicit_bench.py                       # 1M and 10M plans, 100k real build
    .venv/bin/python bench/implicit_bench.py -n 1000000 --real 0   # one plan size only
    .venv/bin/python bench/implicit_bench.py -n 0                  # the real build only

Target (issue 24): tileset.json of a 10M-building layer ≤ 5 MB.

Measured (2 cores, shared with other work; one run):

    1,000,000 buildings: 2,143 content tiles
      explicit  tileset.json 1,399,642 B (653 B per content tile)
      implicit  tileset.json 877 B, subtreeLevels 5 (picked): 17 subtree files, 148,056 B (largest 16,824 B)
    10,000,000 buildings: 32,800 content tiles
      explicit  tileset.json 21,501,994 B (656 B per content tile)
      implicit  tileset.json 877 B, subtreeLevels 6 (picked): 50 subtree files, 2,140,816 B (largest 66,112 B)
    real build of 100,000 buildings (meshopt tiles), alternating: explicit 4.5 / 4.6 s, implicit 5.0 / 6.4 s
      (a cProfile of the same builds: 4.55 / 4.77 s against 4.64 / 4.97 s; _publish_implicit 0.29 s);
      glb 57,592,052 vs 57,631,056 B; tileset.json files 108,723 vs 1,606 B + 14,592 B of subtrees
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cim.geodesy import METRES_PER_DEGREE
from cim.tiling import implicit
from cim.tiling.plan import BYTES_PER_FEATURE, BYTES_PER_TRIANGLE, BYTES_PER_VERTEX, assign_keys
from cim.tiling.quadtree import TreeLimits
from cim.tiling.tileset import TileNode, group_tileset, write_json

BYTES_PER_BUILDING = 32 * BYTES_PER_VERTEX + 17 * BYTES_PER_TRIANGLE + BYTES_PER_FEATURE
WEST, SOUTH, SIDE = 121.2, 30.9, 0.5  # bench/tiles_bench.py's square


def synthetic(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    radius = 4 + rng.random(n) * 16
    return {
        "group": np.full(n, "buildings", dtype=object),
        "lon": WEST + rng.random(n) * SIDE,
        "lat": SOUTH + rng.random(n) * SIDE,
        "size_m": 2 * radius,
        "nbytes": np.full(n, float(BYTES_PER_BUILDING)),
        "height": 6 + rng.random(n) * 90,
    }


def tile_extents(inputs: dict[str, np.ndarray], keys: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per tile key (sorted): lon/lat min/max of its buildings widened by their half size, and the tallest."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1]
    half = inputs["size_m"][order] / 2 / METRES_PER_DEGREE
    lon, lat = inputs["lon"][order], inputs["lat"][order]
    widen = half / np.cos(np.radians(lat))
    return sorted_keys[starts], {
        "west": np.minimum.reduceat(lon - widen, starts),
        "east": np.maximum.reduceat(lon + widen, starts),
        "south": np.minimum.reduceat(lat - half, starts),
        "north": np.maximum.reduceat(lat + half, starts),
        "top": np.maximum.reduceat(4.0 + inputs["height"][order], starts),
    }


def explicit_bytes(keys: np.ndarray, ext: dict[str, np.ndarray], root: int, folder: Path) -> int:
    nodes: dict[int, TileNode] = {}
    for i, key in enumerate(keys.tolist()):
        lon, lat = (ext["west"][i] + ext["east"][i]) / 2, (ext["south"][i] + ext["north"][i]) / 2
        half_x = (ext["east"][i] - ext["west"][i]) / 2 * METRES_PER_DEGREE * np.cos(np.radians(lat))
        half_y = (ext["north"][i] - ext["south"][i]) / 2 * METRES_PER_DEGREE
        nodes[key] = TileNode(
            key,
            origin=(float(lon), float(lat), 4.0),
            box_min=np.array([-half_x, -half_y, 0.0]),
            box_max=np.array([half_x, half_y, float(ext["top"][i]) - 4.0]),
            file="x.glb",
        )
    tileset, _, _ = group_tileset(nodes, root, TreeLimits().keep_ratio)
    return write_json(folder / "tileset.json", tileset)


def implicit_figures(
    keys: np.ndarray, ext: dict[str, np.ndarray], root: int, folder: Path, levels: int
) -> tuple[int, int, int, int, int]:
    """tileset.json bytes, subtree files, their bytes, the largest, and available tiles."""
    content = {
        key: np.array(
            [
                np.radians(ext["west"][i]),
                np.radians(ext["south"][i]),
                np.radians(ext["east"][i]),
                np.radians(ext["north"][i]),
                4.0,
                float(ext["top"][i]),
            ]
        )
        for i, key in enumerate(keys.tolist())
    }
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tileset, _, _ = implicit.group_implicit_tileset(folder, root, content, TreeLimits().keep_ratio, levels)
    json_bytes = write_json(folder / "tileset.json", tileset)
    files = [p.stat().st_size for p in folder.rglob("*.subtree")]
    return json_bytes, len(files), sum(files), max(files), tileset["root"]["implicitTiling"]["availableLevels"]


def plan_only(n: int, levels: list[int], folder: Path) -> None:
    started = time.perf_counter()
    inputs = synthetic(n)
    keys, _, roots = assign_keys(inputs, TreeLimits())
    tile_keys, ext = tile_extents(inputs, keys)
    root = implicit.implicit_root(roots["buildings"], inputs["lon"], inputs["lat"], inputs["size_m"])
    print(f"{n:,} buildings: {len(tile_keys):,} content tiles (planned in {time.perf_counter() - started:.1f} s)")
    del inputs, keys
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size = explicit_bytes(tile_keys, ext, roots["buildings"], folder)
    print(
        f"  explicit  tileset.json {size:>12,} B  ({size / len(tile_keys):,.0f} B per content tile,"
        f" {time.perf_counter() - started:.1f} s)"
    )
    for level in levels:
        started = time.perf_counter()
        json_bytes, files, subtree_bytes, largest, depth = implicit_figures(
            tile_keys, ext, root, folder / f"implicit{level}", level
        )
        print(
            f"  implicit  tileset.json {json_bytes:>12,} B  subtreeLevels {level}: {files:,} subtree files,"
            f" {subtree_bytes:,} B (largest {largest:,} B), {depth} levels  ({time.perf_counter() - started:.1f} s)"
        )
    print(f"  cim build writes subtreeLevels {implicit.subtree_levels_for(depth)} for {depth} levels")


def real_build(n: int, folder: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiles_bench import write_city  # type: ignore[import-not-found]

    from cim.store import open_store
    from cim.store.meshes import MeshStore, mesh_path_for
    from cim.tiling.build import build_tiles

    store_path = folder / "city.duckdb"
    print(f"real build of {n:,} buildings (tiles_bench's city): writing … ", end="", flush=True)
    print(f"{write_city(store_path, n):.1f} s")
    for run, mode in enumerate((False, True, False, True)):  # twice each, alternating: the first pays cold caches
        out = folder / f"{'implicit' if mode else 'explicit'}{run}" / "city"
        with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
            summary = build_tiles(store, meshes, out, implicit=mode)
        tree = out.resolve()
        json_bytes = sum(p.stat().st_size for p in tree.rglob("tileset.json"))
        subtree_bytes = sum(p.stat().st_size for p in tree.rglob("*.subtree"))
        glb_bytes = sum(p.stat().st_size for p in tree.rglob("*.glb"))
        group = summary.tilesets["buildings"]
        print(
            f"  {'implicit' if mode else 'explicit'}: {summary.seconds:.1f} s, {group.tiles:,} building tiles,"
            f" glb {glb_bytes:,} B, tileset.json files {json_bytes:,} B, subtrees {subtree_bytes:,} B"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-n", type=int, action="append", help="buildings to plan (repeatable; default 1M and 10M; 0: none)"
    )
    parser.add_argument("--levels", type=int, nargs="*", default=[3, 4, 5, 6, 7, 8], help="subtreeLevels to try")
    parser.add_argument("--real", type=int, default=100_000, help="buildings of the real build both ways (0: none)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="implicit-bench-"))
    try:
        for n in args.n or [1_000_000, 10_000_000]:
            if n:
                plan_only(n, args.levels, folder / f"plan{n}")
        if args.real:
            real_build(args.real, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
