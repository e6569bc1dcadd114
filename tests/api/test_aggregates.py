"""``GET /collections/{id}/aggregate`` on the API's small city with the hand-made areas of tests/store/test_areas.py
added, in-process and on a live server, on both stores."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cim.model import AssetBatch
from cim.store import open_store
from tests.api.city import RECORDED
from tests.store.test_aggregates import buildings, length, pipes
from tests.store.test_areas import area_assets


@pytest.fixture
def city_url(store_url: str) -> str:
    """Areas, pipes and buildings (tests/store/test_aggregates.py), nothing else: the references are known."""
    with open_store(store_url) as store:
        store.upsert_assets(AssetBatch.from_assets([*area_assets(), *pipes(), *buildings()]), at=RECORDED)
    return store_url


def test_pipes_by_district_with_names_lengths_and_total(client: TestClient) -> None:
    answer = client.get("/collections/pipe/aggregate", params={"group_by": "district", "as_of": "2026-05-01"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["collection"], body["group_by"], body["as_of"]) == ("pipe", ["district"], "2026-05-01")
    assert [g["key"] for g in body["groups"]] == [{"district": "900001"}, {"district": "900002"}, {"district": None}]
    first = body["groups"][0]
    assert first["names"] == {"district": {"zh": "区域900001", "en": "Area 900001"}}
    assert first["count"] == 2 and first["area_m2"] is None
    assert body["groups"][-1]["names"] == {"district": {"zh": None, "en": None}}
    assert body["total"]["count"] == 5
    assert body["total"]["length_m"] == pytest.approx(sum(length(p.geom) for p in pipes()), rel=0.005)
    assert "computed_at" in body


def test_filters_as_for_items(client: TestClient) -> None:
    def count(**params: str) -> int:
        answer = client.get("/collections/pipe/aggregate", params={"group_by": "network", **params})
        assert answer.status_code == 200, answer.text
        return int(answer.json()["total"]["count"])

    assert count(bbox="121.0,31.0,121.2,31.2") == 2
    assert count(filter="network = 'water'") == 2
    assert count(datetime="2000-01-01/..") == 3
    assert count(filter="network = 'gas'", bbox="121.0,31.0,121.1,31.2") == 1


def test_buildings_have_areas_and_no_length(client: TestClient) -> None:
    body = client.get("/collections/building/aggregate", params={"group_by": "grid_cell,status"}).json()
    assert all(g["length_m"] is None for g in body["groups"])
    assert body["total"]["area_m2"] > 0 and body["total"]["length_m"] is None
    assert set(body["groups"][0]["names"]) == {"grid_cell"}


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/collections/pipe/aggregate?group_by=colour", "group_by"),
        ("/collections/pipe/aggregate?group_by=", "group_by"),
        ("/collections/pipe/aggregate?group_by=kind,status,network,material", "group_by"),
        ("/collections/building/aggregate?group_by=network", "network"),
        ("/collections/district/aggregate?group_by=street", "street"),
        ("/collections/pipe/aggregate?group_by=district&as_of=tomorrow", "as_of"),
        ("/collections/pipe/aggregate?group_by=district&filter=colour%20%3D%201", "colour"),
        ("/collections/pipe/aggregate?group_by=district&bbox=1,2,0,3", "bbox"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(client: TestClient, path: str, named: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400, answer.text
    assert named in answer.text
    assert "Traceback" not in answer.text and "SELECT" not in answer.text


def test_an_unknown_group_by_lists_the_allowed_ones(client: TestClient) -> None:
    text = client.get("/collections/pipe/aggregate?group_by=colour").text
    assert all(key in text for key in ("kind", "status", "network", "material", "age_band", "district", "grid_cell"))


def test_an_unknown_collection_is_a_404(client: TestClient) -> None:
    assert client.get("/collections/unicorn/aggregate?group_by=status").status_code == 404


def test_an_empty_collection_answers_no_groups(client: TestClient) -> None:
    body = client.get("/collections/park/aggregate?group_by=district").json()
    assert body["groups"] == [] and body["total"] == {"count": 0, "length_m": None, "area_m2": None}


def test_sixteen_clients_at_once_get_identical_answers(live_server: tuple[str, Any]) -> None:
    base, _ = live_server
    paths = [
        "/collections/pipe/aggregate?group_by=district,network,age_band&as_of=2026-05-01",
        "/collections/building/aggregate?group_by=grid_cell&as_of=2026-05-01",
    ]

    def fetch(n: int) -> dict[str, Any]:
        with urllib.request.urlopen(base + paths[n % 2], timeout=60) as answer:
            body: dict[str, Any] = json.load(answer)
        body.pop("computed_at")
        return body

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(fetch, range(32)))
    assert all(a == answers[0] for a in answers[0::2]) and all(a == answers[1] for a in answers[1::2])
    assert answers[0]["total"]["count"] == 5 and answers[1]["total"]["count"] == 4
