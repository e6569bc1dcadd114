"""External tilesets mounted beside a city (cim/tiling/external.py): one made by CesiumGS's 3d-tiles-tools (content
by trimesh) placed with a transform, one our own build wrote from another store; each rule of the check from the
3D Tiles 1.1 text, broken on purpose, and its message; the pipeline's ``[[tilesets]]``; a rebuild keeps the mounts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest

from cim.errors import InvalidInput
from cim.pipeline.model import Pipeline, load_pipeline
from cim.pipeline.run import run_pipeline
from cim.tiling.external import (
    MOUNTS,
    MountSpec,
    carry_mounts,
    check_mount,
    dropped_mounts,
    mount_tilesets,
    place_matrix,
    read_mounts,
)
from tests.tiling.checks import validate_tileset_schema
from tests.tiling.conftest import small_city, write_city
from tests.tiling.external_tilesets import COLUMN_AT, SPHERE_UP, made_once

PLACE = (121.4990, 31.2330, 5.0, 30.0)
TO_ECEF = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The third-party tileset and a neighbour's built tiles, made once (copied by tests that change them)."""
    return made_once(tmp_path_factory)


@pytest.fixture
def city(made: dict[str, Path], tmp_path: Path) -> Path:
    """A built city to mount into: a copy of the neighbour's build (a folder, as a version is)."""
    out = tmp_path / "tiles" / "city"
    shutil.copytree(made["neighbour"].resolve(), out)
    return out


@pytest.fixture
def third(made: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the third-party tileset that a test may break."""
    return Path(shutil.copytree(made["third"], tmp_path / "third"))


def apply(column_major: list[float], point: tuple[float, float, float]) -> np.ndarray:
    m = np.asarray(column_major, np.float64).reshape(4, 4).T
    return np.asarray(m[:3, :3] @ np.asarray(point) + m[:3, 3], np.float64)


def test_a_3d_tiles_tools_tileset_is_mounted_where_its_place_says(city: Path, third: Path) -> None:
    spec = MountSpec("mesh", path=third, matrix=tuple(place_matrix(*PLACE)), title="Reality mesh", title_zh="实景")
    summary = mount_tilesets(city, [spec])
    assert summary.mounted == ["mesh"] and not summary.errors
    root = json.loads((city / "tileset.json").read_text())
    validate_tileset_schema(city / "tileset.json")  # the official 3D Tiles 1.1 schema, with the mount's child
    child = next(c for c in root["root"]["children"] if c["content"]["uri"].startswith("external/"))
    assert child["content"]["uri"] == "external/mesh/tileset.json"
    assert child["extras"] == {"mount": "mesh", "title": "Reality mesh", "title_zh": "实景"}
    # the sphere's centre, 120 m above the place: where an independent transform puts it (within 1 mm)
    lon, lat, height, heading = PLACE
    expected = np.array(TO_ECEF.transform(lon, lat, height + SPHERE_UP))
    assert np.linalg.norm(apply(child["transform"], (0.0, 0.0, SPHERE_UP)) - expected) < 1e-3
    # the column 150 m along the tileset's x axis: east turned 30° clockwise, i.e. on the 120° azimuth
    east, _, up = COLUMN_AT
    far_lon, far_lat, _ = GEOD.fwd(lon, lat, 90.0 + heading, east)
    expected = np.array(TO_ECEF.transform(far_lon, far_lat, height + up))
    assert np.linalg.norm(apply(child["transform"], COLUMN_AT) - expected) < 0.05  # earth curvature over 150 m
    # the child's box (in its frame) holds both; the root's box (ECEF, axis-aligned) holds the child's corners
    box = np.asarray(child["boundingVolume"]["box"])
    for point in [(0.0, 0.0, SPHERE_UP), COLUMN_AT]:
        assert np.all(np.abs(np.asarray(point) - box[:3]) <= np.abs(box[3:].reshape(3, 3)).sum(axis=0) + 1e-6)
    whole = np.asarray(root["root"]["boundingVolume"]["box"])
    assert np.all(np.abs(expected - whole[:3]) <= np.abs(whole[3:].reshape(3, 3)).sum(axis=0))
    assert root["geometricError"] >= child["geometricError"]
    # recorded for the server (folder, not served: a hidden name) and for the next build
    assert read_mounts(city)["mounts"][0]["folder"] == str(third.resolve())


def test_our_own_build_of_a_neighbour_mounts_with_its_group_tilesets(city: Path, made: dict[str, Path]) -> None:
    record = check_mount(MountSpec("neighbour", path=made["neighbour"]))
    assert record["child"]["content"]["uri"] == "external/neighbour/tileset.json"
    assert "transform" not in record["child"]  # already in ECEF: no placement
    corners = np.asarray(record["corners"])
    lon, lat, _ = pyproj.Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(*corners.mean(0))
    assert abs(lon - 121.516) < 0.01 and abs(lat - 31.227) < 0.01


def test_unmounting_restores_the_built_root_and_a_rebuild_keeps_the_mounts(city: Path, third: Path) -> None:
    built = (city / "tileset.json").read_bytes()
    mount_tilesets(city, [MountSpec("mesh", path=third, matrix=tuple(place_matrix(*PLACE)))])
    assert (city / "tileset.json").read_bytes() != built
    mount_tilesets(city, [])
    assert json.loads((city / "tileset.json").read_bytes()) == json.loads(built)


def test_a_pipeline_mounts_its_tilesets_and_a_rebuild_carries_them(tmp_path: Path, made: dict[str, Path]) -> None:
    from cim.store import open_store
    from cim.store.meshes import MeshStore, mesh_path_for
    from cim.tiling.build import build_tiles

    write_city(tmp_path / "city.duckdb", *small_city(8))
    shutil.copytree(made["third"], tmp_path / "meshes" / "third")
    (tmp_path / "city.toml").write_text(
        'name = "mounting"\nstore = "city.duckdb"\ntiles = "tiles/city"\n'
        '[[tilesets]]\nname = "mesh"\npath = "meshes/third"\nplace = [121.499, 31.233, 5.0, 30.0]\n'
        'title = "Reality mesh"\ntitle_zh = "实景模型"\n'
    )
    pipeline = load_pipeline(tmp_path / "city.toml")
    pipeline = pipeline.model_copy(
        update={"store": str(tmp_path / "city.duckdb"), "tiles": str(tmp_path / "tiles" / "city")}
    )
    summary = run_pipeline(pipeline)
    assert summary.ok, summary.to_dict()
    assert summary.tilesets == {"mounted": ["mesh"], "errors": []}
    out = tmp_path / "tiles" / "city"
    uris = [c["content"]["uri"] for c in json.loads((out / "tileset.json").read_text())["root"]["children"]]
    assert "external/mesh/tileset.json" in uris
    with open_store(str(tmp_path / "city.duckdb")) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        build_tiles(store, meshes, out, workers=1)  # a new version folder: the mount comes along
    assert (out.resolve() / MOUNTS).is_file()
    uris = [c["content"]["uri"] for c in json.loads((out / "tileset.json").read_text())["root"]["children"]]
    assert "external/mesh/tileset.json" in uris and "buildings/tileset.json" in uris
    broken = tmp_path / "meshes" / "third" / "tileset.json"
    broken.write_text(broken.read_text().replace('"refine"', '"refinement"'))
    summary = run_pipeline(pipeline)  # broken since: reported, and taken off the root (no blank layer)
    assert not summary.ok and summary.tilesets is not None
    assert summary.tilesets["errors"] == [
        'tileset "mesh" tileset.json root.refine — is required on the root tile: "ADD" or "REPLACE"'
    ]
    uris = [c["content"]["uri"] for c in json.loads((out / "tileset.json").read_text())["root"]["children"]]
    assert not any(u.startswith("external/") for u in uris)


Breaker = Callable[[Path, dict[str, Any]], None]


def _edit(change: Callable[[dict[str, Any]], None]) -> Breaker:
    def breaker(folder: Path, doc: dict[str, Any]) -> None:
        change(doc)
        (folder / "tileset.json").write_text(json.dumps(doc))

    return breaker


def _set(path: str, value: Any) -> Breaker:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        holder = doc
        for key in parents:
            holder = holder[int(key)] if key.isdigit() else holder[key]
        if value is _DELETE:
            del holder[last]
        else:
            holder[last] = value

    return _edit(change)


_DELETE = object()


def _write(name: str, data: bytes) -> Breaker:
    return lambda folder, doc: (folder / name).write_bytes(data) and None


def _link_out(folder: Path, doc: dict[str, Any]) -> None:
    outside = folder.parent / "outside.glb"
    outside.write_bytes((folder / "sphere.glb").read_bytes())
    (folder / "sphere.glb").unlink()
    (folder / "sphere.glb").symlink_to(outside)


#: (how to break the tileset, the field the message names, what it says) — each from a rule of the 3D Tiles 1.1 text
BROKEN: dict[str, tuple[Breaker, str, str]] = {
    "not JSON": (_write("tileset.json", b'{"asset": '), "tileset.json", "is not JSON"),
    "NaN is not JSON": (_write("tileset.json", b'{"geometricError": NaN}'), "tileset.json", "is not JSON"),
    "asset required": (_set("asset", _DELETE), "tileset.json asset", "is required"),
    "asset.version required": (_set("asset.version", _DELETE), "tileset.json asset.version", "is required"),
    "unknown version": (_set("asset.version", "2.0"), "tileset.json asset.version", "'2.0' is not a 3D Tiles version"),
    "geometricError minimum 0": (_set("geometricError", -1), "tileset.json geometricError", "at least 0"),
    "geometricError required": (_set("geometricError", _DELETE), "tileset.json geometricError", "is required"),
    "root required": (_set("root", _DELETE), "tileset.json root", "is required"),
    "boundingVolume required": (_set("root.boundingVolume", _DELETE), "root.boundingVolume", "is required"),
    "one of box region sphere": (_set("root.boundingVolume", {"cube": [1]}), "root.boundingVolume", "has none of"),
    "box of 12": (_set("root.boundingVolume", {"box": [0, 0, 0]}), "root.boundingVolume.box", "12 numbers"),
    "region of 6": (_set("root.boundingVolume", {"region": [0, 0, 1]}), "root.boundingVolume.region", "6 numbers"),
    "region in radians": (
        _set("root.boundingVolume", {"region": [121.4, 31.2, 121.5, 31.3, 0, 10]}),
        "root.boundingVolume.region",
        "not in [-π, π] radians",
    ),
    "south not above north": (
        _set("root.boundingVolume", {"region": [2.1, 0.6, 2.2, 0.5, 0, 10]}),
        "root.boundingVolume.region",
        "south is larger than north",
    ),
    "min height not above max": (
        _set("root.boundingVolume", {"region": [2.1, 0.5, 2.2, 0.6, 10, 0]}),
        "root.boundingVolume.region",
        "minimum height is larger",
    ),
    "sphere radius": (_set("root.boundingVolume", {"sphere": [0, 0, 0, -1]}), ".sphere", "the radius is negative"),
    "tile geometricError": (
        _set("root.children.0.geometricError", "big"),
        "root.children[0].geometricError",
        "a number",
    ),
    "refine required on the root": (_set("root.refine", _DELETE), "root.refine", "is required on the root tile"),
    "refine ADD or REPLACE": (_set("root.children.1.refine", "add"), "root.children[1].refine", 'neither "ADD"'),
    "transform of 16": (_set("root.transform", [1, 0, 0, 0]), "root.transform", "16 numbers"),
    "content uri required": (_set("root.children.0.content", {"url": "column.b3dm"}), "content.uri", "is required"),
    "content or contents": (
        _set("root.children.0.contents", [{"uri": "column.b3dm"}]),
        "root.children[0].contents",
        "a tile has one or the other",
    ),
    "children not empty": (_set("root.children", []), "root.children", "non-empty array"),
    "content exists": (_set("root.children.1.content.uri", "gone.glb"), "root.children[1].content.uri", "'gone.glb'"),
    "content inside": (_set("root.children.1.content.uri", "../x.glb"), "content.uri", "points outside"),
    "content not absolute": (_set("root.children.1.content.uri", "/etc/x.glb"), "content.uri", "not a relative URI"),
    "b3dm magic": (_write("column.b3dm", b"glTF" + bytes(60)), "root.children[0].content.uri", "not the b3dm magic"),
    "glb magic": (_write("sphere.glb", b"<html>oops</html>"), "root.children[1].content.uri", "not the glb magic"),
    "no symlink out": (_link_out, "root.children[1].content.uri", "is not in the mounted tileset"),
    "extensionsRequired in extensionsUsed": (
        _set("extensionsRequired", ["3DTILES_content_gltf"]),
        "tileset.json extensionsRequired",
        "not also in extensionsUsed",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_tileset_is_refused_naming_the_tileset_file_and_field(city: Path, third: Path, case: str) -> None:
    breaker, field, why = BROKEN[case]
    breaker(third, json.loads((third / "tileset.json").read_text()))
    summary = mount_tilesets(city, [MountSpec("mesh", path=third)])
    assert summary.mounted == [] and len(summary.errors) == 1, summary
    message = summary.errors[0]
    assert message.startswith('tileset "mesh" tileset.json'), message
    what, _, reason = message.partition(" — ")
    assert field in what and why in reason, message
    assert "external/mesh" not in (city / "tileset.json").read_text()


def test_a_broken_external_tileset_it_names_is_reported_with_its_file(city: Path, third: Path) -> None:
    nested = third / "more"
    nested.mkdir()
    (nested / "tileset.json").write_text(json.dumps({"asset": {"version": "1.1"}, "geometricError": 1}))
    doc = json.loads((third / "tileset.json").read_text())
    doc["root"]["children"][0]["content"]["uri"] = "more/tileset.json"
    (third / "tileset.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=r'^tileset "mesh" more/tileset.json root — is required'):
        check_mount(MountSpec("mesh", path=third))


def test_a_region_cannot_be_moved_by_a_transform(city: Path, third: Path) -> None:
    doc = json.loads((third / "tileset.json").read_text())
    doc["root"]["boundingVolume"] = {"region": [2.1, 0.5, 2.2, 0.6, 0, 300]}
    (third / "tileset.json").write_text(json.dumps(doc))
    assert check_mount(MountSpec("mesh", path=third))["child"]["boundingVolume"]["region"][0] == 2.1
    with pytest.raises(InvalidInput, match="is a region, which no transform moves"):
        check_mount(MountSpec("mesh", path=third, matrix=tuple(place_matrix(*PLACE))))


def test_a_missing_folder_and_an_unbuilt_city_are_clear(city: Path, tmp_path: Path) -> None:
    summary = mount_tilesets(city, [MountSpec("gone", path=tmp_path / "nowhere")])
    assert summary.errors == ['tileset "gone" path — is not a folder holding tileset.json (or a .json file)']
    with pytest.raises(InvalidInput, match="has no built tileset.json"):
        mount_tilesets(tmp_path / "unbuilt", [])


def _pipeline_error(tmp_path: Path, entry: str) -> str:
    (tmp_path / "p.toml").write_text(f'name = "p"\n\n[[tilesets]]\n{entry}\n')
    with pytest.raises(InvalidInput) as raised:
        load_pipeline(tmp_path / "p.toml")
    return str(raised.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('name = "m"\npath = "x"\ntitel = "typo"', "tilesets.0.titel (line 6): unknown key (a typo?)"),
        ('name = "m"\nurl = "http://example.com/t/tileset.json"', "host 'example.com' is not this machine"),
        ('name = "m"\nurl = "file:///etc/tileset.json"', "is not an http(s) URL"),
        ('name = "m"\npath = "x"\nurl = "http://127.0.0.1/t.json"', "give exactly one of path or url"),
        ('name = "m"', "give exactly one of path or url"),
        ('name = "Bad Name"\npath = "x"', "tilesets.0.name (line 4): String should match pattern"),
        ('name = "m"\npath = "x"\nmatrix = [1, 0, 0]', "matrix has 3 numbers"),
        ('name = "m"\npath = "x"\nplace = [31.2, 121.5, 0, 0]', "lon or lat out of range"),
    ],
)
def test_a_pipeline_tileset_entry_is_checked(tmp_path: Path, entry: str, message: str) -> None:
    assert message in _pipeline_error(tmp_path, entry)


def test_two_tilesets_of_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('name = "p"\n[[tilesets]]\nname = "a"\npath = "x"\n[[tilesets]]\nname = "a"\n'
                                     'url = "http://localhost:9/t.json"\n')  # fmt: skip
    with pytest.raises(InvalidInput, match="the name a is given twice"):
        load_pipeline(tmp_path / "p.toml")
    local = Pipeline(name="p", tilesets=[{"name": "a", "url": "http://[::1]:9/t/tileset.json"}])  # type: ignore[list-item]
    assert local.tilesets[0].url is not None


def _cim(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=300, env=env)


def test_cim_build_mounts_what_it_is_told_and_refuses_bad_mounts(tmp_path: Path, made: dict[str, Path]) -> None:
    write_city(tmp_path / "city.duckdb", *small_city(6))
    third = Path(shutil.copytree(made["third"], tmp_path / "third"))
    store, out = str(tmp_path / "city.duckdb"), str(tmp_path / "tiles" / "city")
    done = _cim("build", "--store", store, "--out", out, "--mount", f"mesh={third}")
    assert done.returncode == 0, done.stderr
    assert "external tilesets mounted: mesh" in done.stdout
    assert read_mounts((tmp_path / "tiles" / "city").resolve())["mounts"][0]["name"] == "mesh"
    for given, message in [
        ("bad", "error: --mount bad — give NAME=PATH_OR_URL"),
        ("m=http://example.com/t.json", "error: --mount m — host 'example.com' is not this machine"),
        (f"m={tmp_path / 'nowhere'}", 'error: tileset "m" path — is not a folder holding tileset.json'),
    ]:
        done = _cim("build", "--store", store, "--out", out, "--mount", given)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_implicit_city_root_region_grows_to_hold_a_mount(third: Path) -> None:
    from cim.tiling.external import with_mounts

    region = [np.radians(121.50), np.radians(31.20), np.radians(121.51), np.radians(31.21), -20.0, 300.0]
    built = {"asset": {"version": "1.1"}, "geometricError": 50.0, "root": {"boundingVolume": {"region": region},
             "geometricError": 50.0, "refine": "ADD", "children": []}}  # fmt: skip
    record = check_mount(MountSpec("mesh", path=third, matrix=tuple(place_matrix(*PLACE))))
    grown = with_mounts(built, [record])["root"]["boundingVolume"]["region"]
    west, south, east, north, low, high = grown
    assert west <= np.radians(PLACE[0]) <= east and south <= np.radians(PLACE[1]) <= north
    assert low == -20.0 and high >= PLACE[2] + 240.0 - 1.0  # the column's top
    assert built["root"]["children"] == []  # the built root is kept as it was


def test_a_pipeline_with_tilesets_but_no_tiles_folder_says_so(tmp_path: Path, third: Path) -> None:
    pipeline = Pipeline(
        name="no-tiles",
        store=str(tmp_path / "city.duckdb"),
        tilesets=[{"name": "mesh", "path": str(third)}],  # type: ignore[list-item]
    )
    summary = run_pipeline(pipeline)
    assert not summary.ok
    assert summary.tilesets == {
        "mounted": [],
        "errors": ["tilesets — need the pipeline's tiles folder (tiles = …) to mount into"],
    }


def _fresh_build(made: dict[str, Path], tmp_path: Path) -> Path:
    """A new version folder as a build writes it (its root without mounts), for carry_mounts to carry into."""
    return Path(shutil.copytree(made["neighbour"].resolve(), tmp_path / "next"))


def test_a_rebuild_checks_its_mounts_again_and_drops_the_broken_ones(
    city: Path, third: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    healthy = Path(shutil.copytree(made["third"], tmp_path / "healthy"))
    mounted = mount_tilesets(
        city,
        [
            MountSpec("mesh", path=third, matrix=tuple(place_matrix(*PLACE))),
            MountSpec("kept", path=healthy, matrix=tuple(place_matrix(*PLACE)), title="Kept", title_zh="留"),
            MountSpec("moved", path=Path(shutil.copytree(made["third"], tmp_path / "moved"))),
        ],
    )
    assert mounted.mounted == ["mesh", "kept", "moved"] and not mounted.errors
    (third / "tileset.json").unlink()
    shutil.rmtree(tmp_path / "moved")
    after = _fresh_build(made, tmp_path)
    dropped = carry_mounts(city, after)
    assert dropped == [
        {"name": "mesh", "why": 'tileset "mesh" tileset.json — no such file in the mounted tileset'},
        {"name": "moved", "why": f'tileset "moved" folder {tmp_path / "moved"} — is gone (deleted or moved since it'
                                 " was mounted)"},
    ]  # fmt: skip
    assert dropped_mounts(after) == dropped  # recorded for cim build to report
    assert [m["name"] for m in read_mounts(after)["mounts"]] == ["kept"]
    children = json.loads((after / "tileset.json").read_text())["root"]["children"]
    mounts = [c for c in children if c["content"]["uri"].startswith("external/")]
    assert [c["content"]["uri"] for c in mounts] == ["external/kept/tileset.json"]  # nothing that points at nothing
    before = next(m for m in read_mounts(city)["mounts"] if m["name"] == "kept")
    assert mounts[0] == before["child"]  # the healthy one as it was: transform, box, titles
    mount_tilesets(after, [], keep_others=True)  # a later change of the mounts: the drops are old news
    assert dropped_mounts(after) == []


def test_a_rebuild_with_healthy_mounts_drops_none(
    city: Path, third: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    mount_tilesets(city, [MountSpec("mesh", path=third)])
    after = _fresh_build(made, tmp_path)
    assert carry_mounts(city, after) == []
    assert [m["name"] for m in read_mounts(after)["mounts"]] == ["mesh"] and dropped_mounts(after) == []
    assert "dropped" not in read_mounts(after)


def test_cim_build_drops_a_mount_broken_since_and_says_so(tmp_path: Path, made: dict[str, Path]) -> None:
    write_city(tmp_path / "city.duckdb", *small_city(6))
    broken = Path(shutil.copytree(made["third"], tmp_path / "broken"))
    healthy = Path(shutil.copytree(made["third"], tmp_path / "healthy"))
    store, out = str(tmp_path / "city.duckdb"), tmp_path / "tiles" / "city"
    done = _cim("build", "--store", store, "--out", str(out), "--mount", f"mesh={broken}", "--mount", f"ok={healthy}")
    assert done.returncode == 0, done.stderr
    (broken / "tileset.json").unlink()
    done = _cim("build", "--store", store, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr  # the city's own tiles are built all the same
    why = 'tileset "mesh" tileset.json — no such file in the mounted tileset'
    assert f"warning: external tileset mesh is no longer mounted: {why}" in done.stderr, done.stderr
    assert json.loads(done.stdout)["mounts_dropped"] == [{"name": "mesh", "why": why}]
    assert [m["name"] for m in read_mounts(out.resolve())["mounts"]] == ["ok"]
    uris = [c["content"]["uri"] for c in json.loads((out / "tileset.json").read_text())["root"]["children"]]
    assert "external/ok/tileset.json" in uris and "external/mesh/tileset.json" not in uris
    done = _cim("build", "--store", store, "--out", str(out))  # the next rebuild has nothing more to drop
    assert done.returncode == 0 and "no longer mounted" not in done.stderr + done.stdout, done.stderr
    assert [m["name"] for m in read_mounts(out.resolve())["mounts"]] == ["ok"]
