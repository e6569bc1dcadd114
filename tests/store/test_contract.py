"""The store contract: every test here runs against DuckDB and PostGIS alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from cim.errors import InvalidInput, NotFound, StoreError
from cim.model import Asset, AssetBatch, Kind, Reading
from cim.store import AssetQuery, Store, open_store

LUJIAZUI = (121.50, 31.23)


def building(n: int, *, x: float = LUJIAZUI[0], y: float = LUJIAZUI[1], **fields: object) -> Asset:
    footprint = box(x + n * 0.001, y, x + n * 0.001 + 0.0005, y + 0.0005)
    return Asset(
        id=f"b{n}", kind=Kind.BUILDING, geom=footprint, name=f"Tower {n}", z_min=4.0, z_max=4.0 + 10 * n, **fields
    )  # type: ignore[arg-type]


def stored(store: Store, *assets: Asset) -> None:
    store.upsert_assets(AssetBatch.from_assets(assets))


def test_an_asset_comes_back_with_every_field(store: Store) -> None:
    lift = Asset(
        id="lift-1",
        kind=Kind.LIFT,
        geom=Point(121.5, 31.23),
        name="Lift A",
        parent_id="b1",
        source="tower.ifc",
        z_min=4.0,
        z_max=120.5,
        install_date=date(2005, 3, 1),
        status="running",
        material="steel",
        height_m=116.5,
        props={"Pset_Asset.Owner": "city", "levels": [1, 2], "x": 1.5},
    )
    pipe = Asset(
        id="gas-1",
        kind=Kind.PIPE,
        geom=LineString([(121.5, 31.2), (121.51, 31.21)]),
        network="gas",
        diameter_mm=300.0,
        depth_m=1.5,
        material="cast iron",
        z_min=-2.0,
        z_max=-1.2,
    )
    stored(store, lift, pipe, building(1, storeys=6))
    assert store.get_asset("lift-1") == lift
    assert store.get_asset("gas-1") == pipe
    assert store.get_asset("b1").storeys == 6


def test_upsert_replaces_an_asset_with_the_same_id(store: Store) -> None:
    stored(store, building(1, status="planned"))
    stored(store, building(1, status="built"))
    assert store.get_asset("b1").status == "built"
    assert store.count_by_kind() == {"building": 1}


def test_replacing_a_source_drops_what_left_it_takes_ids_from_others_and_keeps_the_rest(store: Store) -> None:
    def batch(*assets: Asset) -> AssetBatch:
        return AssetBatch.from_assets(assets)

    store.replace_source("one", [batch(building(1, source="one"), building(2, source="one"))])
    store.replace_source("two", [batch(building(3, source="two"), building(4, source="two"))])
    # b2 leaves "one", b3 moves from "two" to "one"; b5 comes twice, in two batches: the last one stays
    written = store.replace_source(
        "one",
        [
            batch(building(1, source="one", status="new"), building(3, source="one"), building(5, source="one")),
            batch(building(5, source="one", status="last")),
        ],
    )
    assert written == 4
    by_id = {a.id: a for a in store.find_assets(AssetQuery())}
    assert sorted(by_id) == ["b1", "b3", "b4", "b5"]
    assert (by_id["b1"].status, by_id["b3"].source, by_id["b4"].source, by_id["b5"].status) == (
        "new",
        "one",
        "two",
        "last",
    )
    # the derived bbox columns came with the rows
    assert [a.id for a in store.find_assets(AssetQuery(bbox=building(3).geom.bounds))] == ["b3"]


def test_a_missing_asset_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.get_asset("nope")


def test_children_are_the_assets_under_a_parent(store: Store) -> None:
    stored(
        store,
        building(1),
        Asset(id="s2", kind=Kind.STOREY, parent_id="b1"),
        Asset(id="s1", kind=Kind.STOREY, parent_id="b1"),
        Asset(id="l1", kind=Kind.LIFT, parent_id="b1"),
        Asset(id="x", kind=Kind.STOREY, parent_id="b9"),
    )
    assert [a.id for a in store.children("b1")] == ["l1", "s1", "s2"]
    assert [a.id for a in store.children("b1", kind=Kind.STOREY)] == ["s1", "s2"]


def test_find_by_kind_column_and_property(store: Store) -> None:
    stored(
        store,
        building(1),
        building(2, status="demolished"),
        Asset(id="p1", kind=Kind.PIPE, network="gas", props={"Pset.Owner": "city", "pn": 16}),
        Asset(id="p2", kind=Kind.PIPE, network="water", props={"Pset.Owner": "utility", "pn": 10}),
    )
    assert [a.id for a in store.find_assets(AssetQuery(kinds=[Kind.BUILDING]))] == ["b1", "b2"]
    assert [a.id for a in store.find_assets(AssetQuery(where={"status": "demolished"}))] == ["b2"]
    assert [a.id for a in store.find_assets(AssetQuery(where={"network": "gas"}))] == ["p1"]
    assert [a.id for a in store.find_assets(AssetQuery(where={"props.Pset.Owner": "utility"}))] == ["p2"]
    assert [a.id for a in store.find_assets(AssetQuery(where={"props.pn": 16}))] == ["p1"]
    assert store.find_assets(AssetQuery(kinds=[])) == []


def test_find_by_bbox_polygon_and_z_range(store: Store) -> None:
    stored(store, *(building(n) for n in range(1, 6)))
    # b2 spans lon +0.002..+0.0025 from LUJIAZUI; b3 +0.003..+0.0035
    x, y = LUJIAZUI
    window = (x + 0.0021, y + 0.0001, x + 0.0031, y + 0.0002)
    assert [a.id for a in store.find_assets(AssetQuery(bbox=window))] == ["b2", "b3"]
    triangle = Polygon([(x + 0.0021, y), (x + 0.0024, y + 0.0004), (x + 0.0026, y)])
    assert [a.id for a in store.find_assets(AssetQuery(polygon=triangle))] == ["b2"]
    assert [a.id for a in store.find_assets(AssetQuery(z_range=(25.0, 35.0)))] == ["b3", "b4", "b5"]
    assert store.count_assets(AssetQuery(bbox=window, z_range=(0, 30))) == 2


def test_window_queries_agree_with_shapely_on_small_and_large_windows(store: Store) -> None:
    rng = np.random.default_rng(7)
    n = 3000
    xs, ys = 121.3 + rng.random(n) * 0.4, 31.0 + rng.random(n) * 0.4
    geoms = shapely.box(xs, ys, xs + 0.0005, ys + 0.0005)
    table = pa.table({"id": [f"a{i}" for i in range(n)], "kind": ["building"] * n, "geom": shapely.to_wkb(geoms)})
    store.upsert_assets(AssetBatch.from_table(table))
    for side in (0.002, 0.05, 0.3):  # from the R-tree path to the bbox-column path on DuckDB
        window = shapely.box(121.45, 31.15, 121.45 + side, 31.15 + side * 0.7)
        expected = sorted(f"a{i}" for i in np.flatnonzero(shapely.intersects(geoms, window)))
        assert [a.id for a in store.find_assets(AssetQuery(polygon=window))] == expected
        assert store.count_assets(AssetQuery(bbox=window.bounds)) == len(expected)


def test_paging_is_stable_by_id(store: Store) -> None:
    stored(store, *(building(n) for n in range(1, 8)))
    pages = [store.find_assets(AssetQuery(limit=3, offset=o)) for o in (0, 3, 6)]
    assert [[a.id for a in page] for page in pages] == [["b1", "b2", "b3"], ["b4", "b5", "b6"], ["b7"]]


def test_extent_and_counts(store: Store) -> None:
    assert store.extent() is None
    stored(store, building(1), building(3), Asset(id="h", kind=Kind.HYDRANT, geom=Point(121.0, 31.0)))
    west, south, east, _north = store.extent() or (0, 0, 0, 0)
    assert (west, south) == (121.0, 31.0)
    assert east == pytest.approx(LUJIAZUI[0] + 0.0035)
    assert store.extent(kind=Kind.HYDRANT) == (121.0, 31.0, 121.0, 31.0)
    assert store.count_by_kind() == {"building": 2, "hydrant": 1}


def test_delete_by_ids_and_by_source(store: Store) -> None:
    stored(store, building(1, source="a.gpkg"), building(2, source="a.gpkg"), building(3, source="b.ifc"))
    assert store.delete_assets(ids=["b3"]) == 1
    assert store.delete_assets(source="a.gpkg") == 2
    assert store.count_by_kind() == {}


@pytest.mark.parametrize(
    ("asset_fields", "message"),
    [
        ({"geom": Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])}, "not valid"),
        ({"geom": Point(500, 31)}, "outside lon"),
        ({"geom": Point(121, 31, 5)}, "z coordinates"),
        ({"height_m": -3.0}, "height_m"),
        ({"z_min": 10.0, "z_max": 1.0}, "z_min is above z_max"),
        ({"height_m": float("nan")}, "finite"),
    ],
)
def test_a_bad_batch_is_refused_whole_and_stored_assets_stay(
    store: Store, asset_fields: dict[str, object], message: str
) -> None:
    stored(store, building(1))
    bad = Asset(**{"id": "bad", "kind": Kind.BUILDING, "geom": Point(121, 31), **asset_fields})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message) as caught:
        stored(store, building(2), bad)
    assert "bad" in str(caught.value)
    assert [a.id for a in store.find_assets(AssetQuery())] == ["b1"]


def test_duplicate_ids_unknown_kinds_and_misplaced_fields_are_refused() -> None:
    with pytest.raises(InvalidInput, match="b1.*more than once"):
        AssetBatch.from_assets([building(1), building(1)])
    with pytest.raises(InvalidInput, match="castle — unknown"):
        AssetBatch.from_table(pa.table({"id": ["c"], "kind": ["castle"]}))
    with pytest.raises(InvalidInput, match="diameter_mm.*does not apply"):
        AssetBatch.from_table(pa.table({"id": ["c"], "kind": ["building"], "diameter_mm": [100.0]}))


def test_a_batch_the_database_refuses_is_rolled_back(store: Store) -> None:
    stored(store, building(1))
    table = pa.table({"id": ["ok", "broken"], "kind": ["park", "park"], "props": ['{"a": 1}', "{not json"]})
    with pytest.raises(StoreError, match="nothing was written"):
        store.upsert_assets(AssetBatch.from_table(table))
    assert [a.id for a in store.find_assets(AssetQuery())] == ["b1"]
    stored(store, building(2))  # the store still works after the failure
    assert store.count_by_kind() == {"building": 2}


def test_readings_history_and_latest_state(store: Store) -> None:
    t0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    store.append_readings(
        [Reading(sensor_id="s1", time=t0 + timedelta(minutes=m), value=float(m)) for m in range(5)]
        + [Reading(sensor_id="s2", time=t0, status="fault")]
    )
    store.append_readings([Reading(sensor_id="s1", time=t0 - timedelta(days=1), value=-1.0)])  # late arrival
    latest = store.latest_states()
    assert latest["s1"].value == 4.0 and latest["s1"].time == t0 + timedelta(minutes=4)
    assert latest["s2"].status == "fault" and latest["s2"].value is None
    window = store.readings("s1", start=t0 + timedelta(minutes=1), end=t0 + timedelta(minutes=3))
    assert [r.value for r in window] == [2.0, 1.0]  # newest first
    oldest_first = store.readings(
        "s1", start=t0 + timedelta(minutes=1), end=t0 + timedelta(minutes=3), newest_first=False
    )
    assert [r.value for r in oldest_first] == [1.0, 2.0]
    assert len(store.readings("s1")) == 6
    assert list(store.latest_states(["s2", "zz"])) == ["s2"]


def test_what_was_written_is_there_after_reopening(store_url: str) -> None:
    with open_store(store_url) as first:
        stored(first, building(1))
    with open_store(store_url) as second:
        assert second.get_asset("b1").name == "Tower 1"


def test_optimize_keeps_every_asset_and_the_indexes_working(store: Store) -> None:
    stored(store, *(building(n) for n in range(1, 6)), Asset(id="s1", kind=Kind.STOREY, parent_id="b1"))
    store.optimize()
    assert store.count_by_kind() == {"building": 5, "storey": 1}
    assert [a.id for a in store.children("b1")] == ["s1"]
    x, y = LUJIAZUI
    assert [a.id for a in store.find_assets(AssetQuery(bbox=(x + 0.0021, y, x + 0.0031, y + 0.0002)))] == ["b2", "b3"]
    stored(store, building(1, status="renovated"))  # upserts still find the primary key
    assert store.get_asset("b1").status == "renovated"


@pytest.mark.parametrize(
    "odd", ["o'brien", "x' OR '1'='1", "back\\slash", "nul\x00byte", "引号'’", "'; DROP TABLE assets; --"]
)
def test_ids_with_quotes_backslashes_and_nul_are_matched_exactly(store: Store, odd: str) -> None:
    if "\x00" in odd and store.url.startswith("postgres"):
        pytest.skip("PostgreSQL text cannot hold NUL")
    stored(store, building(1), Asset(id=odd, kind=Kind.LIFT, parent_id=odd + "-parent"))
    assert store.get_asset(odd).id == odd
    assert [a.id for a in store.children(odd + "-parent")] == [odd]
    assert store.find_assets(AssetQuery(ids=[odd + "'", "b1"]))[0].id == "b1"
    assert store.count_assets(AssetQuery()) == 2


def test_a_property_key_with_quotes_slashes_or_path_syntax_names_exactly_itself(store: Store) -> None:
    keys = ["a\\", 'a"b', "x/y", "t~1", "Pset.Name", "$.x", "*", "[0]", "中文"]
    stored(store, *[Asset(id=f"a{i}", kind=Kind.LIFT, props={key: f"v{i}"}) for i, key in enumerate(keys)])
    for i, key in enumerate(keys):
        assert [a.id for a in store.find_assets(AssetQuery(where={f"props.{key}": f"v{i}"}))] == [f"a{i}"], key
