"""loaders.gl, a 3D Tiles client nobody here wrote, loads what cim builds, reads back the store's metadata, decodes
meshopt-compressed glbs, and fails broken tilesets."""

from __future__ import annotations

import copy
import inspect
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling.build import build_tiles
from cim.tiling.glb import read_glb
from cim.tiling.quadtree import TreeLimits
from tests.tiling.second_client import READER, read_with_loaders_gl, run_reader, store_rows


@pytest.fixture
def built(city: Path, tmp_path: Path) -> Path:
    """The small city's tiles, a handful of features per tile so there are several tiles per group."""
    out = tmp_path / "tiles" / "city"
    with open_store(str(city)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        build_tiles(store, meshes, out, limits=TreeLimits(max_features=8), workers=1)
    return out


def copy_of(tileset: Path, to: Path) -> Path:
    """A plain copy of a built tileset (the built one is a link into its versions folder)."""
    shutil.copytree(tileset.resolve(), to)
    return to


def test_every_feature_of_the_small_city_reads_back_as_the_store_has_it(built: Path, city: Path) -> None:
    rows = store_rows(city)
    report = read_with_loaders_gl(built, rows, features=1000)
    read = {row["values"]["id"] for c in report["contents"] for t in c["tables"] for row in t["rows"]}
    assert read == {asset_id for asset_id in rows if asset_id != "park0"}  # the park has no mesh, so no feature
    assert report["tiles"] > len(report["contents"])  # the root and the group roots hold no content
    by_id = {row["values"]["id"]: row for c in report["contents"] for t in c["tables"] for row in t["rows"]}
    assert by_id["b000"]["values"]["lift_count"] == 3 and by_id["pipe0"]["values"]["network"] == "water"
    assert by_id["b005"]["values"]["year_built"] == 0  # no install date: the noData value as loaders.gl decodes it


def test_an_implicit_tileset_reads_back_as_the_store_has_it(city: Path, tmp_path: Path) -> None:
    """3D Tiles 1.1 implicit tiling (subtree files, template content URIs): loaders.gl expands the subtrees itself."""
    if "implicit" not in inspect.signature(build_tiles).parameters:
        pytest.skip("build_tiles has no implicit tiling option yet")
    out = tmp_path / "tiles" / "city"
    with open_store(str(city)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        build_tiles(store, meshes, out, limits=TreeLimits(max_features=8), workers=1, implicit=True)  # type: ignore[call-arg]
    assert "implicitTiling" in (out / "buildings" / "tileset.json").read_text()
    rows = store_rows(city)
    report = read_with_loaders_gl(out, rows, features=1000)
    read = {row["values"]["id"] for c in report["contents"] for t in c["tables"] for row in t["rows"]}
    assert read == {asset_id for asset_id in rows if asset_id != "park0"}
    assert len([c for c in report["contents"] if c["uri"].startswith("buildings/")]) > 1


def test_the_root_sphere_loaders_gl_computes_holds_the_city(built: Path, city: Path) -> None:
    report = read_with_loaders_gl(built, None)
    centre, radius = np.asarray(report["root"]["sphere"]["center"]), report["root"]["sphere"]["radius"]
    lon, lat, _ = report["root"]["cartographicCenter"]
    assert 121.46 < lon < 121.50 and 31.22 < lat < 31.26  # Shanghai, where tests/tiling/conftest.py puts the city
    assert 6_370_000 < np.linalg.norm(centre) < 6_380_000 and radius < 5_000
    for content in report["contents"]:
        for corner in content["ecefBounds"]:
            assert np.linalg.norm(np.asarray(corner) - centre) <= radius


def test_a_metadata_value_unlike_the_store_fails_the_comparison(built: Path, city: Path) -> None:
    rows = store_rows(city)
    wrong = copy.deepcopy(rows)
    wrong["b000"]["properties"]["height_m"] += 1.0
    with pytest.raises(AssertionError, match="b000.*height_m"):
        read_with_loaders_gl(built, wrong, features=1000)
    moved = copy.deepcopy(rows)
    moved["hydrant0"]["geom"] = moved["hydrant1"]["geom"]  # 380 m east of where its mesh stands
    with pytest.raises(AssertionError, match="hydrant0.*metres"):
        read_with_loaders_gl(built, moved, features=1000)


def test_a_truncated_glb_fails_the_client(built: Path, tmp_path: Path) -> None:
    broken = copy_of(built, tmp_path / "broken")
    glb = sorted((broken / "buildings").glob("*.glb"))[0]
    glb.write_bytes(glb.read_bytes()[: glb.stat().st_size // 2])
    status, report = run_reader(broken / "tileset.json")
    assert status == 1 and [e["uri"] for e in report["errors"]] == [f"buildings/{glb.name}"]
    with pytest.raises(pytest.fail.Exception, match=f"buildings/{glb.name}"):
        read_with_loaders_gl(broken)


def test_a_tileset_naming_a_missing_file_fails_the_client(built: Path, tmp_path: Path) -> None:
    broken = copy_of(built, tmp_path / "broken")
    (broken / "points" / "tileset.json").unlink()
    status, report = run_reader(broken / "tileset.json")
    assert status == 1 and [e["uri"] for e in report["errors"]] == ["points/tileset.json"]
    with pytest.raises(pytest.fail.Exception, match="points/tileset.json"):
        read_with_loaders_gl(broken)


def test_loaders_gl_decodes_a_meshopt_compressed_glb(built: Path, tmp_path: Path) -> None:
    """gltfpack (meshoptimizer's packer, from npm) compresses one of our glbs with EXT_meshopt_compression; loaders.gl
    must decode it to the same triangles in the same place. gltfpack drops the metadata extensions it does not know,
    so this checks geometry only."""
    node = shutil.which("node")
    assert node is not None  # run_reader below skipped otherwise
    plain = copy_of(built, tmp_path / "plain")
    packed = copy_of(built, tmp_path / "packed")
    glb = sorted((packed / "buildings").glob("*.glb"))[0]
    done = subprocess.run(
        [node, str(READER / "node_modules" / "gltfpack" / "cli.js"), "-i", str(glb), "-o", str(glb), "-cc"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc, _ = read_glb(glb.read_bytes())
    assert "EXT_meshopt_compression" in doc["extensionsRequired"]
    _, before = run_reader(plain / "tileset.json")
    status, after = run_reader(packed / "tileset.json")
    assert status == 0, after["errors"]
    uri = f"buildings/{glb.name}"
    was: dict[str, Any] = next(c for c in before["contents"] if c["uri"] == uri)
    now: dict[str, Any] = next(c for c in after["contents"] if c["uri"] == uri)
    assert now["triangles"] == was["triangles"] and 0 < now["vertices"] <= was["vertices"]
    # gltfpack requantizes positions (14 bits over the tile by default): centimetres here
    assert np.allclose(now["ecefBounds"], was["ecefBounds"], atol=0.5), json.dumps(
        [was["ecefBounds"], now["ecefBounds"]]
    )


def test_loaders_gl_reads_the_meshopt_glbs_cim_writes_as_the_store_has_them(
    built: Path, city: Path, tmp_path: Path
) -> None:
    """cim's own EXT_meshopt_compression pass (cim.tiling.compress, issue 24's lean geometry), metadata kept."""
    compress = pytest.importorskip("cim.tiling.compress", reason="cim has no meshopt compression pass yet")
    packed = copy_of(built, tmp_path / "packed")
    for glb in packed.rglob("*.glb"):
        glb.write_bytes(compress.compress_glb(glb.read_bytes()))
    required = [read_glb(glb.read_bytes())[0].get("extensionsRequired", []) for glb in packed.rglob("*.glb")]
    assert any("EXT_meshopt_compression" in r for r in required)
    report = read_with_loaders_gl(packed, store_rows(city), features=1000)
    assert sum(len(t["rows"]) for c in report["contents"] for t in c["tables"]) == len(store_rows(city)) - 1
