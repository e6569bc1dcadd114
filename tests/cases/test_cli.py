"""``cim cases`` and ``cim report cases`` as a user runs them: real subprocesses on a store of the small test city,
locally and through a running server, with the API's JSON under ``--json`` and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from cim.cases.config import area_tree, build_units, config_json, save_table
from cim.model import AssetBatch
from cim.store import open_store
from tests.api.conftest import cim_serve
from tests.cases.conftest import UNITS, area_assets, city_assets

RULES = [{"id": "lift", "quantity": "lift_status", "category": "lift_fault"}]


def cim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "cim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def make_city(store: str) -> None:
    with open_store(store) as opened:
        opened.upsert_assets(AssetBatch.from_assets(area_assets() + city_assets()))
        save_table(opened, build_units(UNITS, area_tree(opened)), config=config_json(RULES))


def test_the_loop_from_a_terminal(tmp_path: Path) -> None:
    store = str(tmp_path / "city.duckdb")
    make_city(store)
    photo = tmp_path / "manhole.png"
    Image.new("RGB", (4, 4)).save(photo)
    reported = cim("cases", "report", "--category", "lift_fault", "--lon", "121.42", "--lat", "31.15",
                   "--photo", str(photo), "--store", store, "--json")  # fmt: skip
    assert reported.returncode == 0, reported.stderr
    case = json.loads(reported.stdout)
    case_id = case["id"]
    assert case["properties"]["state"] == "dispatched" and case["properties"]["unit_id"] == "team-south"
    assert case["timeline"][0]["photos"]

    token = json.loads(cim("cases", "token", "team-south", "--store", store, "--json").stdout)["token"]
    accepted = cim("cases", "act", case_id, "accept", "--token", token, "--store", store, "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["properties"]["state"] == "in_progress"
    wrong = cim("cases", "act", case_id, "close", "--store", store)
    assert wrong.returncode == 2 and "allowed: handle, return" in wrong.stderr and "Traceback" not in wrong.stderr

    listed = json.loads(cim("cases", "list", "--area", "310101", "--store", store, "--json").stdout)
    assert [f["id"] for f in listed["features"]] == [case_id]
    shown = cim("cases", "show", case_id, "--store", store)
    assert shown.returncode == 0 and "accept" in shown.stdout
    units = json.loads(cim("cases", "units", "--store", store, "--json").stdout)
    assert "team-south" in {u["id"] for u in units}
    verified = cim("cases", "verify", "--store", store, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout) == {"checked": 1, "broken": {}}

    period = case["properties"]["reported_at"][:7]
    table = tmp_path / "report.csv"
    report = cim("report", "cases", "--period", period, "--level", "district", "--csv", str(table), "--store", store)
    assert report.returncode == 0, report.stderr
    rows = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8-sig"))))
    assert [(r["code"], r["opened"], r["name"]) for r in rows] == [("310101", "1", "黄浦区")]


def test_bad_input_is_one_line_naming_it(tmp_path: Path) -> None:
    store = str(tmp_path / "city.duckdb")
    make_city(store)
    unknown = cim("cases", "report", "--category", "dragons", "--lon", "121.42", "--lat", "31.15", "--store", store)
    assert unknown.returncode == 2 and "category 'dragons'" in unknown.stderr
    missing = cim("cases", "show", "C-404", "--store", store)
    assert missing.returncode == 2 and "C-404" in missing.stderr
    assert "period" in cim("report", "cases", "--period", "November", "--store", store).stderr
    assert "not a unit" in cim("cases", "token", "nobody", "--store", store).stderr


def test_through_a_running_server(tmp_path: Path) -> None:
    store = str(tmp_path / "city.duckdb")
    make_city(store)
    token = {"CIM_WRITE_TOKEN": "centre"}
    with cim_serve(store, tmp_path, tmp_path / "server.log", env=token) as base:
        reported = cim("cases", "report", "--category", "lift_fault", "--lon", "121.55", "--lat", "31.2",
                       "--server", base, "--json", env=token)  # fmt: skip
        assert reported.returncode == 0, reported.stderr
        case_id = json.loads(reported.stdout)["id"]
        acted = cim("cases", "act", case_id, "accept", "--server", base, "--json", env=token)
        assert json.loads(acted.stdout)["properties"]["state"] == "in_progress"
        refused = cim("cases", "act", case_id, "handle", "--server", base, env={"CIM_WRITE_TOKEN": "wrong"})
        assert refused.returncode == 2 and "token" in refused.stderr
        report = cim("report", "cases", "--level", "unit", "--server", base, "--json")
        assert [r["code"] for r in json.loads(report.stdout)["rows"]] == ["lift-310104"]
