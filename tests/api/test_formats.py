"""The answer formats (cim/api/formats.py, cim/api/html.py): f= and Accept, CSV, FlatGeobuf, HTML, GeoJSON — over
the small city on both stores, through an items route built on the format functions as the OGC routes call them,
and through the domain queries."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow.csv as pacsv
import pyogrio
import pytest
import shapely
from fastapi import FastAPI, Query, Request, Response
from fastapi.testclient import TestClient
from shapely.geometry import Point, box

from cim.api.errors import install_error_handlers
from cim.api.formats import (
    CsvGeometryParam,
    OutputFormat,
    feature_response,
    features_response,
    negotiate,
    write_flatgeobuf,
)
from cim.api.geojson import feature
from cim.errors import InvalidInput
from cim.model import Asset, AssetBatch, Kind
from cim.store import AssetQuery, Store
from tests.api.city import AREA, AS_OF, X, Y, build_city

HOSTILE = '<script>alert("x")</script> 大楼 & "塔" \'1\''


def items_app(store: Store) -> FastAPI:
    """Items and one item as the OGC routes answer them: the GeoJSON body handed to the format functions."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/collections/{kind}/items")
    def items(
        request: Request, kind: Kind, f: str | None = None, geometry: CsvGeometryParam = "wkt", limit: int = 100
    ) -> Response:
        fmt = negotiate(request, f)
        assets = store.find_assets(AssetQuery(kinds=(kind,), limit=limit))
        links = [{"href": str(request.url.include_query_params(offset=limit)), "rel": "next", "type": "x"}]
        body = {"type": "FeatureCollection", "features": [feature(a) for a in assets], "links": links}
        return features_response(fmt, request=request, title=str(kind), body=body, csv_geometry=geometry)

    @app.get("/collections/{kind}/items/{feature_id}")
    def item(request: Request, kind: Kind, feature_id: str, f: Annotated[str | None, Query()] = None) -> Response:
        fmt = negotiate(request, f)
        return feature_response(fmt, request=request, title=feature_id, body=feature(store.get_asset(feature_id)))

    return app


@pytest.fixture
def items(store: Store) -> Iterator[TestClient]:
    build_city(store)
    extra = [
        Asset(id="hostile-1", kind=Kind.BUILDING, name=HOSTILE, geom=box(X, Y, X + 0.001, Y + 0.001), height_m=8.0),
        Asset(id="pt-1", kind=Kind.HYDRANT, name="消火栓 一号", geom=Point(X + 0.001, Y + 0.002)),
        Asset(id="pt-2", kind=Kind.HYDRANT, name='=HYPERLINK("http://x")', geom=Point(X + 0.003, Y + 0.004)),
    ]
    store.upsert_assets(AssetBatch.from_assets(extra))
    with TestClient(items_app(store)) as client:
        yield client


# --- choosing the format -----------------------------------------------------------------------------------------


def request_with(accept: str | None = None) -> Request:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": headers})


def test_f_wins_over_accept_and_is_case_insensitive() -> None:
    assert negotiate(request_with("text/html"), "CSV") is OutputFormat.CSV
    assert negotiate(request_with("text/html"), " fgb ") is OutputFormat.FLATGEOBUF


def test_unknown_or_unoffered_f_names_f_and_the_offered_formats() -> None:
    with pytest.raises(InvalidInput) as unknown:
        negotiate(request_with(), "shapefile")
    assert unknown.value.what.startswith("f ") and "geojson, json, csv, fgb, html" in unknown.value.why
    with pytest.raises(InvalidInput, match="use one of json, geojson"):
        negotiate(request_with(), "html", (OutputFormat.JSON, OutputFormat.GEOJSON))


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, OutputFormat.GEOJSON),
        ("*/*", OutputFormat.GEOJSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", OutputFormat.HTML),
        ("text/csv", OutputFormat.CSV),
        ("application/flatgeobuf", OutputFormat.FLATGEOBUF),
        ("application/json", OutputFormat.JSON),
        ("application/geo+json, application/json;q=0.9", OutputFormat.GEOJSON),
        ("application/json;q=0.5, text/csv;q=0.9", OutputFormat.CSV),
        ("text/html;q=0, */*", OutputFormat.GEOJSON),
        ("image/png", OutputFormat.GEOJSON),
    ],
)
def test_accept_chooses_by_q_value(accept: str | None, expected: OutputFormat) -> None:
    assert negotiate(request_with(accept), None) is expected


def test_accept_html_where_html_is_not_offered_falls_back_to_the_default() -> None:
    offered = (OutputFormat.JSON, OutputFormat.GEOJSON, OutputFormat.CSV)
    assert negotiate(request_with("text/html"), None, offered) is OutputFormat.JSON


def test_unknown_f_is_a_400_naming_f(items: TestClient) -> None:
    answer = items.get("/collections/building/items", params={"f": "kml"})
    assert answer.status_code == 400
    assert answer.json()["what"].startswith("f ") and "fgb" in answer.json()["why"]
    assert items.get("/collections/building/items", params={"f": "csv", "geometry": "x"}).status_code in (400, 422)


# --- GeoJSON ----------------------------------------------------------------------------------------------------


def test_geojson_and_json_differ_only_in_media_type(items: TestClient) -> None:
    geojson = items.get("/collections/building/items", params={"f": "geojson"})
    json_answer = items.get("/collections/building/items", headers={"Accept": "application/json"})
    assert geojson.headers["content-type"] == "application/geo+json"
    assert json_answer.headers["content-type"] == "application/json"
    assert geojson.json()["features"] == json_answer.json()["features"]


def test_geojson_of_numbers_orjson_refuses_still_answers() -> None:
    body = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "id": "a", "geometry": None, "properties": {"huge": 2**70}}],
    }
    answer = features_response(OutputFormat.GEOJSON, request=request_with(), title="x", body=body)
    assert b'"huge":1180591620717411303424' in answer.body and answer.media_type == "application/geo+json"


# --- CSV ----------------------------------------------------------------------------------------------------------


def test_csv_round_trips_through_pandas_and_pyarrow_with_chinese_text(items: TestClient) -> None:
    answer = items.get("/collections/building/items", params={"f": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="building.csv"' in answer.headers["content-disposition"]
    assert answer.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    frame = pd.read_csv(io.BytesIO(answer.content))  # pandas skips the BOM
    assert list(frame.columns[:3]) == ["id", "kind", "name"] and frame.columns[-1] == "geometry"
    hostile = frame.set_index("id").loc["hostile-1"]
    assert hostile["name"] == HOSTILE
    assert shapely.from_wkt(hostile["geometry"]).equals(box(X, Y, X + 0.001, Y + 0.001))
    table = pacsv.read_csv(io.BytesIO(answer.content))
    assert table.column_names[0] == "id"  # pyarrow skips the BOM too
    assert sorted(table.column("id").to_pylist()) == sorted(frame["id"])
    assert HOSTILE in table.column("name").to_pylist()
    assert "Tower 1" in table.column("name").to_pylist()


def test_csv_lonlat_gives_the_point_and_a_point_inside_other_shapes(items: TestClient, tmp_path: Path) -> None:
    points = pd.read_csv(
        io.BytesIO(items.get("/collections/hydrant/items", params={"f": "csv", "geometry": "lonlat"}).content)
    ).set_index("id")
    assert list(points.columns[-2:]) == ["lon", "lat"] and "geometry" not in points.columns
    assert points.loc["pt-1", "name"] == "消火栓 一号"
    assert (points.loc["pt-1", "lon"], points.loc["pt-1", "lat"]) == pytest.approx((X + 0.001, Y + 0.002))
    assert points.loc["pt-2", "name"] == '\'=HYPERLINK("http://x")'  # a formula is text in a spreadsheet
    path = tmp_path / "hydrants.csv"
    path.write_bytes(items.get("/collections/hydrant/items", params={"f": "csv", "geometry": "lonlat"}).content)
    layer = ["ogrinfo", "-ro", "-so", "-al", "-oo", "X_POSSIBLE_NAMES=lon", "-oo", "Y_POSSIBLE_NAMES=lat", str(path)]
    summary = subprocess.run(layer, capture_output=True, text=True, check=True).stdout
    assert "Geometry: Point" in summary and "Feature Count: 2" in summary and "id: String" in summary  # BOM skipped
    buildings = pd.read_csv(
        io.BytesIO(items.get("/collections/building/items", params={"f": "csv", "geometry": "lonlat"}).content)
    ).set_index("id")
    lon, lat = buildings.loc["hostile-1", ["lon", "lat"]]
    assert box(X, Y, X + 0.001, Y + 0.001).contains(Point(lon, lat))


def test_features_without_geometry_have_empty_csv_cells_and_an_unindexed_fgb(items: TestClient) -> None:
    frame = pd.read_csv(io.BytesIO(items.get("/collections/storey/items", params={"f": "csv"}).content))
    assert len(frame) == 3 and frame["geometry"].isna().all()
    fgb = items.get("/collections/storey/items", params={"f": "fgb"})
    assert fgb.status_code == 200 and fgb.content[:3] == b"fgb"


# --- FlatGeobuf ---------------------------------------------------------------------------------------------------


def test_flatgeobuf_reads_back_with_pyogrio_and_ogrinfo(items: TestClient, tmp_path: Path) -> None:
    answer = items.get("/collections/building/items", params={"f": "fgb"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/flatgeobuf"
    path = tmp_path / "building.fgb"
    path.write_bytes(answer.content)
    info = pyogrio.read_info(path)
    assert info["features"] == 4 and info["geometry_type"] == "Polygon" and info["crs"] == "EPSG:4326"
    frame = pyogrio.read_dataframe(path).set_index("id")
    assert frame.loc["hostile-1", "name"] == HOSTILE
    assert frame.loc["b2", "storeys"] == 20
    assert frame.loc["hostile-1", "geometry"].equals(box(X, Y, X + 0.001, Y + 0.001))
    summary = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True, text=True, check=True)
    assert "Geometry: Polygon" in summary.stdout and "Feature Count: 4" in summary.stdout


def test_flatgeobuf_of_mixed_geometries_is_unknown(tmp_path: Path) -> None:
    body = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": "a", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}},
            {
                "type": "Feature",
                "id": "b",
                "geometry": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]},
                "properties": {"n": 1},
            },
            {"type": "Feature", "id": "c", "geometry": None, "properties": {"n": 2.5, "tags": {"a": 1}}},
        ],
    }
    answer = features_response(OutputFormat.FLATGEOBUF, request=request_with(), title="mixed", body=body)
    chunks = []

    async def collect() -> None:
        async for chunk in answer.body_iterator:  # type: ignore[attr-defined]
            chunks.append(chunk if isinstance(chunk, bytes) else chunk.encode())

    import asyncio

    asyncio.run(collect())
    path = tmp_path / "mixed.fgb"
    path.write_bytes(b"".join(chunks))
    assert int(answer.headers["content-length"]) == path.stat().st_size
    info = pyogrio.read_info(path)
    assert info["geometry_type"] == "Unknown" and info["features"] == 3
    frame = pyogrio.read_dataframe(path).set_index("id")
    assert frame.loc["c", "n"] == 2.5 and frame.loc["c", "tags"] == '{"a": 1}'


# --- HTML ---------------------------------------------------------------------------------------------------------


class PageReader(HTMLParser):
    """Tags, the open/close balance, script elements and outside resources of a page."""

    VOID = frozenset({"meta", "br", "img", "link", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_page(text: str) -> PageReader:
    reader = PageReader()
    reader.feed(text)
    reader.close()
    assert not reader.problems and not reader.stack, (reader.problems, reader.stack)
    assert not any(tag == "script" for tag, _ in reader.tags)
    assert not any(attrs.get("src") for _, attrs in reader.tags)  # nothing loaded from anywhere
    return reader


def test_html_items_page_escapes_hostile_names_and_links_each_item(items: TestClient) -> None:
    answer = items.get("/collections/building/items", headers={"Accept": "text/html"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    page = read_page(answer.text)
    assert ("html", {"lang": "zh-CN"}) in page.tags
    assert HOSTILE in "".join(page.text)  # shown as text, inert
    assert "<script>" not in answer.text
    hrefs = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert "/collections/building/items/hostile-1?f=html" in hrefs
    following = next(attrs["href"] for tag, attrs in page.tags if tag == "a" and attrs.get("rel") == "next")
    assert "offset=100" in (following or "") and "f=html" in (following or "")


def test_html_item_page_links_collection_json_and_viewer(items: TestClient) -> None:
    answer = items.get("/collections/building/items/hostile-1", params={"f": "html"})
    page = read_page(answer.text)
    assert HOSTILE in "".join(page.text)
    hrefs = [attrs["href"] or "" for tag, attrs in page.tags if tag == "a"]
    assert "/collections/building/items?f=html" in hrefs
    assert any("f=geojson" in h for h in hrefs)
    assert any("/?cam=121.50" in h for h in hrefs)
    assert "三维" in answer.text and "View in 3D" in answer.text


def test_one_feature_as_csv_and_fgb(items: TestClient) -> None:
    frame = pd.read_csv(io.BytesIO(items.get("/collections/hydrant/items/pt-1", params={"f": "csv"}).content))
    assert frame["id"].tolist() == ["pt-1"]
    one = items.get("/collections/hydrant/items/pt-1", params={"f": "fgb"})
    assert one.status_code == 200 and one.content[:3] == b"fgb"


# --- domain queries -----------------------------------------------------------------------------------------------

PIPES = {"network": "gas", "bbox": ",".join(map(str, AREA))}


def test_buried_pipes_as_geojson_have_geometries_and_the_ids_of_the_json(client: TestClient) -> None:
    plain = client.get("/queries/buried-pipes", params=PIPES)
    assert plain.headers["content-type"] == "application/json"
    features = client.get("/queries/buried-pipes", params={**PIPES, "f": "geojson"})
    assert features.headers["content-type"] == "application/geo+json"
    body = features.json()
    assert [f["id"] for f in body["features"]] == [p["id"] for p in plain.json()["pipes"]]
    assert all(f["geometry"]["type"] == "LineString" for f in body["features"])
    assert body["features"][0]["properties"]["length_in_area_m"] == plain.json()["pipes"][0]["length_in_area_m"]
    assert body["total_length_m"] == plain.json()["total_length_m"]
    west, south, east, north = AREA
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    posted = client.post(
        "/queries/buried-pipes",
        params={"f": "csv"},
        json={"area": {"type": "Polygon", "coordinates": [ring]}, "network": "gas"},
    )
    frame = pd.read_csv(io.BytesIO(posted.content))
    assert frame["id"].tolist() == [p["id"] for p in plain.json()["pipes"]]
    assert all(shapely.from_wkt(text).geom_type == "LineString" for text in frame["geometry"])


def test_old_lifts_as_geojson_one_feature_per_lift(client: TestClient) -> None:
    params = {"years": 15, "as_of": AS_OF.isoformat()}
    plain = client.get("/queries/old-lifts", params=params).json()
    body = client.get("/queries/old-lifts", params=params, headers={"Accept": "application/geo+json"}).json()
    by_id = {f["id"]: f for f in body["features"]}
    old = [lift["id"] for b in plain["buildings"] for lift in b["lifts"]]
    assert list(by_id) == [*old, *(x["id"] for x in plain["without_building"]), "lift-2b"]
    lift = by_id["lift-1a"]
    assert lift["geometry"] == {"type": "Point", "coordinates": [X + 0.0021, Y + 0.0011]}
    assert lift["properties"]["building_id"] == "b1" and lift["properties"]["building_name"] == "Tower 1"
    assert lift["properties"]["age_years"] == plain["buildings"][0]["lifts"][1]["age_years"]
    under_storey = by_id["lift-1b"]  # no geometry of its own: at its building's point
    assert under_storey["geometry"]["type"] == "Point" and under_storey["properties"]["located_at"] == "building"
    assert by_id["lift-2b"]["properties"]["group"] == "unknown_age"
    assert by_id["lift-2b"]["geometry"] is not None
    assert {f["geometry"]["type"] for f in body["features"] if f["geometry"]} == {"Point"}  # one layer type
    frame = pd.read_csv(io.BytesIO(client.get("/queries/old-lifts", params={**params, "f": "csv"}).content))
    assert frame["id"].tolist() == list(by_id)


def test_within_distance_as_geojson_and_lonlat_csv(client: TestClient) -> None:
    params = {"kind": "transit_stop", "near": "park", "distance": 50}
    body = client.get("/queries/within-distance", params={**params, "f": "GeoJSON"}).json()
    assert [f["id"] for f in body["features"]] == ["stop-near"]
    assert body["features"][0]["geometry"]["type"] == "Point"
    assert body["features"][0]["properties"]["near_id"] == "park-1"
    assert body["features"][0]["properties"]["distance_m"] > 0
    csv_answer = client.get("/queries/within-distance", params={**params, "f": "csv", "geometry": "lonlat"})
    frame = pd.read_csv(io.BytesIO(csv_answer.content))
    assert frame.loc[0, "id"] == "stop-near" and frame.loc[0, "lon"] == pytest.approx(X + 0.02 - 0.00047)


def test_domain_query_refuses_a_format_it_does_not_offer(client: TestClient) -> None:
    answer = client.get("/queries/within-distance", params={"kind": "park", "near": "park", "distance": 5, "f": "fgb"})
    assert answer.status_code == 400 and answer.json()["what"].startswith("f ")
    assert "json, geojson, csv" in answer.json()["why"]


def test_gdal_opens_buried_pipes_as_a_layer_from_the_url(live_server: tuple[str, Path]) -> None:
    base, _ = live_server
    url = f"{base}/queries/buried-pipes?network=gas&bbox={PIPES['bbox']}&f=geojson"
    summary = subprocess.run(
        ["ogrinfo", "-ro", "-al", "-so", url], capture_output=True, text=True, timeout=60, check=False
    )
    assert summary.returncode == 0, summary.stderr
    assert "Geometry: Line String" in summary.stdout and "Feature Count: 3" in summary.stdout
    assert "length_in_area_m: Real" in summary.stdout


def test_flatgeobuf_of_polygons_and_multipolygons_is_a_multipolygon_layer(tmp_path: Path) -> None:
    one = shapely.geometry.mapping(box(0, 0, 1, 1))
    two = shapely.geometry.mapping(shapely.MultiPolygon([box(2, 2, 3, 3), box(4, 4, 5, 5)]))
    features = [
        {"type": "Feature", "id": "single", "geometry": one, "properties": {}},
        {"type": "Feature", "id": "multi", "geometry": two, "properties": {}},
    ]
    path = tmp_path / "areas.fgb"
    write_flatgeobuf(features, str(path))
    assert pyogrio.read_info(path)["geometry_type"] == "MultiPolygon"
    frame = pyogrio.read_dataframe(path).set_index("id")
    assert frame.loc["single", "geometry"].equals(shapely.MultiPolygon([box(0, 0, 1, 1)]))
    assert len(frame.loc["multi", "geometry"].geoms) == 2


# --- GeoPackage and CityJSON of a collection's page (the exports' writers) -------------------------------------


def test_items_as_geopackage_read_back_by_pyogrio(client: TestClient, tmp_path: Path) -> None:
    answer = client.get("/collections/pipe/items", params={"f": "gpkg", "limit": 2})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/geopackage+sqlite3"
    assert 'filename="pipe.gpkg"' in answer.headers["content-disposition"]
    path = tmp_path / "pipes.gpkg"
    path.write_bytes(answer.content)
    assert [name for name, _ in pyogrio.list_layers(path)] == ["pipe"]
    frame = pyogrio.read_dataframe(path)
    assert len(frame) == 2 and {"network", "diameter_mm", "depth_m", "props"} <= set(frame.columns)
    assert pyogrio.read_info(path)["crs"] == "EPSG:4326"
    # chosen by Accept as well
    accepted = client.get("/collections/pipe/items", headers={"accept": "application/geopackage+sqlite3"})
    assert accepted.status_code == 200 and accepted.content[:16] == b"SQLite format 3\x00"


def test_building_items_as_cityjson_are_lod1_solids(client: TestClient) -> None:
    answer = client.get("/collections/building/items", params={"f": "cityjson"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/city+json"
    document = answer.json()
    assert document["type"] == "CityJSON" and document["version"] == "2.0"
    assert document["metadata"]["referenceSystem"] == "https://www.opengis.net/def/crs/EPSG/0/32651"
    objects = document["CityObjects"]
    assert set(objects) == {"b1", "b2", "b3"}
    assert objects["b2"]["attributes"]["storeysAboveGround"] == 20
    assert all(o["type"] == "Building" and o["geometry"] for o in objects.values())


def test_cityjson_of_another_collection_or_of_one_item_is_refused(client: TestClient) -> None:
    answer = client.get("/collections/pipe/items", params={"f": "cityjson"})
    assert answer.status_code == 400
    assert answer.json()["what"] == "f 'cityjson'" and "building collection only" in answer.json()["why"]
    assert client.get("/collections/building/items/b1", params={"f": "cityjson"}).status_code == 400


def test_the_openapi_document_offers_the_page_exports(client: TestClient) -> None:
    operation = client.get("/api").json()["paths"]["/collections/{collectionId}/items"]["get"]
    content = operation["responses"]["200"]["content"]
    assert {"application/geopackage+sqlite3", "application/city+json"} <= set(content)
    f = next(p for p in operation["parameters"] if p["name"] == "f")
    assert {"gpkg", "cityjson"} <= set(f["schema"]["anyOf"][0]["enum"])
