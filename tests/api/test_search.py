"""``GET /search`` on both stores: ids, names (Chinese and English), areas and the viewer's named places; ranking,
paging, hostile text, fifty searches at once on a live server, and its OpenAPI declaration."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import LineString, box

from cim.model import Asset, AssetBatch, Kind
from cim.store import open_store
from tests.api.conftest import cim_serve

X, Y = 121.50, 31.23
CELL = box(X, Y, X + 0.05, Y + 0.05)


def area(code: str, kind: Kind, parent: str | None, name: str, name_en: str, geom: object) -> Asset:
    return Asset(
        id=f"area:{code}",
        kind=kind,
        name=name,
        parent_id=None if parent is None else f"area:{parent}",
        geom=geom,
        props={"code": code, "level": str(kind), "name_en": name_en},
    )


def search_city() -> list[Asset]:
    assets = [
        area("310115", Kind.DISTRICT, None, "浦东新区", "Pudong", box(X, Y, X + 0.1, Y + 0.1)),
        area("310101", Kind.DISTRICT, None, "黄浦区", "Huangpu", box(X - 0.1, Y, X, Y + 0.1)),
        area("310115001", Kind.STREET, "310115", "浦东新区第1街道", "Pudong Street 1", box(X, Y, X + 0.05, Y + 0.1)),
        area("310115001001", Kind.GRID_CELL, "310115001", "浦东新区第1街道网格1", "Pudong Street 1 Grid 1", CELL),
    ]
    buildings = [
        ("b-1", "Pudong Residential 000123", X + 0.01),
        ("b-2", "Pudong Office 000456", X + 0.02),
        ("b-3", "100%_Tower", X + 0.03),
        ("b-4", "100 Tower", X + 0.031),
        ("b-5", "ÉCOLE Ünïcode", X + 0.032),
        ("b-6", "东方明珠", X + 0.033),
        ("b-7", "Huangpu Office 000789", X - 0.05),
        ("pudong", "Tower named by id", X + 0.034),
    ]
    for id_, name, x in buildings:
        assets.append(
            Asset(
                id=id_,
                kind=Kind.BUILDING,
                name=name,
                geom=box(x, Y + 0.01, x + 0.001, Y + 0.011),
                z_min=4.0,
                z_max=84.0,
            )
        )
    road = LineString([(X + 0.01, Y + 0.02), (X + 0.04, Y + 0.02)])
    assets.append(Asset(id="road-1", kind=Kind.ROAD, name="世纪大道 Century Avenue", geom=road))
    for n in range(60):
        stop = box(X + 0.001 * n, Y + 0.03, X + 0.001 * n + 0.0001, Y + 0.0301)
        assets.append(Asset(id=f"stop-{n:02d}", kind=Kind.TRANSIT_STOP, name=f"Stop {n:02d}", geom=stop))
    return assets


@pytest.fixture
def city_url(store_url: str) -> str:
    with open_store(store_url) as store:
        store.upsert_assets(AssetBatch.from_assets(search_city()))
    return store_url


def find(client: TestClient, q: str, **params: object) -> dict:  # type: ignore[type-arg]
    answer = client.get("/search", params={"q": q, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def ids(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [m["id"] for m in body["matches"]]


def test_chinese_district_name_finds_the_district_first_then_its_street_and_cell(client: TestClient) -> None:
    body = find(client, "浦东")
    assert ids(body) == ["area:310115", "area:310115001", "area:310115001001"]
    district = body["matches"][0]
    assert (district["kind"], district["name_zh"], district["name_en"]) == ("district", "浦东新区", "Pudong")
    assert district["bbox"] == pytest.approx([X, Y, X + 0.1, Y + 0.1])
    assert (district["lon"], district["lat"]) == pytest.approx((X + 0.05, Y + 0.05))
    assert district["district"] == {"code": "310115", "name_zh": "浦东新区", "name_en": "Pudong"}
    assert body["matches"][1]["district"]["code"] == "310115"  # a street's parent
    assert body["matches"][2]["district"]["code"] == "310115"  # a grid cell's grandparent


def test_ranked_exact_id_then_exact_name_then_prefix_then_substring(client: TestClient) -> None:
    body = find(client, "pudong", limit=50)
    # the exact id first; the district by its English name (exact: rank 1); then prefixes, districts first
    assert ids(body)[:2] == ["pudong", "area:310115"]
    assert [m["rank"] for m in body["matches"]][:2] == [0, 1]
    assert ids(body)[2:] == ["area:310115001", "b-2", "b-1", "area:310115001001"]
    assert body["total"] == 6


def test_a_building_by_name_case_insensitive_with_its_district_top_and_no_bbox(client: TestClient) -> None:
    body = find(client, "RESIDENTIAL")
    assert ids(body) == ["b-1"]
    b = body["matches"][0]
    assert (b["kind"], b["name"], b["name_en"], b["name_zh"], b["height"], b["bbox"]) == (
        "building", "Pudong Residential 000123", "Pudong Residential 000123", None, 84.0, None)  # fmt: skip
    assert b["district"]["name_zh"] == "浦东新区"
    assert b["lon"] == pytest.approx(X + 0.0105) and b["lat"] == pytest.approx(Y + 0.0105)
    assert ids(find(client, "b-1")) == ["b-1"]  # by id
    assert ids(find(client, "东方")) == ["b-6"]  # Chinese as typed
    assert ids(find(client, "century")) == ["road-1"]
    assert ids(find(client, "école ünï")) == ["b-5"]  # unicode, lower-cased on both sides


def test_named_places_of_the_viewer_are_found(client: TestClient) -> None:
    body = find(client, "lujia")
    assert ids(body) == ["place:Lujiazui"]
    place = body["matches"][0]
    assert place["kind"] == "place" and place["height"] == 1500 and place["lon"] == pytest.approx(121.5055)


def test_a_named_place_is_found_by_its_chinese_name_and_answers_both_names(client: TestClient) -> None:
    for typed in ("陆家嘴", "家嘴", "Lujiazui"):
        body = find(client, typed)
        assert ids(body) == ["place:Lujiazui"], typed
        place = body["matches"][0]
        assert (place["name_zh"], place["name_en"]) == ("陆家嘴", "Lujiazui")
    assert find(client, "陆家嘴")["matches"][0]["rank"] == 1  # the whole Chinese name: an exact match
    assert ids(find(client, "临港")) == ["place:Lingang"]  # a prefix of 临港新片区


def test_like_metacharacters_match_literally(client: TestClient) -> None:
    assert ids(find(client, "100%")) == ["b-3"]
    assert ids(find(client, "%")) == ["b-3"]
    assert ids(find(client, "0%_t")) == ["b-3"]
    assert ids(find(client, "_")) == ["b-3"]  # no single-character wildcard: only the name holding "_"
    assert ids(find(client, "\\")) == []
    for hostile in ("'; DROP TABLE assets; --", '" OR 1=1 --', "%%%", "\\%", "${x}", "🏙️", "\u202e", "a\x00b"):
        assert find(client, hostile)["matches"] == []
    assert find(client, "b-1")["total"] == 1  # the table is still there
    assert find(client, "   ")["total"] == 0


def test_paged_and_bounded(client: TestClient) -> None:
    first, second = find(client, "stop", limit=25), find(client, "stop", limit=25, offset=25)
    assert first["total"] == second["total"] == 60
    assert ids(first) == [f"stop-{n:02d}" for n in range(25)]
    assert ids(second) == [f"stop-{n:02d}" for n in range(25, 50)]
    assert len(find(client, "stop")["matches"]) == 10  # the default
    assert find(client, "stop", offset=1000)["matches"] == []
    for params, named in (
        ({"q": "stop", "limit": 51}, "limit"),
        ({"q": "stop", "limit": 0}, "limit"),
        ({"q": "stop", "limit": "ten"}, "limit"),
        ({"q": "stop", "offset": -1}, "offset"),
        ({"q": "stop", "offset": 1001}, "offset"),
        ({"q": ""}, "q"),
        ({}, "q"),
        ({"q": "x" * 60_000}, "q"),  # the longest URL httpx sends; 1 MB: on the live server below
    ):
        answer = client.get("/search", params=params)
        assert answer.status_code == 400, (params.get("q", "")[:20], answer.text[:200])
        assert answer.json()["why"].startswith(f"{named}:"), answer.text[:300]


def test_declared_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/api").json()["paths"]["/search"]["get"]
    declared = {p["name"]: p for p in operation["parameters"]}
    assert set(declared) == {"q", "limit", "offset"}
    assert declared["q"]["required"] and declared["q"]["schema"]["maxLength"] == 200
    assert declared["limit"]["schema"]["maximum"] == 50 and declared["limit"]["schema"]["default"] == 10
    assert "400" in operation["responses"]


def test_fifty_searches_at_once_on_a_live_server(city_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    terms = ["浦东", "pudong", "stop", "100%", "lujia", "tower", "b-1", "'; --", "黄浦", "école"]

    async def burst(base: str) -> list[tuple[str, int, list[str]]]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            answers = await asyncio.gather(*(http.get("/search", params={"q": terms[n % 10]}) for n in range(50)))
            found = [[m["id"] for m in a.json()["matches"]] for a in answers]
            return [(terms[n % 10], a.status_code, f) for n, (a, f) in enumerate(zip(answers, found, strict=True))]

    (tmp_path / "tiles").mkdir()
    with cim_serve(city_url, tmp_path / "tiles", tmp_path / "server.log") as base:
        expected = {t: [m["id"] for m in httpx.get(f"{base}/search", params={"q": t}).json()["matches"]] for t in terms}
        started = time.perf_counter()
        results = asyncio.run(burst(base))
        took = time.perf_counter() - started
        # a 1 MB q: refused before the app (a request head over 64 KiB), and the server answers on
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            try:
                s.sendall(b"GET /search?q=" + b"%E6%B5%A6" * 350_000 + b" HTTP/1.1\r\nHost: cim\r\n\r\n")
                head = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                head = b"HTTP/1.1 431 reset"  # refused and closed while the rest was still being sent
        assert head.split(b" ")[1] in (b"400", b"414", b"431"), head[:200]
        assert httpx.get(f"{base}/search", params={"q": "b-1"}).json()["total"] == 1
    print(f"50 concurrent searches in {took * 1000:.0f} ms")
    assert all(status == 200 for _, status, _ in results)
    assert all(found == expected[term] for term, _, found in results)
    assert expected["浦东"][0] == "area:310115" and expected["黄浦"] == ["area:310101"]
    assert took < 20
