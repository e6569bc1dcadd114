"""Hostile HTTP requests, each on a real store (DuckDB and PostGIS): a clear 4xx naming the parameter, nothing of the
server's insides in the body, and the store's content the same afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box

from cim.api import create_app
from cim.model import Asset, Kind
from cim.settings import AppSettings
from cim.store import AssetBatch, open_store

#: Property keys a real file can hold (IFC property sets, OSM tags, shapefile columns) that need escaping somewhere.
ODD_KEYS = [
    "a\\",
    'b"c',
    'a\\"',
    "x/y",
    "t~u",
    "~1",
    "it's",
    "Pset.Name",
    "$.x",
    "[0]",
    "*",
    "中文",
    " ",
    "a' OR '1'='1",
]


@pytest.fixture
def odd_client(settings: AppSettings, city_url: str) -> Iterator[TestClient]:
    """The test city plus one building whose properties have the :data:`ODD_KEYS`, as text and as numbers."""
    props: dict[str, object] = {key: f"value of {key}" for key in ODD_KEYS}
    props |= {f"n{key}": index for index, key in enumerate(ODD_KEYS)}
    odd = Asset(id="odd", kind=Kind.BUILDING, geom=box(121.6, 31.3, 121.601, 31.301), props=props)
    with open_store(city_url) as store:
        store.upsert_assets(AssetBatch.from_assets([odd]))
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("key", ODD_KEYS)
def test_a_property_key_with_quotes_or_backslashes_finds_exactly_its_asset(odd_client: TestClient, key: str) -> None:
    index = ODD_KEYS.index(key)
    for name, value in ((f"props.{key}", f"value of {key}"), (f"props.n{key}", index)):
        cql = json.dumps({"op": "=", "args": [{"property": name}, value]})
        response = odd_client.get("/collections/building/items", params={"filter": cql, "filter-lang": "cql2-json"})
        assert response.status_code == 200, response.text
        assert [f["id"] for f in response.json()["features"]] == ["odd"]
    cql = json.dumps({"op": "isNull", "args": [{"property": f"props.{key}"}]})
    response = odd_client.get("/collections/building/items", params={"filter": cql, "filter-lang": "cql2-json"})
    assert response.status_code == 200 and "odd" not in [f["id"] for f in response.json()["features"]]
