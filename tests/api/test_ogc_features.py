"""OGC API – Features Part 1, Part 3 and Part 5 (schemas) over both stores."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point, box

from cim.model import Asset, AssetBatch, Kind
from cim.store import open_store

#: Hydrants with property sets of every type: a number, a date, a boolean, text, and a key named like a column.
HYDRANTS = [
    Asset(
        id=f"h{n}",
        kind=Kind.HYDRANT,
        name=f"hydrant {n}",
        geom=Point(121.50 + n * 0.001, 31.23),
        install_date=date(2000 + n, 1, 1),
        props={
            "pressure_bar": [2.5, 10.0, 4.0, 3.0, 9.5][n - 1],
            "inspected": f"2024-0{n}-15",
            "working": n % 2 == 1,
            "owner": ["water co", "fire dept", "water co", "fire dept", "water co"][n - 1],
            "status": "painted red",  # a column's name: published as props.status
        },
    )
    for n in range(1, 6)
]
#: Chargers of two geometry types: two points, then (by id) a charging park.
CHARGERS = [
    Asset(id="c1", kind=Kind.CHARGER, geom=Point(121.51, 31.23)),
    Asset(id="c2", kind=Kind.CHARGER, geom=Point(121.511, 31.23)),
    Asset(id="c3", kind=Kind.CHARGER, geom=box(121.512, 31.23, 121.5122, 31.2302)),
]


@pytest.fixture
def city_url(city_url: str) -> str:
    with open_store(city_url) as store:
        store.upsert_assets(AssetBatch.from_assets(HYDRANTS + CHARGERS))
    return city_url


def _items(client: TestClient, kind: str = "hydrant", **params: Any) -> dict[str, Any]:
    response = client.get(f"/collections/{kind}/items", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ids(client: TestClient, kind: str = "hydrant", **params: Any) -> list[str]:
    return [f["id"] for f in _items(client, kind, **params)["features"]]


def test_landing_page_links_the_api_conformance_and_collections(client: TestClient) -> None:
    links = {link["rel"]: link["href"] for link in client.get("/").json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= set(links)
    assert client.get("/api").json()["paths"]["/collections/{collectionId}/items"]
    assert client.get("/api.html").status_code == 200
    conforms = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in conforms
    assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text" in conforms


def test_collections_are_the_kinds_in_the_store_with_their_extent(client: TestClient) -> None:
    collections = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    kinds = {"building", "storey", "lift", "pipe", "park", "transit_stop", "sensor"}
    assert set(collections) == kinds | {"hydrant", "charger", "cases"}  # the asset kinds in the store, and the cases
    assert collections["park"]["extent"]["spatial"]["bbox"] == [[121.52, 31.25, 121.525, 31.255]]
    assert client.get("/collections/pipe").json()["id"] == "pipe"
    queryables = client.get("/collections/pipe/queryables")
    assert queryables.headers["content-type"] == "application/schema+json"
    assert {"network", "depth_m", "geometry"} <= set(queryables.json()["properties"])


def test_items_page_with_next_links(client: TestClient) -> None:
    first = client.get("/collections/pipe/items", params={"limit": 4})
    assert first.headers["content-type"] == "application/geo+json"
    body = first.json()
    assert body["type"] == "FeatureCollection" and body["numberReturned"] == 4
    ids = [f["id"] for f in body["features"]]
    following = next(link["href"] for link in body["links"] if link["rel"] == "next")
    second = client.get(following).json()
    ids += [f["id"] for f in second["features"]]
    assert ids == ["gas-cross", "gas-depth-only", "gas-far", "gas-inside", "gas-overhead", "water-1"]
    assert not any(link["rel"] == "next" for link in second["links"])
    feature = body["features"][0]
    assert feature["geometry"]["type"] == "LineString"
    assert feature["properties"]["network"] == "gas" and feature["properties"]["install_date"] == "1985-01-01"


def test_items_bbox_datetime_ids_sortby_and_properties(client: TestClient) -> None:
    def ids(**params: str) -> list[str]:
        response = client.get("/collections/pipe/items", params=params)
        assert response.status_code == 200, response.text
        return [f["id"] for f in response.json()["features"]]

    assert ids(bbox="121.5055,31.231,121.509,31.238") == ["gas-depth-only", "water-1"]
    assert ids(datetime="1965-01-01/1990-01-01") == ["gas-cross", "gas-far", "gas-overhead"]
    assert ids(datetime="../1965-01-01") == ["water-1"]
    assert ids(datetime="1960-01-01") == ["water-1"]
    assert ids(ids="water-1,gas-far,nope") == ["gas-far", "water-1"]
    assert ids(sortby="-install_date", limit="2") == ["gas-inside", "gas-cross"]
    selected = client.get("/collections/pipe/items", params={"properties": "network", "limit": 1}).json()
    assert selected["features"][0]["properties"] == {"network": "gas"}


def test_items_filter_in_cql2_text_and_json(client: TestClient) -> None:
    text = client.get("/collections/pipe/items", params={"filter": "network = 'gas' AND z_max < 0 AND depth_m >= 1"})
    assert [f["id"] for f in text.json()["features"]] == ["gas-cross", "gas-far", "gas-inside"]
    cql_json = json.dumps({"op": "<", "args": [{"property": "install_date"}, {"date": "1971-01-01"}]})
    response = client.get("/collections/pipe/items", params={"filter": cql_json, "filter-lang": "cql2-json"})
    assert [f["id"] for f in response.json()["features"]] == ["gas-overhead", "water-1"]


def test_one_item_and_missing_ones(client: TestClient) -> None:
    item = client.get("/collections/building/items/b2")
    assert item.status_code == 200 and item.json()["properties"]["storeys"] == 20
    properties = item.json()["properties"]
    assert "props" not in properties and properties["Pset_Owner.Name"] == "owner 2" and properties["floors"] == 20
    assert client.get("/collections/pipe/items/b2").status_code == 404  # wrong collection
    assert client.get("/collections/pipe/items/nope").status_code == 404
    missing = client.get("/collections/castle/items")
    assert missing.status_code == 404 and "unknown asset kind" in missing.json()["description"]


def test_property_set_keys_are_flattened_typed_properties(client: TestClient) -> None:
    properties = _items(client, ids="h1")["features"][0]["properties"]
    assert properties["pressure_bar"] == 2.5 and properties["inspected"] == "2024-01-15"
    assert properties["working"] is True and properties["owner"] == "water co"
    assert properties["props.status"] == "painted red" and properties["status"] is None  # the column keeps its name
    queryables = client.get("/collections/hydrant/queryables").json()
    typed = queryables["properties"]
    assert typed["pressure_bar"]["type"] == "number" and typed["working"]["type"] == "boolean"
    assert typed["inspected"] == {**typed["inspected"], "type": "string", "format": "date"}
    assert typed["owner"]["type"] == "string" and typed["props.status"]["type"] == "string"
    assert typed["install_date"]["format"] == "date" and typed["network"]["type"] == "string"
    assert {"id": "pressure_bar", "type": "number"} in queryables["queryables"]  # GDAL 3.6 reads this list
    assert queryables["additionalProperties"] is False


def test_filters_on_property_set_keys_compare_by_their_type(client: TestClient) -> None:
    # numbers as numbers: 10.0 > 4.0 (as text "10.0" < "4.0")
    assert _ids(client, filter="pressure_bar > 4") == ["h2", "h5"]
    assert _ids(client, filter="props.pressure_bar >= 4 AND props.pressure_bar < 10") == ["h3", "h5"]
    assert _ids(client, filter="owner = 'fire dept'") == ["h2", "h4"]
    assert _ids(client, filter="working = true") == ["h1", "h3", "h5"]
    assert _ids(client, filter="inspected >= '2024-03-01'") == ["h3", "h4", "h5"]
    assert _ids(client, filter="inspected < DATE('2024-02-01')") == ["h1"]
    assert _ids(client, filter="props.status = 'painted red' AND status IS NULL", limit=2) == ["h1", "h2"]
    assert _ids(client, filter="install_date < '2002-01-01T'") == ["h1"]  # GDAL 3.6 writes dates so
    cql_json = json.dumps({"op": ">", "args": [{"property": "pressure_bar"}, 9]})
    assert _ids(client, filter=cql_json, **{"filter-lang": "cql2-json"}) == ["h2", "h5"]


def test_sortby_on_property_set_keys(client: TestClient) -> None:
    assert _ids(client, sortby="-pressure_bar") == ["h2", "h5", "h3", "h4", "h1"]
    assert _ids(client, sortby="props.owner,-inspected") == ["h4", "h2", "h5", "h3", "h1"]
    chosen = _items(client, ids="h2", properties="name,pressure_bar,props.status")["features"][0]["properties"]
    assert chosen == {"name": "hydrant 2", "pressure_bar": 10.0, "props.status": "painted red"}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"filter": "colour = 'red'"}, "colour"),
        ({"filter": "props.colour = 'red'"}, "colour"),
        ({"filter": "pressure_bar = 'high'"}, "pressure_bar"),
        ({"sortby": "-colour"}, "colour"),
        ({"properties": "name,colour"}, "colour"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"resultType": "all"}, "resultType"),
        ({"f": "shapefile"}, "f"),
    ],
)
def test_unknown_properties_and_bad_paging_are_a_400_naming_them(
    client: TestClient, params: dict[str, str], named: str
) -> None:
    response = client.get("/collections/hydrant/items", params=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["description"]


def test_number_matched_is_the_true_count_on_every_page(client: TestClient) -> None:
    first = _items(client, limit=2)
    assert first["numberMatched"] == 5 and first["numberReturned"] == 2
    following = next(link for link in first["links"] if link["rel"] == "next")
    assert following["type"] == "application/geo+json"
    second = client.get(following["href"]).json()
    assert second["numberMatched"] == 5 and [f["id"] for f in second["features"]] == ["h3", "h4", "h5"]
    back = next(link for link in second["links"] if link["rel"] == "prev")
    assert back["type"] == "application/geo+json"
    assert [f["id"] for f in client.get(back["href"]).json()["features"]] == ["h1", "h2"]
    assert _items(client, filter="pressure_bar > 3", limit=1)["numberMatched"] == 3
    assert _items(client, bbox="121.5005,31.22,121.5035,31.24")["numberMatched"] == 3  # h1..h3
    assert _items(client, "pipe", filter="network = 'gas'")["numberMatched"] == 5
    default = _items(client)
    assert default["numberReturned"] == 5 and "limit=100" not in json.dumps(default["links"])


def test_result_type_hits_counts_without_features(client: TestClient) -> None:
    hits = _items(client, resultType="hits", filter="working = true")
    assert hits["numberMatched"] == 3 and hits["features"] == [] and hits["numberReturned"] == 0
    api = client.get("/api").json()
    parameters = {p["name"]: p for p in api["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]}
    assert "hits" in parameters["resultType"]["schema"]["enum"]  # GDAL 3.6 asks hits only when declared so
    assert "cql-text" in parameters["filter-lang"]["schema"]["enum"]
    assert parameters["limit"]["schema"]["maximum"] == 10_000 and parameters["limit"]["schema"]["default"] == 100


def test_a_page_counts_what_was_written_since_the_last_count(client: TestClient) -> None:
    assert _items(client, filter="working = true")["numberMatched"] == 3
    assert "working" in client.get("/collections/hydrant/queryables").json()["properties"]
    store = client.app.state.resources.store  # type: ignore[attr-defined]  # the server's own store: a write
    store.upsert_assets(AssetBatch.from_assets([Asset(id="h1", kind=Kind.HYDRANT, props={"colour": "red"})]))
    assert _items(client, filter="working = true")["numberMatched"] == 2
    assert _ids(client, filter="colour = 'red'") == ["h1"]  # the new key is a queryable at once


def test_schema_names_the_geometry_type_of_each_kind(client: TestClient) -> None:
    links = {link["rel"]: link for link in client.get("/collections/pipe").json()["links"]}
    assert links["describedBy"]["type"] == "application/schema+json"
    assert links["queryables"]["href"].endswith("/collections/pipe/queryables")
    pipe = client.get("/collections/pipe/schema")
    assert pipe.headers["content-type"] == "application/schema+json"
    geometry = pipe.json()["properties"]["geometry"]
    assert geometry["format"] == "geometry-linestring" and geometry["x-ogc-role"] == "primary-geometry"
    assert pipe.json()["properties"]["diameter_mm"]["type"] == "number"
    mixed = client.get("/collections/charger/schema").json()["properties"]["geometry"]
    assert mixed["format"] == "geometry-any"  # points and a polygon
    assert client.get("/collections/hydrant/schema").json()["properties"]["geometry"]["format"] == "geometry-point"
    building = client.get(links["describedBy"]["href"].replace("pipe", "building")).json()
    assert building["properties"]["geometry"]["format"] == "geometry-polygon"
    typed = building["properties"]["properties"]["properties"]  # a GeoJSON feature's: what GDAL reads
    assert typed["storeys"]["type"] == "integer" and typed["floors"]["type"] == "number"
    assert typed["install_date"] == {**typed["install_date"], "type": "string", "format": "date"}


def test_formats_are_chosen_by_f(client: TestClient) -> None:
    assert client.get("/collections/pipe/items", params={"f": "geojson"}).status_code == 200
    assert client.get("/collections/pipe/items/water-1", params={"f": "json"}).status_code == 200
    refused = client.get("/collections/pipe/items/water-1", params={"f": "gml"})
    assert refused.status_code == 400 and "f" in refused.json()["description"]


def test_the_first_page_of_a_mixed_kind_holds_each_of_its_geometry_types(client: TestClient) -> None:
    # GDAL 3.6 takes a layer's geometry type from the first page: the first of each type comes first, then by id
    first = _items(client, "charger", limit=2)["features"]
    assert [f["id"] for f in first] == ["c1", "c3"]
    assert {f["geometry"]["type"] for f in first} == {"Point", "Polygon"}
    assert _ids(client, "charger") == ["c1", "c3", "c2"]
    assert _ids(client, "charger", sortby="id") == ["c1", "c2", "c3"]  # an order asked for is kept


def test_items_as_csv_with_lon_lat_or_wkt_by_f_or_accept(client: TestClient) -> None:
    import csv
    import io

    import shapely

    geojson = client.get("/collections/building/items", params={"limit": 1000}).json()
    by_id = {f["id"]: shapely.geometry.shape(f["geometry"]) for f in geojson["features"]}
    for asked in (
        {"params": {"f": "csv", "geometry": "lonlat"}},
        {"params": {"geometry": "lonlat"}, "headers": {"Accept": "text/csv"}},
    ):
        answer = client.get("/collections/building/items", **asked)  # type: ignore[arg-type]
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
        assert {row["id"] for row in rows} == set(by_id)
        for row in rows:  # a point inside each footprint
            assert by_id[row["id"]].covers(shapely.Point(float(row["lon"]), float(row["lat"])))
    wkt = client.get("/collections/building/items", params={"f": "csv"})
    rows = list(csv.DictReader(io.StringIO(wkt.content.decode("utf-8-sig"))))
    assert all(shapely.from_wkt(row["geometry"]).equals(by_id[row["id"]]) for row in rows)
    refused = client.get("/collections/building/items", params={"f": "csv", "geometry": "kml"})
    assert refused.status_code == 400 and "geometry" in refused.json()["description"]


def test_a_page_with_an_integer_beyond_64_bits_still_answers_whole(city_url: str, client: TestClient) -> None:
    code = 31011500100700012345678  # an admin code kept as a number by some GIS attribute table
    with open_store(city_url) as store:
        store.upsert_assets(
            AssetBatch.from_assets(
                [Asset(id="h-big", kind=Kind.HYDRANT, geom=Point(121.5, 31.2), props={"code": code})]
            )
        )
    page = _items(client, ids="h-big")
    assert page["features"][0]["properties"]["code"] == code
    assert page["features"][0]["geometry"] == {"type": "Point", "coordinates": [121.5, 31.2]}
    assert _items(client)["numberReturned"] > 1  # the rest of the collection with it
