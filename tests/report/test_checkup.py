"""The annual check-up (cim.report) on a small generated city with the hand-made history of tests/report/city.py:
the data on both stores, the HTML read back (sections, a row per district, the numbers the API answers), the PDF
opened with pypdf (its Chinese headings), the command and the server's /reports routes, and the refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from cim.api.app import create_app
from cim.cli import main
from cim.errors import InvalidInput
from cim.queries.domain import years_before
from cim.queries.indicators import vital_signs
from cim.queries.params import model_as_of
from cim.report.build import write_checkup
from cim.report.checkup import checkup, checkup_day
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import Store, open_store
from tests.report.city import ROOT, add_cases, build_city, generate

YEAR = 2026
TARGETS = ROOT / "pipelines" / "targets" / "shanghai-renewal.toml"
SCALE = 0.001
SECTIONS = ("vitals", "changes", "targets", "cases", "ranking", "pictures")


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"))


@pytest.fixture
def city(store: Store, synth: Path) -> Store:
    build_city(store, synth)
    add_cases(store)
    return store


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, synth: Path) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    """A DuckDB city, its check-up of 2026 written into ``reports/``: (store URL, what was written, the streets)."""
    folder = tmp_path_factory.mktemp("city")
    url = str(folder / "city.duckdb")
    with open_store(url) as store:
        build_city(store, synth)
        streets = add_cases(store)
        result = write_checkup(store, year=YEAR, out=folder / "reports", targets=TARGETS, targets_scale=SCALE)
    yield url, result, streets


class Cells(HTMLParser):
    """Section ids, and every table's figure cells by (table, district, metric, year): their text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.rows: dict[str, list[str]] = {}
        self.cells: dict[tuple[str, str, str, str | None], str] = {}
        self._table = ""
        self._cell: tuple[str, str, str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "table":
            self._table = a.get("data-table") or ""
            self.rows[self._table] = []
        elif tag == "tr" and a.get("data-district"):
            self.rows[self._table].append(a["data-district"] or "")
        elif tag == "td" and a.get("data-metric"):
            self._cell = (self._table, a["data-district"] or "", a["data-metric"] or "", a.get("data-year"))
            self.cells[self._cell] = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.cells[self._cell] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


def number(text: str) -> float | None:
    return None if text == "-" else float(text.rstrip("%").replace(",", ""))


def test_the_checkup_counts_the_years_changes_and_cases_made_by_hand(city: Store) -> None:
    data = checkup(city, 2025)
    assert data["as_of"] == "2025-12-31"
    assert data["years"] == ["2021", "2022", "2023", "2024", "2025"]
    assert len(data["districts"]) == 16
    changes = data["changes"]["city"]
    assert (changes["chargers_added"], changes["poles_added"], changes["lifts_added"]) == (30, 20, 0)
    assert changes["gas_renewed_km"] == 0
    trend = data["city_trend"]
    assert trend["2025"]["chargers"] - trend["2024"]["chargers"] == 30
    assert trend["2025"]["poles"] - trend["2022"]["poles"] == 20
    assert trend["2023"]["old_gas_mains_km"] < trend["2022"]["old_gas_mains_km"]  # 30 of the oldest renewed
    # the city's signs are /indicators' as of that day, and the districts sum to them
    signs = {
        i["id"]: i["value"]
        for i in vital_signs(model_as_of(city, date(2025, 12, 31)), as_of=date(2025, 12, 31))["indicators"]
    }
    for key in ("old_lifts", "old_lifts_share", "old_gas_mains_km", "old_water_mains_km", "stops_near_metro"):
        assert trend["2025"][key] == signs[key], key
    assert sum(v["old_lifts"] for v in data["vitals"]["2025"].values()) == signs["old_lifts"]
    assert data["cases"]["districts"] == []  # the cases are all in 2026
    of_2026 = checkup(city, YEAR)
    assert (of_2026["changes"]["city"]["lifts_added"], of_2026["changes"]["city"]["chargers_added"]) == (30, 40)
    assert of_2026["changes"]["city"]["gas_renewed_km"] > 0 and of_2026["changes"]["city"]["drainage_renewed_km"] > 0
    city_cases = of_2026["cases"]["city"]
    # streets i = 0..7 with i + 5 cases each, i + 1 of them handled on time
    assert (city_cases["opened"], city_cases["handled_on_time"]) == (sum(range(5, 13)), sum(range(1, 9)))


def test_a_year_before_the_history_or_in_the_future_is_refused(city: Store) -> None:
    with pytest.raises(InvalidInput, match="year 2020 — is before the model's history, which begins 2021-07-01"):
        checkup(city, 2020)
    next_year = date.today().year + 1
    with pytest.raises(InvalidInput, match=f"year {next_year} — is in the future"):
        checkup(city, next_year)


def test_the_html_has_every_section_and_district_with_the_numbers_the_api_answers(
    written: tuple[str, dict[str, Any], list[str]],
) -> None:
    url, result, streets = written
    page = Cells()
    page.feed(Path(result["html"]).read_text(encoding="utf-8"))
    assert page.sections == list(SECTIONS)
    with open_store(url) as store:
        data = checkup(store, YEAR)
        codes = [d["code"] for d in data["districts"]]
        assert page.rows["district-vitals"] == [*codes, "city"]
        assert page.rows["district-changes"] == [*codes, "city"]
        for sign in data["signs"]:
            shown = number(page.cells[("district-vitals", "city", sign["id"], None)])
            assert shown == data["city_trend"][str(YEAR)][sign["id"]], sign["id"]
            for code in codes:
                value = data["vitals"][str(YEAR)].get(code, {}).get(sign["id"])
                assert number(page.cells[("district-vitals", code, sign["id"], None)]) == value
        assert number(page.cells[("district-changes", "city", "chargers_added", None)]) == 40
        # the old lifts per district, as /collections/lift/aggregate answers them
        day = checkup_day(YEAR)
        cutoff = years_before(day, 15) - timedelta(days=1)
        server = ServerSettings(targets_file=TARGETS, targets_scale=SCALE)
        with TestClient(create_app(AppSettings(store=StoreSettings(store=url), server=server))) as client:
            answer = client.get(
                "/collections/lift/aggregate", params={"group_by": "district", "datetime": f"../{cutoff}"}
            )
            assert answer.status_code == 200, answer.text
            for group in answer.json()["groups"]:
                code = group["key"]["district"]
                if code is not None:
                    assert number(page.cells[("district-vitals", code, "old_lifts", None)]) == group["count"]
            signs = {i["id"]: i["value"] for i in client.get("/indicators").json()["indicators"]}
            targets = client.get("/targets", params={"as_of": day.isoformat()}).json()["targets"]
        assert targets and page.rows["targets"] == [t["id"] for t in targets]
        for target in targets:  # the plan's targets as /targets answers them
            assert number(page.cells[("targets", "city", target["id"], None)]) == target["value"]
        assert number(page.cells[("targets", "city", "lifts_added", None)]) == 40 + 30  # added in 2024 and 2026
        for key in ("old_lifts", "old_gas_mains_km", "homes_near_park", "stops_near_metro"):
            assert number(page.cells[("district-vitals", "city", key, None)]) == signs[key]
    # cases: Huangpu's three streets had 5 + 6 + 7 cases, 1 + 2 + 3 on time; the first street is the worst
    huangpu = streets[0][:6]
    assert page.cells[("district-cases", huangpu, "on_time_rate", None)] == "33.3%"
    assert page.rows["worst_streets"][0] == streets[0]
    assert page.cells[("worst_streets", streets[0], "on_time_rate", None)] == "20.0%"
    assert page.rows["best_streets"][0] == streets[-1]
    text = Path(result["html"]).read_text(encoding="utf-8")  # offline: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", text)


def test_the_pdf_opens_and_holds_the_chinese_headings(written: tuple[str, dict[str, Any], list[str]]) -> None:
    _, result, _ = written
    reader = PdfReader(result["pdf"])
    text = "\n".join(page.extract_text() for page in reader.pages)
    for heading in (
        "城市体检报告",
        "生命体征",
        "年度变化",
        "规划目标与进度",
        "案件与按时处置率",
        "最差与最好",
        "浦东新区",
    ):
        assert heading in text, heading
    assert len(reader.pages) >= 6


def test_the_command_writes_both_files_and_refuses_a_future_year(
    written: tuple[str, dict[str, Any], list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = written
    with pytest.raises(SystemExit) as exit_:
        main(["report", "checkup", "--year", str(date.today().year + 1), "--store", url, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "is in the future" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        main(["report", "checkup", "--year", "2025", "--store", url, "--out", str(tmp_path), "--json"])
    assert exit_.value.code in (0, None)
    printed = json.loads(capsys.readouterr().out)
    assert Path(printed["html"]).is_file() and Path(printed["pdf"]).read_bytes().startswith(b"%PDF")


def test_the_server_writes_the_report_once_and_serves_it_again(
    written: tuple[str, dict[str, Any], list[str]], tmp_path: Path
) -> None:
    url, _, _ = written
    settings = AppSettings(store=StoreSettings(store=url), server=ServerSettings(reports_dir=tmp_path / "served"))
    with TestClient(create_app(settings)) as client:
        page = client.get(f"/reports/checkup-{YEAR}.html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        written_at = (tmp_path / "served" / f"checkup-{YEAR}.html").stat().st_mtime_ns
        pdf = client.get(f"/reports/checkup-{YEAR}.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert (tmp_path / "served" / f"checkup-{YEAR}.html").stat().st_mtime_ns == written_at  # not written again
        refused = client.get("/reports/checkup-2020.pdf")
        assert refused.status_code == 400 and "before the model's history" in refused.json()["why"]
