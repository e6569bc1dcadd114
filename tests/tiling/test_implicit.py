"""Implicit tiling on the small city, checked by code written here from the 3D Tiles 1.1 specification ("Implicit
Tiling": subtree binary format, availability, Morton order, subdivision rules, tile metadata): our own subtree
reader and traversal, the official JSON schemas, and the explicit build of the same city as the reference."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cim.cli import main
from cim.errors import InvalidInput
from cim.geodesy import ecef_to_lonlat, enu_to_ecef_matrix
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling import build as build_module
from cim.tiling.build import BuildSummary, build_tiles, implicit_of
from cim.tiling.compress import decompress_glb
from cim.tiling.glb import read_glb
from cim.tiling.implicit import implicit_root, reframe_glb
from cim.tiling.quadtree import TreeLimits, split_key, tile_key
from tests.tiling.checks import (
    SCHEMAS,
    ecef_positions,
    feature_ids,
    gltf_validate_tiles,
    read_tile_glb,
    validate_tileset_schema,
    walk,
)
from tests.tiling.test_build import _fields

LIMITS = TreeLimits(max_features=8)  # several levels from 60 assets
SLACK_M = 0.001


def build(store_path: Path, out: Path, **options: Any) -> BuildSummary:
    with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        return build_tiles(store, meshes, out, limits=LIMITS, workers=1, **options)


# --- a subtree reader and an implicit traversal, from the specification ------------------------------------------


def validate_subtree_schema(doc: dict[str, Any]) -> None:
    def retrieve(uri: str) -> Resource[Any]:
        return Resource.from_contents(
            json.loads(Path(uri.removeprefix("file://")).read_text()), default_specification=DRAFT202012
        )

    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    root = {"$ref": f"file://{SCHEMAS / 'Subtree' / 'subtree.schema.json'}"}
    jsonschema.Draft202012Validator(root, registry=registry).validate(doc)


def read_subtree(data: bytes, levels: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON of a binary subtree and its availability bits (``tile``, ``content``, ``child``), after checking
    the header, chunk lengths and padding, buffer views and bitstream lengths the spec prescribes."""
    magic, version, json_length, binary_length = struct.unpack_from("<IIQQ", data, 0)
    assert magic == 0x74627573 and version == 1  # "subt", version 1
    assert len(data) == 24 + json_length + binary_length
    assert json_length % 8 == 0 and binary_length % 8 == 0  # each chunk ends on an 8-byte boundary
    text = data[24 : 24 + json_length]
    assert text.rstrip(b" ") == text.rstrip(), "JSON chunk padded with something else than spaces"
    doc = json.loads(text)
    validate_subtree_schema(doc)
    binary = data[24 + json_length :]
    assert len(doc["buffers"]) == 1 and "uri" not in doc["buffers"][0]  # the internal buffer only
    assert doc["buffers"][0]["byteLength"] <= binary_length
    covered = np.zeros(binary_length, bool)
    for view in doc["bufferViews"]:
        assert view["buffer"] == 0 and view["byteOffset"] % 8 == 0
        assert view["byteOffset"] + view["byteLength"] <= doc["buffers"][0]["byteLength"]
        assert not covered[view["byteOffset"] : view["byteOffset"] + view["byteLength"]].any(), "views overlap"
        covered[view["byteOffset"] : view["byteOffset"] + view["byteLength"]] = True
    assert not np.frombuffer(binary, np.uint8)[~covered].any(), "binary padding is not zeros"
    nodes = (4**levels - 1) // 3
    bits = {
        "tile": _availability(doc["tileAvailability"], nodes, doc, binary),
        "content": _availability(doc["contentAvailability"][0], nodes, doc, binary),
        "child": _availability(doc["childSubtreeAvailability"], 4**levels, doc, binary),
    }
    assert bits["tile"].any(), "a subtree must have at least one available tile"
    assert not (bits["content"] & ~bits["tile"]).any(), "content available on an unavailable tile"
    return doc, bits


def _availability(spec: dict[str, Any], length: int, doc: dict[str, Any], binary: bytes) -> np.ndarray:
    if "constant" in spec:
        assert "bitstream" not in spec
        return np.full(length, bool(spec["constant"]))
    view = doc["bufferViews"][spec["bitstream"]]
    assert view["byteLength"] == math.ceil(length / 8), "bitstream length"
    raw = np.frombuffer(binary, np.uint8, count=view["byteLength"], offset=view["byteOffset"])
    bits = np.unpackbits(raw, bitorder="little")
    assert not bits[length:].any(), "bits past the end of a bitstream are set"
    assert int(bits[:length].sum()) == spec["availableCount"]
    return bits[:length].astype(bool)


def interleave(x: int, y: int, bits: int) -> int:
    return sum((((x >> b) & 1) << (2 * b)) | (((y >> b) & 1) << (2 * b + 1)) for b in range(bits))


def traverse(group: Path) -> tuple[dict[str, Any], dict[tuple[int, int, int], dict[str, Any]]]:
    """Every available tile of the group's implicit tileset, from its subtrees: ``{(level, x, y): {"content": bool,
    "region": [6 floats]}}`` — walking the tree of subtrees the way the spec lays it out."""
    tileset = json.loads((group / "tileset.json").read_text())
    root = tileset["root"]
    tiling = root["implicitTiling"]
    assert tiling["subdivisionScheme"] == "QUADTREE" and root["refine"] == "ADD"
    levels = tiling["subtreeLevels"]
    region_property = _region_property(tileset["schema"])
    tiles: dict[tuple[int, int, int], dict[str, Any]] = {}
    pending = [(0, 0, 0)]
    while pending:
        top = pending.pop()
        uri = tiling["subtrees"]["uri"].format(level=top[0], x=top[1], y=top[2])
        doc, bits = read_subtree((group / uri).read_bytes(), levels)
        assert bits["tile"][0], "a subtree's root tile is unavailable"
        table = doc["propertyTables"][doc["tileMetadata"]]
        assert table["count"] == int(bits["tile"].sum())  # one value per available tile, in availability order
        view = doc["bufferViews"][table["properties"][region_property]["values"]]
        assert view["byteLength"] == table["count"] * 6 * 8
        binary = (group / uri).read_bytes()[24 + struct.unpack_from("<Q", (group / uri).read_bytes(), 8)[0] :]
        regions = np.frombuffer(binary, np.float64, count=table["count"] * 6, offset=view["byteOffset"]).reshape(-1, 6)
        for depth in range(levels):
            offset = (4**depth - 1) // 3
            for x in range(1 << depth):
                for y in range(1 << depth):
                    index = offset + interleave(x, y, depth)
                    if not bits["tile"][index]:
                        continue
                    coords = (top[0] + depth, (top[1] << depth) + x, (top[2] << depth) + y)
                    tiles[coords] = {"content": bool(bits["content"][index]), "index": index}
        # metadata values follow the order of availability bits
        fresh = sorted((c for c in tiles if "region" not in tiles[c]), key=lambda c: tiles[c]["index"])
        for rank, coords in enumerate(fresh):
            tiles[coords]["region"] = regions[rank].tolist()
        for x in range(1 << levels):
            for y in range(1 << levels):
                if bits["child"][interleave(x, y, levels)]:
                    child = (top[0] + levels, (top[1] << levels) + x, (top[2] << levels) + y)
                    assert (child[0] - 1, child[1] >> 1, child[2] >> 1) in tiles, "child subtree below no tile"
                    pending.append(child)
    for level, x, y in tiles:
        assert level < tiling["availableLevels"]
        assert level == 0 or (level - 1, x >> 1, y >> 1) in tiles, "an available tile's parent is unavailable"
    assert max(level for level, _, _ in tiles) == tiling["availableLevels"] - 1
    return tileset, tiles


def _region_property(schema: dict[str, Any]) -> str:
    for name, prop in schema["classes"]["tile"]["properties"].items():
        if prop.get("semantic") == "TILE_BOUNDING_REGION":
            assert (prop["type"], prop["componentType"], prop["array"], prop["count"]) == ("SCALAR", "FLOAT64", True, 6)
            return str(name)
    raise AssertionError("no TILE_BOUNDING_REGION property")


def subdivided_region(root_region: list[float], level: int, x: int, y: int) -> list[float]:
    """The region of implicit tile (level, x, y) by the spec's subdivision rule, computed directly for its level."""
    w, s, e, n, lo, hi = root_region
    dx, dy = (e - w) / (1 << level), (n - s) / (1 << level)
    return [w + dx * x, s + dy * y, w + dx * (x + 1), s + dy * (y + 1), lo, hi]


def in_region(geo: np.ndarray, region: list[float], slack_m: float = SLACK_M) -> np.ndarray:
    """Whether lon/lat (degrees)/height points lie in a region (radians), with a millimetre of slack."""
    angle = slack_m / 6_356_752.0
    lon, lat = np.radians(geo[:, 0]), np.radians(geo[:, 1])
    return (
        (lon >= region[0] - angle * 2)
        & (lon <= region[2] + angle * 2)
        & (lat >= region[1] - angle)
        & (lat <= region[3] + angle)
        & (geo[:, 2] >= region[4] - slack_m)
        & (geo[:, 2] <= region[5] + slack_m)
    )


@pytest.fixture
def built(city: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The small city built implicit and explicit."""
    implicit, explicit = tmp_path / "implicit" / "city", tmp_path / "explicit" / "city"
    build(city, implicit, implicit=True)
    build(city, explicit, implicit=False)
    return implicit, explicit


# --- the tests ---------------------------------------------------------------------------------------------------


def test_tilesets_and_subtrees_follow_the_spec_and_availability_is_the_files_written(built: tuple[Path, Path]) -> None:
    out, _ = built
    validate_tileset_schema(out / "tileset.json")
    root = json.loads((out / "tileset.json").read_text())
    assert (
        root["schema"] == json.loads((out / "buildings" / "tileset.json").read_text())["schema"]
    )  # CesiumJS reads it here
    groups = [child["content"]["uri"].split("/")[0] for child in root["root"]["children"]]
    assert sorted(groups) == ["bim", "buildings", "points", "underground"]
    for group in groups:
        validate_tileset_schema(out / group / "tileset.json")
        tileset, tiles = traverse(out / group)
        implicit_root_tile = tileset["root"]
        assert implicit_root_tile["content"]["uri"] == "{level}/{x}/{y}.glb" and "children" not in implicit_root_tile
        available = {f"{level}/{x}/{y}.glb" for (level, x, y), tile in tiles.items() if tile["content"]}
        on_disk = {p.relative_to(out / group).as_posix() for p in (out / group).rglob("*.glb")}
        assert available == on_disk  # every available content exists, and nothing else was written
        subtrees = {p.relative_to(out / group).as_posix() for p in (out / group).rglob("*.subtree")}
        levels = implicit_root_tile["implicitTiling"]["subtreeLevels"]
        assert subtrees == {f"subtrees/{lv}/{x}/{y}.subtree" for lv, x, y in tiles if lv % levels == 0}
    assert len(list((out / "buildings").rglob("*.glb"))) > 3  # the limits made a real tree
    assert len(list((out / "buildings").rglob("*.subtree"))) > 1  # and a tree of subtrees


def test_geometric_error_halves_per_level_from_the_cell_size(built: tuple[Path, Path]) -> None:
    out, explicit = built
    tileset = json.loads((out / "buildings" / "tileset.json").read_text())
    ex = json.loads((explicit / "buildings" / "tileset.json").read_text())
    # the explicit root may sit deeper than the implicit one (which widens to hold every overhang): compare per metre
    root_error = tileset["root"]["geometricError"]
    assert tileset["geometricError"] == root_error
    ratio = math.log2(root_error / ex["root"]["geometricError"])
    assert abs(ratio - round(ratio)) < 0.01  # the same cell-size scale, a whole number of levels apart


def test_every_asset_is_found_once_at_the_explicit_builds_positions(built: tuple[Path, Path]) -> None:
    out, explicit = built
    explicit_tiles = {t["glb"].relative_to(explicit).as_posix(): t for t in walk(explicit)}
    assert explicit_tiles
    compared = 0
    for group in ("buildings", "bim", "underground", "points"):
        tileset, tiles = traverse(out / group)
        world = np.asarray(tileset["root"]["transform"], np.float64).reshape(4, 4).T
        root_key = _root_key(tileset)
        found: list[str] = []
        for (level, x, y), tile in tiles.items():
            if not tile["content"]:
                continue
            doc, binary = read_tile_glb(out / group / f"{level}/{x}/{y}.glb")
            ids = feature_ids(doc, binary)
            found.extend(ids)
            r_level, r_x, r_y = split_key(root_key)
            absolute = f"{group}/{r_level + level}_{(r_x << level) + x}_{(r_y << level) + y}.glb"
            reference = explicit_tiles.pop(absolute)
            ex_doc, ex_binary = read_tile_glb(reference["glb"])
            assert ids == feature_ids(ex_doc, ex_binary)
            ours, theirs = ecef_positions(doc, binary, world), ecef_positions(ex_doc, ex_binary, reference["world"])
            assert ours.shape == theirs.shape
            assert np.abs(ours - theirs).max() < 0.01  # within a centimetre
            compared += 1
        assert len(found) == len(set(found)) > 0, f"{group}: an asset twice"
    assert not explicit_tiles, f"tiles of the explicit build not found implicitly: {sorted(explicit_tiles)}"
    assert compared >= 6


def test_every_vertex_lies_in_its_tile_region_and_regions_nest(built: tuple[Path, Path]) -> None:
    out, _ = built
    for group in ("buildings", "bim", "underground", "points"):
        tileset, tiles = traverse(out / group)
        world = np.asarray(tileset["root"]["transform"], np.float64).reshape(4, 4).T
        root_region = tileset["root"]["boundingVolume"]["region"]
        for (level, x, y), tile in tiles.items():
            region = tile["region"]
            cell = subdivided_region(root_region, level, x, y)
            if level == 0:  # the implicit root's region holds the root tile's (spatial coherence)
                assert all(region[i] >= cell[i] - 1e-12 for i in (0, 1, 4)), (region, cell)
                assert all(region[i] <= cell[i] + 1e-12 for i in (2, 3, 5)), (region, cell)
            else:
                parent = tiles[(level - 1, x >> 1, y >> 1)]["region"]
                assert all(region[i] >= parent[i] for i in (0, 1, 4)) and all(region[i] <= parent[i] for i in (2, 3, 5))
            if not tile["content"]:
                continue
            doc, binary = read_tile_glb(out / group / f"{level}/{x}/{y}.glb")
            geo = ecef_to_lonlat(ecef_positions(doc, binary, world))
            inside = in_region(geo, region)
            assert inside.all(), f"{group} {level}/{x}/{y}: {int((~inside).sum())} vertices outside its region"
    # buried pipes: the underground region reaches below the ellipsoid
    assert json.loads((out / "underground" / "tileset.json").read_text())["root"]["boundingVolume"]["region"][4] < 0


def test_a_tile_overhanging_its_cell_stays_inside_its_region(built: tuple[Path, Path]) -> None:
    """The 2 km-long pipes sit in cells smaller than themselves: the derived cell region would cut them, the tile
    metadata region does not."""
    out, _ = built
    tileset, tiles = traverse(out / "underground")
    root_region = tileset["root"]["boundingVolume"]["region"]
    overhanging = 0
    for (level, x, y), tile in tiles.items():
        cell = subdivided_region(root_region, level, x, y)
        overhanging += tile["content"] and (tile["region"][0] < cell[0] or tile["region"][2] > cell[2])
    assert overhanging >= 1


def test_gltf_validator_accepts_the_reframed_glbs(built: tuple[Path, Path]) -> None:
    out, _ = built
    reports = gltf_validate_tiles(sorted(out.rglob("*.glb")))
    bad = {f: r for f, r in reports.items() if r["errors"]}
    assert not bad, json.dumps(bad)[:2000]


def test_loaders_gl_reads_the_implicit_tileset_with_the_stores_values(built: tuple[Path, Path], city: Path) -> None:
    """The second client (tests/tiling/second_client.py, loaders.gl) where it is merged: every glb, its metadata
    against the store and its placement."""
    second = pytest.importorskip("tests.tiling.second_client", reason="the loaders.gl second client is not merged yet")
    out, _ = built
    report = second.read_with_loaders_gl(out, second.store_rows(city), features=100)
    assert len(report["contents"]) == len(list(out.rglob("*.glb")))


def test_reframe_glb_rewrites_only_the_json_chunk(built: tuple[Path, Path]) -> None:
    """On a tile as built (meshopt-compressed buffer views): the binary chunk is kept byte for byte, and the
    decompressed vertices are moved by the matrix."""
    _, explicit = built
    glb = next((explicit / "buildings").glob("*.glb")).read_bytes()
    assert "EXT_meshopt_compression" in read_glb(glb)[0].get("extensionsUsed", [])
    move = enu_to_ecef_matrix((0.001, 0.002, 3.0)) @ np.linalg.inv(enu_to_ecef_matrix((0.0, 0.0, 0.0)))
    moved = reframe_glb(glb, move)
    assert read_glb(moved)[1] == read_glb(glb)[1]
    json_length = struct.unpack_from("<I", glb, 12)[0]
    moved_json_length = struct.unpack_from("<I", moved, 12)[0]
    assert moved[20 + moved_json_length :] == glb[20 + json_length :]  # the binary chunk, header included
    assert struct.unpack_from("<I", moved, 8)[0] == len(moved) and moved_json_length % 4 == 0
    doc, binary = read_glb(decompress_glb(glb))
    moved_doc, moved_binary = read_glb(decompress_glb(moved))
    before = ecef_positions(doc, binary, np.eye(4))
    after = ecef_positions(moved_doc, moved_binary, np.eye(4))
    expected = before @ move[:3, :3].T + move[:3, 3]
    assert np.abs(after - expected).max() < 1e-6
    glb = decompress_glb(glb)
    json_length = struct.unpack_from("<I", glb, 12)[0]
    # a node given as translation/rotation/scale is folded into one matrix
    doc["nodes"][0].pop("matrix", None)
    doc["nodes"][0].update(
        translation=[1.0, 2.0, 3.0], rotation=[0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)], scale=[2.0, 2.0, 2.0]
    )
    text = json.dumps(doc).encode()
    text += b" " * ((-len(text)) % 4)
    rest = glb[20 + json_length :]
    trs = struct.pack("<IIIII", 0x46546C67, 2, 20 + len(text) + len(rest), len(text), 0x4E4F534A) + text + rest
    trs_doc, _ = read_glb(trs)
    moved_doc, _ = read_glb(reframe_glb(trs, np.eye(4)))
    assert "translation" not in moved_doc["nodes"][0]
    assert np.allclose(ecef_positions(moved_doc, binary, np.eye(4)), _trs_positions(trs_doc, binary))


def _trs_positions(doc: dict[str, Any], binary: bytes) -> np.ndarray:
    """Positions with node 0's translation/rotation/scale composed by hand (glTF: T · R · S)."""
    node = doc["nodes"][0]
    x, y, z, w = node["rotation"]
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * node["scale"]
    matrix[:3, 3] = node["translation"]
    doc = {**doc, "nodes": [{"mesh": node["mesh"], "matrix": matrix.T.ravel().tolist()}, *doc["nodes"][1:]]}
    return ecef_positions(doc, binary, np.eye(4))


def test_a_rebuild_after_one_change_rewrites_one_implicit_tile(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    first = build(city, out, implicit=True)
    before = {p.relative_to(out.resolve()): p.stat().st_ino for p in out.resolve().rglob("*.glb")}
    with open_store(str(city)) as store:
        changed = store.get_asset("b007")
        from cim.model import Asset, AssetBatch

        store.upsert_assets(AssetBatch.from_assets([Asset(**{**_fields(changed), "name": "renamed block 7"})]))
    again = build(city, out, implicit=True)
    after = {p.relative_to(out.resolve()): p.stat().st_ino for p in out.resolve().rglob("*.glb")}
    assert again.planned_from_changes and again.written == 1
    assert again.reused == sum(g.tiles for g in first.tilesets.values()) - 1
    assert set(before) == set(after) and sum(before[k] != after[k] for k in after) == 1
    fresh = tmp_path / "fresh" / "city"
    build(city, fresh, implicit=True)
    for glb in fresh.rglob("*.glb"):
        assert (out / glb.relative_to(fresh)).read_bytes() == glb.read_bytes(), glb


def test_the_manifest_says_which_tiling_was_written_so_a_rebuild_after_edits_keeps_it(built: tuple[Path, Path]) -> None:
    implicit, explicit = built
    assert implicit_of(implicit.resolve()) is True and implicit_of(explicit.resolve()) is False
    assert implicit_of(implicit.parent) is None  # no build there


def test_cli_build_implicit(city: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiles" / "city"
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--store", str(city), "--out", str(out), "--implicit", "--json"])
    assert exit_.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert "implicitTiling" in json.loads((out / "buildings" / "tileset.json").read_text())["root"]
    glbs = sum(1 for _ in (out / "buildings").rglob("*.glb"))
    assert printed["tilesets"]["buildings"]["tiles"] == glbs
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--store", str(city), "--out", str(out), "--explicit", "--json"])
    assert exit_.value.code == 0
    assert "implicitTiling" not in json.loads((out / "buildings" / "tileset.json").read_text())["root"]
    assert not list((out / "buildings").rglob("*.subtree"))


def test_by_default_small_layers_stay_explicit_and_large_ones_go_implicit(
    city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(city, tmp_path / "small" / "city")
    assert (
        "implicitTiling"
        not in json.loads((tmp_path / "small" / "city" / "buildings" / "tileset.json").read_text())["root"]
    )
    monkeypatch.setattr(build_module, "AUTO_TILES", 2)
    build(city, tmp_path / "large" / "city")
    assert (
        "implicitTiling" in json.loads((tmp_path / "large" / "city" / "buildings" / "tileset.json").read_text())["root"]
    )


def test_a_layer_across_longitude_zero_cannot_be_implicit() -> None:
    lon, lat = np.array([-0.01, 0.01]), np.array([51.5, 51.5])
    with pytest.raises(InvalidInput, match="hemisphere"):
        implicit_root(int(tile_key(0, 0, 0)), lon, lat, np.array([10.0, 10.0]))
    inside = implicit_root(int(tile_key(14, 9000, 5000)), np.array([17.8]), np.array([19.9]), np.array([30.0]))
    assert split_key(inside)[0] <= 14


def _root_key(tileset: dict[str, Any]) -> int:
    """The absolute cell of the implicit root, from its region (radians)."""
    w, s, e, _ = (math.degrees(v) for v in tileset["root"]["boundingVolume"]["region"][:4])
    level = round(math.log2(360.0 / (e - w)))
    side = 360.0 / (1 << level)
    return int(tile_key(level, round((w + 180.0) / side), round((s + 90.0) / side)))
