"""The CityGML 3.0 export, read back with lxml: every building once with its id, attributes, parts, address and
geometry where an independent transform puts it, and the CityGML 3.0 / GML 3.2 rules the writer relies on (checked
here from the encoding's XSDs: NCName ids, element order, outward-facing solid shells, resolvable xlinks, an envelope
bounding every coordinate)."""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import shapely
from lxml import etree  # type: ignore[import-untyped]
from pyproj import CRS, Transformer

from cim.errors import InvalidInput
from cim.export import ExportSummary, writer
from cim.export.citygml import write_citygml
from cim.model import Asset, AssetBatch, Kind, Mesh, MeshBatch
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store, open_store
from cim.store.meshes import open_meshes
from tests.conftest import DATA
from tests.export.conftest import KillMidWrite

NS = {
    "core": "http://www.opengis.net/citygml/3.0",
    "bldg": "http://www.opengis.net/citygml/building/3.0",
    "con": "http://www.opengis.net/citygml/construction/3.0",
    "gen": "http://www.opengis.net/citygml/generics/3.0",
    "gml": "http://www.opengis.net/gml/3.2",
    "xAL": "urn:oasis:names:tc:ciq:xal:3",
    "xlink": "http://www.w3.org/1999/xlink",
}
DELFT = DATA / "cityjson" / "delft.city.json"
ROTTERDAM = DATA / "cityjson" / "rotterdam_subset.city.json"
HAUS = DATA / "ifc" / "AC20-FZK-Haus.ifc"
NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
#: A footprint in Karlsruhe near the FZK-Haus, 20 × 10 m with a 4 × 4 m courtyard, and a second block beside it.
HOUSE = shapely.MultiPolygon(
    [
        shapely.Polygon(
            [(8.4400, 49.1000), (8.44027, 49.1000), (8.44027, 49.10009), (8.4400, 49.10009)],
            [[(8.44010, 49.10003), (8.44015, 49.10003), (8.44015, 49.10006), (8.44010, 49.10006)]],
        ),
        shapely.box(8.4404, 49.1000, 8.4405, 49.10005),
    ]
)


def synthetic() -> list[Asset]:
    """A building with every attribute the export writes, its part, and a part typed as one by its source."""
    house = Asset(
        id="addr:Am Hang 15",  # not an NCName: escaped in gml:id, kept in gml:identifier
        kind=Kind.BUILDING,
        name="Haus am Hang",
        geom=HOUSE,
        z_min=110.0,
        z_max=118.5,
        height_m=8.5,
        storeys=3,
        install_date=date(1985, 1, 1),
        status="in_service",
        source="test",
        props={
            "function": "31001_1000",
            "usage": ["1000", "1010"],
            "address": {"country": "Germany", "city": "Moosach", "street": "Am Hang", "housenumber": "15"},
            "addr:postcode": "85665",
            "StandLK": "2014-07-28",
            "rooms": 7,
            "area": 123.5,
            "heated": True,
            "Pset_Energy": {"class": "B", "kWh": 95.0},
        },
    )
    garage = Asset(
        id="garage-1",
        kind=Kind.BUILDING,
        parent_id=house.id,
        geom=shapely.box(8.4403, 49.1000, 8.44035, 49.10004),
        z_min=110.0,
        z_max=113.0,
        source="test",
    )
    shed = Asset(
        id="shed-1",
        kind=Kind.ELEMENT,
        parent_id=house.id,
        geom=shapely.box(8.44036, 49.1000, 8.44038, 49.10002),
        z_min=110.0,
        z_max=112.0,
        source="test",
        props={"cityjson.type": "BuildingPart"},
    )
    wall = Asset(id="wall-1", kind=Kind.ELEMENT, parent_id=house.id, geom=shapely.Point(8.4401, 49.1), source="test")
    road = Asset(id="road-1", kind=Kind.ROAD, geom=shapely.LineString([(8.44, 49.0999), (8.441, 49.0999)]))
    return [house, garage, shed, wall, road]


#: A 10 × 6 × 4 m box east, north and up of its origin, closed, every triangle counter-clockwise seen from outside.
BOX_ORIGIN = (8.4410, 49.1000, 112.0)
BOX_CORNERS = np.array(
    [[0, 0, 0], [10, 0, 0], [10, 6, 0], [0, 6, 0], [0, 0, 4], [10, 0, 4], [10, 6, 4], [0, 6, 4]], np.float32
)
BOX_TRIANGLES = np.array(
    [
        [0, 2, 1], [0, 3, 2],  # ground, facing down
        [4, 5, 6], [4, 6, 7],  # roof, facing up
        [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],  # walls
    ],
    np.uint32,
)  # fmt: skip


def box() -> tuple[Asset, MeshBatch]:
    asset = Asset(
        id="box-1",
        kind=Kind.BUILDING,
        geom=shapely.box(8.4410, 49.1000, 8.44114, 49.10006),
        z_min=112.0,
        z_max=116.0,
        source="boxes",
        props={"cityjson.lod": "2.2"},
    )
    mesh = MeshBatch.from_meshes(
        [Mesh(asset_id="box-1", origin=BOX_ORIGIN, vertices=BOX_CORNERS, triangles=BOX_TRIANGLES)]
    )
    return asset, mesh


@dataclass
class Exported:
    store_url: str
    path: Path
    summary: ExportSummary
    doc: Any
    top_ids: set[str]

    def building(self, asset_id: str) -> Any:
        found = self.doc.xpath("//bldg:*[gml:identifier = $id]", namespaces=NS, id=asset_id)
        assert len(found) == 1, asset_id
        return found[0]


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """One city on each store (Delft LoD1 and Rotterdam LoD2 from CityJSON, the FZK-Haus from IFC, the synthetic
    house), exported once."""
    folder = tmp_path_factory.mktemp("citygml")
    schema = None
    if request.param == "duckdb":
        url = str(folder / "city.duckdb")
    else:
        postgres = request.getfixturevalue("postgres_url")
        schema = "t_" + uuid.uuid4().hex[:12]
        url = f"{postgres}?schema={schema}"
    try:
        with open_store(url) as store, open_meshes(store) as meshes:
            write_source(store, DELFT, meshes=meshes)
            write_source(store, ROTTERDAM, meshes=meshes, crs=CRS.from_epsg(7415))
            write_source(store, HAUS, meshes=meshes)
            box_asset, box_mesh = box()
            store.upsert_assets(AssetBatch.from_assets([*synthetic(), box_asset]))
            meshes.add("boxes", box_mesh)
            summary = writer("citygml")(store, meshes, folder / "city.gml")
            buildings = store.find_assets(AssetQuery(kinds=(Kind.BUILDING,)))
            top = {a.id for a in buildings} - {a.id for a in buildings if a.parent_id in {b.id for b in buildings}}
        yield Exported(url, folder / "city.gml", summary, etree.parse(str(folder / "city.gml")), top)
    finally:
        if schema is not None:
            with psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True) as con:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_every_top_level_building_is_one_member_with_its_id(exported: Exported) -> None:
    members = exported.doc.xpath("/core:CityModel/core:cityObjectMember/bldg:Building", namespaces=NS)
    identifiers = [m.findtext("gml:identifier", namespaces=NS) for m in members]
    assert len(members) == 160 + 16 + 1 + 2 and set(identifiers) == exported.top_ids
    # by the store's kinds (one part is a building, one an element kept as a BuildingPart), then by CityGML's types
    assert exported.summary.objects == {"building": 180, "element": 1}
    assert exported.summary.types == {"Building": 179, "BuildingPart": 2}
    for member in members:
        assert member.find("gml:identifier", NS).get("codeSpace") == "urn:cim:asset-id"


def test_gml_ids_are_unique_ncnames(exported: Exported) -> None:
    ids = exported.doc.xpath("//@gml:id", namespaces=NS)
    assert len(ids) == len(set(ids)) and all(NCNAME.fullmatch(i) for i in ids)
    assert exported.building("addr:Am Hang 15").get(f"{{{NS['gml']}}}id") == "cim_addr_3a_Am_20_Hang_20_15"


def test_parts_are_building_parts_of_their_building_and_other_children_are_not(exported: Exported) -> None:
    house = exported.building("addr:Am Hang 15")
    parts = house.xpath("bldg:buildingPart/bldg:BuildingPart/gml:identifier/text()", namespaces=NS)
    assert parts == ["garage-1", "shed-1"]
    assert not exported.doc.xpath("//*[gml:identifier = 'wall-1']", namespaces=NS)


def test_attributes_read_back_in_the_3_0_encoding(exported: Exported) -> None:
    house = exported.building("addr:Am Hang 15")
    assert house.findtext("gml:name", namespaces=NS) == "Haus am Hang"
    generic = {
        g.findtext("gen:name", namespaces=NS): (etree.QName(g).localname, g.findtext("gen:value", namespaces=NS))
        for g in house.xpath("core:genericAttribute/gen:*", namespaces=NS)
    }
    assert generic["StandLK"] == ("DateAttribute", "2014-07-28")
    assert generic["rooms"] == ("IntAttribute", "7") and generic["area"] == ("DoubleAttribute", "123.5")
    assert generic["heated"] == ("StringAttribute", "true") and generic["cim.status"] == (
        "StringAttribute",
        "in_service",
    )
    energy = house.xpath("core:genericAttribute/gen:GenericAttributeSet[gen:name='Pset_Energy']", namespaces=NS)[0]
    members = energy.xpath("gen:genericAttribute/gen:*/gen:name/text()", namespaces=NS)  # gen:, inside a set
    assert sorted(members) == ["class", "kWh"]
    assert "function" not in generic and "address" not in generic and "addr:postcode" not in generic
    assert house.findtext("con:dateOfConstruction", namespaces=NS) == "1985-01-01"
    height = house.find("con:height/con:Height", NS)
    assert [etree.QName(e).localname for e in height] == ["highReference", "lowReference", "status", "value"]
    assert height.findtext("con:status", namespaces=NS) == "measured"
    assert (height.findtext("con:value", namespaces=NS), height.find("con:value", NS).get("uom")) == ("8.500", "m")
    assert house.xpath("bldg:function/text()", namespaces=NS) == ["31001_1000"]
    assert house.xpath("bldg:usage/text()", namespaces=NS) == ["1000", "1010"]
    assert house.findtext("bldg:storeysAboveGround", namespaces=NS) == "3"
    address = house.find("bldg:address/core:Address/core:xalAddress/xAL:Address", NS)
    assert [etree.QName(e).localname for e in address] == ["Country", "Locality", "Thoroughfare", "PostCode"]
    assert address.xpath("xAL:Thoroughfare/*/text()", namespaces=NS) == ["Am Hang", "15"]
    assert address.findtext("xAL:PostCode/xAL:Identifier", namespaces=NS) == "85665"
    delft = exported.building(f"delft:{next(iter(_delft_buildings()))}")
    assert delft.xpath("core:genericAttribute/gen:*[gen:name='bgt_status']/gen:value/text()", namespaces=NS) == [
        "bestaand"
    ]


def test_children_come_in_the_order_of_the_schemas_sequences(exported: Exported) -> None:
    """gml (identifier, name) → core:AbstractCityObject (genericAttribute) → core:AbstractSpace (boundary, lod1Solid,
    lod2Solid) → con:AbstractConstruction (dateOfConstruction, height) → bldg:AbstractBuilding (class, function,
    usage, roofType, storeysAboveGround, address) → bldg:Building (buildingPart)."""
    order = [
        "identifier", "name", "genericAttribute", "boundary", "lod1Solid", "lod2Solid", "dateOfConstruction",
        "height", "class", "function", "usage", "roofType", "storeysAboveGround", "address", "buildingPart",
    ]  # fmt: skip
    for building in exported.doc.xpath("//bldg:Building | //bldg:BuildingPart", namespaces=NS):
        names = [etree.QName(child).localname for child in building]
        assert [order.index(n) for n in names] == sorted(order.index(n) for n in names), names


def test_the_envelope_bounds_every_coordinate_in_the_utm_zone_named(exported: Exported) -> None:
    envelope = exported.doc.find("gml:boundedBy/gml:Envelope", NS)
    # Delft (4.36° E), Rotterdam (4.47° E) and Karlsruhe (8.4° E): the centre is in UTM zone 32N
    assert envelope.get("srsName") == "http://www.opengis.net/def/crs/EPSG/0/32632"
    assert envelope.get("srsDimension") == "3"
    low = np.array(envelope.findtext("gml:lowerCorner", namespaces=NS).split(), float)
    high = np.array(envelope.findtext("gml:upperCorner", namespaces=NS).split(), float)
    points = np.vstack([_points(p) for p in exported.doc.iterfind(".//gml:posList", NS)])
    assert np.allclose(points.min(axis=0), low) and np.allclose(points.max(axis=0), high)
    description = exported.doc.findtext("gml:description", namespaces=NS)
    assert "EPSG/0/32632" in description and "ellipsoid" in description


def test_delft_lod1_lies_where_rd_new_says_within_a_metre(exported: Exported) -> None:
    """The exported UTM coordinates taken back to RD New by pyproj against the CityJSON file's own vertices."""
    vertices, objects = _delft_buildings_and_vertices()
    back = Transformer.from_crs(32632, 28992, always_xy=True)
    checked = 0
    for object_id in list(objects)[:20]:
        building = exported.building(f"delft:{object_id}")
        exported_points = np.vstack([_points(p) for p in building.iterfind("core:lod1Solid//gml:posList", NS)])
        x, y = back.transform(exported_points[:, 0], exported_points[:, 1])
        source = vertices[objects[object_id]]
        for px, py in zip(x, y, strict=True):
            assert np.hypot(source[:, 0] - px, source[:, 1] - py).min() < 1.0
        # heights as the file gives them (NAP): the block spans the file's own z range
        assert exported_points[:, 2].min() == pytest.approx(source[:, 2].min(), abs=0.01)
        assert exported_points[:, 2].max() == pytest.approx(source[:, 2].max(), abs=0.01)
        checked += 1
    assert checked == 20


def test_rotterdam_lod2_surfaces_are_the_file_s_own_within_a_metre(exported: Exported) -> None:
    data = json.loads(ROTTERDAM.read_text())
    scale, translate = np.array(data["transform"]["scale"]), np.array(data["transform"]["translate"])
    vertices = np.array(data["vertices"], float) * scale + translate
    back = Transformer.from_crs(32632, 28992, always_xy=True)
    themes: dict[str, int] = {}
    for object_id, city_object in list(data["CityObjects"].items())[:4]:
        own = vertices[sorted({i for s in city_object["geometry"][0]["boundaries"] for r in s for i in r})]
        building = exported.building(f"rotterdam_subset:{object_id}")
        for surface in building.xpath("core:boundary/con:*", namespaces=NS):
            theme = etree.QName(surface).localname
            themes[theme] = themes.get(theme, 0) + 1
            for pos_list in surface.iterfind("core:lod2MultiSurface//gml:posList", NS):
                points = _points(pos_list)
                x, y = back.transform(points[:, 0], points[:, 1])
                distance = np.sqrt(
                    (own[:, None, 0] - x) ** 2 + (own[:, None, 1] - y) ** 2 + (own[:, None, 2] - points[:, 2]) ** 2
                )
                assert distance.min(axis=0).max() < 1.0
    assert set(themes) >= {"RoofSurface", "WallSurface"}


def test_lod1_shells_face_outwards_and_hold_the_footprint_times_the_height(exported: Exported) -> None:
    """GML: a solid's shell is oriented outwards, so the divergence theorem gives a positive volume."""
    house = exported.building("addr:Am Hang 15")
    solids = house.xpath("core:lod1Solid/gml:CompositeSolid/gml:solidMember/gml:Solid", namespaces=NS)
    assert len(solids) == 2
    area = shapely.ops.transform(Transformer.from_crs(4326, 32632, always_xy=True).transform, HOUSE).area
    volume = sum(_volume(solid) for solid in solids)
    assert volume == pytest.approx(area * 8.5, rel=1e-3)
    for solid in exported.doc.xpath("//core:lod1Solid//gml:Solid", namespaces=NS):
        assert _volume(solid) > 0


def test_a_closed_mesh_is_lod2_surfaces_by_facing_and_a_solid_of_them(exported: Exported) -> None:
    building = exported.building("box-1")
    counts = {
        etree.QName(s).localname: len(s.findall(".//gml:Polygon", NS))
        for s in building.xpath("core:boundary/con:*", namespaces=NS)
    }
    assert counts == {"GroundSurface": 2, "WallSurface": 8, "RoofSurface": 2}
    polygons = {p.get(f"{{{NS['gml']}}}id"): p for p in building.iterfind("core:boundary//gml:Polygon", NS)}
    hrefs = building.xpath(
        "core:lod2Solid/gml:Solid/gml:exterior/gml:Shell/gml:surfaceMember/@xlink:href", namespaces=NS
    )
    assert sorted(h[1:] for h in hrefs) == sorted(polygons)
    shell = etree.Element(f"{{{NS['gml']}}}Solid")  # the solid with its references resolved, for its volume
    exterior = etree.SubElement(etree.SubElement(shell, f"{{{NS['gml']}}}exterior"), f"{{{NS['gml']}}}Shell")
    for polygon in polygons.values():
        etree.SubElement(exterior, f"{{{NS['gml']}}}surfaceMember").append(copy.deepcopy(polygon))
    assert _volume(shell) == pytest.approx(10 * 6 * 4, rel=2e-3)  # UTM's scale (0.9996…) squared
    # the box's first corner is its origin: where pyproj puts that lon/lat, at its ellipsoidal height
    x, y = Transformer.from_crs(4326, 32632, always_xy=True).transform(*BOX_ORIGIN[:2])
    points = np.vstack([_points(p) for p in building.iterfind("core:boundary//gml:posList", NS)])
    assert np.hypot(points[:, 0] - x, points[:, 1] - y).min() < 0.01
    assert points[:, 2].min() == pytest.approx(112.0, abs=0.01) and points[:, 2].max() == pytest.approx(116.0, abs=0.01)


def test_lod2_solids_refer_to_polygons_of_the_document(exported: Exported) -> None:
    ids = set(exported.doc.xpath("//gml:Polygon/@gml:id", namespaces=NS))
    hrefs = exported.doc.xpath("//core:lod2Solid//gml:surfaceMember/@xlink:href", namespaces=NS)
    assert all(h.startswith("#") and h[1:] in ids for h in hrefs)
    for ring in exported.doc.iterfind(".//gml:LinearRing/gml:posList", NS):
        points = _points(ring)
        assert len(points) >= 4 and np.array_equal(points[0], points[-1])
        assert not (np.diff(points, axis=0) == 0).all(axis=1).any()  # no point twice in a row


def test_other_kinds_are_reported_and_a_given_crs_is_used(exported: Exported, tmp_path: Path) -> None:
    with open_store(exported.store_url) as store:
        summary = write_citygml(
            store,
            None,
            tmp_path / "k.gml",
            kinds=(Kind.BUILDING, Kind.ROAD),
            bbox=(8.43, 49.09, 8.45, 49.11),
            crs=25832,
        )
        with pytest.raises(InvalidInput, match="projected CRS"):
            write_citygml(store, None, tmp_path / "g.gml", crs="EPSG:4326")
    # the FZK-Haus, the synthetic house and the box; their parts: a building and an element kept as a BuildingPart
    assert summary.objects == {"building": 4, "element": 1}
    assert summary.types == {"Building": 3, "BuildingPart": 2}
    assert [(s["rule"], s["kind"], s["count"]) for s in summary.skipped] == [("not_a_building", "road", 1)]
    assert summary.skipped[0]["examples"] == ["road-1"]  # ids, as every rule's examples are
    doc = etree.parse(str(tmp_path / "k.gml"))
    assert doc.find("gml:boundedBy/gml:Envelope", NS).get("srsName") == "http://www.opengis.net/def/crs/EPSG/0/25832"
    assert not (tmp_path / "g.gml").exists()


def test_an_export_killed_mid_write_leaves_nothing_at_out(
    exported: Exported, tmp_path: Path, kill_mid_write: KillMidWrite
) -> None:
    kill_mid_write(exported.store_url, "citygml", tmp_path / "city.gml")
    (left,) = tmp_path.iterdir()  # written_whole's partial file, begun
    assert re.fullmatch(r"\.city\.\d+\.partial\.gml", left.name) and left.stat().st_size > 0


def test_the_citygml_importer_s_props_become_codes_address_and_parts_again(store: Store, tmp_path: Path) -> None:
    """The keys the CityGML importer keeps (branch citygml, cim/gis/citygml_attributes.py) read back as CityGML."""
    footprint = shapely.box(121.47, 31.23, 121.4702, 31.2301)
    building = Asset(
        id="BLD_1",
        kind=Kind.BUILDING,
        geom=footprint,
        z_min=4.0,
        z_max=20.0,
        props={
            "citygml.class": "Building",
            "citygml.function": "1000;1010",
            "citygml.function.codeSpace": "https://example.org/function.xml",
            "address": "Am Hang 15, 85665 Moosach",
            "address.street": "Am Hang",
            "address.number": "15",
            "address.postcode": "85665",
            "address.locality": "Moosach",
        },
    )
    part = Asset(
        id="BLD_1_part",
        kind=Kind.ELEMENT,
        parent_id="BLD_1",
        geom=footprint,
        z_min=4.0,
        z_max=8.0,
        props={"citygml.class": "BuildingPart"},
    )
    store.upsert_assets(AssetBatch.from_assets([building, part]))
    write_citygml(store, None, tmp_path / "city.gml")
    written = etree.parse(str(tmp_path / "city.gml")).find(".//bldg:Building", NS)
    functions = written.findall("bldg:function", NS)
    assert [(f.text, f.get("codeSpace")) for f in functions] == [
        ("1000", "https://example.org/function.xml"),
        ("1010", "https://example.org/function.xml"),
    ]
    address = written.find("bldg:address/core:Address/core:xalAddress/xAL:Address", NS)
    assert [etree.QName(e).localname for e in address] == ["FreeTextAddress", "Locality", "Thoroughfare", "PostCode"]
    assert address.findtext("xAL:FreeTextAddress/xAL:AddressLine", namespaces=NS) == "Am Hang 15, 85665 Moosach"
    names = written.xpath("core:genericAttribute/gen:*/gen:name/text()", namespaces=NS)
    assert not [n for n in names if n.startswith(("address", "citygml.function"))]
    assert written.xpath("bldg:buildingPart/bldg:BuildingPart/gml:identifier/text()", namespaces=NS) == ["BLD_1_part"]


def test_an_empty_selection_is_a_valid_empty_city_model(store: Store, tmp_path: Path) -> None:
    summary = write_citygml(store, None, tmp_path / "empty.gml")
    doc = etree.parse(str(tmp_path / "empty.gml"))
    assert summary.objects == {} and doc.getroot().tag == f"{{{NS['core']}}}CityModel"
    assert not doc.xpath("//core:cityObjectMember", namespaces=NS)


def _points(pos_list: Any) -> np.ndarray:
    return np.array(pos_list.text.split(), float).reshape(-1, 3)


def _volume(solid: Any) -> float:
    """The signed volume of a shell of planar polygons (each fanned into triangles from its first point)."""
    total = 0.0
    origin = _points(solid.find(".//gml:posList", NS))[0]  # near the solid: no cancellation in UTM's millions
    for polygon in solid.iterfind("gml:exterior/gml:Shell/gml:surfaceMember/gml:Polygon", NS):
        for ring in polygon.iterfind(".//gml:posList", NS):
            p = _points(ring)[:-1] - origin
            for a, b in itertools.pairwise(p[1:]):
                total += float(np.dot(p[0], np.cross(a, b))) / 6.0
    return total


def _delft_buildings() -> dict[str, Any]:
    return _delft_buildings_and_vertices()[1]


def _delft_buildings_and_vertices() -> tuple[np.ndarray, dict[str, list[int]]]:
    data = json.loads(DELFT.read_text())
    scale, translate = np.array(data["transform"]["scale"]), np.array(data["transform"]["translate"])
    vertices = np.array(data["vertices"], float) * scale + translate
    objects = {}
    for object_id, city_object in data["CityObjects"].items():
        if city_object["type"] == "Building" and city_object.get("geometry"):
            boundaries = city_object["geometry"][0]["boundaries"]
            objects[object_id] = sorted(set(_flatten(boundaries)))
    return vertices, objects


def _flatten(nested: Any) -> Iterator[int]:
    for item in nested:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item
