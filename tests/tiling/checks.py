"""Independent checks of a built tileset: official JSON schemas, Khronos glTF-Validator, the property-table and
feature-id rules (:mod:`tests.tiling.metadata_rules`), feature ids resolving into property tables, bounding volumes
that contain their content (in ECEF), and a second client (loaders.gl) loading it.

Tiles are EXT_meshopt_compression glbs by default: every check reads a glb through :func:`read_tile_glb`
(decompressed by :func:`cim.tiling.compress.decompress_glb`), and gltf-validator sees both the file as built (it
checks the structure but cannot decode meshopt: it reports the extension as unsupported) and its decompressed copy
(where it checks the accessor data). The property-table rules read the file as built, decoding meshopt views
themselves."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cim.tiling.compress import decompress_glb
from cim.tiling.glb import accessor_array, read_glb
from tests.conftest import missing_service
from tests.tiling.metadata_rules import check_glb

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas" / "3d-tiles-1.1"
VALIDATOR = Path(__file__).resolve().parents[2] / "tools" / "gltf-validator"
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def _retrieve(uri: str) -> Resource[Any]:
    path = Path(uri.removeprefix("file://"))
    return Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT202012)


def validate_tileset_schema(path: Path) -> None:
    """Raise if ``path`` does not conform to the official 3D Tiles 1.1 tileset schema."""
    if not SCHEMAS.is_dir():
        pytest.fail(f"the 3D Tiles schemas are missing at {SCHEMAS}")
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    root = {"$ref": f"file://{SCHEMAS / 'tileset.schema.json'}"}
    jsonschema.Draft202012Validator(root, registry=registry).validate(json.loads(path.read_text()))


def gltf_validate(files: list[Path]) -> dict[str, Any]:
    """Khronos glTF-Validator's report per file (tools/gltf-validator)."""
    node = shutil.which("node")
    if node is None or not (VALIDATOR / "node_modules" / "gltf-validator").is_dir():
        missing_service(f"gltf-validator is not installed: run `npm ci --prefix {VALIDATOR}` (needs node)")
    reports: dict[str, Any] = {}
    for start in range(0, len(files), 200):
        chunk = [str(f) for f in files[start : start + 200]]
        done = subprocess.run(
            [node or "node", str(VALIDATOR / "validate.mjs"), *chunk], capture_output=True, text=True, check=False
        )
        if not done.stdout.strip():
            pytest.fail(f"gltf-validator printed nothing: {done.stderr}")
        reports.update(json.loads(done.stdout))
    return reports


def read_tile_glb(path: Path) -> tuple[dict[str, Any], bytes]:
    """The JSON and binary chunk of the tile at ``path``, decompressed when it is meshopt-compressed."""
    return read_glb(decompress_glb(path.read_bytes()))


def gltf_validate_tiles(files: list[Path]) -> dict[str, Any]:
    """gltf-validator's reports on the tiles as built and on their decompressed copies (``<file> (decompressed)``)."""
    reports = gltf_validate(files)
    with tempfile.TemporaryDirectory(prefix="plain-glb-") as folder:
        copies: dict[Path, Path] = {}
        for number, path in enumerate(files):
            copies[path] = Path(folder) / f"{number}.glb"
            copies[path].write_bytes(decompress_glb(path.read_bytes()))
        plain = gltf_validate(list(copies.values()))
        for path, copy in copies.items():
            reports[f"{path} (decompressed)"] = plain[str(copy)]
    return reports


def walk(folder: Path) -> list[dict[str, Any]]:
    """Every content tile below ``folder``/tileset.json: its glb path, ECEF world matrix, and the ancestors' bounding
    volumes (each with the world matrix of its frame)."""
    out: list[dict[str, Any]] = []
    root = json.loads((folder / "tileset.json").read_text())
    _walk(folder, root["root"], np.eye(4), [], out)
    return out


def _walk(base: Path, tile: dict[str, Any], parent: np.ndarray, volumes: list[Any], out: list[dict[str, Any]]) -> None:
    world = parent @ np.asarray(tile.get("transform", np.eye(4).T.ravel()), np.float64).reshape(4, 4).T
    volumes = [*volumes, (world, tile["boundingVolume"]["box"])]
    content = tile.get("content")
    if content is not None:
        uri = base / content["uri"]
        if uri.suffix == ".json":
            external = json.loads(uri.read_text())
            _walk(uri.parent, external["root"], world, volumes, out)
        else:
            out.append({"glb": uri, "world": world, "volumes": volumes, "error": tile["geometricError"]})
    for child in tile.get("children", []):
        assert child["geometricError"] <= tile["geometricError"], "a child's geometric error exceeds its parent's"
        _walk(base, child, world, volumes, out)


def ecef_positions(doc: dict[str, Any], binary: bytes, world: np.ndarray) -> np.ndarray:
    """Every vertex of the glb in ECEF: node matrix (dequantisation), glTF y-up → z-up, the tile's world matrix."""
    points = []
    for node in doc.get("nodes", []):
        matrix = np.asarray(node.get("matrix", np.eye(4).T.ravel()), np.float64).reshape(4, 4).T
        for primitive in doc["meshes"][node["mesh"]]["primitives"]:
            local = accessor_array(doc, binary, primitive["attributes"]["POSITION"]).astype(np.float64)
            homogeneous = np.column_stack([local, np.ones(len(local))])
            points.append((homogeneous @ (world @ Y_UP_TO_Z_UP @ matrix).T)[:, :3])
    return np.concatenate(points) if points else np.zeros((0, 3))


def inside_box(points: np.ndarray, world: np.ndarray, box: list[float], slack: float = 1e-3) -> np.ndarray:
    """Whether each ECEF point lies in ``box`` (12 numbers in the frame of ``world``)."""
    local = (np.column_stack([points, np.ones(len(points))]) @ np.linalg.inv(world).T)[:, :3]
    centre = np.asarray(box[:3])
    axes = np.asarray(box[3:]).reshape(3, 3)
    inside = np.ones(len(points), bool)
    for axis in axes:
        length2 = float(axis @ axis)
        inside &= np.abs((local - centre) @ axis) <= length2 + slack * np.sqrt(length2)
    return inside


def feature_ids(doc: dict[str, Any], binary: bytes) -> list[str]:
    """The asset ids of every feature a primitive refers to, checking each id resolves into its property table."""
    metadata = doc["extensions"]["EXT_structural_metadata"]
    tables = metadata["propertyTables"]
    found: list[str] = []
    for mesh in doc.get("meshes", []):
        for primitive in mesh["primitives"]:
            spec = primitive["extensions"]["EXT_mesh_features"]["featureIds"][0]
            ids = accessor_array(doc, binary, primitive["attributes"][f"_FEATURE_ID_{spec['attribute']}"]).ravel()
            table = tables[spec["propertyTable"]]
            assert spec["featureCount"] == table["count"]
            assert np.all(ids == np.round(ids)) and ids.min() >= 0 and ids.max() < table["count"]
            assert len(np.unique(ids)) == table["count"], "a property table row has no geometry"
            found.extend(string_property(doc, binary, table, "id"))
    return found


def string_property(doc: dict[str, Any], binary: bytes, table: dict[str, Any], name: str) -> list[str]:
    prop = table["properties"][name]
    views = doc["bufferViews"]

    def raw(view: int) -> bytes:
        v = views[view]
        return binary[v["byteOffset"] : v["byteOffset"] + v["byteLength"]]

    offsets = np.frombuffer(raw(prop["stringOffsets"]), np.uint32)
    values = raw(prop["values"])
    assert len(offsets) == table["count"] + 1
    return [values[a:b].decode() for a, b in itertools.pairwise(offsets)]


def scalar_property(doc: dict[str, Any], binary: bytes, table: dict[str, Any], name: str, dtype: Any) -> np.ndarray:
    v = doc["bufferViews"][table["properties"][name]["values"]]
    return np.frombuffer(binary[v["byteOffset"] : v["byteOffset"] + v["byteLength"]], dtype)


def check_all(out: Path, store_rows: dict[str, dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """Run every check on the tileset at ``out``, loaders.gl reading it too (compared with ``store_rows`` when given,
    see :func:`tests.tiling.second_client.store_rows`); return the asset ids per group found in the tiles."""
    from tests.tiling.second_client import read_with_loaders_gl  # it imports this module

    validate_tileset_schema(out / "tileset.json")
    for external in out.glob("*/tileset.json"):
        validate_tileset_schema(external)
    tiles = walk(out)
    assert tiles, "the tileset has no content"
    reports = gltf_validate_tiles([t["glb"] for t in tiles])
    bad = {f: r for f, r in reports.items() if r["errors"]}
    assert not bad, f"gltf-validator errors: {json.dumps(bad)[:2000]}"
    found: dict[str, list[str]] = {}
    for tile in tiles:
        check_glb(tile["glb"].read_bytes(), str(tile["glb"]))  # EXT_structural_metadata / EXT_mesh_features rules
        doc, binary = read_tile_glb(tile["glb"])
        points = ecef_positions(doc, binary, tile["world"])
        for world, box in tile["volumes"]:
            inside = inside_box(points, world, box)
            assert inside.all(), f"{tile['glb']}: {int((~inside).sum())} vertices outside a bounding volume"
        group = tile["glb"].relative_to(out).parts[0]
        found.setdefault(group, []).extend(feature_ids(doc, binary))
    read_with_loaders_gl(out, store_rows)
    return found
