"""OGC API – Features Part 1 + Part 3 over both stores."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient


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
    assert set(collections) == kinds | {"cases"}  # the asset kinds in the store, and the cases
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
    assert item.json()["properties"]["props"] == {"Pset_Owner.Name": "owner 2", "floors": 20}
    assert client.get("/collections/pipe/items/b2").status_code == 404  # wrong collection
    assert client.get("/collections/pipe/items/nope").status_code == 404
    missing = client.get("/collections/castle/items")
    assert missing.status_code == 404 and "unknown asset kind" in missing.json()["description"]
