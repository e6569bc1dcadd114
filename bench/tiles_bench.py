"""3D Tiles benchmark: N LOD1 buildings from the store to a complete tileset, then an incremental rebuild.

Generates N convex footprints (4–8 corners, 8–40 m across, 6–96 m high; mean ≈ 5.3 corners) over a 50 km square of
Shanghai, writes them with their LOD1 meshes (roof, floor, a quad per wall, as :mod:`cim.model.shapes` makes them)
into a DuckDB store and its mesh file, builds the tileset with :func:`cim.tiling.build.build_tiles`, then changes 100
buildings (height and name) and builds again. The tiles that rebuild encodes are then encoded again with
:mod:`cim.tiling.glb`'s writer and with pygltflib writing the same content, alternating: time per tile and peak
memory side by side (the figure in :mod:`cim.tiling.glb`'s docstring).

    .venv/bin/python bench/tiles_bench.py                # 1,000,000 buildings
    .venv/bin/python bench/tiles_bench.py -n 100000 --keep /tmp/city   # keep the store and tiles

Targets (issue 5): 1M buildings ≤ 120 s on 2 cores, peak RSS ≤ 3 GB, ≤ 1.5 KB per building (tile bytes incl.
metadata), incremental rebuild after 100 changes ≤ 5 s.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pygltflib
import shapely

from cim.model import AssetBatch, MeshBatch
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling import encode as encode_module
from cim.tiling import glb, properties
from cim.tiling.build import build_tiles
from cim.tiling.compress import compress_glb, decompress_glb

WEST, SOUTH, SIDE = 121.2, 30.9, 0.5
BATCH = 100_000
M_PER_DEG_LAT = 111_320.0


def city(n: int, seed: int = 1) -> Iterator[tuple[pa.Table, MeshBatch]]:
    """Batches of (asset columns, meshes) of n LOD1 buildings."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        yield _batch(rng, start, size)


def _batch(rng: np.random.Generator, start: int, size: int) -> tuple[pa.Table, MeshBatch]:
    ids = [f"b{i:07d}" for i in range(start, start + size)]
    lon = WEST + rng.random(size) * SIDE
    lat = SOUTH + rng.random(size) * SIDE
    corners = rng.choice([4, 4, 4, 5, 6, 8], size)
    radius = 4 + rng.random(size) * 16
    height = 6 + rng.random(size) * 90
    base = np.full(size, 4.0)
    spin = rng.random(size) * np.pi
    k_max = 8
    j = np.arange(k_max)
    angle = spin[:, None] + 2 * np.pi * j[None, :] / corners[:, None]
    valid = j[None, :] < corners[:, None]
    ex = radius[:, None] * np.cos(angle)
    ny = radius[:, None] * np.sin(angle)
    m_per_deg_lon = M_PER_DEG_LAT * np.cos(np.radians(lat))
    ring_lon = lon[:, None] + ex / m_per_deg_lon[:, None]
    ring_lat = lat[:, None] + ny / M_PER_DEG_LAT
    owner = np.repeat(np.arange(size), corners)
    xy = np.stack([ring_lon[valid], ring_lat[valid]], axis=1)
    offsets = np.r_[0, np.cumsum(corners)]
    polygons = shapely.polygons(shapely.linearrings(xy, indices=owner))
    table = pa.table(
        {
            "id": pa.array(ids),
            "kind": pa.array(["building"] * size),
            "name": pa.array([f"Building {i}" for i in range(start, start + size)]),
            "source": pa.array(["bench"] * size),
            "geom": pa.array(shapely.to_wkb(polygons)),
            "z_min": base,
            "z_max": base + height,
            "height_m": height,
            "storeys": (height // 3).astype(np.int32),
            "install_date": pa.array((rng.integers(-20000, 19000, size)).astype("datetime64[D]")).cast(pa.date32()),
            "status": pa.array(["in_use"] * size),
        }
    )
    return table, _meshes(ids, lon, lat, base, ex[valid], ny[valid], corners, offsets, height)


def _meshes(
    ids: list[str],
    lon: np.ndarray,
    lat: np.ndarray,
    base: np.ndarray,
    ex: np.ndarray,
    ny: np.ndarray,
    corners: np.ndarray,
    offsets: np.ndarray,
    height: np.ndarray,
) -> MeshBatch:
    """Roof (fan), floor (reversed fan) and one quad of its own per wall, vertices per building: top k, bottom k,
    walls 4k, in the ENU frame at the footprint centre."""
    size = len(ids)
    owner = np.repeat(np.arange(size), corners)
    local = np.arange(len(owner)) - offsets[owner]  # corner index within its ring
    k = corners[owner]
    top = np.stack([ex, ny, height[owner]], axis=1)
    bottom = np.stack([ex, ny, np.zeros_like(ex)], axis=1)
    nxt = np.where(local + 1 < k, np.arange(len(owner)) + 1, np.arange(len(owner)) - local)
    walls = np.stack([bottom, bottom[nxt], top[nxt], top], axis=1)  # (total corners, 4, 3)
    # per building vertex block: [top k][bottom k][walls 4k] → 6k vertices
    vcount = 6 * corners
    voff = np.r_[0, np.cumsum(vcount)]
    vertices = np.empty((int(voff[-1]), 3), np.float32)
    vb = voff[owner]
    vertices[vb + local] = top
    vertices[vb + k + local] = bottom
    wall_index = (vb + 2 * k + 4 * local)[:, None] + np.arange(4)[None, :]
    vertices[wall_index.ravel()] = walls.reshape(-1, 3)
    # triangles: roof fan (k-2), floor fan (k-2), walls 2 per corner → 4k-4 per building
    fan = local[local < k - 2]
    fan_owner = owner[local < k - 2]
    roof = np.stack([np.zeros_like(fan), fan + 1, fan + 2], axis=1)
    floor = roof[:, ::-1] + corners[fan_owner][:, None]
    w = (2 * k + 4 * local)[:, None]
    wall_tris = (w + np.array([0, 1, 2, 0, 2, 3])).reshape(-1, 3)  # two triangles per wall quad
    wall_owner = np.repeat(owner, 2)
    tri = np.concatenate([roof, floor, wall_tris])
    tri_owner = np.concatenate([fan_owner, fan_owner, wall_owner])
    order = np.argsort(tri_owner, kind="stable")
    tcount = np.bincount(tri_owner, minlength=size)
    return MeshBatch(
        asset_ids=ids,
        origins=np.stack([lon, lat, base], axis=1),
        vertices=vertices,
        vertex_offsets=voff.astype(np.int64),
        triangles=tri[order].astype(np.uint32),
        triangle_offsets=np.r_[0, np.cumsum(tcount)].astype(np.int64),
        colors=np.full((size, 4), np.nan, np.float32),
    )


def write_city(store_path: Path, n: int) -> float:
    start = time.perf_counter()
    with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        mesh_batches: list[MeshBatch] = []

        def assets() -> Iterator[AssetBatch]:
            for table, mesh in city(n):
                mesh_batches.append(mesh)
                yield AssetBatch.from_table(table)

        store.replace_source("bench", assets())
        with meshes.replacing("bench") as writer:
            for mesh in mesh_batches:
                writer.add(mesh)
        store.optimize()
    return time.perf_counter() - start


def change_some(store_path: Path, count: int, seed: int = 7) -> list[str]:
    """Raise and rename ``count`` random buildings (their assets and meshes)."""
    rng = np.random.default_rng(seed)
    with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        total = sum(store.count_by_kind().values())
        picked = sorted({f"b{i:07d}" for i in rng.choice(total, count, replace=False)})
        from cim.store.base import AssetQuery

        batch = store.find_batch(AssetQuery(ids=picked))
        table = batch.table
        height = np.asarray(table.column("height_m").to_numpy(zero_copy_only=False)) + 10.0
        table = table.set_column(table.schema.get_field_index("height_m"), "height_m", pa.array(height))
        table = table.set_column(
            table.schema.get_field_index("name"), "name", pa.array([f"Changed {i}" for i in picked])
        )
        store.upsert_assets(AssetBatch.from_table(table))
        old = meshes.get(picked)
        vertices = old.vertices.copy()
        raised = vertices[:, 2] > 0.5
        vertices[raised, 2] += 10.0
        changed = MeshBatch(
            asset_ids=old.asset_ids,
            origins=old.origins,
            vertices=vertices,
            vertex_offsets=old.vertex_offsets,
            triangles=old.triangles,
            triangle_offsets=old.triangle_offsets,
            colors=old.colors,
        )
        meshes.add("bench-changed", changed)  # keeps the meshes earlier runs changed
    return picked


def peak_rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, children_kb) / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the machine may be shared: compare
    this with the wall time)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


# --- glb writer side by side: cim.tiling.glb's own writer against pygltflib writing the same content -------------


class _PygltfWriter(glb._Writer):
    """The glb writer with pygltflib packing the document: the same buffer views, accessors, meshes, materials and
    property tables, as pygltflib objects, written by ``GLTF2.save_to_bytes``."""

    def glb(self) -> bytes:
        binary = b"".join(self.chunks)
        doc = pygltflib.GLTF2(
            asset=pygltflib.Asset(version="2.0", generator="cim tiling"),
            scene=0,
            scenes=[pygltflib.Scene(nodes=list(range(len(self.nodes))))],
            nodes=[pygltflib.Node(**node) for node in self.nodes],
            meshes=[
                pygltflib.Mesh(
                    name=mesh["name"],
                    primitives=[
                        pygltflib.Primitive(
                            attributes=pygltflib.Attributes(**p["attributes"]),
                            indices=p["indices"],
                            material=p["material"],
                            mode=p["mode"],
                            extensions=p["extensions"],
                        )
                        for p in mesh["primitives"]
                    ],
                )
                for mesh in self.meshes
            ],
            materials=[
                pygltflib.Material(
                    name=m["name"],
                    pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(**m["pbrMetallicRoughness"]),
                    alphaMode=m.get("alphaMode", pygltflib.OPAQUE),
                )
                for m in self.materials
            ],
            accessors=[pygltflib.Accessor(**a) for a in self.accessors],
            bufferViews=[pygltflib.BufferView(**v) for v in self.views],
            buffers=[pygltflib.Buffer(byteLength=len(binary))] if self.views else [],
            extensions={
                "EXT_structural_metadata": {
                    "schema": properties.schema_of_tables(self.kinds),
                    "propertyTables": self.tables,
                }
            },
            extensionsUsed=["EXT_mesh_features", "EXT_structural_metadata"]
            + (["KHR_mesh_quantization"] if self.quantized else []),
            extensionsRequired=["KHR_mesh_quantization"] if self.quantized else [],
        )
        doc.set_binary_blob(binary)
        return b"".join(doc.save_to_bytes())


Inputs = tuple[tuple[float, float, float], MeshBatch, dict[str, pa.Table]]


def incremental_with_inputs(store_path: Path, out: Path, workers: int | None) -> tuple[Any, list[Inputs]]:
    """The incremental build, keeping the inputs of every tile it encodes in this process (a rebuild of a few
    changes encodes here): a sample of the bench's tiles for :func:`glb_side_by_side`."""
    inputs: list[Inputs] = []
    encode = encode_module.encode_tile

    def recording(origin: tuple[float, float, float], meshes: MeshBatch, tables: dict[str, pa.Table]) -> Any:
        inputs.append((origin, meshes, tables))
        return encode(origin, meshes, tables)

    encode_module.encode_tile = recording  # type: ignore[assignment]
    try:
        with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
            summary = build_tiles(store, meshes, out, workers=workers)
    finally:
        encode_module.encode_tile = encode  # type: ignore[assignment]
    return summary, inputs


def glb_side_by_side(inputs: list[Inputs], rounds: int) -> None:
    """Encode the same tiles with our writer and with pygltflib, alternating, ``rounds`` times; print the median
    time per tile and the median peak of Python-tracked memory (numpy included) per tile."""
    if not inputs:
        print("glb writers: no tile was encoded in this process (run without --workers for the side by side)")
        return
    writers: dict[str, Any] = {"cim": _timed(glb._Writer), "pygltflib": _timed(_PygltfWriter)}
    times: dict[str, list[float]] = {name: [] for name in writers}
    packing: dict[str, list[float]] = {name: [] for name in writers}
    peaks: dict[str, list[float]] = {name: [] for name in writers}
    out: dict[str, list[bytes]] = {}
    for round_ in range(rounds):
        for name, writer in writers.items() if round_ % 2 == 0 else reversed(writers.items()):
            with mock.patch.object(glb, "_Writer", writer):
                writer.seconds = 0.0
                start = time.perf_counter()
                out[name] = [glb.encode_tile(*tile).glb for tile in inputs]
                times[name].append((time.perf_counter() - start) / len(inputs))
                packing[name].append(writer.seconds / len(inputs))
                for tile in inputs:  # memory apart: tracemalloc slows allocation, the pure-Python writer most
                    tracemalloc.start()
                    glb.encode_tile(*tile)
                    peaks[name].append(tracemalloc.get_traced_memory()[1] / 2**20)
                    tracemalloc.stop()
    _same_content(out["cim"], out["pygltflib"])
    size = statistics.mean(len(b) for b in out["cim"]) / 1024
    print(f"glb writers on {len(inputs)} tiles (mean {size:,.0f} KB), median of {rounds} rounds, alternating:")
    for name in writers:
        print(
            f"  {name:>9}: {statistics.median(times[name]) * 1e3:7.2f} ms per tile "
            f"(packing the glb {statistics.median(packing[name]) * 1e3:5.2f} ms), "
            f"peak {statistics.median(peaks[name]):6.1f} MB per tile (tracemalloc)"
        )
    ratio = statistics.median(times["pygltflib"]) / statistics.median(times["cim"])
    memory = statistics.median(peaks["pygltflib"]) / statistics.median(peaks["cim"])
    print(f"  pygltflib / cim: time {ratio:.2f}×, peak memory {memory:.2f}×")


def _timed(writer: type[glb._Writer]) -> Any:
    """``writer`` adding the time its :meth:`glb` takes (the packing, where the two writers differ) to ``seconds``."""

    class Timed(writer):  # type: ignore[valid-type,misc]
        seconds = 0.0

        def glb(self) -> bytes:
            start = time.perf_counter()
            data = super().glb()
            Timed.seconds += time.perf_counter() - start
            return data

    return Timed


def _same_content(ours: list[bytes], theirs: list[bytes]) -> None:
    """Both writers wrote the same nodes, metadata and buffer view bytes (pygltflib adds the defaults of materials
    and accessors, and aligns views to 4 bytes, not 8)."""
    for a, b in zip(ours, theirs, strict=True):
        doc_a, bin_a = glb.read_glb(a)
        doc_b, bin_b = glb.read_glb(b)
        assert doc_a["extensions"] == doc_b["extensions"] and doc_a.get("nodes") == doc_b.get("nodes")
        for view_a, view_b in zip(doc_a.get("bufferViews", []), doc_b["bufferViews"], strict=True):
            start_a, start_b, length = view_a["byteOffset"], view_b["byteOffset"], view_a["byteLength"]
            assert bin_a[start_a : start_a + length] == bin_b[start_b : start_b + length]


def compression_figures(tiles: Path, features: int) -> None:
    """Bytes per building of the built tiles four ways — plain glb (the meshopt tiles decompressed: the writer's
    layout), plain + gzip, meshopt (as built), meshopt + gzip (level 6, as ``cim serve`` sends them) — and the time
    the meshopt post-pass takes per building."""
    sizes = dict.fromkeys(("plain", "plain + gzip", "meshopt", "meshopt + gzip"), 0)
    seconds = 0.0
    for path in sorted(tiles.resolve().rglob("*.glb")):
        built = path.read_bytes()
        plain = decompress_glb(built)
        started = time.perf_counter()
        packed = compress_glb(plain)
        seconds += time.perf_counter() - started
        for name, body in (("plain", plain), ("meshopt", packed)):
            sizes[name] += len(body)
            sizes[f"{name} + gzip"] += len(gzip.compress(body, compresslevel=6))
    print("compression, bytes per building (tiles incl. metadata; target ≤ 500):")
    print("  " + ", ".join(f"{name} {size / max(features, 1):,.0f}" for name, size in sizes.items()))
    print(f"  meshopt post-pass: {seconds / max(features, 1) * 1e6:.1f} µs per building on one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="number of buildings")
    parser.add_argument("--keep", type=Path, help="folder to keep the store and tiles in (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=7, help="seed choosing the buildings the incremental changes")
    parser.add_argument("--workers", type=int, help="encoding processes (default: one per CPU)")
    parser.add_argument("--glb-rounds", type=int, default=5, help="rounds of the glb writers side by side")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="tiles-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    store_path = folder / "city.duckdb"
    out = folder / "tiles" / "bench"
    try:
        if not store_path.exists():
            print(f"writing {args.n:,} buildings + meshes … ", end="", flush=True)
            print(f"{write_city(store_path, args.n):.1f} s")
        rss_before = peak_rss_mb()
        if out.is_symlink():  # a full build: start from nothing
            shutil.rmtree(out.parent, ignore_errors=True)
        print(f"before the full build: {load()}")
        cpu = cpu_seconds()
        with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
            summary = build_tiles(store, meshes, out, workers=args.workers)
        cpu = cpu_seconds() - cpu
        group = summary.tilesets["buildings"]
        print(f"full build: {summary.seconds:.1f} s, {group.features / summary.seconds:,.0f} buildings/s")
        print(f"  CPU (main + workers) {cpu:.1f} s; after: {load()}")
        print(f"  tiles {group.tiles:,}, features {group.features:,}, bytes {group.bytes:,}")
        print(f"  bytes per building: {group.bytes / max(group.features, 1):,.0f} (tiles incl. metadata)")
        tileset_bytes = sum(p.stat().st_size for p in out.resolve().rglob("tileset.json"))
        print(f"  tileset.json files: {tileset_bytes:,} bytes")
        print(f"  peak RSS: main+children max {peak_rss_mb():,.0f} MB (before build {rss_before:,.0f} MB)")
        compression_figures(out, group.features)
        changed = change_some(store_path, 100, args.seed)
        cpu = cpu_seconds()
        again, inputs = incremental_with_inputs(store_path, out, args.workers)
        cpu = cpu_seconds() - cpu
        print(
            f"incremental after changing {len(changed)} buildings: {again.seconds:.1f} s, "
            f"tiles rewritten {again.written:,} of {sum(g.tiles for g in again.tilesets.values()):,}"
            f" ({'planned from the changes' if again.planned_from_changes else 'planned in full'})"
        )
        print(f"  CPU (main + workers) {cpu:.1f} s; after: {load()}")
        glb_side_by_side(inputs, args.glb_rounds)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
