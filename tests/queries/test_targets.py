"""The plan's targets tracked from the model and its history (issue 26, item 4), on both stores, against a history
built here by hand: two districts, gas mains renewed in 2022 and 2023, lifts added, chargers installed, drainage
inspected."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from shapely.geometry import LineString, Point, box

from cim.errors import InvalidInput
from cim.model import Asset, AssetBatch, Kind
from cim.queries.targets import load_targets, target_progress
from cim.store import Store

PLAN = Path(__file__).parents[2] / "pipelines" / "targets" / "shanghai-renewal.toml"
WEST, EAST = ("310104", "徐汇区", "Xuhui", 121.40), ("310115", "浦东新区", "Pudong", 121.60)
YEAR = {y: datetime(y, 12, 31, 12, tzinfo=UTC) for y in range(2021, 2026)}


def district(code: str, name: str, name_en: str, x: float) -> Asset:
    return Asset(id=f"area:{code}", kind=Kind.DISTRICT, geom=box(x - 0.1, 31.1, x + 0.1, 31.3), name=name,
                 source="areas", props={"code": code, "name_en": name_en})  # type: ignore[arg-type]  # fmt: skip


def main(n: int, x: float, *, installed: date, network: str = "gas", **props: object) -> Asset:
    line = LineString([(x + n * 0.001, 31.15), (x + n * 0.001, 31.16)])  # ~1.11 km
    return Asset(id=f"{network}{n}", kind=Kind.PIPE, geom=line, source="mains", network=network,
                 install_date=installed, depth_m=1.2, props=props)  # type: ignore[arg-type]  # fmt: skip


def point(kind: Kind, n: int, x: float, source: str) -> Asset:
    return Asset(id=f"{kind}{n}", kind=kind, geom=Point(x + n * 0.0001, 31.2), source=source)  # type: ignore[arg-type]


def state(year: int) -> tuple[list[Asset], list[Asset]]:
    """The mains and the chargers/lifts as they stood at the end of ``year``."""
    old, new = date(1980, 1, 1), date(year, 6, 1)
    mains = [
        main(1, WEST[3], installed=new if year >= 2022 else old),  # renewed in 2022 (west)
        main(2, EAST[3], installed=date(2023, 6, 1) if year >= 2023 else old),  # renewed in 2023 (east)
        main(3, EAST[3], installed=old),
        main(4, EAST[3], installed=old, network="drainage", **({"inspected_on": "2023-03-01"} if year >= 2023 else {})),
    ]
    things = [point(Kind.CHARGER, i, EAST[3], "things") for i in range(2 + 3 * (year - 2021))]
    things += [point(Kind.LIFT, i, WEST[3], "things") for i in range(year - 2021)]  # one lift added a year
    return mains, things


@pytest.fixture
def city(store: Store) -> Store:
    store.replace_source("areas", [AssetBatch.from_assets([district(*WEST), district(*EAST)])], at=YEAR[2021])
    for year, at in YEAR.items():
        mains, things = state(year)
        store.replace_source("mains", [AssetBatch.from_assets(mains)], at=at)
        store.replace_source("things", [AssetBatch.from_assets(things)], at=at)
    return store


def by_id(rows: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["id"]): r for r in rows}


def test_targets_are_computed_from_the_history(city: Store) -> None:
    plan = load_targets(PLAN, scale=0.01)  # gas: 3 km to renew, chargers: 2,000, lifts added: 50
    got = by_id(target_progress(city, plan, date(2025, 12, 31)))
    gas = got["gas_mains_renewed"]
    assert gas["value"] == pytest.approx(2.22, abs=0.02)  # two mains of ~1.11 km
    assert gas["target"] == 3.0
    assert gas["progress"] == pytest.approx(0.74, abs=0.01)
    assert gas["pace_per_year"] == pytest.approx(2.22 / 4, abs=0.01)
    assert gas["pace_needed_per_year"] == pytest.approx(0.78, abs=0.02)  # 0.78 km left in one year
    assert gas["on_track"] is False
    assert {d["code"]: d["value"] for d in gas["districts"]} == {  # type: ignore[union-attr]
        "310104": pytest.approx(1.11, abs=0.01),
        "310115": pytest.approx(1.11, abs=0.01),
    }
    assert [d["name"] for d in gas["districts"]] == ["徐汇区", "浦东新区"]  # type: ignore[union-attr]
    chargers = got["smart_chargers"]  # a stock: 2 at the baseline, 14 at the end of 2025
    assert (chargers["baseline_value"], chargers["value"]) == (2, 14)
    assert chargers["pace_per_year"] == pytest.approx(3.0, abs=0.01)
    assert chargers["forecast"] == pytest.approx(17.0, abs=0.05)
    assert got["lifts_added"]["value"] == 4
    assert got["drainage_inspected"]["value"] == pytest.approx(1.11, abs=0.01)
    assert got["water_mains_renewed"]["value"] == 0


def test_targets_as_of_an_earlier_year_read_the_model_then(city: Store) -> None:
    plan = load_targets(PLAN, scale=0.01)
    got = by_id(target_progress(city, plan, date(2022, 12, 31)))
    assert got["gas_mains_renewed"]["value"] == pytest.approx(1.11, abs=0.01)
    assert [d["code"] for d in got["gas_mains_renewed"]["districts"]] == ["310104"]  # type: ignore[union-attr]
    assert got["smart_chargers"]["value"] == 5
    assert got["drainage_inspected"]["value"] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("baseline = 2021-12-31\ndeadline = 2026-12-31\n[[target]]\nid='x'\nindicator='km_of_joy'\nkind='pipe'\n"
         "unit='km'\ntarget=3", "indicator 'km_of_joy'.*is unknown"),
        ("baseline = 2021-12-31\ndeadline = 2026-12-31\n[[target]]\nid='x'\nindicator='renewed_length'\n"
         "kind='pipe'\nunit='miles'\ntarget=3", "unit 'miles'.*does not fit renewed_length"),
        ("baseline = 2021-12-31\ndeadline = 2026-12-31\n[[target]]\nid='x'\nindicator='count'\nkind='spaceship'\n"
         "unit='count'\ntarget=3", "kind 'spaceship'"),
        ("baseline = 2026-12-31\ndeadline = 2021-12-31\n[[target]]\nid='x'", "deadline.*must come after"),
        ("baseline = 'soon'\ndeadline = 2026-12-31", "baseline.*must be a date"),
        ("baseline = 2021-12-31\ndeadline = 2026-12-31\n[[target]]\nid='x'\nindicator='count'\nkind='pipe'\n"
         "unit='count'\ntarget=-1", "target 1 \\(x\\): target.*positive"),
        ("this is = not toml [", "is not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_target_file_is_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        load_targets(path)


def test_a_date_before_the_baseline_is_refused(city: Store) -> None:
    with pytest.raises(InvalidInput, match="before the plan's baseline"):
        target_progress(city, load_targets(PLAN), date(2020, 1, 1))
    with pytest.raises(InvalidInput, match="in the future"):
        target_progress(city, load_targets(PLAN), date(2099, 1, 1))


def test_targets_over_http_and_the_command_line_agree(city: Store, store_url: str, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

    city.close()
    settings = AppSettings(
        store=StoreSettings(store=store_url),
        server=ServerSettings(tiles_dir=tmp_path, targets_file=PLAN, targets_scale=0.01),
    )
    with TestClient(create_app(settings)) as client:
        with ThreadPoolExecutor(8) as pool:  # current and past days asked at once each get their own answer
            days = ["2025-12-31", "2022-12-31"] * 8
            answers = list(pool.map(lambda d: client.get("/targets", params={"as_of": d}), days))
        for day, answer in zip(days, answers, strict=True):
            assert answer.status_code == 200, answer.text
            gas = by_id(answer.json()["targets"])["gas_mains_renewed"]
            assert gas["value"] == pytest.approx(2.22 if day == "2025-12-31" else 1.11, abs=0.02)
        http = client.get("/targets", params={"as_of": "2025-12-31"}).json()
        bad = client.get("/targets", params={"as_of": "2099-01-01"})
        assert bad.status_code == 400 and "in the future" in bad.json()["description"]
        assert client.get("/targets", params={"as_of": "1999-01-01"}).status_code == 400
        assert client.get("/targets", params={"as_of": "soon"}).status_code in (400, 422)
    if store_url.startswith("postgresql"):
        return  # the command reads the same function; once is enough
    run = subprocess.run(
        [sys.executable, "-m", "cim", "targets", "--file", str(PLAN), "--scale", "0.01", "--as-of", "2025-12-31",
         "--store", store_url, "--json"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["targets"] == http["targets"]
    table = subprocess.run(
        [sys.executable, "-m", "cim", "targets", "--file", str(PLAN), "--as-of", "2025-12-31", "--store", store_url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "220"},
    )  # fmt: skip
    assert table.returncode == 0 and "老旧燃气管道更新改造" in table.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("baseline = 2021-12-31\ndeadline = 2026-12-31\n[[target]]\nid='x'\nindicator='joy'\nkind='pipe'\n"
                      "unit='km'\ntarget=1\n")  # fmt: skip
    refused = subprocess.run(
        [sys.executable, "-m", "cim", "targets", "--file", str(broken), "--store", store_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "error: target file broken.toml: target 1 (x): indicator 'joy'" in refused.stderr
    assert "Traceback" not in refused.stderr
