"""``cim changes`` on both stores against the hand-built history of tests/api/history_city.py, here and through the
server that holds the DuckDB file: the same JSON as ``GET /changes``, zh+en tables, one-line errors."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cim.store import open_store
from tests.api.conftest import cim_serve
from tests.api.history_city import MAIN_M, build_history
from tests.cli.test_read_commands import cim

YEAR = ["--from", "2022-07-01", "--to", "2023-06-30"]


@pytest.fixture
def history_url(store_url: str) -> str:
    with open_store(store_url) as store:
        build_history(store)
    return store_url


def without_links(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "links"}


def test_the_changed_assets_as_json_and_as_a_table(history_url: str) -> None:
    done = cim("changes", "--store", history_url, *YEAR, "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert [(c["id"], c["change"]) for c in body["changes"]] == [
        ("L1", "changed"),
        ("p1", "renewed"),
        ("p2", "removed"),
        ("p4", "added"),
    ]
    assert body["changes"][1]["after"] == {"install_date": "2022-06-01", "material": "PE"}
    table = cim("changes", "--store", history_url, *YEAR, "--kind", "pipe", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert "change 变化" in table.stdout and "更新改造" in table.stdout and "浦东新区" in table.stdout
    assert "2 of 3 changed assets" in table.stdout and "--offset 2" in table.stdout


def test_km_per_district_and_change(history_url: str) -> None:
    done = cim("changes", "--store", history_url, *YEAR, "--by", "district,change", "--kind", "pipe", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["by"] == ["district", "change"] and body["total"]["count"] == 3
    assert all(g["names"]["district"] == {"zh": "浦东新区", "en": "Pudong"} for g in body["groups"])
    assert body["total"]["length_km"] == pytest.approx(3 * MAIN_M / 1000, rel=0.01)
    table = cim("changes", "--store", history_url, *YEAR, "--by", "network,change")
    assert table.returncode == 0, table.stderr
    assert "km 公里" in table.stdout and "total 合计" in table.stdout and "renewed 更新改造" in table.stdout


BAD = [
    (["--from", "2023-07-01", "--to", "2023-01-01"], "error: from 2023-07-01 — is after to 2023-01-01"),
    (["--from", "2021-06-01"], "error: from 2021-06-01 — is before the model's history, which begins 2022-01-01"),
    (["--from", "2999-01-01"], "error: from 2999-01-01 — is in the future"),
    (["--from", "1 Jan 2023"], "error: from '1 Jan 2023' — is not a date (YYYY-MM-DD)"),
    ([*YEAR, "--by", "colour"], "error: by 'colour' — group by one or more of kind, network, district, change"),
    ([*YEAR, "--kind", "pipe'; DROP TABLE assets; --"], 'error: kind "pipe\'; DROP TABLE assets; --" — is not'),
    ([*YEAR, "--limit", "0"], "error: limit 0 — must be between 1 and 10,000"),
]


def test_bad_input_is_one_error_line(history_url: str) -> None:
    for args, line in BAD:
        done = cim("changes", "--store", history_url, *args)
        assert done.returncode == 2, (args, done.stdout)
        assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``cim serve`` holding a DuckDB file with the history: (its base URL, the file)."""
    path = tmp_path / "city.duckdb"
    with open_store(str(path)) as store:
        build_history(store)
    (tmp_path / "tiles").mkdir()
    with cim_serve(str(path), tmp_path / "tiles", tmp_path / "server.log") as base:
        yield base, path


def test_the_server_holding_the_file_answers_and_refuses_alike(serving: tuple[str, Path], tmp_path: Path) -> None:
    base, path = serving
    done = cim("changes", "--store", str(path), *YEAR, "--kind", "pipe,lift", "--json")
    assert done.returncode == 0, done.stderr  # the file is held by the server: only it could answer
    with urllib.request.urlopen(f"{base}/changes?from=2022-07-01&to=2023-06-30&kind=pipe,lift") as answer:
        assert without_links(json.loads(done.stdout)) == without_links(json.load(answer))
    summary = cim("changes", "--store", str(path), *YEAR, "--by", "network,district,change", "--json")
    by = "by=network,district,change"
    with urllib.request.urlopen(f"{base}/changes/summary?from=2022-07-01&to=2023-06-30&{by}") as answer:
        assert json.loads(summary.stdout) == json.load(answer)
    log = (tmp_path / "server.log").read_text()
    assert "GET /changes?" in log and "GET /changes/summary?" in log
    refused = cim("changes", "--store", str(path), "--from", "2023-07-01", "--to", "2023-01-01")
    assert refused.returncode == 2 and refused.stderr.startswith("error: from 2023-07-01 — is after to 2023-01-01")
