"""EXT_meshopt_compression of the tiles: exact round trips, clear errors on broken data, the extension's rules on
the JSON (written from its text), the build option, and glb gzipped on the wire by a live ``cim serve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cim.cli import main
from cim.errors import InvalidInput
from cim.tiling.compress import EXTENSION, _pack, compress_glb, decompress_glb
from cim.tiling.glb import accessor_array, read_glb
from cim.tiling.quadtree import TreeLimits
from tests.api.conftest import cim_serve
from tests.tiling.checks import check_all, gltf_validate
from tests.tiling.test_build import build

_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@pytest.fixture
def plain_tiles(city: Path, tmp_path: Path) -> list[bytes]:
    """The glbs of the small city built without compression, largest first."""
    out = tmp_path / "plain" / "city"
    build(city, out, limits=TreeLimits(max_features=8), workers=1, compress="none")
    files = sorted(out.resolve().rglob("*.glb"))
    assert files
    return sorted((f.read_bytes() for f in files), key=len, reverse=True)  # largest first: meshopt pays there


def same_accessors(a: bytes, b: bytes) -> None:
    """Every accessor of ``a`` holds the values it holds in ``b``; triangle lists may start each triangle at another
    corner (meshoptimizer's TRIANGLES codec rotates triangles, keeping their winding)."""
    doc_a, bin_a = read_glb(a)
    doc_b, bin_b = read_glb(b)
    assert len(doc_a["accessors"]) == len(doc_b["accessors"])
    triangle_lists = {p["indices"] for m in doc_a.get("meshes", []) for p in m["primitives"] if p.get("mode", 4) == 4}
    for index in range(len(doc_a["accessors"])):
        x, y = accessor_array(doc_a, bin_a, index), accessor_array(doc_b, bin_b, index)
        assert x.dtype == y.dtype and x.shape == y.shape
        if index in triangle_lists and not np.array_equal(x, y):
            tx, ty = x.reshape(-1, 3), y.reshape(-1, 3)
            rotated = [np.all(np.roll(tx, k, axis=1) == ty, axis=1) for k in range(3)]
            assert np.any(rotated, axis=0).all(), f"accessor {index}: triangles differ"
        else:
            assert np.array_equal(x, y), f"accessor {index} differs"


def test_a_round_trip_keeps_every_accessor_and_the_metadata(plain_tiles: list[bytes]) -> None:
    for plain in plain_tiles:
        packed = compress_glb(plain)
        assert len(packed) < len(plain) or packed == plain  # a tiny tile may not pay for the extension's JSON
        back = decompress_glb(packed)
        same_accessors(plain, back)
        doc_plain, _ = read_glb(plain)
        doc_back, _ = read_glb(back)
        assert doc_back["extensions"] == doc_plain["extensions"]
        assert EXTENSION not in doc_back.get("extensionsUsed", [])
        assert doc_back.get("extensionsRequired", []) == doc_plain.get("extensionsRequired", [])
        assert len(doc_back["buffers"]) == 1


def test_index_lists_that_are_not_triangles_round_trip_exactly_in_indices_mode(plain_tiles: list[bytes]) -> None:
    doc, binary = read_glb(plain_tiles[0])
    for mesh in doc["meshes"]:
        for primitive in mesh["primitives"]:
            primitive["mode"] = 1  # lines: the TRIANGLES codec may not be used
    lines = _pack(doc, binary)
    packed = compress_glb(lines)
    modes = {v["extensions"][EXTENSION]["mode"] for v in read_glb(packed)[0]["bufferViews"] if "extensions" in v}
    assert "INDICES" in modes and "TRIANGLES" not in modes
    back_doc, back_bin = read_glb(decompress_glb(packed))
    for index in range(len(doc["accessors"])):
        assert np.array_equal(accessor_array(doc, binary, index), accessor_array(back_doc, back_bin, index))


def test_the_output_follows_the_extension_text(plain_tiles: list[bytes]) -> None:
    for plain in plain_tiles:
        packed = compress_glb(plain)
        if packed != plain:  # a tiny tile stays plain when the extension's JSON costs what meshopt saves
            _check_extension_rules(plain, packed)


def _check_extension_rules(plain: bytes, packed: bytes) -> None:
    doc, binary = read_glb(packed)
    plain_doc, _ = read_glb(plain)
    assert EXTENSION in doc["extensionsUsed"] and EXTENSION in doc["extensionsRequired"]
    assert doc["buffers"][0]["byteLength"] == len(binary) and "uri" not in doc["buffers"][0]
    fallbacks = {i for i, b in enumerate(doc["buffers"]) if b.get("extensions", {}).get(EXTENSION, {}).get("fallback")}
    assert fallbacks == {1}, "one fallback buffer, index 1 or above (not the GLB binary chunk)"
    assert "uri" not in doc["buffers"][1]
    compressed = 0
    for index, view in enumerate(doc["bufferViews"]):
        ext = view.get("extensions", {}).get(EXTENSION)
        plain_view = plain_doc["bufferViews"][index]
        assert view["byteLength"] == plain_view["byteLength"] and view.get("target") == plain_view.get("target")
        if ext is None:
            assert view["buffer"] not in fallbacks, "only compressed views may refer to a fallback buffer"
            assert view["byteOffset"] % 4 == 0
            continue
        compressed += 1
        assert view.get("target") in (_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER), "property tables stay as they are"
        assert set(ext) <= {"buffer", "byteOffset", "byteLength", "byteStride", "count", "mode", "filter"}
        assert {"buffer", "byteLength", "byteStride", "count", "mode"} <= set(ext), "required properties"
        assert ext["buffer"] not in fallbacks, "no reference to a fallback buffer from the extension JSON"
        assert ext["buffer"] == 0 and ext.get("byteOffset", 0) + ext["byteLength"] <= len(binary)
        assert ext["byteLength"] < view["byteLength"], "kept only where it makes the view smaller"
        assert view["buffer"] in fallbacks
        assert view["byteOffset"] + view["byteLength"] <= doc["buffers"][view["buffer"]]["byteLength"]
        if "byteStride" in view:
            assert view["byteStride"] == ext["byteStride"]
        assert view["byteLength"] == ext["byteStride"] * ext["count"]
        assert ext["mode"] in ("ATTRIBUTES", "TRIANGLES", "INDICES")
        assert ext.get("filter", "NONE") in ("NONE", "OCTAHEDRAL", "QUATERNION", "EXPONENTIAL")
        if ext["mode"] == "ATTRIBUTES":
            assert ext["byteStride"] % 4 == 0 and ext["byteStride"] <= 256
            assert view.get("target") == _ARRAY_BUFFER
        else:
            assert ext["byteStride"] in (2, 4) and ext.get("filter", "NONE") == "NONE"
            assert view.get("target") == _ELEMENT_ARRAY_BUFFER
        if ext["mode"] == "TRIANGLES":
            assert ext["count"] % 3 == 0
        assert binary[ext.get("byteOffset", 0)] == {"ATTRIBUTES": 0xA0, "TRIANGLES": 0xE1, "INDICES": 0xD1}[ext["mode"]]
    assert compressed, "nothing was compressed"


def _first_compressed(packed: bytes) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    doc, binary = read_glb(packed)
    view = next(v for v in doc["bufferViews"] if EXTENSION in v.get("extensions", {}))
    return doc, binary, view["extensions"][EXTENSION]


@pytest.mark.parametrize("damage", ["truncated", "corrupt header", "outside the chunk"])
def test_broken_compressed_data_fails_with_a_clear_error(plain_tiles: list[bytes], damage: str) -> None:
    doc, binary, ext = _first_compressed(compress_glb(plain_tiles[0]))
    start = ext.get("byteOffset", 0)
    if damage == "truncated":
        ext["byteLength"] //= 2
    elif damage == "corrupt header":
        binary = binary[:start] + b"\x00" + binary[start + 1 :]
    else:
        ext["byteOffset"] = len(binary)
    with pytest.raises(ValueError, match=r"bufferView \d+ \(EXT_meshopt_compression\)"):
        decompress_glb(_pack(doc, binary))


def test_a_glb_without_the_extension_comes_back_as_it_is(plain_tiles: list[bytes]) -> None:
    assert decompress_glb(plain_tiles[0]) == plain_tiles[0]


def test_the_build_compresses_by_default_and_none_writes_plain_glbs(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiles" / "city"
    packed = build(city, out, workers=1)
    files = sorted(out.resolve().rglob("*.glb"))
    compressed = [EXTENSION in read_glb(f.read_bytes())[0]["extensionsRequired"] for f in files]
    assert sum(compressed) >= len(files) - 2  # a tiny tile (a few markers) may not pay for the extension's JSON
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["compress"] == "meshopt"
    assert all(manifest["tiles"][str(f.relative_to(out.resolve()))]["bytes"] == f.stat().st_size for f in files)
    plain = build(city, out, workers=1, compress="none")
    assert plain.reused == 0, "tiles compressed otherwise are not reused"
    assert all(
        EXTENSION not in read_glb(f.read_bytes())[0].get("extensionsUsed", []) for f in out.resolve().rglob("*.glb")
    )
    assert sum(g.bytes for g in plain.tilesets.values()) > sum(g.bytes for g in packed.tilesets.values())
    again = build(city, out, workers=1, compress="none")
    assert again.written == 0, "the same compression reuses every tile"
    check_all(out)
    with pytest.raises(InvalidInput, match="compression 'zstd'"):
        build(city, out, compress="zstd")


def test_gltf_validator_accepts_the_compressed_file_without_decoding_it(
    plain_tiles: list[bytes], tmp_path: Path
) -> None:
    path = tmp_path / "tile.glb"
    path.write_bytes(compress_glb(plain_tiles[0]))
    report = gltf_validate([path])[str(path)]
    assert report["errors"] == 0
    assert any(m["code"] == "UNSUPPORTED_EXTENSION" and EXTENSION in m["message"] for m in report["messages"])


def test_cli_build_compress_none(city: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiles" / "cli"
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--store", str(city), "--out", str(out), "--compress", "none", "--json"])
    assert exit_.value.code in (0, None)
    assert json.loads((out / "build.json").read_text())["compress"] == "none"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--store", str(city), "--out", str(out), "--compress", "draco"])
    assert exit_.value.code == 2 and "--compress draco" in capsys.readouterr().err


def test_cim_serve_sends_compressed_tiles_gzipped_to_a_client_that_asks(city: Path, tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    build(city, tiles / "city", workers=1)
    tile = sorted((tiles / "city").resolve().glob("buildings/*.glb"))[0]
    path = f"/tiles/city/buildings/{tile.name}"
    with cim_serve(str(city), tiles, tmp_path / "server.log") as base, httpx.Client(base_url=base) as client:
        zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
        plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert zipped.status_code == 200 and zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == tile.read_bytes()  # httpx undid the gzip
    assert zipped.num_bytes_downloaded < plain.num_bytes_downloaded == tile.stat().st_size
    assert "content-encoding" not in plain.headers
