"""GIS ingest on the real files in ../shared/data/gis, against both stores."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point

from cim.errors import InvalidInput
from cim.gis.mapping import LayerMapping, load_mapping, mapping_from_dict, preset
from cim.gis.readers import parse_crs
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store

MAPPINGS = Path(__file__).resolve().parents[2] / "pipelines" / "mappings"
EARTH_RADIUS = 6378137.0


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat = math.radians((a[1] + b[1]) / 2)
    return math.hypot((a[0] - b[0]) * math.cos(lat), a[1] - b[1]) * math.pi / 180 * EARTH_RADIUS


def test_hydrants_with_epoch_dates_and_the_year_911(store: Store, data_dir: Path) -> None:
    summary = write_source(
        store, data_dir / "gis" / "INFRA_Hydrants.geojson", mapping=load_mapping(MAPPINGS / "cambridge-hydrants.toml")
    )
    assert summary.features_read == 1960 and summary.assets == {"hydrant": 1960}
    implausible = [f for f in summary.findings if f["rule"] == "implausible_install_date"]
    assert implausible and implausible[0]["count"] == 1
    odd = store.get_asset(implausible[0]["examples"][0])  # type: ignore[index]
    assert odd.install_date is None  # the year-911 value is dropped, the hydrant kept
    first = store.get_asset("INFRA_Hydrants:1")
    assert first.name == "PH6000" and first.network == "water" and first.status == "ACT"
    assert first.install_date == date(1874, 1, 1)  # -3029443200000 ms
    assert first.geom is not None
    assert metres_between((first.geom.x, first.geom.y), (-71.11682606734047, 42.370743676935895)) < 1.0


def test_web_mercator_footprints_land_in_prague(store: Store, data_dir: Path) -> None:
    path = data_dir / "gis" / "bubenec.gpkg"
    summary = write_source(store, path, mapping=LayerMapping(kind=Kind.BUILDING), layer="buildings")
    assert summary.features_read == 144 and summary.crs == "EPSG:3857"
    source = gpd.read_file(path, layer="buildings").iloc[0]
    x, y = source.geometry.exterior.coords[0]
    expected = (math.degrees(x / EARTH_RADIUS), math.degrees(2 * math.atan(math.exp(y / EARTH_RADIUS)) - math.pi / 2))
    asset = store.get_asset("bubenec:buildings:0")
    assert asset.geom is not None
    assert min(metres_between(expected, c) for c in asset.geom.exterior.coords) < 1.0


def test_water_mains_in_us_feet_get_diameters_in_millimetres(store: Store, data_dir: Path) -> None:
    summary = write_source(
        store, data_dir / "gis" / "ky4_pipes.geojson", mapping=load_mapping(MAPPINGS / "ky4-water-mains.toml")
    )
    assert summary.assets == {"pipe": 1156}
    pipe = store.get_asset("ky4_pipes:P-1")
    assert pipe.diameter_mm == pytest.approx(152.4) and pipe.network == "water" and pipe.depth_m == 1.2
    assert pipe.z_max == pytest.approx(-1.2) and pipe.z_min == pytest.approx(-1.3524)
    assert pipe.props["start_node_name"] == "J-1"
    west, south, east, north = store.extent(kind=Kind.PIPE) or (0, 0, 0, 0)
    assert -86.5 < west < east < -84.5 and 37 < south < north < 39  # Kentucky, not feet


def test_osm_buildings_get_heights_from_levels(store: Store, data_dir: Path) -> None:
    summary = write_source(store, data_dir / "gis" / "Helsinki.osm.pbf", mapping=preset("osm-buildings"))
    assert summary.features_read == 494
    rules = {f["rule"] for f in summary.findings}
    assert "unreadable_geometry" in rules  # the clipped extract's unclosed rings
    assert summary.rejected + summary.assets["building"] == 494
    buildings = store.find_assets(AssetQuery(kinds=[Kind.BUILDING]))
    from_levels = [a for a in buildings if a.storeys and a.height_m == pytest.approx(a.storeys * 3.0)]
    assert len(from_levels) >= 140  # 165 have building:levels, a few of them an explicit height too
    assert all("building:levels" not in a.props and "osm_way_id" not in a.props for a in buildings)
    assert any("addr:street" in a.props for a in buildings)  # the other tags are kept, one key each


def test_osm_parks_and_bus_stops(store: Store, data_dir: Path) -> None:
    osm = data_dir / "gis" / "Helsinki.osm.pbf"
    assert write_source(store, osm, mapping=preset("osm-bus-stops")).assets == {"transit_stop": 92}
    parks = write_source(store, osm, mapping=preset("osm-parks"))
    assert parks.features_read == 17 and parks.rejected + parks.assets["park"] == 17


def test_reingesting_a_layer_replaces_it(store: Store, data_dir: Path) -> None:
    path = data_dir / "gis" / "RECREATION_OpenSpace.geojson"
    mapping = mapping_from_dict({"kind": "park", "id": "OBJECTID", "fields": {"name": "NAME"}}, origin="test")
    write_source(store, path, mapping=mapping)
    write_source(store, path, mapping=mapping)
    assert store.count_by_kind() == {"park": 276}


def test_a_missing_layer_lists_the_layers(store: Store, data_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="'roads'.*layers are: tessellation, buildings, streets, plots"):
        write_source(store, data_dir / "gis" / "bubenec.gpkg", mapping=LayerMapping(kind=Kind.ROAD), layer="roads")


def test_a_mapping_naming_a_missing_field_lists_the_fields(store: Store, data_dir: Path) -> None:
    mapping = mapping_from_dict({"kind": "hydrant", "fields": {"install_date": "INSTALL_YEAR"}}, origin="test")
    with pytest.raises(InvalidInput, match="INSTALL_YEAR.*fields are: OBJECTID, ANCILLARYROLE"):
        write_source(store, data_dir / "gis" / "INFRA_Hydrants.geojson", mapping=mapping)
    assert store.count_by_kind() == {}


def test_a_layer_without_crs_needs_one(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "poles.shp"
    gpd.GeoDataFrame({"pid": [1, 2]}, geometry=[Point(355000, 3454000), Point(355100, 3454100)]).to_file(path)
    with pytest.raises(InvalidInput, match="has no CRS; give one with --crs"):
        write_source(store, path, mapping=LayerMapping(kind=Kind.POLE))
    summary = write_source(store, path, mapping=LayerMapping(kind=Kind.POLE), crs=parse_crs("EPSG:32651"))
    assert summary.assets == {"pole": 2}
    pole = store.get_asset("poles:0")
    assert pole.geom is not None and 121.4 < pole.geom.x < 121.5 and 31.2 < pole.geom.y < 31.3  # Shanghai


def test_not_a_gis_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "notes.geojson"
    path.write_text("this is not geojson")
    with pytest.raises(InvalidInput, match="not a GIS file"):
        write_source(store, path, mapping=LayerMapping(kind=Kind.PARK))


def test_bad_mappings_name_the_key() -> None:
    with pytest.raises(InvalidInput, match="kind"):
        mapping_from_dict({"kind": "castle"}, origin="m.toml")
    with pytest.raises(InvalidInput, match="units.install_date"):
        mapping_from_dict({"kind": "pipe", "units": {"install_date": "ft"}}, origin="m.toml")
    with pytest.raises(InvalidInput, match="colour"):
        mapping_from_dict({"kind": "pipe", "colour": "red"}, origin="m.toml")


def test_geoparquet_is_read_with_its_crs(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "stops.parquet"
    frame = gpd.GeoDataFrame(
        {"stop": ["a", "b", "c"], "height": [3.0, -1.0, 4.0]},
        geometry=[Point(355000, 3454000), Point(355100, 3454100), Point(355200, 3454200)],
        crs="EPSG:32651",
    )
    frame.to_parquet(path)
    mapping = mapping_from_dict({"kind": "pole", "id": "stop", "fields": {"height_m": "height"}}, origin="test")
    summary = write_source(store, path, mapping=mapping)
    assert summary.crs == "EPSG:32651" and summary.assets == {"pole": 3}
    assert {"rule": "negative_value:height_m", "count": 1, "examples": ["stops:b"]} in summary.findings
    pole = store.get_asset("stops:a")
    assert pole.geom is not None and 121.4 < pole.geom.x < 121.5 and pole.height_m == 3.0
    assert store.get_asset("stops:b").height_m is None


def test_parquet_without_geo_metadata_is_refused(store: Store, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    with pytest.raises(InvalidInput, match="without GeoParquet metadata"):
        write_source(store, path, mapping=LayerMapping(kind=Kind.POLE))


def test_missing_years_leave_the_date_empty_and_do_not_stop_the_layer() -> None:
    import numpy as np
    import pyarrow as pa
    import shapely

    from cim.gis.feature_mapper import FeatureMapper
    from cim.gis.mapping import LayerMapping
    from cim.gis.readers import FeatureBatch

    mapping = LayerMapping(kind="lift", fields={"install_date": "year"}, units={"install_date": "year"})
    mapper = FeatureMapper(mapping, id_prefix="lifts", source="lifts")
    years = pa.table({"year": pa.array([2001, None, 911], pa.int64())})
    batch = mapper.map(FeatureBatch(attributes=years, geometries=np.array([shapely.Point(121.5, 31.2)] * 3)))
    assert [d and d.year for d in batch.table.column("install_date").to_pylist()] == [2001, None, None]
    assert mapper.findings.count("implausible_install_date") == 1


def test_a_reingest_that_yields_nothing_keeps_the_layer_unless_asked(
    store: Store, tmp_path: Path, data_dir: Path
) -> None:
    import json

    from cim.store.meshes import MeshStore

    document = json.loads((data_dir / "gis" / "TRANS_BusShelters.geojson").read_text(encoding="utf-8"))
    path = tmp_path / "TRANS_BusShelters.geojson"
    path.write_text(json.dumps(document), encoding="utf-8")
    mapping = LayerMapping(kind=Kind.TRANSIT_STOP)
    with MeshStore(tmp_path / "m.duckdb") as meshes:
        assert write_source(store, path, mapping=mapping, meshes=meshes).assets == {"transit_stop": 68}
        document["features"] = [{**document["features"][0], "geometry": None}]
        path.write_text(json.dumps(document), encoding="utf-8")
        kept = "its only feature was rejected .*unreadable_geometry.*the 68 assets stored from it are kept"
        with pytest.raises(InvalidInput, match=kept):
            write_source(store, path, mapping=mapping, meshes=meshes)
        assert store.count_by_kind() == {"transit_stop": 68} and meshes.count() == 68
        document["features"] = []
        path.write_text(json.dumps(document), encoding="utf-8")
        with pytest.raises(InvalidInput, match="holds no feature; the 68 assets stored from it are kept"):
            write_source(store, path, mapping=mapping, meshes=meshes)
        assert store.count_by_kind() == {"transit_stop": 68} and meshes.count() == 68
        assert write_source(store, path, mapping=mapping, meshes=meshes, allow_empty=True).assets == {}
        assert store.count_by_kind() == {} and meshes.count() == 0
        assert (
            write_source(store, path, mapping=mapping, meshes=meshes).assets == {}
        )  # empty into nothing: nothing to lose
