"""The GeoPackage export read back by pyogrio and by GDAL's own ogrinfo: every kind a layer, the typed columns and
props kept, EPSG:4326, a selection by kind and bbox, and nothing left at --out when the export fails."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyogrio
import pytest
import shapely

from cim.errors import InvalidInput
from cim.export import writer
from cim.export.gpkg import write_gpkg
from cim.model import Kind
from cim.store import Store
from tests.export.city import DX, DY, LAT, LON, buildings, write_city


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A folder of the export's own (the DuckDB store lies in tmp_path)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_every_kind_is_a_layer_with_its_features(store: Store, out_dir: Path) -> None:
    write_city(store)
    out = out_dir / "city.gpkg"
    summary = writer("gpkg")(store, None, out)
    assert summary.objects == {"building": 6, "element": 3, "pipe": 2, "park": 1, "pole": 1}
    assert summary.files == [str(out)]
    layers = {name: kind for name, kind in pyogrio.list_layers(out)}
    assert set(layers) == {"building", "element", "pipe", "park", "pole"}
    for name, count in summary.objects.items():
        assert pyogrio.read_info(out, layer=name)["features"] == count
        assert pyogrio.read_info(out, layer=name)["crs"] == "EPSG:4326"
    assert [p.name for p in out_dir.iterdir()] == ["city.gpkg"]  # no partial file left beside it


def test_a_building_keeps_its_typed_columns_props_and_footprint(store: Store, out_dir: Path) -> None:
    write_city(store)
    out = out_dir / "city.gpkg"
    write_gpkg(store, None, out)
    frame = pyogrio.read_dataframe(out, layer="building").set_index("id")
    row = frame.loc["b-box"]
    box = buildings()[0]
    assert row["name"] == "方塊 Box" and row["storeys"] == 10 and row["status"] == "in_use"
    assert row["z_min"] == 4.0 and row["z_max"] == 34.0 and row["height_m"] == 30.0
    assert row["material"] == "concrete" and row["source"] == "test"
    assert str(row["install_date"])[:10] == "1990-05-01"
    assert json.loads(row["props"]) == box.props
    assert shapely.equals_exact(row["geometry"], box.geom, tolerance=1e-9)
    # a column that cannot apply to a kind is left out; the pipe layer has the network columns
    assert "network" not in frame.columns
    pipes = pyogrio.read_dataframe(out, layer="pipe").set_index("id")
    assert pipes.loc["pipe-1", "network"] == "gas" and pipes.loc["pipe-1", "diameter_mm"] == 300.0
    assert pipes.loc["pipe-1", "depth_m"] == 1.5 and pipes.loc["pipe-2", "network"] == "water"


def test_gdal_ogrinfo_reads_the_layers_and_a_feature(store: Store, out_dir: Path) -> None:
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        pytest.fail("ogrinfo is missing: install gdal-bin (scripts/env.sh ensure_gdal)")
    write_city(store)
    out = out_dir / "city.gpkg"
    write_gpkg(store, None, out)
    listed = subprocess.run([ogrinfo, "-ro", "-q", str(out)], capture_output=True, text=True, check=True).stdout
    assert listed.split() == ["1:", "building", "2:", "element", "3:", "pipe", "4:", "park", "5:", "pole"]
    feature = subprocess.run(
        [ogrinfo, "-ro", "-q", str(out), "pipe", "-where", "id = 'pipe-1'"], capture_output=True, text=True, check=True
    ).stdout
    assert "network (String) = gas" in feature
    assert "diameter_mm (Real) = 300" in feature
    assert "install_date (Date) = 1975/01/01" in feature
    assert "LINESTRING (121.47 31.22982" in feature
    summary = subprocess.run([ogrinfo, "-ro", "-so", str(out), "pole"], capture_output=True, text=True, check=True)
    assert "Feature Count: 1" in summary.stdout and 'ID["EPSG",4326]' in summary.stdout


def test_kinds_and_bbox_select_what_is_written(store: Store, out_dir: Path) -> None:
    write_city(store)
    out = out_dir / "some.gpkg"
    west_of_twin = (LON - 0.5 * DX, LAT - 3 * DY, LON + 5 * DX, LAT + 9 * DY)
    summary = write_gpkg(store, None, out, kinds=[Kind.BUILDING, Kind.PIPE], bbox=west_of_twin)
    assert summary.objects == {"building": 4, "pipe": 2}  # box, court, main, garage; both pipes start inside
    ids = set(pyogrio.read_dataframe(out, layer="building")["id"])
    assert ids == {"b-box", "b-court", "b-main", "b-main-garage"}


def test_an_empty_selection_is_refused_and_writes_nothing(store: Store, out_dir: Path) -> None:
    write_city(store)
    out = out_dir / "none.gpkg"
    with pytest.raises(InvalidInput, match="holds no assets"):
        write_gpkg(store, None, out, kinds=[Kind.HYDRANT])
    assert not out.exists() and not list(out_dir.iterdir())


def test_a_failed_export_leaves_the_previous_file_whole(store: Store, out_dir: Path) -> None:
    write_city(store)
    out = out_dir / "city.gpkg"
    write_gpkg(store, None, out, kinds=[Kind.POLE])
    before = out.read_bytes()
    # the store goes away under the export: the GeoPackage is not replaced by half a file
    store.close()
    with pytest.raises(Exception):  # noqa: B017 - whichever error the closed store raises
        write_gpkg(store, None, out)
    assert out.read_bytes() == before
    assert [p.name for p in out_dir.iterdir() if p.name.endswith(".gpkg")] == ["city.gpkg"]
