"""The read commands (``cim info``, ``cim indicators``, ``cim render``, ``cim query …``) never create a store, and ask
the running server when it holds the DuckDB file or ``--server`` names one, printing what the API answers."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cim.store import open_store
from tests.api.city import AREA, AS_OF, build_city
from tests.api.conftest import cim_serve

#: Each read command, as a user would type it without --store.
READS = {
    "info": ["info"],
    "indicators": ["indicators"],
    "old-lifts": ["query", "old-lifts"],
    "buried-pipes": ["query", "buried-pipes", "--bbox", ",".join(map(str, AREA))],
    "within-distance": ["query", "within-distance", "--kind", "building", "--near", "park", "--distance", "100"],
    "render": ["render", "b1", "--out", "never.png"],
    "aggregate": ["query", "aggregate", "pipe", "--group-by", "network"],
}


def cim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )  # fmt: skip


@pytest.fixture
def city_file(tmp_path: Path) -> Path:
    path = tmp_path / "city.duckdb"
    with open_store(str(path)) as store:
        build_city(store)
    return path


@pytest.fixture
def serving(city_file: Path, tmp_path: Path) -> Iterator[str]:
    """``cim serve`` holding the DuckDB file (and announcing itself beside it): its base URL."""
    (tmp_path / "tiles").mkdir()
    with cim_serve(str(city_file), tmp_path / "tiles", tmp_path / "server.log") as base:
        yield base


def api(base: str, path: str) -> object:
    with urllib.request.urlopen(base + path) as answer:
        return json.load(answer)


@pytest.mark.parametrize("command", READS)
def test_a_read_of_a_store_that_does_not_exist_is_refused_and_creates_nothing(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "data" / "nowhere.duckdb"
    done = cim(*READS[command], "--store", str(missing), cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"error: store {missing} — does not exist: name an existing one with --store")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "never.png").exists()


def test_the_default_store_is_not_created_by_a_read(tmp_path: Path) -> None:
    done = cim("query", "old-lifts", "--json", cwd=tmp_path)  # default data/city.duckdb, relative to here
    assert done.returncode == 2 and "data/city.duckdb — does not exist" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgis
def test_a_postgis_schema_without_tables_is_refused_and_not_created(postgis_schema_url: str) -> None:
    done = cim("query", "old-lifts", "--store", postgis_schema_url, "--json")
    assert done.returncode == 2 and "holds no cim tables" in done.stderr and "--store" in done.stderr
    base, _, schema = postgis_schema_url.partition("?schema=")
    with psycopg.connect(base) as con:
        assert con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is None


@pytest.mark.postgis
def test_a_postgis_store_with_its_tables_is_read(postgis_schema_url: str) -> None:
    with open_store(postgis_schema_url) as store:
        build_city(store)
    done = cim("query", "old-lifts", "--store", postgis_schema_url, "--as-of", AS_OF.isoformat(), "--json")
    assert done.returncode == 0, done.stderr
    assert [b["id"] for b in json.loads(done.stdout)["buildings"]] == ["b1"]


def test_queries_go_to_the_server_that_holds_the_duckdb_file(serving: str, city_file: Path, tmp_path: Path) -> None:
    as_of = AS_OF.isoformat()
    lifts = cim("query", "old-lifts", "--store", str(city_file), "--as-of", as_of, "--json")
    assert lifts.returncode == 0, lifts.stderr  # the file is held by the server: only it could answer
    assert json.loads(lifts.stdout) == api(serving, f"/queries/old-lifts?as_of={as_of}")
    near = cim(*READS["within-distance"], "--store", str(city_file), "--json")
    assert json.loads(near.stdout) == api(serving, "/queries/within-distance?kind=building&near=park&distance=100")
    log = (tmp_path / "server.log").read_text()
    assert "GET /queries/old-lifts?" in log and "GET /queries/within-distance?" in log


def test_the_server_answers_what_the_store_answers_here(serving: str, city_file: Path, tmp_path: Path) -> None:
    area = tmp_path / "area.geojson"
    west, south, east, north = AREA
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    asked = [
        ["query", "old-lifts", "--as-of", AS_OF.isoformat()],
        ["query", "buried-pipes", "--area", str(area), "--network", "gas", "--as-of", AS_OF.isoformat()],
        ["query", "buried-pipes", "--bbox", ",".join(map(str, AREA)), "--deeper-than", "2"],
        ["query", "within-distance", "--kind", "transit_stop", "--near", "park", "--distance", "50", "--beyond"],
        ["query", "aggregate", "pipe", "--group-by", "network,age_band", "--as-of", AS_OF.isoformat()],
    ]
    remote = [cim(*args, "--server", serving, "--store", str(tmp_path / "absent.duckdb"), "--json") for args in asked]
    assert all(done.returncode == 0 for done in remote), [done.stderr for done in remote]
    assert not (tmp_path / "absent.duckdb").exists()  # with --server the store is the server's
    copy = tmp_path / "copy.duckdb"
    with open_store(str(copy)) as store:
        build_city(store)
    local = [cim(*args, "--store", str(copy), "--json") for args in asked]
    assert [_answer(done) for done in remote] == [_answer(done) for done in local]


def _answer(done: subprocess.CompletedProcess[str]) -> object:
    """A command's JSON answer without the moment it was computed (an aggregate says when)."""
    answer = json.loads(done.stdout)
    if isinstance(answer, dict):
        answer.pop("computed_at", None)
    return answer


def test_a_picture_and_the_vital_signs_come_from_the_server(serving: str, city_file: Path, tmp_path: Path) -> None:
    signs = cim("indicators", "--store", str(city_file), "--json")
    assert signs.returncode == 0, signs.stderr
    assert json.loads(signs.stdout)["indicators"] == api(serving, "/indicators")["indicators"]  # type: ignore[index]
    out = tmp_path / "b1.png"
    drawn = cim("render", "b1", "--out", str(out), "--width", "128", "--height", "96", "--server", serving)
    if drawn.returncode != 0 and "render" in drawn.stderr.lower() and "unavailable" in drawn.stderr.lower():
        pytest.skip(f"the server cannot render here: {drawn.stderr.strip()}")
    assert drawn.returncode == 0, drawn.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


def test_the_servers_refusal_is_the_same_error_line(serving: str) -> None:
    done = cim(
        "query", "within-distance", "--kind", "building", "--near", "park", "--distance", "-1", "--server", serving
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "distance" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_that_does_not_answer_is_named(tmp_path: Path) -> None:
    done = cim("query", "old-lifts", "--server", "http://127.0.0.1:9")
    assert done.returncode == 2 and done.stderr.startswith("error: server http://127.0.0.1:9 — does not answer")


def test_a_file_held_by_a_process_that_announced_no_server_is_busy_and_the_error_names_server(city_file: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(city_file)!r}); print(1); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"  # it holds the file now
        done = cim("query", "old-lifts", "--store", str(city_file))
    finally:
        holder.communicate("", timeout=30)
    assert done.returncode == 2 and "is busy" in done.stderr and "--server URL" in done.stderr
