"""The demo city's water and Lujiazui's landmarks, checked against places known on the real map."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import ifcopenshell
import numpy as np
import pytest
import shapely

from cim.synth.generate import SynthSummary, generate_city
from cim.synth.landmarks import LANDMARKS, Landmark
from cim.synth.places import DISTRICTS, split_buildings, to_lonlat, to_metres
from tests.synth.conftest import SEED

DEMO_BUILDINGS = 20_000  # the demo pipeline's size: Lujiazui, the North Bund and the new towns by the sea lose blocks
#: Published positions (WGS84, to some tens of metres), independent of cim.synth.landmarks' table.
KNOWN = {
    "Shanghai Tower": (121.5055, 31.2335),
    "Shanghai World Financial Center": (121.5075, 31.2350),
    "Jin Mao Tower": (121.5050, 31.2375),
    "Oriental Pearl Tower": (121.4997, 31.2397),
}
BUND = (121.4900, 31.2400)  # the Bund's riverside buildings
ON_LAND = {"People's Square": (121.4737, 31.2304), "Century Park": (121.5513, 31.2155), "Xujiahui": (121.4365, 31.1886)}
AT_SEA = {"off Nanhui": (122.05, 30.85), "off Wusongkou": (121.52, 31.42), "off Luojing": (121.45, 31.50)}
ASSET_LAYERS = ("buildings", "roads", "pipes", "parks", "nodes", "poles", "metro_exits", "bus_stops", "chargers")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("demo-size")
    return out, generate_city(out=out, buildings=DEMO_BUILDINGS, seed=SEED, towers=3, landmarks=False)


def water(out: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(out / "water.parquet").to_crs("EPSG:32651")


def point(lon: float, lat: float) -> shapely.Point:
    x, y = to_metres([lon], [lat])
    return shapely.Point(float(x[0]), float(y[0]))


def test_water_is_named_and_the_huangpu_flows_between_the_bund_and_the_pearl(city: tuple[Path, SynthSummary]) -> None:
    layer = water(city[0])
    assert dict(zip(layer["name"], layer["name_en"], strict=True)) == {
        "黄浦江": "Huangpu River",
        "长江口": "Yangtze Estuary",
        "杭州湾": "Hangzhou Bay",
        "东海": "East China Sea",
    }
    river = layer.set_index("name_en").geometry["Huangpu River"]
    bund, pearl = point(*BUND), point(*KNOWN["Oriental Pearl Tower"])
    assert not river.contains(bund) and not river.contains(pearl)
    assert shapely.LineString([bund, pearl]).intersects(river)  # you cross the river to get from one to the other
    assert 300 < river.distance(pearl) < 900 and 50 < river.distance(bund) < 400  # on the banks, not inland
    width = river.intersection(shapely.LineString([bund, pearl])).length
    assert 300 < width < 700, width  # the river is about 400 m wide here, crossed at a slant
    estuary = layer.set_index("name_en").geometry["Yangtze Estuary"]
    assert river.distance(estuary) < 1.0  # it flows into the estuary at Wusongkou
    every = shapely.union_all(layer.geometry.values)
    assert not any(every.contains(point(*p)) for p in ON_LAND.values())
    assert all(every.contains(point(*p)) for p in AT_SEA.values())
    assert not any(every.contains(point(d.lon, d.lat)) for d in DISTRICTS)  # the built-up places are on land


def test_no_generated_asset_stands_in_the_water_or_on_a_landmark(demo: tuple[Path, SynthSummary]) -> None:
    out, summary = demo
    wet = shapely.union_all(water(out).geometry.values)
    plots = [point(m.lon, m.lat).buffer(m.plot_m) for m in LANDMARKS]
    for layer in ASSET_LAYERS:
        assets = gpd.read_parquet(out / f"{layer}.parquet").to_crs("EPSG:32651")
        assert len(assets) == summary.layers[layer] > 0
        assert not assets.intersects(wet).any(), f"{layer} in the water: {assets[assets.intersects(wet)].head()}"
        assert not any(assets.intersects(plot).any() for plot in plots), f"{layer} on a landmark's plot"
    towers = gpd.read_parquet(out / "tower_plots.parquet").to_crs("EPSG:32651")
    assert not towers.intersects(wet).any()


def test_each_district_keeps_its_building_count(demo: tuple[Path, SynthSummary]) -> None:
    buildings = gpd.read_parquet(demo[0] / "buildings.parquet")
    counts = buildings["district"].value_counts().to_dict()
    assert counts == dict(zip((d.name for d in DISTRICTS), split_buildings(DEMO_BUILDINGS), strict=True))


@pytest.mark.parametrize("landmark", LANDMARKS, ids=lambda m: m.key)
def test_landmarks_stand_on_land_at_their_places(city: tuple[Path, SynthSummary], landmark: Landmark) -> None:
    out, summary = city
    name = f"landmark-{landmark.key}.ifc"
    assert name in summary.landmarks
    model = ifcopenshell.open(str(out / name))
    building = model.by_type("IfcBuilding")[0]
    assert building.Name == f"{landmark.name} {landmark.name_en}"
    conversion = model.by_type("IfcMapConversion")[0]
    lon, lat = to_lonlat([conversion.Eastings], [conversion.Northings])
    known = KNOWN[landmark.name_en]
    off = math.hypot((lon[0] - known[0]) * 111_320 * math.cos(math.radians(lat[0])), (lat[0] - known[1]) * 110_574)
    assert off < 50, f"{landmark.name_en} is {off:.0f} m from its place"
    wet = shapely.union_all(water(out).geometry.values)
    assert point(float(lon[0]), float(lat[0])).buffer(landmark.plot_m).disjoint(wet)
    lifts = model.by_type("IfcTransportElement")
    assert lifts and all(lift.PredefinedType == "ELEVATOR" for lift in lifts)
    assert 30 <= len(model.by_type("IfcElement")) <= 300  # detailed enough to recognise, small enough to ingest fast
    assert _top(model) == pytest.approx(landmark.height_m, abs=1.0)


def _top(model: ifcopenshell.file) -> float:
    """The highest point of the model's elements, metres above its ground."""
    import ifcopenshell.geom

    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    top = 0.0
    for element in model.by_type("IfcElement"):
        verts = np.asarray(ifcopenshell.geom.create_shape(settings, element).geometry.verts).reshape(-1, 3)
        top = max(top, float(verts[:, 2].max()))
    return top


def test_water_and_landmarks_are_the_same_whatever_the_seed(city: tuple[Path, SynthSummary], tmp_path: Path) -> None:
    out, _ = city
    generate_city(out=tmp_path, buildings=300, seed=SEED + 1, towers=0)
    assert (out / "water.parquet").read_bytes() == (tmp_path / "water.parquet").read_bytes()
    for landmark in LANDMARKS:
        name = f"landmark-{landmark.key}.ifc"
        first, second = (ifcopenshell.open(str(folder / name)).by_type("IfcRoot") for folder in (out, tmp_path))
        assert sorted(e.GlobalId for e in first) == sorted(e.GlobalId for e in second)


def test_the_demo_pipeline_ingests_the_landmarks_as_bim_buildings_and_the_water(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cim.model import Kind
    from cim.pipeline.model import Pipeline, SynthSource
    from cim.pipeline.run import run_pipeline
    from cim.store import AssetQuery, open_store

    store = str(tmp_path / "city.duckdb")
    synth = SynthSource(out=str(tmp_path / "synth"), buildings=200, seed=SEED, towers=0)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the generator names its mappings from the repository
    summary = run_pipeline(Pipeline(name="landmarks", store=store, synth=synth))
    assert all(s.ok for s in summary.sources), [(s.path, s.error) for s in summary.sources if not s.ok]
    with open_store(store) as opened:
        buildings = opened.find_assets(AssetQuery(kinds=[Kind.BUILDING]))
        bim = {b.name: b for b in buildings if b.source and b.source.endswith(".ifc:ifc")}
        assert set(bim) == {f"{m.name} {m.name_en}" for m in LANDMARKS}
        tower = bim["上海中心大厦 Shanghai Tower"]
        assert tower.z_max is not None and tower.z_max - (tower.z_min or 0) > 600
        lifts = opened.find_assets(AssetQuery(kinds=[Kind.LIFT]))
        assert {lift.source for lift in lifts} >= {b.source for b in bim.values()}  # each has its lifts
        waters = {w.id: w.name for w in opened.find_assets(AssetQuery(kinds=[Kind.WATER]))}
        assert waters["water:huangpu"] == "黄浦江"
