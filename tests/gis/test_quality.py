"""Data-quality rules on real layers: a bad feature is dropped and reported by its rule, the rest of the layer goes
in (README: "they never stop the rest of the layer")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cim.errors import InvalidInput
from cim.gis.mapping import LayerMapping, mapping_from_dict
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import Store

SHELTERS = LayerMapping(kind=Kind.TRANSIT_STOP)
FIRST = "TRANS_BusShelters:0"  # ids are the features' positions


def shelters(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / "gis" / "TRANS_BusShelters.geojson").read_text(encoding="utf-8"))


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("lon", [200.0, -181.0, 1e300])
def test_a_feature_outside_lon_lat_is_dropped_and_the_layer_goes_in(
    store: Store, tmp_path: Path, data_dir: Path, lon: float
) -> None:
    document = shelters(data_dir)
    document["features"][0]["geometry"]["coordinates"][0][1][0] = lon
    summary = write_source(store, write(tmp_path / "TRANS_BusShelters.geojson", document), mapping=SHELTERS)
    assert summary.assets == {"transit_stop": 67} and summary.rejected == 1
    assert summary.findings == [{"rule": "outside_lonlat", "count": 1, "examples": [FIRST]}]


def test_a_layer_in_metres_that_says_wgs84_is_refused_whole_with_the_rule(store: Store, tmp_path: Path) -> None:
    points = [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [355000, 3454000]}}]
    path = write(tmp_path / "poles.geojson", {"type": "FeatureCollection", "features": points})
    only = (
        r"poles.geojson — yields no valid asset: its only feature was rejected \(outside_lonlat ×1 \(e.g. poles:0\)\)"
    )
    with pytest.raises(InvalidInput, match=only):
        write_source(store, path, mapping=LayerMapping(kind=Kind.POLE))
    assert store.count_by_kind() == {}


@pytest.mark.parametrize("kind", [Kind.BUILDING, Kind.PARK])
def test_points_and_lines_are_not_buildings_or_parks(store: Store, tmp_path: Path, kind: Kind) -> None:
    geometries = [
        {"type": "Polygon", "coordinates": [[[121.5, 31.2], [121.501, 31.2], [121.501, 31.201], [121.5, 31.2]]]},
        {"type": "Point", "coordinates": [121.5, 31.2]},
        {"type": "LineString", "coordinates": [[121.5, 31.2], [121.6, 31.3]]},
        {"type": "MultiPoint", "coordinates": [[121.5, 31.2], [121.6, 31.3]]},
    ]
    features = [{"type": "Feature", "properties": {"n": n}, "geometry": g} for n, g in enumerate(geometries)]
    path = write(tmp_path / "mixed.geojson", {"type": "FeatureCollection", "features": features})
    summary = write_source(store, path, mapping=mapping_from_dict({"kind": str(kind), "id": "n"}, origin="test"))
    assert summary.assets == {str(kind): 1} and summary.rejected == 3
    assert summary.findings == [
        {"rule": f"not_an_area:{kind}", "count": 3, "examples": ["mixed:1", "mixed:2", "mixed:3"]}
    ]
    assert store.count_by_kind() == {str(kind): 1}


def test_points_stay_fine_for_point_kinds(store: Store, tmp_path: Path) -> None:
    point = {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [121.5, 31.2]}}
    path = write(tmp_path / "stops.geojson", {"type": "FeatureCollection", "features": [point]})
    assert write_source(store, path, mapping=LayerMapping(kind=Kind.TRANSIT_STOP)).assets == {"transit_stop": 1}


def test_huge_and_infinite_numbers_are_dropped_not_the_layer(store: Store, tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    path = tmp_path / "blocks.parquet"
    gpd.GeoDataFrame(
        {
            "bid": ["inf", "huge", "tall", "fine"],
            "height": [float("inf"), 1e300, 30.0, 12.0],
            "levels": [3, 4, 3_000_000_000, 4],
        },
        geometry=[box(121.5 + i / 1000, 31.2, 121.5005 + i / 1000, 31.2005) for i in range(4)],
        crs="EPSG:4326",
    ).to_parquet(path)
    mapping = {"kind": "building", "id": "bid", "fields": {"height_m": "height", "storeys": "levels"}}
    summary = write_source(store, path, mapping=mapping_from_dict(mapping, origin="test"))
    assert summary.assets == {"building": 4}
    assert summary.findings == [
        {"rule": "implausible_value:height_m", "count": 1, "examples": ["blocks:huge"]},
        {"rule": "implausible_value:storeys", "count": 1, "examples": ["blocks:tall"]},
        {"rule": "unreadable_value:height_m", "count": 1, "examples": ["blocks:inf"]},
    ]
    assert store.get_asset("blocks:inf").height_m == 9.0  # from its 3 storeys, as when the height is unknown
    assert store.get_asset("blocks:tall").storeys is None and store.get_asset("blocks:fine").height_m == 12.0
