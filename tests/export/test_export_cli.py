"""``cim export`` as a user runs it: the files it writes read back, its summary as a table and as JSON, one clear
line for each bad option, and an export killed half-way leaves nothing at --out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyogrio
import pytest
import shapely

from cim.cli import main
from cim.model import AssetBatch
from cim.store import open_store
from tests.export.city import write_city


def cim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cim", "export", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "220"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small city, written once: the tests only read it."""
    path = tmp_path_factory.mktemp("export-cli") / "city.duckdb"
    with open_store(str(path)) as store:
        write_city(store)
    return path


def test_gpkg_and_cityjson_are_written_and_summarised(city: Path, tmp_path: Path) -> None:
    gpkg = tmp_path / "city.gpkg"
    done = cim("--format", "gpkg", "--out", str(gpkg), "--store", str(city), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["format"] == "gpkg" and summary["out"] == str(gpkg)
    assert summary["objects"] == {"building": 6, "element": 3, "pipe": 2, "park": 1, "pole": 1}
    assert pyogrio.read_info(gpkg, layer="pipe")["features"] == 2

    cityjson = tmp_path / "city.city.json"
    done = cim("-f", "cityjson", "-o", str(cityjson), "-s", str(city), "--kind", "building", "--crs", "EPSG:32651")
    assert done.returncode == 0, done.stderr
    assert "building" in done.stdout and "written as 5 Building, 3 BuildingPart" in done.stdout
    assert str(cityjson) in done.stdout
    assert json.loads(cityjson.read_text(encoding="utf-8"))["version"] == "2.0"


def test_every_summary_counts_the_store_s_kinds_and_the_city_object_types_apart(city: Path, tmp_path: Path) -> None:
    summaries = {}
    for fmt, name in (("cityjson", "city.city.json"), ("citygml", "city.gml")):
        done = cim("-f", fmt, "-o", str(tmp_path / name), "-s", str(city), "--crs", "EPSG:32651", "--json")
        assert done.returncode == 0, done.stderr
        summaries[fmt] = json.loads(done.stdout)
    # the garage is a building, the part and the wing are elements the importers kept as BuildingParts
    assert summaries["cityjson"]["objects"] == summaries["citygml"]["objects"] == {"building": 6, "element": 2}
    assert summaries["cityjson"]["types"] == summaries["citygml"]["types"] == {"Building": 5, "BuildingPart": 3}
    assert 'srsName="http://www.opengis.net/def/crs/EPSG/0/32651"' in (tmp_path / "city.gml").read_text("utf-8")


def test_bbox_and_kind_narrow_the_export(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "pipes.gpkg"
    done = cim("-f", "gpkg", "-o", str(out), "-s", str(city), "-k", "pipe,pole", "--bbox", "121.4,31.2,121.5,31.3")
    assert done.returncode == 0, done.stderr
    assert [name for name, _ in pyogrio.list_layers(out)] == ["pipe", "pole"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "shapefile", "-o", "x.shp"], "error: --format 'shapefile' — use one of gpkg, cityjson, citygml, ifc"),
        (["-f", "gpkg", "-o", "no/such/folder/x.gpkg"], "does not exist"),
        (["-f", "gpkg", "-o", "."], "is a folder"),
        (["-f", "gpkg", "-o", "x.gpkg", "--kind", "house"], "error: --kind 'house' — is not a kind"),
        (["-f", "gpkg", "-o", "x.gpkg", "--bbox", "121,31,122"], "error: --bbox '121,31,122' — must be four numbers"),
        (["-f", "gpkg", "-o", "x.gpkg", "--bbox", "122,31,121,32"], "west ≤ east"),
        (
            ["-f", "gpkg", "-o", "x.gpkg", "--crs", "EPSG:32651"],
            "error: --crs EPSG:32651 — applies to --format cityjson or citygml only",
        ),
        (
            ["-f", "cityjson", "-o", "x.json", "--crs", "EPSG:4326"],
            "error: --crs 'EPSG:4326' — must be a projected CRS",
        ),
        (["-f", "citygml", "-o", "x.gml", "--crs", "EPSG:4326"], "error: --crs 'EPSG:4326' — must be a projected CRS"),
        (["-f", "citygml", "-o", "x.gml", "--crs", "EPSG:2263"], "in metres"),  # New York, in US feet
        (["-f", "citygml", "-o", "x.gml", "--crs", "no-such"], "error: --crs 'no-such' — is not a CRS pyproj knows"),
        (["-f", "cityjson", "-o", "x.json", "--kind", "pipe"], "error: --kind pipe — CityJSON export holds buildings"),
        (["-f", "gpkg", "-o", "x.gpkg", "--kind", "hydrant"], "holds no assets: nothing to export"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(
    city: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "220")
    with pytest.raises(SystemExit) as exited:  # in this process: a subprocess each cost 2 s
        main(["export", *args, "--store", str(city)])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("x.")]


def test_an_existing_file_is_kept_unless_forced(city: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.gpkg"
    out.write_bytes(b"mine")
    done = cim("-f", "gpkg", "-o", str(out), "-s", str(city))
    assert done.returncode == 2 and "exists already" in done.stderr and out.read_bytes() == b"mine"
    done = cim("-f", "gpkg", "-o", str(out), "-s", str(city), "--force")
    assert done.returncode == 0, done.stderr
    assert pyogrio.read_info(out, layer="building")["features"] == 6


def test_an_export_killed_half_way_leaves_nothing_at_out(tmp_path: Path) -> None:
    store = tmp_path / "big.duckdb"
    with open_store(str(store)) as opened:
        opened.replace_source("boxes", [_boxes(40_000)])
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "big.city.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "cim", "export", "-f", "cityjson", "-o", str(out), "-s", str(store), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _writing(folder):
            assert process.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not out.exists()
    assert all(p.name.startswith(".") for p in folder.iterdir())  # at most a hidden partial file
    # and the next export, not killed, writes it whole
    done = cim("-f", "cityjson", "-o", str(out), "-s", str(store))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text(encoding="utf-8"))["CityObjects"]) == 40_000


def _writing(folder: Path) -> bool:
    """Whether an export has begun writing its partial file in ``folder``."""
    for path in folder.iterdir():
        try:
            if path.name.endswith(".partial.json") and path.stat().st_size > 0:
                return True
        except FileNotFoundError:  # renamed meanwhile: the export is done (the caller sees it has ended)
            pass
    return False


def _boxes(n: int) -> AssetBatch:
    i = np.arange(n)
    x, y = 121.3 + (i % 300) * 0.0003, 31.1 + (i // 300) * 0.0003
    polygons = shapely.box(x, y, x + 0.0002, y + 0.0002)
    return AssetBatch.from_table(
        pa.table(
            {
                "id": pa.array([f"b{k:06d}" for k in range(n)]),
                "kind": pa.array(["building"] * n),
                "source": pa.array(["boxes"] * n),
                "geom": pa.array(shapely.to_wkb(polygons)),
                "z_min": np.full(n, 4.0),
                "z_max": 10.0 + (i % 50),
            }
        )
    )


@pytest.mark.parametrize("fmt", ["cityjson", "citygml"])
def test_a_selection_wider_than_a_utm_zone_needs_a_crs(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shanghai and Delft in one store: the UTM zone of their centre (mid-Asia) would bend both; the user is asked
    for a CRS, and with one given the export goes through."""
    store = tmp_path / "two-cities.duckdb"
    boxes = _boxes(2).table
    shanghai_and_delft = [shapely.box(121.47, 31.23, 121.4702, 31.2302), shapely.box(4.36, 52.0, 4.3602, 52.0002)]
    boxes = boxes.set_column(boxes.schema.get_field_index("geom"), "geom", pa.array(shapely.to_wkb(shanghai_and_delft)))
    with open_store(str(store)) as opened:
        opened.upsert_assets(AssetBatch.from_table(boxes))
    monkeypatch.setenv("COLUMNS", "220")
    with pytest.raises(SystemExit) as exited:
        main(["export", "--format", fmt, "--out", str(tmp_path / f"x.{fmt}"), "--store", str(store)])
    stderr = capsys.readouterr().err
    assert exited.value.code == 2 and "spans longitudes 4.36…121.47" in stderr and "--crs" in stderr, stderr
    assert "Traceback" not in stderr and not (tmp_path / f"x.{fmt}").exists()
    given = cim("--format", fmt, "--out", str(tmp_path / f"y.{fmt}"), "--store", str(store), "--crs", "EPSG:3857")
    assert given.returncode == 0 and (tmp_path / f"y.{fmt}").stat().st_size > 0, given.stderr
