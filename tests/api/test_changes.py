"""``GET /changes`` and ``/changes/summary`` on both stores, against the hand-built history of
tests/api/history_city.py: in-process, and 16 clients at once on a live server."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cim.store import AssetQuery, open_store
from tests.api.history_city import MAIN_M, build_history

YEAR_2023 = {"from": "2022-07-01", "to": "2023-06-30"}
YEAR_2024 = {"from": "2023-07-01", "to": "2024-06-30"}


@pytest.fixture
def city_url(store_url: str) -> str:
    with open_store(store_url) as store:
        build_history(store)
    return store_url


def ok(client: TestClient, path: str, **params: Any) -> Any:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_years_changes_with_fields_before_and_after_and_district(client: TestClient) -> None:
    body = ok(client, "/changes", **YEAR_2023)
    assert (body["from"], body["to"], body["numberMatched"], body["numberReturned"]) == (
        "2022-07-01",
        "2023-06-30",
        4,
        4,
    )
    by_id = {c["id"]: c for c in body["changes"]}
    assert {i: c["change"] for i, c in by_id.items()} == {
        "L1": "changed",
        "p1": "renewed",
        "p2": "removed",
        "p4": "added",
    }
    p1 = by_id["p1"]
    assert p1["fields"] == ["install_date", "material"]
    assert p1["before"] == {"install_date": "1990-05-01", "material": "steel"}
    assert p1["after"] == {"install_date": "2022-06-01", "material": "PE"}
    assert (p1["district"], p1["district_zh"], p1["district_en"]) == ("310115", "浦东新区", "Pudong")
    assert by_id["L1"]["before"] == {"props.load_kg": 800} and by_id["L1"]["after"] == {"props.load_kg": 1000}
    assert by_id["p2"]["fields"] == [] and by_id["p2"]["district"] == "310115"  # placed though gone
    assert body["next_offset"] is None and [link["rel"] for link in body["links"]] == ["self"]


def test_both_days_are_included(client: TestClient) -> None:
    one_day = ok(client, "/changes", **{"from": "2023-03-01", "to": "2023-03-01"})
    assert [(c["id"], c["change"]) for c in one_day["changes"]] == [("L1", "changed")]
    assert ok(client, "/changes", **{"from": "2023-03-02", "to": "2023-12-31"})["numberMatched"] == 0
    first_day = ok(client, "/changes", **{"from": "2022-01-01", "to": "2022-01-01"})
    assert {c["change"] for c in first_day["changes"]} == {"added"} and first_day["numberMatched"] == 5


def test_a_moved_or_edited_asset_names_what_changed(client: TestClient) -> None:
    body = ok(client, "/changes", **YEAR_2024)
    assert [(c["id"], c["change"], c["fields"]) for c in body["changes"]] == [
        ("p3", "changed", ["material"]),
        ("p4", "changed", ["geom"]),
    ]


def test_kinds_repeated_or_comma_separated(client: TestClient) -> None:
    def ids(query: str) -> list[str]:
        answer = client.get(f"/changes?from=2022-07-01&to=2023-06-30&{query}")
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["changes"]]

    assert ids("kind=pipe") == ["p1", "p2", "p4"]
    assert ids("kind=lift") == ["L1"]
    assert ids("kind=lift&kind=pipe") == ids("kind=pipe,lift") == ["L1", "p1", "p2", "p4"]
    assert ids("kind=hydrant") == []


def test_pages_follow_their_next_link(client: TestClient) -> None:
    first = ok(client, "/changes", **YEAR_2023, limit=3)
    assert (first["numberReturned"], first["numberMatched"], first["next_offset"]) == (3, 4, 3)
    following = next(link["href"] for link in first["links"] if link["rel"] == "next")
    second = client.get(following.removeprefix("http://testserver")).json()
    assert [c["id"] for c in first["changes"] + second["changes"]] == ["L1", "p1", "p2", "p4"]
    assert second["next_offset"] is None
    past = ok(client, "/changes", **YEAR_2023, offset=100)
    assert (past["changes"], past["next_offset"]) == ([], None)


def test_geojson_gives_each_asset_its_shape_for_the_overlay(client: TestClient) -> None:
    answer = client.get("/changes", params={**YEAR_2023, "f": "geojson"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/geo+json")
    body = answer.json()
    assert body["type"] == "FeatureCollection" and body["numberMatched"] == 4
    features = {f["id"]: f for f in body["features"]}
    assert features["p2"]["geometry"]["type"] == "LineString"  # removed: its shape at `from`
    assert features["L1"]["geometry"] == {"type": "Point", "coordinates": [121.55, 31.235]}
    assert features["p1"]["properties"]["change"] == "renewed"
    moved = {f["id"]: f for f in ok(client, "/changes", **YEAR_2024, f="geojson")["features"]}["p4"]
    assert moved["geometry"]["coordinates"][0][0] == pytest.approx(121.55)  # at `to`: moved east


def test_csv_is_a_table_of_the_changes(client: TestClient) -> None:
    answer = client.get("/changes", params={**YEAR_2023, "f": "csv", "geometry": "lonlat"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.lstrip("\ufeff").splitlines()
    assert lines[0].split(",")[:6] == ["id", "kind", "name", "network", "change", "district"]
    assert len(lines) == 5 and lines[2].startswith("p1,pipe,main 1,gas,renewed,310115,浦东新区,Pudong")


def test_km_of_gas_mains_renewed_per_district(client: TestClient) -> None:
    body = ok(client, "/changes/summary", **YEAR_2023, kind="pipe", by="network,district,change")
    assert body["by"] == ["network", "district", "change"] and body["kinds"] == ["pipe"]
    got = {tuple(g["key"].values()): g for g in body["groups"]}
    assert set(got) == {("gas", "310115", c) for c in ("added", "removed", "renewed")}
    renewed = got[("gas", "310115", "renewed")]
    assert renewed["names"] == {"district": {"zh": "浦东新区", "en": "Pudong"}}
    assert renewed["count"] == 1 and renewed["length_km"] == pytest.approx(MAIN_M / 1000, rel=0.01)
    assert body["total"]["count"] == 3 and body["total"]["length_km"] == pytest.approx(3 * MAIN_M / 1000, rel=0.01)


def test_summary_by_default_keys_counts_points_without_length(client: TestClient) -> None:
    body = ok(client, "/changes/summary", **YEAR_2023)
    assert body["by"] == ["kind", "network", "district", "change"]
    lifts = [g for g in body["groups"] if g["key"]["kind"] == "lift"]
    assert [(g["key"]["change"], g["count"], g["length_m"], g["length_km"]) for g in lifts] == [
        ("changed", 1, None, None)
    ]
    by_change = ok(client, "/changes/summary", **YEAR_2024, by="change")
    [group] = by_change["groups"]
    assert (group["key"], group["count"]) == ({"change": "changed"}, 2)
    assert group["length_km"] == pytest.approx(2 * MAIN_M / 1000, rel=0.01)


TODAY = datetime.now(UTC).date()
BAD = [
    ({"from": "2023-07-01", "to": "2023-01-01"}, "from 2023-07-01", "is after to 2023-01-01"),
    ({"from": "2021-12-31"}, "from 2021-12-31", "before the model's history, which begins 2022-01-01"),
    ({"from": "2023-01-01", "to": (TODAY + timedelta(days=1)).isoformat()}, "to ", "is in the future"),
    ({"from": (TODAY + timedelta(days=3)).isoformat()}, "from ", "is in the future"),
    ({"from": "2023-13-01"}, "from '2023-13-01'", "is not a date"),
    ({"from": "2023-01-01'; DROP TABLE assets; --"}, "from ", "is not a date"),
    ({"from": "2023-01-01", "kind": "pipe'; DROP TABLE assets; --"}, "kind ", "is not an asset kind"),
    ({"from": "2023-01-01", "kind": "x" * 10_000}, "kind 'xxxx", "is not an asset kind"),
    ({"from": "2023-01-01", "limit": "10000000000000000000000"}, "request parameters", "limit"),
    ({"from": "2023-01-01", "limit": "0"}, "request parameters", "limit"),
    ({"from": "2023-01-01", "offset": "-1"}, "request parameters", "offset"),
    ({"to": "2023-01-01"}, "request parameters", "from"),
]  # fmt: skip


def test_bad_input_is_a_clear_400_and_changes_nothing(client: TestClient, city_url: str) -> None:
    for params, what, why in BAD:  # one store for all: building one takes seconds
        paged = "limit" in params or "offset" in params  # the summary has no pages
        for path in ("/changes",) if paged else ("/changes", "/changes/summary"):
            answer = client.get(path, params=params)
            assert answer.status_code == 400, (path, params, answer.text)
            body = answer.json()
            assert body["what"].startswith(what) and why in body["why"], body
            assert len(body["description"]) < 400 and "\n" not in body["description"]
    with open_store(city_url) as store:
        assert len(store.find_assets(AssetQuery())) == 5  # district, p1, p3, p4, L1


def test_an_unknown_summary_key_is_a_400_naming_by(client: TestClient) -> None:
    for by in ["colour", "kind,'1'='1'", "", ",", "district;DROP TABLE assets", "x" * 10_000]:
        answer = client.get("/changes/summary", params={**YEAR_2023, "by": by})
        assert answer.status_code == 400 and answer.json()["what"].startswith("by"), answer.text
        assert "kind, network, district, change" in answer.json()["why"]


def test_sixteen_clients_at_once_get_the_same_answers(live_server: tuple[str, Any]) -> None:
    base, _ = live_server
    asked = [
        "/changes?from=2022-07-01&to=2023-06-30",
        "/changes?from=2023-07-01&to=2024-06-30&f=geojson",
        "/changes/summary?from=2022-07-01&to=2023-06-30&by=network,district,change",
        "/changes/summary?from=2022-01-01&kind=pipe,lift",
    ]

    def get(path: str) -> tuple[str, Any]:
        with urllib.request.urlopen(base + path, timeout=60) as answer:
            return path, json.load(answer)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(get, asked * 8))
    first = {path: body for path, body in answers[: len(asked)]}
    assert all(body == first[path] for path, body in answers)
    assert first[asked[0]]["numberMatched"] == 4 and first[asked[3]]["total"]["count"] == 4  # p2 came and went
