"""The CityJSON 2.0 export, checked against the rules of the spec (https://www.cityjson.org/specs/2.0.1/) it relies
on, read by cjio, and read back by our own importer into a second store: same buildings, footprints within 1 m,
attributes kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from cim.errors import InvalidInput
from cim.export import writer
from cim.export.cityjson import write_cityjson
from cim.gis.readers import parse_crs
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store, open_store
from cim.store.meshes import open_meshes
from tests.export.city import buildings, write_city

METRES_PER_DEGREE = 111_000.0


@pytest.fixture
def exported(store: Store, tmp_path: Path) -> dict[str, Any]:
    write_city(store)
    out = tmp_path / "out" / "city.city.json"
    out.parent.mkdir()
    summary = write_cityjson(store, None, out)
    # the store's kinds (the garage is a building, the part and the wing elements), then CityJSON's types
    assert summary.objects == {"building": 6, "element": 2}
    assert summary.types == {"Building": 5, "BuildingPart": 3}
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    document["_path"] = out
    return document


def test_the_root_says_cityjson_2_0_with_a_transform_and_integer_vertices(exported: dict[str, Any]) -> None:
    # "A CityJSON object ... must have: type "CityJSON", version "2.0", transform, CityObjects, vertices"
    assert exported["type"] == "CityJSON" and exported["version"] == "2.0"
    transform = exported["transform"]
    assert len(transform["scale"]) == 3 and len(transform["translate"]) == 3
    # "the vertices are integers": each one an array of three integers
    assert all(len(v) == 3 and all(isinstance(c, int) for c in v) for v in exported["vertices"])


def test_the_reference_system_is_an_ogc_url_of_the_utm_zone(exported: dict[str, Any]) -> None:
    # "referenceSystem ... a URL, formatted according to the OGC Name Type Specification"
    assert exported["metadata"]["referenceSystem"] == "https://www.opengis.net/def/crs/EPSG/0/32651"  # Shanghai: 51N
    extent = exported["metadata"]["geographicalExtent"]
    assert len(extent) == 6 and extent[0] < extent[3] and extent[1] < extent[4] and extent[2] < extent[5]


def test_every_index_names_a_vertex_and_every_vertex_is_used(exported: dict[str, Any]) -> None:
    used: set[int] = set()
    for city_object in exported["CityObjects"].values():
        for geometry in city_object["geometry"]:
            used.update(_indices(geometry["boundaries"]))
    assert used == set(range(len(exported["vertices"])))


def test_a_box_is_a_lod1_solid_with_ground_roof_and_walls_oriented_outwards(exported: dict[str, Any]) -> None:
    (geometry,) = exported["CityObjects"]["b-box"]["geometry"]
    # "lod" is a string; a Solid's boundaries are shells → surfaces → rings → vertex indices
    assert geometry["type"] == "Solid" and geometry["lod"] == "1"
    (shell,) = geometry["boundaries"]
    assert len(shell) == 2 + 4  # ground, roof, four walls
    semantics = geometry["semantics"]
    labels = [semantics["surfaces"][i]["type"] for i in semantics["values"][0]]
    assert labels == ["GroundSurface", "RoofSurface", *["WallSurface"] * 4]
    xyz = _xyz(exported)
    # rings are not closed: "the first and last points of a ring are not the same"
    assert all(ring[0] != ring[-1] for surface in shell for ring in surface)
    assert _volume(shell, xyz) == pytest.approx(_area_m2(buildings()[0].geom) * 30.0, rel=0.01)  # > 0: outwards
    ground, roof = xyz[shell[0][0]], xyz[shell[1][0]]
    assert set(ground[:, 2]) == {4.0} and set(roof[:, 2]) == {34.0}


def test_a_courtyard_is_an_inner_ring_and_the_solid_still_closes(exported: dict[str, Any]) -> None:
    (geometry,) = exported["CityObjects"]["b-court"]["geometry"]
    (shell,) = geometry["boundaries"]
    assert len(shell[0]) == 2 and len(shell[1]) == 2  # ground and roof: outer ring + the courtyard
    edges = [(ring[i], ring[(i + 1) % len(ring)]) for surface in shell for ring in surface for i in range(len(ring))]
    # closed and consistently oriented: each edge is walked once each way
    assert sorted(edges) == sorted((b, a) for a, b in edges)
    assert _volume(shell, _xyz(exported)) > 0


def test_two_polygons_make_a_multisolid_and_no_height_a_lod0_footprint(exported: dict[str, Any]) -> None:
    twin = exported["CityObjects"]["b-twin"]["geometry"][0]
    assert twin["type"] == "MultiSolid" and len(twin["boundaries"]) == 2
    assert [len(v[0]) for v in twin["semantics"]["values"]] == [6, 6]
    flat = exported["CityObjects"]["b-flat"]["geometry"][0]
    assert flat["type"] == "MultiSurface" and flat["lod"] == "0"


def test_a_part_names_its_parent_and_the_parent_its_children(exported: dict[str, Any]) -> None:
    objects = exported["CityObjects"]
    # "BuildingPart ... must have a parent"; "parents" and "children" name each other
    assert objects["b-main-part"]["type"] == "BuildingPart"
    assert objects["b-main-part"]["parents"] == ["b-main"]
    assert objects["b-main"]["children"] == ["b-main-garage", "b-main-part", "b-main-wing"]
    assert objects["b-main-garage"]["type"] == objects["b-main-wing"]["type"] == "BuildingPart"
    assert objects["b-main-wing"]["parents"] == ["b-main"]
    assert "b-main-shaft" not in objects  # an element under a building that is no part
    assert all("parents" not in o for k, o in objects.items() if o["type"] == "Building")


def test_attributes_carry_the_cityGML_names_and_the_props(exported: dict[str, Any]) -> None:
    attributes = exported["CityObjects"]["b-box"]["attributes"]
    assert attributes["measuredHeight"] == 30.0 and attributes["storeysAboveGround"] == 10
    assert attributes["yearOfConstruction"] == 1990 and attributes["installDate"] == "1990-05-01"
    assert attributes["name"] == "方塊 Box" and attributes["material"] == "concrete"
    assert attributes["owner"] == "city" and attributes["floors"] == [1, 2]
    assert "cityjson.type" not in exported["CityObjects"]["b-main-part"]["attributes"]  # import bookkeeping
    assert "citygml.class" not in exported["CityObjects"]["b-main-wing"]["attributes"]


def test_cjio_reads_the_file(exported: dict[str, Any]) -> None:
    cjio = shutil.which("cjio") or str(Path(sys.executable).parent / "cjio")
    done = subprocess.run([cjio, str(exported["_path"]), "info"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2.0" in done.stdout and "32651" in done.stdout
    assert "Building" in done.stdout and "BuildingPart" in done.stdout
    # cjio's reader in a process of its own: importing cjio replaces the json module's float encoder for the whole
    # process (cjio/cityjson.py sets json.encoder.float), which would change what later tests write
    read = (
        "import json, sys\n"
        "from cjio import cityjson\n"
        "model = cityjson.reader(open(sys.argv[1], encoding='utf-8'), ignore_duplicate_keys=False)\n"
        "print(json.dumps([model.get_epsg(), len(model.j['CityObjects'])]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", read, str(exported["_path"])], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [32651, 8]


def test_read_back_by_our_importer_the_buildings_match(exported: dict[str, Any], store: Store, tmp_path: Path) -> None:
    with open_store(str(tmp_path / "second.duckdb")) as second:
        summary = write_source(second, exported["_path"], read_as="cityjson")
        assert summary.assets == {"building": 5, "element": 3}
        assert summary.crs == "EPSG:32651"
        for original in buildings()[:-1]:  # all but the shaft, which is no part
            back = second.get_asset(f"city:{original.id}")
            assert original.geom is not None and back.geom is not None
            assert shapely.hausdorff_distance(original.geom, back.geom) * METRES_PER_DEGREE < 1.0
            stored = store.get_asset(original.id)
            if stored.z_max is not None or stored.height_m is not None:
                assert back.z_min == pytest.approx(stored.z_min, abs=0.002)
        box = second.get_asset("city:b-box")
        assert box.height_m == 30.0 and box.storeys == 10 and box.install_date is not None
        assert box.install_date.year == 1990 and box.props["owner"] == "city" and box.name == "方塊 Box"
        assert second.get_asset("city:b-main-part").parent_id == "city:b-main"
        assert second.get_asset("city:b-main-garage").parent_id == "city:b-main"


def test_real_delft_buildings_go_out_and_come_back_in_place(store: Store, data_dir: Path, tmp_path: Path) -> None:
    write_source(store, data_dir / "cityjson/delft.city.json", read_as="cityjson")
    out = tmp_path / "delft-out.city.json"
    summary = writer("cityjson")(store, None, out, crs="EPSG:28992")
    assert summary.objects == {"building": 160} and summary.types == {"Building": 160}
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["metadata"]["referenceSystem"].endswith("/EPSG/0/28992")
    # an independent check of one vertex: RD New back to lon/lat lies on the stored footprint's outline
    to_lonlat = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True)
    object_id, city_object = next(iter(document["CityObjects"].items()))
    first = city_object["geometry"][0]["boundaries"][0][0][0][0]
    x, y, _ = (
        np.array(document["vertices"][first]) * document["transform"]["scale"] + document["transform"]["translate"]
    )
    asset = store.get_asset(object_id)
    assert asset.geom is not None
    outline = asset.geom.boundary
    assert shapely.distance(outline, shapely.Point(*to_lonlat.transform(x, y))) * METRES_PER_DEGREE < 1.0
    with open_store(str(tmp_path / "second.duckdb")) as second:
        assert write_source(second, out, read_as="cityjson").assets == {"building": 160}
        back = second.get_asset(f"delft-out:{object_id}")
        assert back.geom is not None
        assert shapely.hausdorff_distance(asset.geom, back.geom) * METRES_PER_DEGREE < 1.0


def test_other_kinds_and_an_empty_selection_are_refused(store: Store, tmp_path: Path) -> None:
    write_city(store)
    with pytest.raises(InvalidInput, match="use gpkg"):
        write_cityjson(store, None, tmp_path / "x.city.json", kinds=[Kind.PIPE])
    with pytest.raises(InvalidInput, match="holds no buildings"):
        write_cityjson(store, None, tmp_path / "x.city.json", bbox=(0.0, 0.0, 1.0, 1.0))
    with pytest.raises(InvalidInput, match="projected CRS in metres"):
        write_cityjson(store, None, tmp_path / "x.city.json", crs="EPSG:4326")
    assert not (tmp_path / "x.city.json").exists()
    assert store.count_assets(AssetQuery(kinds=[Kind.BUILDING])) == 6


# --- helpers ---
def _indices(node: Any) -> list[int]:
    return [i for n in node for i in _indices(n)] if isinstance(node, list) else [node]


def _xyz(document: dict[str, Any]) -> np.ndarray:
    transform = document["transform"]
    return np.asarray(document["vertices"], dtype=float) * transform["scale"] + transform["translate"]


def _volume(shell: list[list[list[int]]], xyz: np.ndarray) -> float:
    """The signed volume a shell encloses (positive when its surfaces face outwards): the divergence theorem over a
    fan of triangles of each ring (holes subtract with their opposite orientation)."""
    total = 0.0
    for surface in shell:
        for ring in surface:
            p = xyz[ring] - xyz[shell[0][0][0]]
            for i in range(1, len(ring) - 1):
                total += float(np.dot(p[0], np.cross(p[i], p[i + 1]))) / 6.0
    return total


def _area_m2(geom: Any) -> float:
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True)
    return float(shapely.transform(geom, lambda c: np.column_stack(to_utm.transform(c[:, 0], c[:, 1]))).area)


def test_stored_lod2_meshes_go_out_beside_the_solid_and_come_back(store: Store, data_dir: Path, tmp_path: Path) -> None:
    with open_meshes(store) as meshes:
        source = data_dir / "cityjson/rotterdam_subset.city.json"
        write_source(store, source, read_as="cityjson", meshes=meshes, crs=parse_crs("EPSG:7415"))
        out = tmp_path / "rotterdam.city.json"
        assert write_cityjson(store, meshes, out).objects == {"building": 16}
    document = json.loads(out.read_text(encoding="utf-8"))
    original = json.loads(source.read_text(encoding="utf-8"))
    for object_id, city_object in document["CityObjects"].items():
        lod1, lod2 = city_object["geometry"]
        assert (lod1["type"], lod1["lod"], lod2["type"], lod2["lod"]) == ("Solid", "1", "MultiSurface", "2")
        # every triangle of the mesh, each a surface of one ring of three vertices
        assert all(len(surface) == 1 and len(surface[0]) == 3 for surface in lod2["boundaries"])
        surfaces = original["CityObjects"][object_id.split(":", 1)[1]]["geometry"][0]["boundaries"][0]
        assert len(lod2["boundaries"]) >= len(surfaces)  # each surface one triangle or more
    assert set(_indices([g["boundaries"] for o in document["CityObjects"].values() for g in o["geometry"]])) == set(
        range(len(document["vertices"]))
    )
    with open_store(str(tmp_path / "second.duckdb")) as second:
        assert write_source(second, out, read_as="cityjson").assets == {"building": 16}
        for asset in store.find_assets(AssetQuery(kinds=[Kind.BUILDING])):
            back = second.get_asset(f"rotterdam:{asset.id}")
            assert asset.geom is not None and back.geom is not None
            assert shapely.hausdorff_distance(asset.geom, back.geom) * METRES_PER_DEGREE < 1.0
            assert back.z_max == pytest.approx(asset.z_max, abs=0.01)
