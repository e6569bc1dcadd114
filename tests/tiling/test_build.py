"""cim build on a small city made in the test: valid tilesets, metadata that resolves, atomic and incremental."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from cim.cli import main
from cim.errors import InvalidInput
from cim.geodesy import ecef_to_lonlat
from cim.model import Asset, AssetBatch, Kind, Mesh, MeshBatch
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling.build import BuildSummary, build_tiles
from cim.tiling.glb import read_glb
from cim.tiling.quadtree import TreeLimits
from tests.tiling.checks import check_all, scalar_property, string_property
from tests.tiling.conftest import small_city, write_city


def build(store_path: Path, out: Path, **options: object) -> BuildSummary:
    with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        return build_tiles(store, meshes, out, **options)  # type: ignore[arg-type]


def test_every_group_passes_the_schemas_the_gltf_validator_and_the_content_checks(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    summary = build(city, out, limits=TreeLimits(max_features=8), workers=2)
    found = check_all(out)
    assert sorted(found["buildings"]) == [f"b{i:03d}" for i in range(40)]
    assert sorted(found["bim"]) == ["lift0", "lift1", "lift2", "s0"]
    assert sorted(found["underground"]) == [f"pipe{k}" for k in range(6)]
    assert sorted(found["points"]) == [f"hydrant{k}" for k in range(5)]
    assert summary.tilesets["buildings"].features == 40 and summary.tilesets["buildings"].tiles >= 5
    root = json.loads((out / "tileset.json").read_text())
    assert [c["content"]["uri"] for c in root["root"]["children"]] == [
        f"{g}/tileset.json" for g in ("buildings", "bim", "underground", "points")
    ]


def test_building_metadata_counts_lifts_through_storeys_and_gives_the_year_built(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    build(city, out, workers=1)
    doc, binary = read_glb(next((out / "buildings").glob("*.glb")).read_bytes())
    table = next(t for t in doc["extensions"]["EXT_structural_metadata"]["propertyTables"] if t["class"] == "building")
    ids = string_property(doc, binary, table, "id")
    lifts = dict(zip(ids, scalar_property(doc, binary, table, "lift_count", np.uint16).tolist(), strict=True))
    years = dict(zip(ids, scalar_property(doc, binary, table, "year_built", np.uint16).tolist(), strict=True))
    assert lifts["b000"] == 3 and lifts["b001"] == 0
    assert years["b001"] == 1961 and years["b005"] == 0  # b005 has no install date: the noData value
    assert (
        doc["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["building"]["properties"]["year_built"][
            "noData"
        ]
        == 0
    )


def test_buried_pipes_sit_below_the_ellipsoid_inside_their_boxes(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    build(city, out, workers=1)
    tileset = json.loads((out / "underground" / "tileset.json").read_text())
    world = np.asarray(tileset["root"]["transform"], np.float64).reshape(4, 4).T
    box = np.asarray(tileset["root"]["boundingVolume"]["box"])
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
    corners = box[:3] + signs @ box[3:].reshape(3, 3)
    heights = ecef_to_lonlat(corners @ world[:3, :3].T + world[:3, 3])[:, 2]
    assert heights.max() < -39.0 and heights.min() > -41.0  # the pipes lie 40 m below the ellipsoid, tightly boxed


def test_cli_build_json_prints_the_figures(city: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiles" / "cli"
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--store", str(city), "--out", str(out), "--json"])
    assert exit_.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"tilesets", "seconds", "as_of", "without_mesh", "mounts_dropped"}
    assert printed["as_of"] is None and printed["without_mesh"] == 0 and printed["mounts_dropped"] == []
    assert printed["tilesets"]["buildings"]["features"] == 40
    assert set(printed["tilesets"]["points"]) == {"tiles", "features", "bytes"}
    tiles = sum(1 for _ in (out / "points").glob("*.glb"))
    assert printed["tilesets"]["points"]["tiles"] == tiles


def test_rebuilding_after_one_change_rewrites_only_its_tile(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    first = build(city, out, limits=TreeLimits(max_features=8), workers=1)
    before = {p.name: p.stat().st_ino for p in (out / "buildings").glob("*.glb")}
    with open_store(str(city)) as store:
        changed = store.get_asset("b007")
        store.upsert_assets(
            AssetBatch.from_assets([Asset(**{**_fields(changed), "name": "a much longer new name for block 7"})])
        )
    again = build(city, out, limits=TreeLimits(max_features=8), workers=1)
    after = {p.name: p.stat().st_ino for p in (out / "buildings").glob("*.glb")}
    assert again.written == 1 and again.reused == sum(g.tiles for g in first.tilesets.values()) - 1
    assert sum(before[name] != inode for name, inode in after.items()) == 1
    check_all(out)


def test_a_rebuild_planned_from_the_changes_writes_what_a_full_build_writes(city: Path, tmp_path: Path) -> None:
    out, fresh = tmp_path / "tiles" / "city", tmp_path / "fresh" / "city"
    limits = TreeLimits(max_features=8)
    build(city, out, limits=limits, workers=1)
    with open_store(str(city)) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        renamed, taller = store.get_asset("b007"), store.get_asset("b012")
        assert taller.z_max is not None and taller.height_m is not None
        changes = [{**_fields(renamed), "name": "renamed"}, {**_fields(taller), "z_max": taller.z_max + 5}]
        store.upsert_assets(AssetBatch.from_assets([Asset(**fields) for fields in changes]))
        mesh = meshes.get(["b020"]).to_meshes()[0]
        raised = mesh.vertices.copy()
        raised[:, 2] *= 1.01
        moved = Mesh(asset_id="b020", origin=mesh.origin, vertices=raised, triangles=mesh.triangles)
        meshes.add("test-gis", MeshBatch.from_meshes([moved]))
    again = build(city, out, limits=limits, workers=1)
    assert again.planned_from_changes and 1 <= again.written <= 3
    build(city, fresh, limits=limits, workers=1)
    for tile in fresh.rglob("*"):
        if tile.suffix in (".glb", ".json") and tile.name != "build.json" and ".state" not in tile.parts:
            assert (out / tile.relative_to(fresh)).read_bytes() == tile.read_bytes(), tile
    check_all(out)


def test_a_build_that_fails_half_way_leaves_the_previous_tileset_served(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    build(city, out, workers=1)
    served = out.resolve()

    def killed(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with open_store(str(city)) as store:
        store.upsert_assets(AssetBatch.from_assets([Asset(**{**_fields(store.get_asset("b001")), "name": "x"})]))
    with pytest.raises(KeyboardInterrupt):
        build(city, out, workers=1, progress=killed, limits=TreeLimits(max_features=4))
    assert out.resolve() == served
    assert not [p for p in served.parent.iterdir() if p.name.endswith(".partial")]
    check_all(out)


def test_an_empty_store_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    write_city(tmp_path / "empty.duckdb", [], [])
    with pytest.raises(InvalidInput, match="holds no assets to tile"):
        build(tmp_path / "empty.duckdb", tmp_path / "tiles" / "x")
    assert not (tmp_path / "tiles" / "x").exists()


def test_an_output_path_that_is_a_file_is_refused(city: Path, tmp_path: Path) -> None:
    target = tmp_path / "tiles.txt"
    target.write_text("not a folder")
    with pytest.raises(InvalidInput, match="is a file"):
        build(city, target)
    assert target.read_text() == "not a folder"


def test_assets_without_mesh_are_reported_and_left_out(tmp_path: Path) -> None:
    assets, meshes = small_city(6)
    path = tmp_path / "city.duckdb"
    write_city(path, assets, [m for m in meshes if m.asset_id != "b002"])
    summary = build(path, tmp_path / "tiles" / "x", workers=1)
    assert summary.without_mesh == 1 and summary.without_mesh_examples == ["b002"]
    assert "b002" not in check_all(tmp_path / "tiles" / "x")["buildings"]


def test_degenerate_triangles_are_dropped_and_counted(tmp_path: Path) -> None:
    assets, meshes = small_city(3)
    bad = meshes[1]
    triangles = np.concatenate([bad.triangles, np.array([[0, 0, 1], [0, 1, 1], [0, 1, 2]], np.uint32)])
    vertices = np.concatenate([bad.vertices, bad.vertices[:1]])  # an unused extra vertex too
    meshes[1] = type(bad)(asset_id=bad.asset_id, origin=bad.origin, vertices=vertices, triangles=triangles)
    meshes[2] = type(bad)(  # a flat (zero-area) triangle: all three corners on one line
        asset_id=meshes[2].asset_id,
        origin=meshes[2].origin,
        vertices=np.concatenate([meshes[2].vertices, [[0, 0, 0], [1, 1, 1], [2, 2, 2]]]).astype(np.float32),
        triangles=np.concatenate([meshes[2].triangles, [[8, 9, 10]]]).astype(np.uint32),
    )
    path = tmp_path / "city.duckdb"
    write_city(path, assets, meshes)
    summary = build(path, tmp_path / "tiles" / "x", workers=1)
    assert summary.degenerate_triangles == 3  # [0,0,1], [0,1,1] and the collinear one; [0,1,2] is a real face
    check_all(tmp_path / "tiles" / "x")


@pytest.mark.parametrize("read_only", [True, False])
def test_workers_write_the_same_tiles_as_one_process(city: Path, tmp_path: Path, read_only: bool) -> None:
    """Workers read their own meshes from a read-only mesh file; from a read-write one this process hands them
    over."""
    alone = build(city, tmp_path / "one" / "city", limits=TreeLimits(max_features=8), workers=1)
    with open_store(str(city)) as store, MeshStore(mesh_path_for(store.url), read_only=read_only) as meshes:
        parallel = build_tiles(store, meshes, tmp_path / "two" / "city", limits=TreeLimits(max_features=8), workers=2)
    assert parallel.to_json()["tilesets"] == alone.to_json()["tilesets"] and parallel.written == alone.written > 4
    for tile in (tmp_path / "one" / "city").rglob("*.glb"):
        assert (
            tmp_path / "two" / "city" / tile.relative_to(tmp_path / "one" / "city")
        ).read_bytes() == tile.read_bytes()
    check_all(tmp_path / "two" / "city")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_mesh_with_nan_fails_the_build_naming_the_asset_and_keeps_the_served_tiles(
    city: Path, tmp_path: Path, workers: int
) -> None:
    out = tmp_path / "tiles" / "city"
    build(city, out, workers=1)
    served = out.resolve()
    nan_vertices = np.full((3, 3), np.nan, np.float32).tobytes()
    con = duckdb.connect(str(mesh_path_for(str(city))))  # written behind the MeshBatch checks, as a bad file would be
    con.execute("UPDATE meshes SET vertices = ?, vertex_count = 3 WHERE asset_id = 'b003'", [nan_vertices])
    con.execute("UPDATE meshes SET triangles = ?, triangle_count = 1 WHERE asset_id = 'b003'",
                [np.array([[0, 1, 2]], np.uint32).tobytes()])  # fmt: skip
    con.close()
    with pytest.raises(InvalidInput, match="b003"):
        build(city, out, workers=workers, limits=TreeLimits(max_features=8))
    assert out.resolve() == served
    check_all(out)


def _fields(asset: Asset) -> dict[str, object]:
    return {name: getattr(asset, name) for name in Asset.__slots__}  # type: ignore[attr-defined]


def test_fields_helper_round_trips() -> None:
    a = Asset(id="x", kind=Kind.BUILDING, install_date=date(2000, 1, 1))
    assert Asset(**_fields(a)) == a


def test_versions_are_pruned_to_the_served_and_the_previous_one(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    for _ in range(3):
        build(city, out, workers=1)
    versions = [p for p in (tmp_path / "tiles" / ".city.versions").iterdir()]
    assert len(versions) == 2 and out.resolve() in [v.resolve() for v in versions]
    assert os.path.islink(out)
