"""Pipelines: real sources ingested, unchanged sources skipped, failures reported while the rest runs, typos named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cim.errors import InvalidInput
from cim.pipeline.model import load_pipeline
from cim.pipeline.run import run_pipeline


def write_pipeline(folder: Path, data_dir: Path, store_url: str, *, extra: str = "") -> Path:
    mapping = folder / "hydrants.toml"
    if not mapping.exists():
        shutil.copy("pipelines/mappings/cambridge-hydrants.toml", mapping)
    path = folder / "city.toml"
    path.write_text(
        f"""
name = "test-city"
store = {json.dumps(store_url)}
tiles = {json.dumps(str(folder / "tiles"))}

[[gis]]
path = {json.dumps(str(data_dir / "gis/Helsinki.osm.pbf"))}
preset = "osm-buildings"

[[gis]]
path = {json.dumps(str(data_dir / "gis/INFRA_Hydrants.geojson"))}
map = "hydrants.toml"

[[cityjson]]
path = {json.dumps(str(data_dir / "cityjson/rotterdam_subset.city.json"))}
crs = "EPSG:7415"

[[places]]
name = "Lujiazui"
lon = 121.5055
lat = 31.2397
{extra}
""",
        encoding="utf-8",
    )
    return path


def test_a_pipeline_ingests_every_source_and_builds_tiles_then_skips_what_did_not_change(
    store_url: str, tmp_path: Path, data_dir: Path
) -> None:
    pipeline = load_pipeline(write_pipeline(tmp_path, data_dir, store_url))
    first = run_pipeline(pipeline)
    assert first.ok
    assert [s.assets for s in first.sources] == [{"building": 482}, {"hydrant": 1960}, {"building": 16}]
    assert first.tiles is not None and (tmp_path / "tiles" / "tileset.json").is_file()
    assert first.tiles["tilesets"]["buildings"]["features"] == 482 + 16

    second = run_pipeline(pipeline)
    assert [s.skipped for s in second.sources] == [True, True, True]
    assert second.tiles is None  # nothing changed: the published tiles stay

    mapping = tmp_path / "hydrants.toml"
    mapping.write_text(mapping.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    third = run_pipeline(pipeline)
    assert [s.skipped for s in third.sources] == [True, False, True]  # only the source whose mapping changed


def test_a_failing_source_is_reported_and_the_others_still_run(store_url: str, tmp_path: Path, data_dir: Path) -> None:
    extra = f"""
[[cityjson]]
path = {json.dumps(str(tmp_path / "missing.city.json"))}

[[ifc]]
path = {json.dumps(str(tmp_path / "not-ifc.ifc"))}
"""
    (tmp_path / "not-ifc.ifc").write_text("hello, I am not IFC", encoding="utf-8")
    summary = run_pipeline(load_pipeline(write_pipeline(tmp_path, data_dir, store_url, extra=extra)))
    assert not summary.ok
    failed = [s for s in summary.sources if not s.ok]
    assert [Path(s.path).name for s in failed] == ["missing.city.json", "not-ifc.ifc"]
    assert all(s.error and Path(s.path).name in s.error for s in failed)
    assert sum(sum(s.assets.values()) for s in summary.sources if s.ok) == 482 + 1960 + 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\n\n[[gis]]\npth = "a.geojson"\nkind = "park"\n', r"gis\.0\.pth \(line 4\): unknown key"),
        ('name = "x"\nstroe = "a.duckdb"\n', r"stroe \(line 2\): unknown key"),
        ('name = "x"\n[[gis]]\npath = "a.geojson"\n', "give exactly one of map, preset, kind or mapping"),
        ('name = "x"\n[[places]]\nname = "far"\nlon = 200\nlat = 0\n', r"places\.0\.lon \(line 4\)"),
        ('name = "x"\n[synth\n', "is not valid TOML"),
    ],
)
def test_a_bad_pipeline_file_names_the_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        load_pipeline(path)


def test_the_demo_pipeline_merges_its_bim_tower_into_the_cadastre_footprint(tmp_path: Path) -> None:
    from cim.model import Kind
    from cim.queries import old_lifts
    from cim.store import AssetQuery, open_store

    path = tmp_path / "demo.toml"
    store_path = tmp_path / "demo.duckdb"
    path.write_text(
        f'name = "demo"\nstore = "{store_path}"\ntiles = "{tmp_path / "tiles" / "demo"}"\n'
        f'[synth]\nout = "{tmp_path / "synth"}"\nbuildings = 300\nseed = 3\ntowers = 1\n',
        encoding="utf-8",
    )
    summary = run_pipeline(load_pipeline(path))
    assert summary.ok and summary.merge is not None
    assert [m["gis_id"] for m in summary.merge["matched"]] == ["tower_plots:TP-LJZ-0000"]
    assert summary.tiles is not None  # the merged plot's LOD1 block is not drawn: the BIM tower is its shape
    assert summary.tiles["tilesets"]["buildings"]["features"] == 300
    with open_store(str(store_path)) as store:
        # the tower counted once, and Lujiazui's four landmarks (BIM with no GIS record to merge into)
        assert store.count_assets(AssetQuery(kinds=[Kind.BUILDING])) == 300 + 1 + 4
        lifts = old_lifts(store, years=0)
        tower = [b for b in lifts["buildings"] if b["id"] == "tower_plots:TP-LJZ-0000"]
        assert tower and all(not lift["id"].startswith("lifts:") for lift in tower[0]["lifts"])  # its BIM lifts


def test_pipeline_sensors_are_declared_and_rules_set_thresholds_by_quantity(
    store_url: str, tmp_path: Path, data_dir: Path
) -> None:
    from cim.iot.sensors import load_sensors

    extra = """
[[sensors]]
id = "hyd-pressure-1"
parent = "INFRA_Hydrants:1"
quantity = "water_pressure"
unit = "kPa"
thresholds = { below = 150 }

[[sensors]]
id = "hyd-pressure-2"
parent = "INFRA_Hydrants:2"
quantity = "water_pressure"
lon = 121.5
lat = 31.2

[[sensors]]
id = "orphan"
parent = "nowhere:1"
quantity = "water_pressure"

[[rules]]
quantity = "water_pressure"
below = 200
stale_s = 900
severity = "critical"
"""
    summary = run_pipeline(load_pipeline(write_pipeline(tmp_path, data_dir, store_url, extra=extra)))
    assert summary.sensors["declared"] == 2 and summary.sensors["ruled"] == 2
    assert summary.sensors["errors"] == ["sensor 'orphan' — watches 'nowhere:1', which is not in the store"]
    assert not summary.ok
    from cim.store import open_store

    with open_store(store_url) as store:
        sensors = load_sensors(store)
        assert sensors["hyd-pressure-1"].thresholds == {"below": 150, "stale_s": 900, "severity": "critical"}
        assert sensors["hyd-pressure-2"].thresholds == {"below": 200, "stale_s": 900, "severity": "critical"}
        assert sensors["hyd-pressure-1"].parent_kind == "hydrant"
        assert store.get_asset("hyd-pressure-2").geom.x == 121.5


def test_a_generated_city_is_reused_only_when_this_generator_version_wrote_it_as_asked() -> None:
    from cim.pipeline.model import SynthSource
    from cim.pipeline.run import written_as_asked
    from cim.synth.generate import GENERATOR_VERSION

    asked = SynthSource(buildings=500, seed=7, towers=1)
    manifest = {
        "generator": GENERATOR_VERSION,
        "seed": 7,
        "buildings": 500,
        "towers": ["tower-1.ifc"],
        "landmarks": ["landmark-jin-mao.ifc"],
    }
    assert written_as_asked(manifest, asked)
    assert not written_as_asked({**manifest, "landmarks": []}, asked)  # written without the landmarks asked for
    assert not written_as_asked({**manifest, "generator": GENERATOR_VERSION - 1}, asked)  # an older generator
    assert not written_as_asked({k: v for k, v in manifest.items() if k != "generator"}, asked)  # before versions
    assert not written_as_asked({**manifest, "seed": 8}, asked)
    assert not written_as_asked({**manifest, "buildings": 501}, asked)
