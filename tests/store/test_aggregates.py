"""Grouped counts, lengths and areas (:mod:`cim.store.aggregates`) against references computed in Python with shapely
and pyproj, on the hand-made areas of :mod:`tests.store.test_areas`, on DuckDB and PostGIS alike."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import pytest
from pyproj import Geod
from shapely.geometry import LineString, MultiLineString, Point, box
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.model import Asset, AssetBatch, Kind
from cim.store import Store
from cim.store.aggregates import aggregate, check_group_by, total
from cim.store.areas import areas_of_assets
from tests.store.test_areas import area_assets

AS_OF = date(2026, 5, 1)
GEOD = Geod(ellps="WGS84")


def pipes() -> list[Asset]:
    """Pipes in both districts and outside every area, of three networks and ages, one a MultiLineString."""
    return [
        Asset(id="p1", kind=Kind.PIPE, network="gas", install_date=date(1990, 1, 1), status="in_service",
              geom=LineString([(121.05, 31.10), (121.08, 31.12)])),
        Asset(id="p2", kind=Kind.PIPE, network="gas", install_date=date(2011, 5, 1),  # exactly 15 years: 15-20
              geom=LineString([(121.15, 31.05), (121.15, 31.15), (121.16, 31.15)])),
        Asset(id="p3", kind=Kind.PIPE, network="water", install_date=date(2024, 1, 1),
              geom=MultiLineString([[(121.25, 31.05), (121.27, 31.06)], [(121.28, 31.02), (121.29, 31.03)]])),
        Asset(id="p4", kind=Kind.PIPE, network="water", geom=LineString([(121.35, 31.15), (121.36, 31.19)])),
        Asset(id="p5", kind=Kind.PIPE, network="drainage", install_date=date(2000, 1, 1),
              geom=LineString([(122.0, 32.0), (122.01, 32.0)])),  # in no area
    ]  # fmt: skip


def buildings() -> list[Asset]:
    """Polygons in both districts, and one point (no area: its groups' area counts polygons only)."""
    return [
        Asset(id="b1", kind=Kind.BUILDING, geom=box(121.05, 31.10, 121.052, 31.102), status="ok"),
        Asset(id="b2", kind=Kind.BUILDING, geom=box(121.25, 31.05, 121.2505, 31.0504)),
        Asset(id="b3", kind=Kind.BUILDING, geom=box(121.31, 31.11, 121.315, 31.114)),
        Asset(id="b4", kind=Kind.BUILDING, geom=Point(121.26, 31.06)),
    ]


def length(geom: BaseGeometry) -> float:
    return float(GEOD.geometry_length(geom))


def area(geom: BaseGeometry) -> float:
    return abs(float(GEOD.geometry_area_perimeter(geom)[0]))


@pytest.fixture
def city(store: Store) -> Store:
    store.upsert_assets(AssetBatch.from_assets([*area_assets(), *pipes(), *buildings()]))
    return store


def test_lengths_by_network_equal_the_geodesic_lengths(city: Store) -> None:
    groups = aggregate(city, kind=Kind.PIPE, group_by=["network"], as_of=AS_OF)
    expected: dict[str, list[BaseGeometry]] = defaultdict(list)
    for p in pipes():
        expected[str(p.network)].append(p.geom)
    assert [g.key["network"] for g in groups] == ["drainage", "gas", "water"]
    for g in groups:
        reference = sum(length(geom) for geom in expected[str(g.key["network"])])
        assert g.count == len(expected[str(g.key["network"])])
        assert g.length_m == pytest.approx(reference, rel=0.005)
        assert g.area_m2 is None  # no polygon among pipes


def test_areas_by_district_equal_the_geodesic_areas_and_match_each_assets_areas(city: Store) -> None:
    groups = aggregate(city, kind=Kind.BUILDING, group_by=["district"], as_of=AS_OF)
    placed = areas_of_assets(city, [b.id for b in buildings()])
    expected: dict[str | None, list[Asset]] = defaultdict(list)
    for b in buildings():
        expected[placed[b.id].district].append(b)
    assert [g.key["district"] for g in groups] == ["900001", "900002"]  # every building lies in one
    for g in groups:
        members = expected[g.key["district"]]
        assert g.count == len(members)
        polygons = [b.geom for b in members if b.geom.geom_type == "Polygon"]
        assert g.area_m2 == pytest.approx(sum(area(p) for p in polygons), rel=0.005)
        assert g.length_m is None


def test_grouping_by_street_and_cell_follows_each_assets_areas(city: Store) -> None:
    groups = aggregate(city, kind=Kind.PIPE, group_by=["street", "grid_cell"], as_of=AS_OF)
    placed = areas_of_assets(city, [p.id for p in pipes()])
    counted: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for codes in placed.values():
        counted[(codes.street, codes.grid_cell)] += 1
    assert {(g.key["street"], g.key["grid_cell"]): g.count for g in groups} == counted
    assert groups[-1].key == {"street": None, "grid_cell": None}  # None sorts last


def test_age_bands_count_whole_years_to_as_of(city: Store) -> None:
    groups = aggregate(city, kind=Kind.PIPE, group_by=["age_band"], as_of=AS_OF)
    assert [(g.key["age_band"], g.count) for g in groups] == [
        ("0-5", 1), ("15-20", 1), ("20-30", 1), ("30+", 1), ("unknown", 1)
    ]  # fmt: skip
    later = aggregate(city, kind=Kind.PIPE, group_by=["age_band"], as_of=date(2031, 5, 1))
    assert ("5-10", 1) in [(g.key["age_band"], g.count) for g in later]


def test_several_keys_filters_and_the_total(city: Store) -> None:
    groups = aggregate(
        city, kind=Kind.PIPE, group_by=["district", "network"], as_of=AS_OF, bbox=(121.0, 31.0, 121.2, 31.2)
    )
    assert [(g.key["district"], g.key["network"], g.count) for g in groups] == [("900001", "gas", 2)]
    dated = aggregate(city, kind=Kind.PIPE, group_by=["network"], as_of=AS_OF, installed=(date(2000, 1, 1), None))
    assert sum(g.count for g in dated) == 3  # p2, p3 and p5 (2000-01-01: inclusive); p1 (1990), p4 (no date) out
    everything = total(aggregate(city, kind=Kind.PIPE, group_by=["network"], as_of=AS_OF))
    assert everything.count == 5
    assert everything.length_m == pytest.approx(sum(length(p.geom) for p in pipes()), rel=0.005)


def test_an_empty_collection_has_no_group_and_a_zero_total(store: Store) -> None:
    groups = aggregate(store, kind=Kind.PARK, group_by=["district"], as_of=AS_OF)
    assert groups == []
    assert (total(groups).count, total(groups).length_m, total(groups).area_m2) == (0, None, None)


@pytest.mark.parametrize(
    ("kind", "group_by", "named"),
    [
        (Kind.PIPE, ["colour"], "colour"),
        (Kind.PIPE, [], "group_by"),
        (Kind.PIPE, ["network", "status", "material", "kind"], "group_by"),
        (Kind.PIPE, ["network", "network"], "group_by"),
        (Kind.BUILDING, ["network"], "network"),
        (Kind.DISTRICT, ["district"], "district"),
    ],
)
def test_a_bad_group_by_is_refused_naming_it(kind: Kind, group_by: list[str], named: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_group_by(kind, group_by)
    assert named in str(refused.value) and "group_by" in str(refused.value)
