"""Locating points and assets in the administrative areas, on DuckDB and PostGIS alike, on hand-made areas.

  lon 121.0      121.1      121.2      121.3      121.4
31.2 ┌──────────┬──────────┬──────────┬──────────┐
     │ cell …001│ cell …002│ street   │ district │
     │          │          │ 900002001│ 900002   │
31.1 │  street 900001001   ├──────────┤ (no      │
     │  (= district 900001)│ cell     │ street)  │
     │          │          │900002001001         │
31.0 └──────────┴──────────┴──────────┴──────────┘   city 900000 = both districts
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString, Point, box

from cim.model import Asset, AssetBatch, Kind
from cim.store import Store
from cim.store.areas import NOWHERE, AreaCodes, area_tree, areas_of_assets, asset_areas, locate
from cim.store.sqlstore import sql_store

AREAS = [
    ("900000", Kind.CITY, None, box(121.0, 31.0, 121.4, 31.2)),
    ("900001", Kind.DISTRICT, "900000", box(121.0, 31.0, 121.2, 31.2)),
    ("900002", Kind.DISTRICT, "900000", box(121.2, 31.0, 121.4, 31.2)),
    ("900001001", Kind.STREET, "900001", box(121.0, 31.0, 121.2, 31.2)),
    ("900002001", Kind.STREET, "900002", box(121.2, 31.0, 121.3, 31.2)),
    ("900001001001", Kind.GRID_CELL, "900001001", box(121.0, 31.0, 121.1, 31.2)),
    ("900001001002", Kind.GRID_CELL, "900001001", box(121.1, 31.0, 121.2, 31.2)),
    ("900002001001", Kind.GRID_CELL, "900002001", box(121.2, 31.0, 121.3, 31.1)),
]
CELL_1 = AreaCodes("900001001001", "900001001", "900001")
CELL_2 = AreaCodes("900001001002", "900001001", "900001")
CELL_3 = AreaCodes("900002001001", "900002001", "900002")


def area_assets() -> list[Asset]:
    return [
        Asset(
            id=f"area:{code}",
            kind=kind,
            name=f"区域{code}",
            parent_id=None if parent is None else f"area:{parent}",
            source="areas.parquet:areas:grid_cell",
            geom=geom,
            props={"code": code, "level": str(kind), "name_en": f"Area {code}"},
        )
        for code, kind, parent, geom in AREAS
    ]


def with_areas(store: Store, *others: Asset) -> Store:
    store.upsert_assets(AssetBatch.from_assets([*area_assets(), *others]))
    return store


def test_the_tree_has_every_area_with_its_parent(store: Store) -> None:
    tree = area_tree(with_areas(store))
    assert set(tree) == {code for code, *_ in AREAS}
    assert tree["900000"].parent is None and tree["900000"].level is Kind.CITY
    cell = tree["900002001001"]
    assert (cell.parent, cell.level, cell.name, cell.name_en) == ("900002001", Kind.GRID_CELL, "区域900002001001",
                                                                   "Area 900002001001")  # fmt: skip
    assert tree[tree[cell.parent].parent].parent == "900000"  # type: ignore[index]


def test_a_point_gets_its_cell_street_and_district(store: Store) -> None:
    with_areas(store)
    assert locate(store, [(121.05, 31.1), (121.25, 31.05), (121.15, 31.19)]) == [CELL_1, CELL_3, CELL_2]


def test_a_point_on_the_edge_two_cells_share_takes_the_lower_code(store: Store) -> None:
    with_areas(store)
    assert locate(store, [(121.1, 31.1), (121.1, 31.0)]) == [CELL_1, CELL_1]


def test_a_point_in_no_cell_still_gets_the_street_and_district_that_hold_it(store: Store) -> None:
    with_areas(store)
    in_street, in_district = locate(store, [(121.25, 31.15), (121.35, 31.1)])
    assert in_street == AreaCodes(None, "900002001", "900002")
    assert in_district == AreaCodes(None, None, "900002")


def test_outside_every_area_and_no_points_at_all(store: Store) -> None:
    with_areas(store)
    assert locate(store, [(0.0, 0.0), (121.5, 31.1)]) == [NOWHERE, NOWHERE]
    assert locate(store, []) == []
    assert locate(store, [(200.0, 95.0)]) == [NOWHERE]  # no real place: nowhere, not an error


def test_a_batch_of_points_agrees_with_shapely(store: Store) -> None:
    with_areas(store)
    rng = np.random.default_rng(3)
    points = list(zip(rng.uniform(120.95, 121.45, 100).tolist(), rng.uniform(30.95, 31.25, 100).tolist(), strict=True))
    expected = []
    for x, y in points:
        held = sorted(code for code, kind, _, geom in AREAS if kind is not Kind.CITY and geom.intersects(Point(x, y)))
        cell = next((c for c in held if len(c) == 12), None)
        street = next((c for c in held if len(c) == 9), None)
        district = next((c for c in held if len(c) == 6), None)
        expected.append(AreaCodes(cell, street, district))
    assert locate(store, points) == expected


def test_every_other_asset_knows_its_areas_and_follows_a_move(store: Store) -> None:
    building = Asset(id="b1", kind=Kind.BUILDING, geom=box(121.12, 31.05, 121.13, 31.06), height_m=10)
    others = [
        building,
        Asset(id="p1", kind=Kind.POLE, geom=Point(121.25, 31.15)),  # a street, no cell
        Asset(id="pipe1", kind=Kind.PIPE, geom=LineString([(121.01, 31.01), (121.02, 31.01)])),
        Asset(id="far", kind=Kind.PARK, geom=box(100.0, 10.0, 100.1, 10.1)),
    ]
    with_areas(store, *others)
    ids = ["b1", "p1", "pipe1", "far", "area:900001", "no-such-asset"]
    assert areas_of_assets(store, ids) == {
        "b1": CELL_2,
        "p1": AreaCodes(None, "900002001", "900002"),
        "pipe1": CELL_1,
        "far": NOWHERE,
    }
    table = asset_areas(store)
    assert sql_store(store).select(f"SELECT count(*) AS n FROM {table}").to_pylist() == [{"n": 4}]
    moved = Asset(id="b1", kind=Kind.BUILDING, geom=shapely.affinity.translate(building.geom, 0.1), height_m=10)
    store.upsert_assets(AssetBatch.from_assets([moved]))
    assert areas_of_assets(store, ["b1"]) == {"b1": CELL_3}
    assert areas_of_assets(store, []) == {}


def test_a_store_with_no_areas_locates_nothing(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets([Asset(id="p1", kind=Kind.POLE, geom=Point(121.25, 31.15))]))
    assert area_tree(store) == {}
    assert locate(store, [(121.25, 31.15)]) == [NOWHERE]
    assert areas_of_assets(store, ["p1"]) == {"p1": NOWHERE}
