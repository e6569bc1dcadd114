"""Within-distance questions by bands (cim.store.near_bands) answer exactly what the one statement answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from shapely.geometry import Point, box

from cim.model import Asset, AssetBatch, Kind
from cim.store import AssetQuery, Store, open_store
from cim.store.district_vitals import near_counts_by_district
from cim.store.near_bands import WHOLE, Band, bands_for
from cim.store.questions import near_rows
from cim.store.sql import Where
from cim.store.sqlstore import sql_store
from cim.store.vitals import near_counts

WEST, SOUTH = 121.40, 31.10
PER_BAND = 40  # about ten bands of the layer below
EDGE_LAT = SOUTH + 0.0105  # a band edge the tests below place assets around


def _layer(store: Store) -> None:
    """400 homes (footprints and points) and 12 parks over 2 km, a cluster 20 km away (empty bands between), a
    home without a geometry, and homes whose nearest park lies just across a latitude where bands meet."""
    rng = np.random.default_rng(7)
    assets: list[Asset] = []
    for i in range(400):
        x, y = WEST + rng.random() * 0.02, SOUTH + rng.random() * 0.02
        geom = Point(x, y) if i % 3 == 0 else box(x, y, x + 0.0002, y + 0.00015)
        assets.append(Asset(id=f"home-{i:03d}", kind=Kind.BUILDING, name=f"Home {i}", geom=geom))
    for i in range(60):  # a cluster far north-east: a gap of empty latitudes between
        x, y = WEST + 0.2 + rng.random() * 0.005, SOUTH + 0.2 + rng.random() * 0.005
        assets.append(Asset(id=f"far-{i:02d}", kind=Kind.BUILDING, geom=box(x, y, x + 0.0001, y + 0.0001)))
    for i in range(12):
        x, y = WEST + rng.random() * 0.02, SOUTH + rng.random() * 0.02
        assets.append(Asset(id=f"park-{i:02d}", kind=Kind.PARK, geom=box(x, y, x + 0.002, y + 0.0015)))
    assets.append(Asset(id="park-far", kind=Kind.PARK, geom=box(WEST + 0.2, SOUTH + 0.2, WEST + 0.201, SOUTH + 0.201)))
    # the nearest park just north of a band edge, the home just south of it
    edge_park = box(WEST + 0.05, EDGE_LAT + 0.001, WEST + 0.051, EDGE_LAT + 0.002)
    assets.append(Asset(id="park-edge", kind=Kind.PARK, geom=edge_park))
    assets.append(Asset(id="home-edge", kind=Kind.BUILDING, geom=Point(WEST + 0.0505, EDGE_LAT - 0.0001)))
    assets.append(Asset(id="home-nowhere", kind=Kind.BUILDING, name="no geometry"))
    store.upsert_assets(AssetBatch.from_assets(assets))


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def layer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The layer, written once per backend: the tests only read it."""
    if request.param == "duckdb":
        url = str(tmp_path_factory.mktemp("near") / "city.duckdb")
    else:
        url = f"{request.getfixturevalue('postgres_url')}?schema=t_{uuid.uuid4().hex[:12]}"
    with open_store(url) as store:
        _layer(store)
        yield store
    if request.param == "postgis":
        with psycopg.connect(url.split("?")[0], autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {url.split('schema=')[1]} CASCADE")


def _rows(store: Store, distance_m: float, *, beyond: bool, banded: bool, per_band: int = PER_BAND) -> list[dict]:
    extent = store.extent(kind=Kind.BUILDING)
    assert extent is not None
    return near_rows(store, kind=Kind.BUILDING, near_kind=Kind.PARK, distance_m=distance_m, extent=extent,
                     bbox=None, beyond=beyond, banded=banded, per_band=per_band)  # fmt: skip


def test_bands_cover_every_asset_once_and_the_one_statement_is_a_single_band(layer: Store) -> None:
    db = sql_store(layer)
    selected = Where(f"a.kind = {db.dialect.param}", ["building"])
    assert bands_for(db, selected, "a") == [WHOLE]  # 463 assets: under the size that bands
    bands = bands_for(db, selected, "a", banded=True, per_band=PER_BAND)
    assert len(bands) >= 8 and bands[0].first and not any(b.first for b in bands[1:])
    ids = [
        row["id"]
        for band in bands
        for row in db.select(
            f"SELECT a.id FROM {db.assets_table} a WHERE {selected.sql} AND {band.where(db.dialect, 'a').sql}",
            [*selected.params, *band.where(db.dialect, "a").params],
        ).to_pylist()
    ]
    assert len(ids) == len(set(ids)) == layer.count_assets(AssetQuery(kinds=(Kind.BUILDING,)))
    assert "home-nowhere" in ids


def test_banded_within_distance_equals_the_one_statement(layer: Store) -> None:
    for distance_m in (0.0, 50.0, 500.0):
        for beyond in (False, True):
            whole = _rows(layer, distance_m, beyond=beyond, banded=False)
            banded = _rows(layer, distance_m, beyond=beyond, banded=True)
            assert banded == whole, (distance_m, beyond)
            assert len(whole) > 0
            assert [r["id"] for r in banded] == sorted(r["id"] for r in banded)
        # beyond is the complement of near among the homes with a geometry (the two are written apart)
        near = {r["id"] for r in _rows(layer, distance_m, beyond=False, banded=True)}
        far = {r["id"] for r in _rows(layer, distance_m, beyond=True, banded=True)}
        assert not near & far and len(near | far) == 461


def test_a_home_finds_its_park_in_the_next_band(layer: Store) -> None:
    db = sql_store(layer)
    selected = Where(f"a.kind = {db.dialect.param}", ["building"])
    split = [Band(None, EDGE_LAT, first=True), Band(EDGE_LAT, None)]
    home = next(band for band in split if _in_band(layer, band, "home-edge", selected))
    park = next(band for band in split if _in_band(layer, band, "park-edge", Where("TRUE", [])))
    assert home is not park
    rows = {r["id"]: r for r in _rows(layer, 150.0, beyond=False, banded=True, per_band=PER_BAND)}
    assert rows["home-edge"]["near_id"] == "park-edge"
    assert rows["home-edge"]["distance_m"] == pytest.approx(122, abs=3)


def _in_band(store: Store, band: Band, asset_id: str, selected: Where) -> bool:
    db = sql_store(store)
    p = db.dialect.param
    within = band.where(db.dialect, "a")
    sql = f"SELECT count(*) AS n FROM {db.assets_table} a WHERE a.id = {p} AND {selected.sql} AND {within.sql}"
    return bool(db.select(sql, [asset_id, *selected.params, *within.params]).to_pylist()[0]["n"])


def test_a_home_exactly_at_the_distance_is_near_on_both_paths(layer: Store) -> None:
    rows = _rows(layer, 500.0, beyond=False, banded=False)
    exact = max(rows, key=lambda r: r["distance_m"])  # the store's own measure of that pair, taken as the limit
    at_limit = float(exact["distance_m"])
    for banded in (False, True):
        near = {r["id"] for r in _rows(layer, at_limit, beyond=False, banded=banded)}
        far = {r["id"] for r in _rows(layer, at_limit, beyond=True, banded=banded)}
        assert exact["id"] in near and exact["id"] not in far
        assert not near & far


def test_banded_counts_equal_the_one_statement_city_wide_and_per_district(layer: Store) -> None:
    extent = layer.extent(kind=Kind.BUILDING)
    assert extent is not None
    query = AssetQuery(kinds=(Kind.BUILDING,))
    terms = {"query": query, "near_kind": Kind.PARK, "distance_m": 300.0, "extent": extent}
    whole = near_counts(layer, banded=False, **terms)
    assert whole == near_counts(layer, banded=True, per_band=PER_BAND, **terms)
    assert whole[0] == 462  # the home without a geometry is counted, once
    assert 0 < whole[1] < whole[0]
    near_ids = {r["id"] for r in _rows(layer, 300.0, beyond=False, banded=False)}
    assert whole[1] == len(near_ids)
    by_district = near_counts_by_district(layer, banded=True, per_band=PER_BAND, **terms)
    assert by_district == near_counts_by_district(layer, banded=False, **terms)
    assert sum(t for t, _ in by_district.values()) == whole[0]


def test_a_bbox_with_few_assets_and_an_empty_one_answer_alike(layer: Store) -> None:
    extent = layer.extent(kind=Kind.BUILDING)
    assert extent is not None
    for bbox in ((WEST, SOUTH, WEST + 0.004, SOUTH + 0.02), (WEST - 1, SOUTH - 1, WEST - 0.9, SOUTH - 0.9)):
        terms = {"kind": Kind.BUILDING, "near_kind": Kind.PARK, "distance_m": 200.0, "extent": extent, "bbox": bbox}
        answers = [
            near_rows(layer, beyond=beyond, banded=banded, per_band=5, **terms)
            for beyond in (False, True)
            for banded in (False, True)
        ]
        assert answers[0] == answers[1] and answers[2] == answers[3]


def test_bands_of_no_assets_are_the_whole(store: Store) -> None:
    db = sql_store(store)
    assert bands_for(db, Where(f"a.kind = {db.dialect.param}", ["building"]), "a", banded=True) == [WHOLE]
