"""``--as-of`` on the command line (issue 26): the read commands answer from the model as of a day, here and through
a running server alike; ``cim build --as-of`` tiles the city of that day; bad days are one ``error:`` line, exit 2."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cim.gis.mapping import LayerMapping
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from tests.api.conftest import cim_serve
from tests.api.past_city import MID_2022, MID_2023, build_history
from tests.cli.test_read_commands import cim

TOKEN = "as-of-token"


def answer(*args: str, env: dict[str, str] | None = None) -> Any:
    done = cim(*args, "--json") if env is None else _cim_env(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _cim_env(env: dict[str, str], *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )  # fmt: skip


@pytest.fixture
def history_url(store_url: str) -> str:
    with open_store(store_url) as store:
        build_history(store)
    return store_url


def reads(url: str, as_of: str | None) -> dict[str, Any]:
    day = ["--as-of", as_of] if as_of else []
    lifts = answer("query", "old-lifts", "--store", url, *day)
    pipes = answer("query", "buried-pipes", "--store", url, "--bbox", "121.49,31.22,121.56,31.25",
                   "--network", "gas", "--older-than", "30", *day)  # fmt: skip
    near = answer("query", "within-distance", "--store", url, "--kind", "building", "--near", "park",
                  "--distance", "500", *day)  # fmt: skip
    signs = {i["id"]: i["value"] for i in answer("indicators", "--store", url, *day)["indicators"]}
    return {
        "lifts": [lift["id"] for b in lifts["buildings"] for lift in b["lifts"]],
        "pipes": [p["id"] for p in pipes["pipes"]],
        "near": [a["id"] for a in near["assets"]],
        "old_lifts": signs["old_lifts"],
    }


THEN = {"lifts": ["L1"], "pipes": ["p1", "p2"], "near": [], "old_lifts": 1}
NOW = {"lifts": [], "pipes": [], "near": ["b1"], "old_lifts": 0}


def test_read_commands_as_of_a_day_answer_from_the_model_then(history_url: str) -> None:
    assert reads(history_url, MID_2022) == THEN
    assert reads(history_url, MID_2023) == reads(history_url, None) == NOW


def test_read_commands_through_the_server_holding_the_store_answer_the_same(tmp_path: Path) -> None:
    url = str(tmp_path / "city.duckdb")
    with open_store(url) as store:
        build_history(store)
    (tmp_path / "tiles").mkdir()
    with cim_serve(url, tmp_path / "tiles", tmp_path / "server.log"):
        assert reads(url, MID_2022) == THEN
        assert reads(url, None) == NOW
        done = cim("query", "old-lifts", "--store", url, "--as-of", "2021-06-30")
        assert (done.returncode, done.stderr.count("\n")) == (2, 1)
        assert done.stderr.startswith("error: as_of 2021-06-30 — is before the model's history")


@pytest.mark.parametrize(
    ("day", "message"),
    [
        ("2999-01-01", "error: as_of 2999-01-01 — is in the future"),
        ("2021-06-30", "error: as_of 2021-06-30 — is before the model's history, which begins 2022-01-01"),
        ("last-year", "error: --as-of 'last-year' — is not a date (YYYY-MM-DD)"),
    ],
)
@pytest.mark.parametrize(
    "command", [["indicators"], ["query", "old-lifts"], ["query", "within-distance", "--kind", "building",
                                                           "--near", "park", "--distance", "9"]]
)  # fmt: skip
def test_a_bad_day_is_one_error_line_and_exit_2(history_url: str, command: list[str], day: str, message: str) -> None:
    done = cim(*command, "--store", history_url, "--as-of", day)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


# --- cim build --as-of ---

B1 = [[121.500, 31.250], [121.501, 31.250], [121.501, 31.251], [121.500, 31.251], [121.500, 31.250]]


def buildings_file(path: Path, *names: str) -> Path:
    """A GeoJSON layer of square buildings, each its own 100 m east of the last, by id."""
    features = []
    for name in names:
        n = int(name[1:])
        ring = [[x + (n - 1) * 0.001, y] for x, y in B1]
        features.append({"type": "Feature", "id": name, "properties": {"id": name, "height": 20},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture
def city_with_meshes(tmp_path: Path) -> Iterator[str]:
    """2022: buildings b1, b2. 2023: b2 demolished (its mesh gone with it), b3 built."""
    url = str(tmp_path / "city.duckdb")
    mapping = LayerMapping(kind=Kind.BUILDING, id=["id"])
    with open_store(url) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        for year, names in ((2022, ("b1", "b2")), (2023, ("b1", "b3"))):
            layer = buildings_file(tmp_path / "buildings.geojson", *names)
            write_source(store, layer, mapping=mapping, meshes=meshes, at=datetime(year, 1, 1, tzinfo=UTC))
    yield url


def built(url: str, out: Path, *day: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    args = ["build", "--store", url, "--out", str(out), "--compress", "none", *day]
    result: dict[str, Any] = answer(*args, env=env)
    return result


def features(result: dict[str, Any]) -> int:
    return sum(group["features"] for group in result["tilesets"].values())


def test_build_as_of_a_day_tiles_the_city_then_and_counts_meshes_gone(city_with_meshes: str, tmp_path: Path) -> None:
    now = built(city_with_meshes, tmp_path / "tiles" / "now")
    assert (features(now), now["without_mesh"], now["as_of"]) == (2, 0, None)
    then = built(city_with_meshes, tmp_path / "tiles" / "then", "--as-of", MID_2022)
    assert (features(then), then["without_mesh"], then["as_of"]) == (1, 1, MID_2022)  # b2's mesh went with it
    # over the current version: only tiles whose rows and meshes hash the same are reused
    over = built(city_with_meshes, tmp_path / "tiles" / "now", "--as-of", MID_2022)
    assert (features(over), over["without_mesh"]) == (1, 1)
    back = built(city_with_meshes, tmp_path / "tiles" / "now")
    assert (features(back), back["without_mesh"]) == (2, 0)


def test_build_as_of_into_a_served_folder_is_refused_unless_the_server_builds_it(
    city_with_meshes: str, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with cim_serve(city_with_meshes, served, tmp_path / "server.log", env={"CIM_WRITE_TOKEN": TOKEN}) as base:
        assert (served / ".cim-server.json").is_file()
        # the server holds the DuckDB store: the build is its job, swapped in like any build
        job = built(city_with_meshes, served / "city", "--as-of", MID_2022, env={"CIM_WRITE_TOKEN": TOKEN})
        assert (features(job), job["without_mesh"]) == (1, 1)
        # a build here (another copy of the store, not held) into the served folder is refused, nothing written
        copy = tmp_path / "copy.duckdb"
        copy.write_bytes(Path(city_with_meshes).read_bytes())
        Path(mesh_path_for(str(copy))).write_bytes(Path(mesh_path_for(city_with_meshes)).read_bytes())
        done = cim("build", "--store", str(copy), "--out", str(served / "past"), "--as-of", MID_2022)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"error: --out {served / 'past'} — is in the tiles folder {served}")
        assert base in done.stderr and not (served / "past").exists()
    assert not (served / ".cim-server.json").exists()
