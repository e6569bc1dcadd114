"""The mesh contract on both stores (the DuckDB mesh file and PostgreSQL's ``meshes`` table): the same rows and Arrow
tables, the same digests, a replace seen whole or not at all by concurrent readers and left undone by a writer killed
-9, the old local mesh file of a PostgreSQL store copied in once, and a city tiling to the same glb bytes on both."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cim.errors import InvalidInput, StoreError
from cim.model import AssetBatch, Mesh, MeshBatch
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for, open_mesh_reader, open_meshes
from cim.store.pg_meshes import PgMeshStore
from tests.store.test_meshes import assert_same, mesh

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def meshes(store_url: str) -> Iterator[MeshStore]:
    """The mesh store of a fresh store on each backend (the store opened first, as every caller does)."""
    open_store(store_url).close()
    with open_meshes(store_url) as opened:
        yield opened


def batch(*items: Mesh) -> MeshBatch:
    return MeshBatch.from_meshes(list(items))


def city_meshes(n: int, triangles: int, *, start: int = 0) -> MeshBatch:
    colors = [None, (0.1, 0.2, 0.3, 1.0)]
    return batch(*(mesh(f"m{i:04d}", triangles + i % 3, color=colors[i % 2]) for i in range(start, start + n)))


def halves(n: int, triangles: int) -> list[MeshBatch]:
    return [city_meshes(n // 2, triangles), city_meshes(n - n // 2, triangles, start=n // 2)]


def triangle_counts(found: MeshBatch) -> list[int]:
    return [m.triangle_count for m in found.to_meshes()]


def test_meshes_round_trip_in_the_order_asked_with_missing_and_repeated_ids(meshes: MeshStore) -> None:
    written = [mesh("a", 1), mesh("bb", 5, color=(0.5, 0.25, 1.0, 1.0)), mesh("ccc", 3)]
    assert meshes.replace_source("s", [batch(*written[:2]), batch(written[2])]) == 3
    got = meshes.get(["ccc", "missing", "a", "bb", "a"]).to_meshes()
    assert [m.asset_id for m in got] == ["ccc", "a", "bb", "a"]
    for g, w in zip(got, [written[2], written[0], written[1], written[0]], strict=True):
        assert_same(g, w)
    assert meshes.get_table(pa.chunked_array([["bb"], ["a"]])).column("asset_id").to_pylist() == ["bb", "a"]
    assert meshes.get_table(["it's", "'; DROP TABLE meshes; --", ""]).num_rows == 0
    assert meshes.count() == 3


def test_empty_input_writes_nothing_and_reads_nothing(meshes: MeshStore) -> None:
    assert meshes.replace_source("s", []) == 0
    assert meshes.replace_source("s", [MeshBatch.from_meshes([])]) == 0
    assert meshes.add("s", MeshBatch.from_meshes([])) == 0
    assert meshes.count() == 0 and meshes.get_table([]).num_rows == 0 and meshes.digests().num_rows == 0
    no_keys = pa.table({"asset_id": pa.array([], pa.string()), "key": pa.array([], pa.int64())})
    assert list(meshes.iter_grouped(no_keys)) == []
    with pytest.raises(InvalidInput, match="give ids, a source, or both"):
        meshes.delete()


def test_replace_add_and_delete_keep_what_they_should(meshes: MeshStore) -> None:
    meshes.replace_source("one", [batch(mesh("a", 1), mesh("b", 1))])
    meshes.replace_source("two", [batch(mesh("z", 1), mesh("y", 1))])
    meshes.replace_source("one", [batch(mesh("b", 4), mesh("y", 2)), batch(mesh("b", 6))])  # y moves, b staged twice
    assert sorted(meshes.digests().column("asset_id").to_pylist()) == ["b", "y", "z"]
    assert triangle_counts(meshes.get(["b", "y"])) == [6, 2]
    assert meshes.add("two", batch(mesh("b", 9), mesh("x", 1))) == 2
    assert triangle_counts(meshes.get(["b"])) == [9]
    assert meshes.delete(ids=["b", "nope"], source="one") == 0
    assert meshes.delete(ids=["b", "nope"]) == 1
    assert meshes.delete(source="two") == 2 and meshes.count() == 1


def test_a_failing_replace_leaves_the_previous_meshes(meshes: MeshStore) -> None:
    meshes.replace_source("s", [batch(mesh("a", 1), mesh("b", 1))])

    def batches() -> Iterator[MeshBatch]:
        yield batch(mesh("b", 2))
        raise InvalidInput("layer", "broken half-way")

    with pytest.raises(InvalidInput):
        meshes.replace_source("s", batches())
    assert meshes.count() == 2 and triangle_counts(meshes.get(["b"])) == [1]
    assert meshes.replace_source("s", [batch(mesh("c", 1))]) == 1  # the writer left nothing behind


def test_digests_are_the_same_on_both_stores(tmp_path: Path, postgis_schema_url: str) -> None:
    written = city_meshes(300, 4)
    with MeshStore(tmp_path / "m.duckdb") as on_duckdb, open_meshes(postgis_schema_url) as on_postgres:
        on_duckdb.replace_source("s", [written])
        on_postgres.replace_source("s", halves(300, 4))
        want, got = on_duckdb.digests().sort_by("asset_id"), on_postgres.digests().sort_by("asset_id")
        assert got.equals(want) and len(set(got.column("digest").to_pylist())) == 300
        ids = written.asset_ids[::-7]
        assert on_postgres.get_table(ids).equals(on_duckdb.get_table(ids))
        keys = pa.table({"asset_id": written.asset_ids, "key": np.arange(300) % 7})
        grouped = [(k, b.asset_ids) for k, b in on_postgres.iter_grouped(keys, rows_per_fetch=16)]
        assert grouped == [(k, b.asset_ids) for k, b in on_duckdb.iter_grouped(keys, rows_per_fetch=16)]


def test_concurrent_readers_see_the_old_or_the_new_meshes_never_a_mix(postgis_schema_url: str) -> None:
    old = city_meshes(400, 2)
    with open_meshes(postgis_schema_url) as writer:
        writer.replace_source("s", [old])
        seen: list[set[int]] = []
        failures: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            try:
                with open_mesh_reader(writer.location) as reader:
                    while not done.is_set():
                        table = reader.get_table(old.asset_ids)
                        counts = table.column("triangle_count").to_numpy()
                        seen.append({int(c >= 30) for c in counts} | ({2} if table.num_rows != 400 else set()))
            except BaseException as exc:
                failures.append(exc)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in readers:
            t.start()
        for triangles in (30, 2, 30):
            writer.replace_source("s", halves(400, triangles))
        done.set()
        for t in readers:
            t.join()
    assert not failures
    assert {frozenset(s) for s in seen} <= {frozenset({0}), frozenset({1})} and len(seen) >= 3


_KILLED_WRITER = """
import sys, time
from tests.store.test_mesh_contract import city_meshes
from cim.store.meshes import open_meshes
with open_meshes(sys.argv[1]) as meshes, meshes.replacing("s") as writer:
    writer.add(city_meshes(300, 40))
    if sys.argv[2] == "prepared":
        writer.prepare()  # the old rows deleted and locked in the open transaction
    print("staged", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("stage", ["staged", "prepared"])
def test_a_writer_killed_mid_replace_leaves_the_old_meshes(postgis_schema_url: str, stage: str) -> None:
    with open_meshes(postgis_schema_url) as meshes:
        meshes.replace_source("s", [city_meshes(300, 1)])
        before = meshes.digests().sort_by("asset_id")
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, postgis_schema_url, stage],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == b"staged"
            assert meshes.digests().sort_by("asset_id").equals(before)  # not seen while the writer lives
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert meshes.digests().sort_by("asset_id").equals(before)
        started = time.monotonic()  # the dead writer's locks went with its connection: a new replace does not wait
        assert meshes.replace_source("s", [city_meshes(10, 3)]) == 10 and meshes.count() == 10
        assert time.monotonic() - started < 10


def test_a_read_only_postgres_mesh_store_refuses_writes(postgis_schema_url: str) -> None:
    with open_meshes(postgis_schema_url) as meshes:
        meshes.replace_source("s", [batch(mesh("a", 1))])
        with open_mesh_reader(meshes.location) as reader:
            assert reader.count() == 1
            with pytest.raises(StoreError, match="could not be saved"):
                reader.replace_source("s", [batch(mesh("b", 1))])
    assert isinstance(reader, PgMeshStore)


def test_the_duckdb_location_opens_a_read_only_reader(tmp_path: Path) -> None:
    url = str(tmp_path / "city.duckdb")
    with open_meshes(url) as meshes:
        meshes.replace_source("s", [batch(mesh("a", 1))])
        assert meshes.location == str(mesh_path_for(url))
    with open_mesh_reader(meshes.location) as reader:
        assert reader.read_only and reader.get(["a"]).asset_ids == ["a"]


def test_the_old_local_mesh_file_of_a_postgres_store_is_copied_in_once(
    postgis_schema_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # the old file's path is relative: data/meshes/<db>-<hash>.duckdb
    legacy = city_meshes(50, 3)
    with open_store(postgis_schema_url) as store, MeshStore(mesh_path_for(store.url)) as old_file:
        old_file.replace_source("old-source", [legacy])
        old_file.replace_source("other", [batch(mesh("x", 2, color=(1.0, 0.0, 0.0, 1.0)))])
        want = old_file.digests().sort_by("asset_id")
    with caplog.at_level(logging.WARNING, logger="cim.store"), open_meshes(postgis_schema_url, read_only=True) as m:
        assert m.digests().sort_by("asset_id").equals(want)  # a build, the first open after the upgrade
    with open_meshes(postgis_schema_url) as meshes:
        assert meshes.delete(source="other") == 1  # the sources came along
    assert "copied 51 meshes from the old mesh file" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cim.store"), open_meshes(postgis_schema_url) as meshes:
        assert meshes.count() == 50
    assert "copied" not in caplog.text


def test_a_city_tiles_to_the_same_glb_bytes_on_both_stores(tmp_path: Path, postgis_schema_url: str) -> None:
    from cim.tiling.build import build_tiles
    from cim.tiling.quadtree import TreeLimits
    from tests.tiling.conftest import small_city

    assets, city = small_city(30)
    outputs = []
    # PostgreSQL's build in a process pool: its workers get the meshes from this process (cim/tiling/encode.py)
    for name, url, workers in (("duckdb", str(tmp_path / "city.duckdb"), 1), ("postgis", postgis_schema_url, 2)):
        with open_store(url) as store, open_meshes(url) as meshes:
            store.upsert_assets(AssetBatch.from_assets(assets))
            meshes.replace_source("test", [MeshBatch.from_meshes(city)])
        with open_store(url, spatial=False) as store, open_meshes(url, read_only=True) as meshes:
            build_tiles(store, meshes, tmp_path / name / "city", workers=workers, limits=TreeLimits(max_features=8))
        outputs.append(tmp_path / name / "city")
    glbs = [{p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.glb"))} for out in outputs]
    assert glbs[0].keys() == glbs[1].keys() and len(glbs[0]) > 3
    assert [k for k in glbs[0] if glbs[0][k] != glbs[1][k]] == []
