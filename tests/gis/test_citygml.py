"""CityGML 1.0–3.0 import on every file of ../shared/data/citygml: counts by kind (SOURCES.md's), positions against
an independent reading (xml.etree + pyproj), attributes, addresses, the 2.0/3.0 twin pair, PLATEAU pipes, the gzip
stream."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from cim.gis.citygml import CityGmlSummary
from cim.gis.gml import open_citygml
from cim.model import Asset, Kind
from cim.pipeline.ingest import file_type, write_source
from cim.store import AssetQuery, Store, open_store
from cim.store.meshes import MeshStore

METRES_PER_DEGREE_LAT = 111_250.0
GML_2 = "{http://www.opengis.net/gml}"
GML_3 = "{http://www.opengis.net/gml/3.2}"


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "city.duckdb")) as store:
        yield store


def citygml(data_dir: Path, name: str) -> Path:
    return data_dir / "citygml" / name


def ingest(store: Store, path: Path, meshes: MeshStore | None = None) -> CityGmlSummary:
    summary = write_source(store, path, meshes=meshes)
    assert isinstance(summary, CityGmlSummary)
    return summary


def assets_of(store: Store, summary: CityGmlSummary) -> dict[str, Asset]:
    found = store.find_assets(AssetQuery(where={"source": Path(summary.path).name + ":citygml"}))
    return {a.id: a for a in found}


def raw_ring(path: Path, object_id: str, surface: str, gml: str) -> np.ndarray:
    """The first posList under the object's first ``surface`` (e.g. GroundSurface), read with the standard library."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        root = ET.parse(f).getroot()
    found = next(e for e in root.iter() if e.get(f"{gml}id") == object_id)
    holder = next(e for e in found.iter() if e.tag.endswith("}" + surface)) if surface else found
    text = next(holder.iter(f"{gml}posList")).text or ""
    return np.array(text.split(), dtype=float).reshape(-1, 3)


def metres_off(asset: Asset, lon: np.ndarray, lat: np.ndarray) -> float:
    """How far (m) the ring's points are from the asset's footprint at most."""
    assert asset.geom is not None
    points = shapely.points(lon, lat)
    return float(shapely.distance(asset.geom, points).max()) * METRES_PER_DEGREE_LAT


def test_a_citygml_file_is_told_from_other_gml_by_its_cityModel(data_dir: Path, tmp_path: Path) -> None:
    for path in (data_dir / "citygml").iterdir():
        assert file_type(path) == "citygml", path
    plain = tmp_path / "roads.gml"
    plain.write_text('<?xml version="1.0"?><wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs"/>')
    assert file_type(plain) == "gis"


def test_plateau_buildings_with_generic_attributes_addresses_and_a_bad_height(duck: Store, data_dir: Path) -> None:
    path = citygml(data_dir, "53392642_bldg_6697_op2.gml")
    summary = ingest(duck, path)
    assert summary.version == "2.0" and summary.assets == {"building": 8} and summary.lods == {"lod2": 8}
    assert summary.crs == "EPSG:6668+EPSG:6695" and "JGD2011 (vertical) height" in summary.height_datum
    buildings = assets_of(duck, summary)
    test_id = "53392642_bldg_6697_op2:BLD_0772bfd9-fa36-4747-ad0f-1e57f883f745"
    # measuredHeight "2.8（テスト）" is no number: a finding naming the object and the field, the building kept
    (bad,) = [f for f in summary.findings if f["rule"] == "unreadable_value:measuredHeight"]
    assert bad["examples"] == [test_id] and summary.rejected == 0
    tested = buildings[test_id]
    assert tested.props["citygml.measuredHeight"] == "2.8（テスト）" and tested.height_m != 2.8
    assert tested.props["doubleAttributeテスト"] == 123.456 and tested.props["intAttributeテスト"] == 123
    assert tested.props["建物ID"] == "13111-bldg-147301"
    flood = "多摩水系多摩川、浅川、大栗川洪水浸水想定区域（想定最大規模）"
    assert tested.props[f"{flood}.浸水深"] == 0.05 and tested.props[f"{flood}.浸水深.uom"] == "m"
    assert tested.props["address.street"] == "Test Street テスト丁目" and tested.props["address.number"] == "Test番地"
    assert "東京都大田区羽田空港二丁目" in str(tested.props["address"])
    assert tested.props["uro.buildingDetails.city"] == "13111"
    assert buildings["53392642_bldg_6697_op2:BLD_365251b8-4a9c-4e13-b238-eae7a7fd9461"].height_m == 3.6
    # SOURCES.md: 44 gen: attributes, 8 addresses, LoD2 380 wall / 139 roof / 13 ground / 8 outer-ceiling surfaces
    own = ("citygml.", "address", "uro.")
    generic = [k for a in buildings.values() for k in a.props if not k.startswith(own) and not k.endswith(".uom")]
    assert len(generic) == 44
    assert sum("address" in a.props for a in buildings.values()) == 8
    surfaces = Counter()
    for a in buildings.values():
        for name in ("WallSurface", "RoofSurface", "GroundSurface", "OuterCeilingSurface"):
            surfaces[name] += int(a.props.get(f"citygml.{name}.count", 0))
    assert surfaces == {"WallSurface": 380, "RoofSurface": 139, "GroundSurface": 13, "OuterCeilingSurface": 8}
    # lat, lon, h order: the ground ring lies on the footprint (JGD2011 → WGS84 read independently)
    ring = raw_ring(path, "BLD_365251b8-4a9c-4e13-b238-eae7a7fd9461", "GroundSurface", GML_2)
    lat, lon = Transformer.from_crs("EPSG:6668", "EPSG:4326").transform(ring[:, 0], ring[:, 1])
    assert metres_off(buildings["53392642_bldg_6697_op2:BLD_365251b8-4a9c-4e13-b238-eae7a7fd9461"], lon, lat) < 1.0
    assert 139.7 < lon[0] < 139.8 and 35.5 < lat[0] < 35.6  # Haneda


def test_the_2_0_and_3_0_twins_give_the_same_assets(duck: Store, tmp_path: Path, data_dir: Path) -> None:
    with MeshStore(tmp_path / "m.duckdb") as meshes:
        two = ingest(duck, citygml(data_dir, "Building_and_garage_LOD2-EPSG25832.v2.gml"), meshes)
        three = ingest(duck, citygml(data_dir, "Building_and_garage_LOD2-EPSG25832.v3.gml"), meshes)
        assert (two.version, three.version) == ("2.0", "3.0")
        for summary in (two, three):
            assert summary.assets == {"building": 1, "element": 1} and summary.meshes == 2
            assert summary.crs == "EPSG:25832+EPSG:5783" and "DHHN92" in summary.height_datum
            assert [f["rule"] for f in summary.findings] == ["skipped_terrain"]  # the ReliefFeature
        v2, v3 = assets_of(duck, two), assets_of(duck, three)
        house, garage = "GML_7b1a5a6f-ddad-4c3d-a507-3eb9ee0a8e68", "GMLID_BUI379228_1244_301"
        for object_id in (house, garage):
            a, b = v2[f"{Path(two.path).name[:-4]}:{object_id}"], v3[f"{Path(three.path).name[:-4]}:{object_id}"]
            assert a.geom is not None and b.geom is not None and a.geom.equals_exact(b.geom, tolerance=1e-9)
            assert (a.z_min, a.z_max, a.height_m, a.storeys) == (b.z_min, b.z_max, b.height_m, b.storeys)
            assert a.install_date == b.install_date == date(1985, 1, 1)
            assert a.props.get("address") == b.props.get("address")
            assert a.props["citygml.function"] == b.props["citygml.function"]
            (mesh_a,), (mesh_b,) = meshes.get([a.id]).to_meshes(), meshes.get([b.id]).to_meshes()
            assert mesh_a.triangle_count == mesh_b.triangle_count
    house_2 = v2[f"Building_and_garage_LOD2-EPSG25832.v2:{house}"]
    garage_2 = v2[f"Building_and_garage_LOD2-EPSG25832.v2:{garage}"]
    assert house_2.kind is Kind.BUILDING and house_2.height_m == 6.0 and house_2.storeys == 1
    assert garage_2.kind is Kind.ELEMENT and garage_2.parent_id == house_2.id and garage_2.height_m == 2.5
    assert house_2.props["address"] == "Hermann-von-Helmholtz-Platz 1, 76344 Eggenstein-Leopoldshafen, Germany"
    walls = sum(int(a.props.get("citygml.WallSurface.count", 0)) for a in v2.values())
    roofs = sum(int(a.props.get("citygml.RoofSurface.count", 0)) for a in v2.values())
    assert (walls, roofs) == (8, 3)
    # the ground slab, ETRS89 / UTM 32N read on its own, is the house's footprint
    ring = raw_ring(citygml(data_dir, "Building_and_garage_LOD2-EPSG25832.v2.gml"), house, "", GML_2)
    lon, lat = Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True).transform(ring[:, 0], ring[:, 1])
    assert metres_off(house_2, lon, lat) < 1.0
    assert house_2.geom is not None
    slab = shapely.Polygon(np.column_stack([lon, lat]))
    assert shapely.hausdorff_distance(house_2.geom, slab) * METRES_PER_DEGREE_LAT < 1.0


def test_citygml_3_with_an_adv_crs_urn_generic_attributes_and_xal_3(duck: Store, data_dir: Path) -> None:
    path = citygml(data_dir, "Building_CityGML3.0_LOD2_with_several_attributes.gml")
    summary = ingest(duck, path)
    assert summary.version == "3.0" and summary.assets == {"building": 1}
    assert summary.crs == "EPSG:31468+EPSG:5783"  # urn:adv:crs:DE_DHDN_3GK4*DE_DHHN92_NH
    (building,) = assets_of(duck, summary).values()
    assert building.name == "DEBY_LOD2_5744682" and building.height_m == 8.55
    assert building.props["citygml.function"] == "31001_9998" and building.props["citygml.roofType"] == "3100"
    assert building.props["Gemeindeschluessel"] == "09175128" and building.props["StandLK"] == "2014-07-28"
    address = {k: v for k, v in building.props.items() if k.startswith("address.")}
    assert address == {
        "address.street": "Am Hang", "address.number": "15", "address.postcode": "85665",
        "address.locality": "Moosach", "address.country": "Germany",
    }  # fmt: skip
    counts = [building.props[f"citygml.{n}.count"] for n in ("WallSurface", "RoofSurface", "GroundSurface")]
    assert counts == [8, 2, 1]
    ring = raw_ring(path, "DEBY_LOD2_5744682", "GroundSurface", GML_3)
    lon, lat = Transformer.from_crs("EPSG:31468", "EPSG:4326", always_xy=True).transform(ring[:, 0], ring[:, 1])
    assert metres_off(building, lon, lat) < 1.0 and 11.8 < lon[0] < 12.0 and 48.0 < lat[0] < 48.1  # Moosach
    assert building.z_min == pytest.approx(548.47) and building.z_max == pytest.approx(557.02)  # DHHN92 as given


def test_opera_lyon_keeps_its_building_and_reports_its_degenerate_polygons(duck: Store, data_dir: Path) -> None:
    path = citygml(data_dir, "Opera-Lyon_CityGML3.0_LOD2_with_xAL3_FullyStructured.gml")
    summary = ingest(duck, path)
    assert summary.assets == {"building": 1} and summary.crs == "EPSG:3946" and summary.rejected == 0
    dropped = [f for f in summary.findings if f["rule"].startswith("too_few_points:polygon ")]
    assert dropped and all(f["examples"] == [f"{path.name[:-4]}:OPERA_LYON_45"] for f in dropped)
    (opera,) = assets_of(duck, summary).values()
    assert opera.props["address"] == "Opéra National de Lyon, Place de la Comédie 1, 69001 Lyon, France"
    assert opera.props["address.postcode"] == "69001"
    counts = [opera.props[f"citygml.{n}.count"] for n in ("GroundSurface", "RoofSurface", "WallSurface")]
    assert counts == [1, 1, 2]
    ring = raw_ring(path, "OPERA_LYON_45", "GroundSurface", GML_3)
    lon, lat = Transformer.from_crs("EPSG:3946", "EPSG:4326", always_xy=True).transform(ring[:, 0], ring[:, 1])
    assert metres_off(opera, lon, lat) < 1.0 and 4.83 < lon[0] < 4.84 and 45.76 < lat[0] < 45.77


def test_the_roads_file_with_srs_only_on_geometries(duck: Store, data_dir: Path) -> None:
    path = citygml(data_dir, "citygml3_roads_roundabout.gml")
    summary = ingest(duck, path)
    assert summary.assets == {"road": 2} and summary.crs == "EPSG:32755" and summary.lods == {"lod2": 2}
    roads = assets_of(duck, summary)
    assert sorted(r.name or "" for r in roads.values()) == ["Drummond_Street", "Pelham_Street"]

    def total(key: str) -> int:
        return sum(int(r.props.get(f"citygml.{key}.count", 0)) for r in roads.values())

    # SOURCES.md: 4 Section, 1 Intersection, 116 TrafficSpace/Area, 186 AuxiliaryTrafficSpace/Area
    assert [total(k) for k in ("Section", "Intersection", "TrafficSpace", "AuxiliaryTrafficSpace")] == [4, 1, 116, 186]
    assert total("TrafficArea") == 116 and total("AuxiliaryTrafficArea") == 186
    drummond = next(r for r in roads.values() if r.name == "Drummond_Street")
    object_id = drummond.id.split(":", 1)[1]
    ring = raw_ring(path, object_id, "TrafficArea", GML_3)
    lon, lat = Transformer.from_crs("EPSG:32755", "EPSG:4326", always_xy=True).transform(ring[:, 0], ring[:, 1])
    assert metres_off(drummond, lon, lat) < 1.0 and 144.9 < lon[0] < 145.0 and -37.9 < lat[0] < -37.7  # Melbourne


def test_plateau_sewer_pipes_are_pipes_and_manholes_nodes(duck: Store, data_dir: Path) -> None:
    path = citygml(data_dir, "sewer_53403039_unf_6697.gml")
    summary = ingest(duck, path)
    assert summary.assets == {"node": 3, "pipe": 3}
    found = assets_of(duck, summary).values()
    pipes = [a for a in found if a.kind is Kind.PIPE]
    manholes = [a for a in found if a.kind is Kind.NODE]
    assert {p.network for p in pipes} == {"sewer"}
    measured = sorted((p.diameter_mm, p.depth_m) for p in pipes if p.diameter_mm is not None)
    assert measured == [(286.0, 1.85), (286.0, 1.95)]  # uro:innerDiamiter 286 mm, uro:minDepth
    assert {m.install_date for m in manholes} == {date(1974, 1, 1)}  # uro:year
    assert all(p.props["uro.occupierType"] == "600" for p in found)
    ring = raw_ring(path, pipes[0].id.split(":", 1)[1], "", GML_2)
    lat, lon = Transformer.from_crs("EPSG:6668", "EPSG:4326").transform(ring[:, 0], ring[:, 1])
    assert metres_off(pipes[0], lon, lat) < 1.0 and abs(lat[0] - 35.6095) < 0.001 and abs(lon[0] - 140.1194) < 0.001


def test_the_gzip_file_is_streamed_one_member_at_a_time(duck: Store, data_dir: Path) -> None:
    path = citygml(data_dir, "53391597_frn_6697_op.gml.gz")
    stream = open_citygml(path)
    try:
        seen = 0
        for member in stream.members():
            seen += 1
            assert stream.root[0] is member.getparent()  # every member before it was freed
            assert len(stream.root) <= 3  # and at most what the parser read ahead follows
    finally:
        stream.file.close()
    assert seen == 28
    summary = ingest(duck, path)
    assert summary.assets == {"element": 28} and summary.lods == {"lod3": 28}
    furniture = assets_of(duck, summary)
    functions = Counter(a.props["citygml.function"] for a in furniture.values())
    assert functions == {"8050": 17, "4800": 10, "9000": 1}
    assert all(a.props["citygml.class"] == "CityFurniture" for a in furniture.values())
    first = next(iter(sorted(furniture)))
    ring = raw_ring(path, first.split(":", 1)[1], "", GML_2)  # the gzip read whole by the standard library
    lat, lon = Transformer.from_crs("EPSG:6668", "EPSG:4326").transform(ring[:, 0], ring[:, 1])
    assert metres_off(furniture[first], lon, lat) < 1.0 and 139.6 < lon[0] < 139.8 and 35.4 < lat[0] < 35.7  # Kawasaki


def test_one_citygml_ingest_on_both_backends_with_meshes(store: Store, tmp_path: Path, data_dir: Path) -> None:
    with MeshStore(tmp_path / "m.duckdb") as meshes:
        path = citygml(data_dir, "Building_and_garage_LOD2-EPSG25832.v3.gml")
        summary = ingest(store, path, meshes)
        assert summary.assets == {"building": 1, "element": 1} and summary.meshes == 2
        building = store.get_asset("Building_and_garage_LOD2-EPSG25832.v3:GML_7b1a5a6f-ddad-4c3d-a507-3eb9ee0a8e68")
        assert building.kind is Kind.BUILDING and building.install_date == date(1985, 1, 1)
        assert building.props["address.street"] == "Hermann-von-Helmholtz-Platz"
        (mesh,) = meshes.get([building.id]).to_meshes()
        extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
        # 10 m × 5 m, 112 → 117 m; UTM's grid is turned ~1° from east-north there, so a box's extent grows a little
        assert extent.tolist() == pytest.approx([10.0, 5.0, 5.0], abs=0.15)
        again = ingest(store, path, meshes)  # re-ingesting replaces, never doubles
        assert again.assets == summary.assets and store.count_by_kind() == {"building": 1, "element": 1}


def test_a_pipeline_names_citygml_files_and_skips_them_when_unchanged(tmp_path: Path, data_dir: Path) -> None:
    from cim.pipeline.model import load_pipeline
    from cim.pipeline.run import run_pipeline

    path = tmp_path / "city.toml"
    store_url = str(tmp_path / "city.duckdb")
    path.write_text(
        f"""
name = "citygml-city"
store = "{store_url}"

[[citygml]]
path = "{citygml(data_dir, "sewer_53403039_unf_6697.gml")}"

[[citygml]]
path = "{tmp_path / "missing.gml"}"
optional = true
""",
        encoding="utf-8",
    )
    pipeline = load_pipeline(path)
    first = run_pipeline(pipeline)
    sewer, missing = first.sources
    assert (sewer.type, sewer.ok, sewer.assets) == ("citygml", True, {"node": 3, "pipe": 3})
    assert sewer.source == "sewer_53403039_unf_6697.gml:citygml" and "JGD2011" in sewer.details["height_datum"]
    assert missing.skipped
    second = run_pipeline(pipeline)
    assert second.sources[0].skipped  # unchanged: not read again
    with open_store(store_url) as store:
        assert store.count_by_kind() == {"node": 3, "pipe": 3}


CITYGML_1_0 = """<?xml version="1.0" encoding="UTF-8"?>
<CityModel xmlns="http://www.opengis.net/citygml/1.0" xmlns:gml="http://www.opengis.net/gml"
  xmlns:bldg="http://www.opengis.net/citygml/building/1.0" xmlns:gen="http://www.opengis.net/citygml/generics/1.0">
 <gml:boundedBy><gml:Envelope srsName="EPSG:25833"><gml:pos>0 0 0</gml:pos><gml:pos>1 1 1</gml:pos></gml:Envelope>
 </gml:boundedBy>
 <cityObjectMember>
  <bldg:Building gml:id="BLDG_1">
   <gen:stringAttribute name="Bezirk"><gen:value>Mitte</gen:value></gen:stringAttribute>
   <gen:doubleAttribute name="Dachneigung"><gen:value>35.5</gen:value></gen:doubleAttribute>
   <bldg:function>31001_1000</bldg:function>
   <bldg:yearOfConstruction>1911</bldg:yearOfConstruction>
   <bldg:measuredHeight uom="#m">12.0</bldg:measuredHeight>
   <bldg:storeysAboveGround>4</bldg:storeysAboveGround>
   <bldg:lod1Solid><gml:Solid><gml:exterior><gml:CompositeSurface>
    <gml:surfaceMember><gml:OrientableSurface orientation="-"><gml:baseSurface><gml:Polygon><gml:exterior>
     <gml:LinearRing><gml:coordinates>389000,5819000,34 389000,5819010,34 389010,5819010,34 389010,5819000,34
      389000,5819000,34</gml:coordinates></gml:LinearRing></gml:exterior></gml:Polygon></gml:baseSurface>
    </gml:OrientableSurface></gml:surfaceMember>
    <gml:surfaceMember><gml:Polygon><gml:exterior><gml:LinearRing>
     <gml:pos>389000 5819000 46</gml:pos><gml:pos>389010 5819000 46</gml:pos><gml:pos>389010 5819010 46</gml:pos>
     <gml:pos>389000 5819010 46</gml:pos><gml:pos>389000 5819000 46</gml:pos>
    </gml:LinearRing></gml:exterior></gml:Polygon></gml:surfaceMember>
   </gml:CompositeSurface></gml:exterior></gml:Solid></bldg:lod1Solid>
  </bldg:Building>
 </cityObjectMember>
</CityModel>
"""


def test_citygml_1_0_with_gml_coordinates_pos_and_a_flipped_surface(duck: Store, tmp_path: Path) -> None:
    path = tmp_path / "berlin.xml"
    path.write_text(CITYGML_1_0, encoding="utf-8")
    assert file_type(path) == "citygml"
    summary = ingest(duck, path)
    assert summary.version == "1.0" and summary.assets == {"building": 1} and summary.lods == {"lod1": 1}
    building = duck.get_asset("berlin:BLDG_1")
    assert building.props["Bezirk"] == "Mitte" and building.props["Dachneigung"] == 35.5
    assert building.install_date == date(1911, 1, 1) and building.height_m == 12.0 and building.storeys == 4
    assert (building.z_min, building.z_max) == (34.0, 46.0)
    lon, lat = Transformer.from_crs("EPSG:25833", "EPSG:4326", always_xy=True).transform(389005.0, 5819005.0)
    assert building.geom is not None and building.geom.area > 0
    assert shapely.distance(building.geom.centroid, shapely.Point(lon, lat)) * METRES_PER_DEGREE_LAT < 1.0


def test_a_running_server_ingests_an_uploaded_citygml_file(tmp_path: Path, data_dir: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

    (tmp_path / "tiles").mkdir()
    settings = AppSettings(
        store=StoreSettings(store=str(tmp_path / "city.duckdb")),
        server=ServerSettings(tiles_dir=tmp_path / "tiles", write_token="t"),
    )
    auth = {"Authorization": "Bearer t"}
    path = citygml(data_dir, "sewer_53403039_unf_6697.gml")
    with TestClient(create_app(settings)) as client:
        upload = client.post("/admin/uploads", params={"name": path.name}, content=path.read_bytes(), headers=auth)
        assert upload.status_code == 201, upload.text
        files = [{"upload": upload.json()["id"], "label": f"citygml/{path.name}"}]
        job = client.post("/admin/jobs", json={"action": "ingest", "files": files}, headers=auth).json()
        while job["state"] in ("queued", "running"):
            time.sleep(0.05)
            job = client.get(f"/admin/jobs/{job['id']}", headers=auth).json()
        assert job["state"] == "done", job
        (entry,) = job["result"]["files"]
        assert entry["assets"] == {"node": 3, "pipe": 3} and entry["version"] == "2.0"
        assert "JGD2011" in entry["height_datum"]
