"""The domain queries and CQL2 filters in SQL, on DuckDB and PostGIS alike, checked against independent sums."""

from __future__ import annotations

import json
from datetime import date

import pyproj
import pytest
import shapely
from shapely.geometry import Point, box

from cim.errors import InvalidInput
from cim.model import Asset, AssetBatch, Kind
from cim.queries import ItemsQuery, asset_detail, buried_pipes, find_features, old_lifts, within_distance
from cim.queries.cql import parse_filter
from cim.store import Store
from cim.store.sqlstore import sql_store
from tests.api.city import AREA, AS_OF, build_city, city_assets

GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture
def city(store: Store) -> Store:
    build_city(store)
    return store


def test_select_binds_values_as_parameters(store: Store) -> None:
    db = sql_store(store)
    evil = "x'; DROP TABLE assets; --"
    table = db.select(f"SELECT {db.dialect.param} AS v", [evil])
    assert table.to_pylist() == [{"v": evil}]
    assert store.count_by_kind() == {}


def test_old_lifts_walk_up_to_the_building_and_keep_unknown_ages_apart(city: Store) -> None:
    result = old_lifts(city, years=15, as_of=AS_OF)
    assert [b["id"] for b in result["buildings"]] == ["b1"]
    b1 = result["buildings"][0]
    assert b1["name"] == "Tower 1"
    assert b1["lon"] == pytest.approx(121.50225) and b1["lat"] == pytest.approx(31.23125)
    assert [(lift["id"], lift["install_date"]) for lift in b1["lifts"]] == [  # oldest first
        ("lift-1b", "1995-06-01"),
        ("lift-1a", "2001-03-01"),
    ]
    assert b1["lifts"][1]["age_years"] == pytest.approx(25.2, abs=0.05)
    assert result["unknown_age"] == [{"id": "lift-2b", "building_id": "b2"}]
    assert [lift["id"] for lift in result["without_building"]] == ["lift-x"]


def test_lift_exactly_n_years_old_is_not_older_than_n(city: Store) -> None:
    ids = {lift["id"] for b in old_lifts(city, years=15, as_of=AS_OF)["buildings"] for lift in b["lifts"]}
    assert "lift-2a" not in ids
    later = {lift["id"] for b in old_lifts(city, years=15, as_of=date(2026, 5, 2))["buildings"] for lift in b["lifts"]}
    assert "lift-2a" in later


def test_buried_pipes_measure_length_inside_the_area_in_metres(city: Store) -> None:
    area = box(*AREA)
    result = buried_pipes(city, area=area, network="gas")
    assert [p["id"] for p in result["pipes"]] == ["gas-cross", "gas-depth-only", "gas-inside"]
    by_id = {a.id: a for a in city_assets()}
    for pipe in result["pipes"]:
        clipped = shapely.intersection(by_id[pipe["id"]].geom, area)
        expected = GEOD.geometry_length(clipped)
        assert pipe["length_in_area_m"] == pytest.approx(expected, rel=1e-3)
    assert result["total_length_m"] == pytest.approx(sum(p["length_in_area_m"] for p in result["pipes"]), abs=0.05)
    assert 450 < result["pipes"][0]["length_in_area_m"] < 500  # 0.005° of longitude at 31° N is about 476 m


def test_buried_pipes_by_age_and_depth(city: Store) -> None:
    area = box(*AREA)
    assert [p["id"] for p in buried_pipes(city, area=area, network="gas", older_than=30, as_of=AS_OF)["pipes"]] == [
        "gas-cross"
    ]
    assert [p["id"] for p in buried_pipes(city, area=area, deeper_than=1.2)["pipes"]] == [
        "gas-depth-only",
        "gas-inside",
        "water-1",
    ]
    assert buried_pipes(city, area=area, network="sewer") == {"pipes": [], "total_length_m": 0.0}


@pytest.mark.parametrize(
    ("area", "message"),
    [
        (Point(121.5, 31.2), "Polygon"),
        (box(500, 0, 501, 1), "outside lon"),
        (shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), "not a valid polygon"),
    ],
)
def test_buried_pipes_refuse_bad_areas(city: Store, area: shapely.Geometry, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        buried_pipes(city, area=area, network="gas")


def test_within_distance_is_metric(city: Store) -> None:
    result = within_distance(city, kind=Kind.TRANSIT_STOP, near_kind=Kind.PARK, distance_m=50)
    assert [(a["id"], a["near_id"]) for a in result["assets"]] == [("stop-near", "park-1")]
    stop = next(a for a in city_assets() if a.id == "stop-near")
    expected = GEOD.inv(stop.geom.x, stop.geom.y, 121.52, stop.geom.y)[2]
    assert result["assets"][0]["distance_m"] == pytest.approx(expected, rel=2e-3)
    assert 40 < expected < 50
    far = within_distance(city, kind=Kind.TRANSIT_STOP, near_kind=Kind.PARK, distance_m=50, beyond=True)
    assert [a["id"] for a in far["assets"]] == ["stop-far"]
    everyone = within_distance(city, kind=Kind.TRANSIT_STOP, near_kind=Kind.PARK, distance_m=1000)
    assert [a["id"] for a in everyone["assets"]] == ["stop-far", "stop-near"]
    with pytest.raises(InvalidInput, match="distance"):
        within_distance(city, kind=Kind.TRANSIT_STOP, near_kind=Kind.PARK, distance_m=-1)


def test_asset_detail_has_parents_children_and_sensor_state(city: Store) -> None:
    detail = asset_detail(city, "lift-1a")
    assert [p.id for p in detail.parents] == ["b1"]
    assert [c.id for c in detail.children] == ["sensor-1"]
    assert detail.latest_state["sensor-1"].value == 2.0
    assert [p.id for p in asset_detail(city, "lift-1b").parents] == ["b1-s1", "b1"]


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("network = 'gas' AND depth_m > 1.5", "cql2-text", ["gas-depth-only", "gas-inside"]),
        ("install_date < DATE('1970-06-01')", "cql2-text", ["gas-overhead", "water-1"]),
        ("material LIKE 'cast%' OR material IN ('PE')", "cql2-text", ["gas-cross", "gas-inside"]),
        ("depth_m BETWEEN 1.2 AND 2 AND NOT network = 'gas'", "cql2-text", ["water-1"]),
        ("depth_m IS NULL", "cql2-text", ["gas-overhead"]),
        (
            "S_INTERSECTS(geometry, BBOX(121.5,31.23,121.51,31.239)) AND z_max < 0",
            "cql2-text",
            ["gas-cross", "gas-inside", "water-1"],
        ),
        ('{"op": "=", "args": [{"property": "network"}, "water"]}', "cql2-json", ["water-1"]),
        (
            '{"op": "s_intersects", "args": [{"property": "geometry"}, '
            '{"type": "Polygon", "coordinates": [[[121.51, 31.09], [121.62, 31.09], [121.62, 31.34], [121.51, 31.34], '
            "[121.51, 31.09]]]}]}",
            "cql2-json",
            ["gas-far"],
        ),
    ],
)
def test_cql2_filters_select_the_same_assets_on_both_stores(
    city: Store, text: str, lang: str, expected: list[str]
) -> None:
    dialect = sql_store(city).dialect
    sql_filter = parse_filter(text, lang=lang, kind=Kind.PIPE, dialect=dialect)
    page = find_features(city, ItemsQuery(kind=Kind.PIPE, filter=sql_filter, limit=100))
    assert [a.id for a in page.assets] == expected


def test_cql2_on_property_set_values(city: Store) -> None:
    dialect = sql_store(city).dialect
    for text, expected in (('"props.floors" >= 20', ["b2", "b3"]), ("props.Pset_Owner.Name = 'owner 1'", ["b1"])):
        sql_filter = parse_filter(text, lang="cql2-text", kind=Kind.BUILDING, dialect=dialect)
        assert [a.id for a in find_features(city, ItemsQuery(kind=Kind.BUILDING, filter=sql_filter)).assets] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonexistent = 1", "does not exist on pipe"),
        ("storeys = 3", "does not exist on pipe"),
        ("network = 'gas'; DROP TABLE assets", "not valid cql2-text"),
        ("depth_m > 'deep'", "is a number"),
        ("install_date > '1990-13-45'", "is a date"),
        ("network = 1", "is text"),
        ("S_INTERSECTS(geometry, POINT(500 1))", "outside lon"),
        ("NOT " * 5000 + "network = 'gas'", "nested too deeply|not valid"),
    ],
)
def test_bad_filters_are_invalid_input(city: Store, text: str, message: str) -> None:
    dialect = sql_store(city).dialect
    with pytest.raises(InvalidInput, match=message):
        parse_filter(text, lang="cql2-text", kind=Kind.PIPE, dialect=dialect)


def test_injection_through_filter_values_stays_a_value(city: Store) -> None:
    dialect = sql_store(city).dialect
    evil = "gas' OR '1'='1"
    text = json.dumps({"op": "=", "args": [{"property": "network"}, evil]})
    sql_filter = parse_filter(text, lang="cql2-json", kind=Kind.PIPE, dialect=dialect)
    assert sql_filter.params == [evil]
    assert find_features(city, ItemsQuery(kind=Kind.PIPE, filter=sql_filter)).assets == []
    assert city.count_by_kind()["pipe"] == 6


def test_old_lifts_climb_through_spaces_at_most_four_hops(store: Store) -> None:
    chain = [
        Asset(id="t", kind=Kind.BUILDING, name="T", geom=box(121.5, 31.2, 121.501, 31.201)),
        Asset(id="t-s", kind=Kind.STOREY, parent_id="t"),
        Asset(id="t-r", kind=Kind.SPACE, parent_id="t-s"),
        Asset(id="t-r2", kind=Kind.SPACE, parent_id="t-r"),
        Asset(id="t-r3", kind=Kind.SPACE, parent_id="t-r2"),
        Asset(id="t-e", kind=Kind.ELEMENT, parent_id="t"),
        Asset(id="up3", kind=Kind.LIFT, parent_id="t-r", install_date=date(1990, 1, 1)),  # lift → space → storey → t
        Asset(id="up4", kind=Kind.LIFT, parent_id="t-r2", install_date=date(1990, 1, 1)),  # four hops: found
        Asset(id="up5", kind=Kind.LIFT, parent_id="t-r3", install_date=date(1990, 1, 1)),  # five: too far
        Asset(id="via-element", kind=Kind.LIFT, parent_id="t-e", install_date=date(1990, 1, 1)),  # not a container
        Asset(id="undated", kind=Kind.LIFT, parent_id="t-r2"),
    ]
    store.upsert_assets(AssetBatch.from_assets(chain))
    result = old_lifts(store, years=15, as_of=AS_OF)
    assert [(b["id"], [lift["id"] for lift in b["lifts"]]) for b in result["buildings"]] == [("t", ["up3", "up4"])]
    assert result["buildings"][0]["lon"] == pytest.approx(121.5005)
    assert [lift["id"] for lift in result["without_building"]] == ["up5", "via-element"]
    assert result["unknown_age"] == [{"id": "undated", "building_id": "t"}]


def test_old_lifts_agree_with_a_plain_python_answer_at_every_cutoff(store: Store) -> None:
    """Random lifts (some undated, some under no building, several per building, shared dates) checked against
    the answer worked out in Python from the assets, for cutoffs that split buildings' lifts every way."""
    import random

    rng = random.Random(7)
    assets = [
        Asset(
            id=f"b{n}", kind=Kind.BUILDING, name=f"B{n}", geom=box(121.5 + n / 1000, 31.2, 121.5005 + n / 1000, 31.2005)
        )
        for n in range(12)
    ]
    dates = [date(1990 + rng.randrange(0, 36), 1 + rng.randrange(12), 1) for _ in range(6)]
    for n in range(60):
        parent = f"b{rng.randrange(14)}" if n % 9 else None  # b12, b13 do not exist: lifts under no building
        installed = None if n % 7 == 0 else rng.choice(dates)
        assets.append(Asset(id=f"l{n:02d}", kind=Kind.LIFT, parent_id=parent, install_date=installed))
    store.upsert_assets(AssetBatch.from_assets(assets))
    lifts = [a for a in assets if a.kind is Kind.LIFT]
    buildings = {a.id for a in assets if a.kind is Kind.BUILDING}
    for years in (0, 5, 10, 15, 20, 25, 30, 40):
        result = old_lifts(store, years=years, as_of=AS_OF)
        cutoff = date(AS_OF.year - years, AS_OF.month, AS_OF.day)
        old = [a for a in lifts if a.install_date is not None and a.install_date < cutoff]
        expected = {b: sorted((a.install_date, a.id) for a in old if a.parent_id == b) for b in sorted(buildings)}
        assert [
            (b["id"], [(date.fromisoformat(x["install_date"]), x["id"]) for x in b["lifts"]])
            for b in result["buildings"]
        ] == [(b, pairs) for b, pairs in expected.items() if pairs], years
        assert [x["id"] for x in result["without_building"]] == [  # oldest first too
            a.id for a in sorted(old, key=lambda a: (a.install_date, a.id)) if a.parent_id not in buildings
        ]
        assert result["unknown_age"] == sorted(
            (
                {"id": a.id, "building_id": a.parent_id if a.parent_id in buildings else None}
                for a in lifts
                if a.install_date is None
            ),
            key=lambda u: (u["building_id"] is None, u["building_id"] or "", u["id"]),
        )


def test_old_lifts_of_an_empty_store_are_empty_lists(store: Store) -> None:
    assert old_lifts(store, years=15, as_of=AS_OF) == {"buildings": [], "unknown_age": [], "without_building": []}


def test_old_lifts_follow_every_write_and_escape_names(store: Store) -> None:
    """The lift register behind the query is rebuilt after each write: added, re-parented and deleted lifts show
    at once; a building name with quotes, backslashes, a newline and CJK text comes back intact."""
    name = 'Tower "A" \\ 东方明珠\nnorth'
    store.upsert_assets(
        AssetBatch.from_assets(
            [
                Asset(id="b", kind=Kind.BUILDING, name=name, geom=box(121.5, 31.2, 121.501, 31.201)),
                Asset(id="c", kind=Kind.BUILDING, name="C", geom=box(121.6, 31.2, 121.601, 31.201)),
                Asset(id="l1", kind=Kind.LIFT, parent_id="b", install_date=date(1990, 1, 1)),
            ]
        )
    )

    def found() -> list[tuple[str, str | None, list[str]]]:
        result = old_lifts(store, years=15, as_of=AS_OF)
        return [(b["id"], b["name"], [lift["id"] for lift in b["lifts"]]) for b in result["buildings"]]

    assert found() == [("b", name, ["l1"])]
    store.upsert_assets(
        AssetBatch.from_assets([Asset(id="l2", kind=Kind.LIFT, parent_id="c", install_date=date(1999, 1, 1))])
    )
    assert found() == [("b", name, ["l1"]), ("c", "C", ["l2"])]
    store.upsert_assets(
        AssetBatch.from_assets([Asset(id="l1", kind=Kind.LIFT, parent_id="c", install_date=date(1990, 1, 1))])
    )
    assert found() == [("c", "C", ["l1", "l2"])]
    store.delete_assets(ids=["l2"])
    assert found() == [("c", "C", ["l1"])]
    store.replace_source("nothing", [])
    assert found() == [("c", "C", ["l1"])]
