"""CityGML 3.0 export benchmark: N buildings (footprints with heights, every tenth with a courtyard, every fifth with
a closed LoD2 mesh of 12 triangles) written by ``cim.export.citygml.write_citygml`` from a DuckDB store.

    .venv/bin/python bench/citygml_export_bench.py              # 100,000 buildings
    .venv/bin/python bench/citygml_export_bench.py -n 20000

Prints buildings/s, MB/s of CityGML written and the peak memory (max RSS) before and after the export: the export
streams a page of buildings at a time, so its peak should not grow with N. Issue 28 sets no target for this format;
the figures are for comparison with the GeoPackage and CityJSON exports.

Measured here (2 cores shared with other work): 100,000 buildings in 71.3 s = 1,402 buildings/s, 396 MB written
(5.5 MB/s); peak RSS 558 MB before the export (the store's fill) and 558 MB after it.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

from cim.export.citygml import write_citygml
from cim.model import AssetBatch, Kind, MeshBatch
from cim.model.schema import ASSET_SCHEMA
from cim.store.duckdb import DuckDBStore
from cim.store.meshes import MeshStore, mesh_path_for

BOX = np.array([[0, 0, 0], [10, 0, 0], [10, 6, 0], [0, 6, 0], [0, 0, 9], [10, 0, 9], [10, 6, 9], [0, 6, 9]], np.float32)
FACES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6],
     [3, 0, 4], [3, 4, 7]],
    np.uint32,
)  # fmt: skip


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(store: DuckDBStore, meshes: MeshStore, n: int, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    x = 121.2 + rng.random(n) * 0.5
    y = 30.9 + rng.random(n) * 0.5
    w, h = 0.0001 + rng.random(n) * 0.0002, 0.0001 + rng.random(n) * 0.0002
    shapes = shapely.box(x, y, x + w, y + h)
    courtyard = np.arange(n) % 10 == 0
    inner = shapely.box(x + w / 3, y + h / 3, x + 2 * w / 3, y + 2 * h / 3)
    shapes[courtyard] = shapely.difference(shapes[courtyard], inner[courtyard])
    ids = [f"b{i:07d}" for i in range(n)]
    detailed = np.arange(n) % 5 == 0
    props = [json.dumps({"function": "1000", "cityjson.lod": "2" if d else "1", "floors": 3}) for d in detailed]
    height = np.round(6 + rng.random(n) * 90, 1)
    columns = {
        "id": ids,
        "kind": [Kind.BUILDING.value] * n,
        "name": [f"Building {i}" for i in range(n)],
        "source": ["bench"] * n,
        "geom": shapely.to_wkb(shapes).tolist(),
        "z_min": np.full(n, 4.0),
        "z_max": 4.0 + height,
        "height_m": height,
        "storeys": rng.integers(1, 30, n).astype(np.int32),
        "props": props,
    }
    table = pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in ASSET_SCHEMA}, schema=ASSET_SCHEMA)
    store.replace_source("bench", [AssetBatch(table.slice(o, 50_000)) for o in range(0, n, 50_000)])
    picked = np.flatnonzero(detailed)
    origins = np.column_stack([x[picked], y[picked], np.full(len(picked), 4.0)])
    mesh = MeshBatch.build([ids[i] for i in picked], origins, [BOX] * len(picked), [FACES] * len(picked))
    meshes.replace_source("bench", [mesh])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="buildings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = str(Path(folder) / "city.duckdb")
        with DuckDBStore(url) as store, MeshStore(mesh_path_for(url)) as meshes:
            started = time.perf_counter()
            fill(store, meshes, args.n)
            print(f"store filled: {args.n:,} buildings in {time.perf_counter() - started:.1f} s")
            before = peak_mb()
            started = time.perf_counter()
            summary = write_citygml(store, meshes, Path(folder) / "city.gml")
            seconds = time.perf_counter() - started
            size = (Path(folder) / "city.gml").stat().st_size / 1e6
        print(f"export: {summary.objects} in {seconds:.1f} s = {args.n / seconds:,.0f} buildings/s, {size:,.0f} MB")
        print(
            f"        {size / seconds:.1f} MB/s; peak RSS {before:,.0f} MB before the export, {peak_mb():,.0f} MB after"
        )


if __name__ == "__main__":
    main()
