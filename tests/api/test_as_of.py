"""``as_of`` over HTTP on both stores (issue 26): items, an item, the domain questions and the vital signs answer
from the model as it stood at the end of the day asked (tests.api.past_city.py), each cache keeping each day's
answer apart; bad days are a 400 naming ``as_of`` and change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store
from tests.api.conftest import cim_serve
from tests.api.past_city import BBOX, MID_2022, MID_2023, build_history


@pytest.fixture
def history_url(store_url: str) -> str:
    with open_store(store_url) as store:
        build_history(store)
    return store_url


@pytest.fixture
def client(history_url: str, tiles_dir: Path) -> Iterator[TestClient]:
    settings = AppSettings(store=StoreSettings(store=history_url), server=ServerSettings(tiles_dir=tiles_dir))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def ok(client: TestClient | httpx.Client, path: str, **params: Any) -> Any:
    answer = client.get(path, params={k: v for k, v in params.items() if v is not None})
    assert answer.status_code == 200, answer.text
    return answer.json()


def pipe_ids(client: TestClient | httpx.Client, as_of: str | None) -> list[str]:
    return [f["id"] for f in ok(client, "/collections/pipe/items", as_of=as_of)["features"]]


def old_lift_ids(client: TestClient | httpx.Client, as_of: str | None) -> list[str]:
    body = ok(client, "/queries/old-lifts", years=15, as_of=as_of)
    return [lift["id"] for b in body["buildings"] for lift in b["lifts"]]


def indicator(client: TestClient | httpx.Client, as_of: str | None, key: str) -> Any:
    found = {i["id"]: i["value"] for i in ok(client, "/indicators", as_of=as_of)["indicators"]}
    return found[key]


def test_items_and_an_item_as_of_a_date_are_the_versions_valid_then(client: TestClient) -> None:
    assert pipe_ids(client, MID_2022) == ["p1", "p2", "p3"]
    assert pipe_ids(client, MID_2023) == pipe_ids(client, None) == ["p1", "p3", "p4"]
    then = ok(client, "/collections/pipe/items/p1", as_of=MID_2022)["properties"]
    assert (then["install_date"], then["material"]) == ("1990-05-01", "steel")
    assert ok(client, "/collections/pipe/items/p1")["properties"]["material"] == "PE"
    assert ok(client, "/collections/pipe/items/p2", as_of=MID_2022)["id"] == "p2"
    assert client.get("/collections/pipe/items/p2").status_code == 404
    hits = ok(client, "/collections/pipe/items", as_of=MID_2022, resultType="hits")
    assert hits["numberMatched"] == 3


def test_domain_questions_as_of_a_date_read_the_model_then(client: TestClient) -> None:
    assert old_lift_ids(client, MID_2022) == ["L1"]
    assert old_lift_ids(client, MID_2023) == old_lift_ids(client, None) == []
    old_gas = {"bbox": BBOX, "network": "gas", "older_than": 30}
    then = ok(client, "/queries/buried-pipes", **old_gas, as_of=MID_2022)
    assert [p["id"] for p in then["pipes"]] == ["p1", "p2"]
    assert then["total_length_m"] == pytest.approx(2 * 1109, rel=0.01)
    assert ok(client, "/queries/buried-pipes", **old_gas)["pipes"] == []
    near = {"kind": "building", "near": "park", "distance": 500}
    assert ok(client, "/queries/within-distance", **near, as_of=MID_2022)["assets"] == []
    assert [a["id"] for a in ok(client, "/queries/within-distance", **near)["assets"]] == ["b1"]
    groups = ok(client, "/collections/pipe/aggregate", group_by="district,age_band", as_of=MID_2022)["groups"]
    got = {(g["key"]["district"], g["key"]["age_band"]): g["count"] for g in groups}
    assert got == {("310115", "30+"): 2, ("310115", "20-30"): 1}


def test_vital_signs_as_of_a_date_and_now_are_each_their_own(client: TestClient) -> None:
    assert indicator(client, MID_2022, "old_lifts") == 1
    assert indicator(client, MID_2022, "old_gas_mains_km") == pytest.approx(2.2, abs=0.05)
    assert indicator(client, MID_2022, "sensors_reporting") is None  # live state has no past
    assert indicator(client, None, "old_lifts") == 0  # asked right after: not the cached answer of 2022
    assert indicator(client, None, "old_gas_mains_km") == 0
    assert ok(client, "/indicators", as_of=MID_2022)["as_of"] == MID_2022


@pytest.mark.parametrize(
    ("as_of", "why"),
    [
        ("2999-01-01", "is in the future"),
        ("2021-06-30", "before the model's history"),
        ("yesterday", "not a date"),
        ("", "not a date"),
    ],
)
@pytest.mark.parametrize(
    "path", ["/collections/pipe/items", "/collections/pipe/items/p1", "/queries/old-lifts", "/indicators"]
)
def test_a_bad_day_is_a_400_naming_as_of_and_changes_nothing(
    client: TestClient, history_url: str, path: str, as_of: str, why: str
) -> None:
    answer = client.get(path, params={"as_of": as_of})
    assert answer.status_code == 400, answer.text
    assert answer.json()["what"].startswith("as_of") and why in answer.json()["why"]
    assert pipe_ids(client, None) == ["p1", "p3", "p4"]
    assert pipe_ids(client, MID_2022) == ["p1", "p2", "p3"]


def test_sixteen_clients_asking_as_of_two_dates_and_now_each_get_their_own(
    history_url: str, tiles_dir: Path, tmp_path: Path
) -> None:
    expected = {
        MID_2022: (["p1", "p2", "p3"], ["L1"], 1),
        MID_2023: (["p1", "p3", "p4"], [], 0),
        None: (["p1", "p3", "p4"], [], 0),
    }
    days = list(expected)

    def ask(n: int) -> list[tuple[str | None, Any, Any]]:
        got = []
        with httpx.Client(base_url=base, timeout=60) as http:
            for i in range(6):
                day = days[(n + i) % 3]
                answer = (pipe_ids(http, day), old_lift_ids(http, day), indicator(http, day, "old_lifts"))
                got.append((day, answer, expected[day]))
        return got

    with cim_serve(history_url, tiles_dir, tmp_path / "server.log") as base, ThreadPoolExecutor(16) as pool:
        results = [r for one in pool.map(ask, range(16)) for r in one]
    assert len(results) == 96
    wrong = [(day, answer, want) for day, answer, want in results if answer != want]
    assert wrong == []
