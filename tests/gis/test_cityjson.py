"""CityJSON 1.0–2.0 and .city.jsonl: CityObjects as assets with their own surfaces as meshes, placed on Earth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from cim.errors import InvalidInput
from cim.gis.readers import parse_crs
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore

RD_TO_WGS84 = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True)
METRES_PER_DEGREE_LAT = 111_250.0


def delft(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / "cityjson/delft.city.json").read_text(encoding="utf-8"))


def test_delft_city_objects_become_assets_with_kinds_and_meshes(store: Store, tmp_path: Path, data_dir: Path) -> None:
    with MeshStore(tmp_path / "m.duckdb") as meshes:
        summary = write_source(store, data_dir / "cityjson/delft.city.json", read_as="cityjson", meshes=meshes)
        assert summary.features_read == 570 and summary.meshes == 570
        assert summary.assets == {
            "bridge": 3, "building": 160, "element": 54, "land_use": 81, "road": 143, "vegetation": 126, "water": 3
        }  # fmt: skip
        assert summary.crs == "EPSG:7415" and "NAP" in summary.height_datum

        document = delft(data_dir)
        object_id, city_object = next((k, v) for k, v in document["CityObjects"].items() if v["type"] == "Building")
        asset = store.get_asset(f"delft:{object_id}")
        assert asset.props["bgt_status"] == city_object["attributes"]["bgt_status"]
        # kept as it is: one triangle per triangular surface of the file's solid
        (mesh,) = meshes.get([asset.id]).to_meshes()
        surfaces = [s for shell in city_object["geometry"][0]["boundaries"] for s in shell]
        assert mesh.triangle_count == len(surfaces)


def test_a_known_building_lies_where_rd_new_says_within_a_metre(store: Store, data_dir: Path) -> None:
    write_source(store, data_dir / "cityjson/delft.city.json", read_as="cityjson")
    document = delft(data_dir)
    scale, translate = np.array(document["transform"]["scale"]), np.array(document["transform"]["translate"])
    object_id, city_object = next((k, v) for k, v in document["CityObjects"].items() if v["type"] == "Building")
    first_vertex = city_object["geometry"][0]["boundaries"][0][0][0][0]
    x, y, _ = np.array(document["vertices"][first_vertex]) * scale + translate
    lon, lat = RD_TO_WGS84.transform(x, y)  # independent path: RD New alone, not the compound CRS
    asset = store.get_asset(f"delft:{object_id}")
    assert asset.geom is not None
    distance_deg = shapely.distance(asset.geom, shapely.Point(lon, lat))
    assert distance_deg * METRES_PER_DEGREE_LAT < 1.0
    assert 4.3 < lon < 4.4 and 51.9 < lat < 52.1  # Delft


def test_rotterdam_lod2_without_crs_needs_one_and_then_ingests(store: Store, data_dir: Path) -> None:
    path = data_dir / "cityjson/rotterdam_subset.city.json"
    with pytest.raises(InvalidInput, match="no metadata.referenceSystem; give its CRS with --crs"):
        write_source(store, path, read_as="cityjson")
    assert store.count_by_kind() == {}
    summary = write_source(store, path, read_as="cityjson", crs=parse_crs("EPSG:7415"))
    assert summary.assets == {"building": 16}
    buildings = store.find_assets(AssetQuery(ids=["rotterdam_subset:{CD98680D-A8DD-4106-A18E-15EE2A908D75}"]))
    assert buildings and buildings[0].props["cityjson.lod"] == "2"
    assert 4.4 < buildings[0].geom.centroid.x < 4.5 and 51.8 < buildings[0].geom.centroid.y < 52.0  # Rotterdam


def test_a_feature_stream_gives_the_same_assets_as_the_file(store: Store, tmp_path: Path, data_dir: Path) -> None:
    document = delft(data_dir)
    header = {k: v for k, v in document.items() if k not in ("CityObjects", "vertices")}
    lines = [json.dumps({**header, "CityObjects": {}, "vertices": []})]
    for object_id, city_object in list(document["CityObjects"].items())[:40]:
        used: dict[int, int] = {}

        def remap(node: Any, used: dict[int, int] = used) -> Any:
            return [remap(n) for n in node] if isinstance(node, list) else used.setdefault(node, len(used))

        geometry = [{**g, "boundaries": remap(g["boundaries"])} for g in city_object["geometry"]]
        vertices = [document["vertices"][old] for old in used]
        lines.append(
            json.dumps(
                {
                    "type": "CityJSONFeature",
                    "id": object_id,
                    "CityObjects": {object_id: {**city_object, "geometry": geometry}},
                    "vertices": vertices,
                }
            )
        )
    stream = tmp_path / "delft.city.jsonl"
    stream.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = write_source(store, stream, read_as="cityjson")
    assert summary.features_read == 40
    whole = tmp_path / "whole.city.json"
    whole.write_text(json.dumps(document), encoding="utf-8")
    write_source(store, whole, read_as="cityjson")
    for object_id in list(document["CityObjects"])[:40]:
        a, b = store.get_asset(f"delft:{object_id}"), store.get_asset(f"whole:{object_id}")
        assert a.geom is not None and b.geom is not None
        assert a.geom.equals_exact(b.geom, tolerance=1e-9) and a.z_max == b.z_max


def test_cityjson_1_0_with_real_coordinates_and_urn_crs(store: Store, tmp_path: Path) -> None:
    x, y = 155_000.0, 463_000.0  # Amersfoort, the origin of RD New
    cube = [[x, y, 0], [x + 10, y, 0], [x + 10, y + 10, 0], [x, y + 10, 0]]
    cube += [[a, b, 8] for a, b, _ in cube]
    document = {
        "type": "CityJSON",
        "version": "1.0",
        "metadata": {"referenceSystem": "urn:ogc:def:crs:EPSG::7415"},
        "CityObjects": {
            "b1": {
                "type": "Building",
                "attributes": {"measuredHeight": 8.0, "storeysAboveGround": 3, "yearOfConstruction": 1911},
                "geometry": [
                    {
                        "type": "Solid",
                        "lod": 1,
                        "boundaries": [
                            [
                                [[0, 3, 2, 1]],
                                [[4, 5, 6, 7]],
                                [[0, 1, 5, 4]],
                                [[1, 2, 6, 5]],
                                [[2, 3, 7, 6]],
                                [[3, 0, 4, 7]],
                            ]
                        ],
                    }
                ],
            }
        },
        "vertices": cube,
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    summary = write_source(store, path, read_as="cityjson")
    asset = store.get_asset("old:b1")
    assert summary.version == "1.0"
    assert asset.height_m == 8.0 and asset.storeys == 3 and asset.install_date is not None
    assert asset.install_date.year == 1911
    lon, lat = RD_TO_WGS84.transform(x + 5, y + 5)
    assert asset.geom is not None
    assert shapely.distance(asset.geom.centroid, shapely.Point(lon, lat)) * METRES_PER_DEGREE_LAT < 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"type": "CityJSON", "version": "2.0", "CityObjects": {"a": {"name": "\xe9"}}}', "is not UTF-8"),
        (b'{"type": "FeatureCollection", "features": []}', "is not CityJSON"),
        (b'{"type": "CityJSON", "CityObj', "is not valid JSON"),
    ],
)
def test_bad_cityjson_is_one_clear_error_and_writes_nothing(
    store: Store, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.city.json"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        write_source(store, path, read_as="cityjson", crs=parse_crs("EPSG:7415"))
    assert store.count_by_kind() == {}


def test_a_gis_layer_with_text_that_is_not_utf8_names_the_field(store: Store, tmp_path: Path) -> None:
    from cim.gis.mapping import LayerMapping
    from cim.model import Kind
    from cim.pipeline.ingest import write_source

    path = tmp_path / "latin1.geojson"
    path.write_bytes(
        b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "Caf\xe9"}, '
        b'"geometry": {"type": "Point", "coordinates": [121.5, 31.2]}}]}'
    )
    with pytest.raises(InvalidInput, match="field 'name' .* not UTF-8"):
        write_source(store, path, mapping=LayerMapping(kind=Kind.HYDRANT))
    assert store.count_by_kind() == {}


def cubes(*boundaries: list[list[list[int]]]) -> dict[str, Any]:
    """A CityJSON 2.0 document in RD New + NAP of one LoD1 building per solid shell given, on 8 shared vertices."""
    x, y = 155_000, 463_000
    corners = [[x, y, 0], [x + 10, y, 0], [x + 10, y + 10, 0], [x, y + 10, 0]]
    return {
        "type": "CityJSON",
        "version": "2.0",
        "transform": {"scale": [1.0, 1.0, 1.0], "translate": [0.0, 0.0, 0.0]},
        "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
        "CityObjects": {
            f"b{n}": {"type": "Building", "geometry": [{"type": "Solid", "lod": "1", "boundaries": [shell]}]}
            for n, shell in enumerate(boundaries, start=1)
        },
        "vertices": corners + [[a, b, 8] for a, b, _ in corners],
    }


CUBE = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]


def with_index(index: Any) -> list[list[list[Any]]]:
    return [[[index, 3, 2, 1]], *CUBE[1:]]


def test_a_negative_or_missing_vertex_index_rejects_its_object_and_names_it(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cubes.city.json"
    path.write_text(json.dumps(cubes(CUBE, with_index(-5), with_index(8), with_index(1.5))), encoding="utf-8")
    summary = write_source(store, path, read_as="cityjson")
    assert summary.assets == {"building": 1} and summary.rejected == 3
    assert {(f["rule"], tuple(f["examples"])) for f in summary.findings} == {  # type: ignore[arg-type]
        ("bad_vertex_index:negative", ("cubes:b2",)),
        ("bad_vertex_index:past the last vertex", ("cubes:b3",)),
        ("bad_vertex_index:not an integer", ("cubes:b4",)),
    }
    assert [a.id for a in store.find_assets(AssetQuery())] == ["cubes:b1"]


def test_a_negative_index_in_a_feature_stream_does_not_take_the_previous_features_vertex(
    store: Store, tmp_path: Path
) -> None:
    document = cubes(CUBE)
    header = {k: v for k, v in document.items() if k not in ("CityObjects", "vertices")}
    lines = [json.dumps({**header, "CityObjects": {}, "vertices": []})]
    for name, shell in (("first", CUBE), ("second", with_index(-5))):
        objects = {name: {"type": "Building", "geometry": [{"type": "Solid", "lod": "1", "boundaries": [shell]}]}}
        lines.append(
            json.dumps(
                {"type": "CityJSONFeature", "id": name, "CityObjects": objects, "vertices": document["vertices"]}
            )
        )
    path = tmp_path / "stream.city.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    summary = write_source(store, path, read_as="cityjson")  # shifted by 8, -5 would have become 3: a vertex of "first"
    assert summary.assets == {"building": 1}
    assert summary.findings == [{"rule": "bad_vertex_index:negative", "count": 1, "examples": ["stream:second"]}]
