"""The mesh file beside the store: batches round-trip, a source is replaced whole or not at all, grouped streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cim.errors import InvalidInput
from cim.model import Mesh, MeshBatch
from cim.store.meshes import MeshStore, mesh_path_for


def mesh(asset_id: str, n_triangles: int, *, color: tuple[float, float, float, float] | None = None) -> Mesh:
    rng = np.random.default_rng(abs(hash(asset_id)) % 2**32)
    vertices = rng.normal(size=(n_triangles + 2, 3)).astype(np.float32)
    triangles = np.stack([np.zeros(n_triangles), np.arange(1, n_triangles + 1), np.arange(2, n_triangles + 2)], 1)
    return Mesh(
        asset_id=asset_id,
        origin=(121.5 + len(asset_id) * 1e-4, 31.2, -2.5),
        vertices=vertices,
        triangles=triangles.astype(np.uint32),
        color=color,
    )


def assert_same(got: Mesh, want: Mesh) -> None:
    assert got.asset_id == want.asset_id
    assert got.origin == want.origin
    np.testing.assert_array_equal(got.vertices, want.vertices)
    np.testing.assert_array_equal(got.triangles, want.triangles)
    assert got.color == want.color


def test_meshes_round_trip_with_and_without_colour(tmp_path: Path) -> None:
    meshes = [mesh("a", 1), mesh("bb", 5, color=(0.5, 0.25, 1.0, 1.0)), mesh("ccc", 3)]
    with MeshStore(tmp_path / "m.duckdb") as store:
        assert store.replace_source("s", [MeshBatch.from_meshes(meshes[:2]), MeshBatch.from_meshes(meshes[2:])]) == 3
        got = store.get(["ccc", "missing", "a", "bb"]).to_meshes()
    assert [m.asset_id for m in got] == ["ccc", "a", "bb"]
    for g, w in zip(got, [meshes[2], meshes[0], meshes[1]], strict=True):
        assert_same(g, w)


def test_replacing_a_source_drops_what_left_it_and_keeps_other_sources(tmp_path: Path) -> None:
    with MeshStore(tmp_path / "m.duckdb") as store:
        store.replace_source("one", [MeshBatch.from_meshes([mesh("a", 1), mesh("b", 1)])])
        store.replace_source("two", [MeshBatch.from_meshes([mesh("z", 1)])])
        store.replace_source("one", [MeshBatch.from_meshes([mesh("b", 4)])])
        assert store.count() == 2
        assert store.get(["b"]).to_meshes()[0].triangle_count == 4
        assert store.delete(source="two") == 1


def test_a_failing_replace_leaves_the_previous_meshes_whole(tmp_path: Path) -> None:
    def batches():  # type: ignore[no-untyped-def]
        yield MeshBatch.from_meshes([mesh("b", 2)])
        raise InvalidInput("layer", "broken half-way")

    with MeshStore(tmp_path / "m.duckdb") as store:
        store.replace_source("one", [MeshBatch.from_meshes([mesh("a", 1)])])
        with pytest.raises(InvalidInput):
            store.replace_source("one", batches())
        assert [m.asset_id for m in store.get(["a", "b"]).to_meshes()] == ["a"]


def test_staged_meshes_are_seen_only_when_their_block_ends(tmp_path: Path) -> None:
    with MeshStore(tmp_path / "m.duckdb") as store:
        store.replace_source("one", [MeshBatch.from_meshes([mesh("a", 1), mesh("b", 1)])])
        store.replace_source("two", [MeshBatch.from_meshes([mesh("z", 1)])])
        with store.replacing("one") as writer:
            writer.add(MeshBatch.from_meshes([mesh("a", 3), mesh("z", 2)]))  # z moves from "two" to "one"
            # staged and committed, but no read sees them yet; nor does a delete touch them
            assert store.count() == 3
            assert sorted(store.digests().column("asset_id").to_pylist()) == ["a", "b", "z"]
            assert [m.triangle_count for m in store.get(["a", "z"]).to_meshes()] == [1, 1]
            keys = pa.table({"asset_id": ["a", "b", "z"], "key": [0, 0, 1]})
            assert [len(batch) for _, batch in store.iter_grouped(keys)] == [2, 1]
            assert store.delete(ids=["a"]) == 1
        assert store.count() == 2  # a and z, as staged; b left the source
        assert [m.triangle_count for m in store.get(["a", "b", "z"]).to_meshes()] == [3, 2]


def test_rows_staged_by_a_process_that_died_are_deleted_at_the_next_writable_open(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "m.duckdb"
    with MeshStore(path) as store:
        store.replace_source("one", [MeshBatch.from_meshes([mesh("a", 1)])])
    child = multiprocessing.get_context("spawn").Process(target=_die_inside_a_block, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    with MeshStore(path) as store:
        assert store.count() == 1
        assert store._con.execute("SELECT count(*) FROM meshes").fetchall()[0][0] == 1


def _die_inside_a_block(path: str) -> None:
    import os

    store = MeshStore(path)
    with store.replacing("one") as writer:
        writer.add(MeshBatch.from_meshes([mesh("b", 2), mesh("c", 2)]))
        os._exit(9)


def test_a_mesh_file_of_the_earlier_layout_is_read_and_written(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "m.duckdb"
    with MeshStore(path) as store:
        store.replace_source("one", [MeshBatch.from_meshes([mesh("a", 1)])])
    with duckdb.connect(str(path)) as con:  # as the file was before staged rows had a token
        con.execute("ALTER TABLE meshes DROP COLUMN token")
        con.execute("CREATE TABLE mesh_staging (token VARCHAR NOT NULL, asset_id VARCHAR NOT NULL)")
    with MeshStore(path, read_only=True) as store:  # e.g. tiling, before any ingest wrote to the file again
        assert store.count() == 1 and store.get(["a"]).to_meshes()[0].triangle_count == 1
        assert store.digests().num_rows == 1
    with MeshStore(path) as store:
        assert store.count() == 1
        store.replace_source("one", [MeshBatch.from_meshes([mesh("a", 2), mesh("b", 1)])])
        assert [m.triangle_count for m in store.get(["a", "b"]).to_meshes()] == [2, 1]


def test_an_asset_staged_twice_in_one_block_keeps_its_last_mesh(tmp_path: Path) -> None:
    with MeshStore(tmp_path / "m.duckdb") as store:
        store.replace_source(
            "one", [MeshBatch.from_meshes([mesh("a", 1), mesh("b", 1)]), MeshBatch.from_meshes([mesh("a", 3)])]
        )
        assert store.count() == 2
        assert [m.triangle_count for m in store.get(["a", "b"]).to_meshes()] == [3, 1]


def test_a_batch_with_a_triangle_past_its_assets_vertices_is_refused() -> None:
    with pytest.raises(InvalidInput, match="vertex its asset does not have"):
        MeshBatch(
            asset_ids=["a", "b"],
            origins=np.zeros((2, 3)),
            vertices=np.zeros((6, 3), np.float32),
            vertex_offsets=np.array([0, 3, 6]),
            triangles=np.array([[0, 1, 3], [0, 1, 2]], np.uint32),  # asset a has only 3 vertices
            triangle_offsets=np.array([0, 1, 2]),
            colors=np.full((2, 4), np.nan, np.float32),
        )


def test_iter_grouped_yields_each_key_once_in_order_across_fetches(tmp_path: Path) -> None:
    ids = [f"m{i:03d}" for i in range(50)]
    keys = np.arange(50) % 7
    with MeshStore(tmp_path / "m.duckdb") as store:
        store.replace_source("s", [MeshBatch.from_meshes([mesh(i, 1 + n % 3) for n, i in enumerate(ids)])])
        groups = list(store.iter_grouped(pa.table({"asset_id": ids, "key": keys}), rows_per_fetch=4))
    assert [k for k, _ in groups] == list(range(7))
    for key, batch in groups:
        assert sorted(batch.asset_ids) == sorted(i for i, k in zip(ids, keys, strict=True) if k == key)
        for m in batch.to_meshes():
            assert_same(m, mesh(m.asset_id, 1 + int(m.asset_id[1:]) % 3))


def test_mesh_file_sits_beside_a_duckdb_store_and_apart_per_postgres_schema() -> None:
    assert mesh_path_for("/d/city.duckdb") == Path("/d/city.meshes.duckdb")
    assert mesh_path_for("duckdb:///d/city.duckdb") == Path("/d/city.meshes.duckdb")
    a = mesh_path_for("postgresql://u@h:5432/db?schema=a")
    b = mesh_path_for("postgresql://u@h:5432/db?schema=b")
    assert a != b and a.parent == Path("data/meshes")
