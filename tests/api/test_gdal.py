"""GDAL's OGC API – Features client (Debian's gdal-bin, 3.6) against a live ``cim serve``, on both stores: the layer
it makes (count, geometry type, typed fields), a ``-where`` it sends to the server, a copy to GeoPackage."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from cim.model import Asset, AssetBatch, Kind
from cim.store import open_store
from tests.api.test_ogc_features import CHARGERS, HYDRANTS
from tests.conftest import missing_service


@pytest.fixture
def city_url(city_url: str) -> str:
    with open_store(city_url) as store:
        store.upsert_assets(AssetBatch.from_assets(HYDRANTS + CHARGERS))
        # the mixed kind's polygon sorts first by id, as the demo city's IFC lifts do
        store.upsert_assets(
            AssetBatch.from_assets([Asset(id="a-charging-park", kind=Kind.CHARGER, geom=CHARGERS[2].geom)])
        )
    return city_url


def _gdal(tool: str, *args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    path = shutil.which(tool)
    if path is None:
        missing_service(f"{tool} (Debian package gdal-bin) is not installed")
    assert path is not None
    options = ["--config", "CPL_DEBUG", "ON"] if debug else []
    done = subprocess.run([path, *args, *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _fetched(stderr: str) -> list[str]:
    """The URLs GDAL fetched, from its CPL_DEBUG output."""
    return re.findall(r"HTTP: Fetch\((.*?)\)$", stderr, flags=re.MULTILINE)


def _summary(base: str, layer: str) -> str:
    return _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{base}", layer).stdout


def test_gdal_layers_have_the_count_geometry_type_and_typed_fields(live_server: tuple[str, Path]) -> None:
    base, _ = live_server
    pipes = _summary(base, "pipe")
    assert "Feature Count: 6" in pipes and "Geometry: Line String" in pipes
    assert re.search(r"install_date: Date", pipes) and re.search(r"depth_m: Real", pipes)
    buildings = _summary(base, "building")
    assert "Feature Count: 3" in buildings and "Geometry: Polygon" in buildings
    assert re.search(r"storeys: Integer", buildings) and re.search(r"floors: Real", buildings)
    hydrants = _summary(base, "hydrant")
    assert "Geometry: Point" in hydrants and re.search(r"inspected: Date", hydrants)
    assert re.search(r"props\.status: String", hydrants) and re.search(r"working: Integer\(Boolean\)", hydrants)
    chargers = _summary(base, "charger")  # points and polygons: no one type, though a polygon sorts first
    assert "Feature Count: 4" in chargers and "Geometry: Unknown (any)" in chargers


def test_gdal_sends_a_where_to_the_server_in_few_requests(live_server: tuple[str, Path]) -> None:
    base, log = live_server
    done = _gdal("ogrinfo", "-ro", f"OAPIF:{base}", "hydrant", "-where", "pressure_bar > 3.5", debug=True)
    assert "Full filter will be evaluated on client side" not in done.stderr
    assert "Feature Count: 3" in done.stdout
    assert re.findall(r"OGRFeature\(hydrant\):\d+", done.stdout) and done.stdout.count("OGRFeature(hydrant)") == 3
    filtered = [url for url in _fetched(done.stderr) if "filter=" in url]
    assert len(filtered) <= 3, filtered  # the count (resultType=hits), then the features
    assert any("resultType=hits" in url for url in filtered)
    assert "pressure_bar" in log.read_text()  # the server got the filter


def test_gdal_filters_a_date_on_the_server(live_server: tuple[str, Path]) -> None:
    base, _ = live_server
    where = "install_date < '2003-01-01' AND owner = 'water co'"
    done = _gdal("ogrinfo", "-ro", "-q", f"OAPIF:{base}", "hydrant", "-where", where, debug=True)
    assert "evaluated on client side" not in done.stderr  # GDAL writes the date as '2003-01-01T'
    assert done.stdout.count("OGRFeature(hydrant)") == 1 and "hydrant 1" in done.stdout


def test_ogr2ogr_copies_a_collection_to_geopackage_whole(live_server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = live_server
    out = tmp_path / "hydrants.gpkg"
    _gdal("ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{base}", "hydrant")
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT count(*) FROM hydrant").fetchone() == (len(HYDRANTS),)
        row = db.execute("SELECT pressure_bar, inspected, working FROM hydrant WHERE name = 'hydrant 2'").fetchone()
    assert row == (10.0, "2024-02-15", 0)
