"""Asset history on both stores (issue 26): versions, the model as of a date, what changed — against a history
built here by hand, so every expected answer is known."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from shapely.geometry import LineString, box

from cim.errors import InvalidInput
from cim.model import Asset, AssetBatch, Kind
from cim.store import AssetQuery, Store
from cim.store.changes import Window, change_rows, change_summary
from cim.store.sqlstore import sql_store

Y2022, Y2023, Y2024 = (datetime(y, 1, 1, tzinfo=UTC) for y in (2022, 2023, 2024))


def pipe(n: int, *, installed: date, network: str = "gas", material: str = "steel") -> Asset:
    line = LineString([(121.50 + n * 0.01, 31.23), (121.50 + n * 0.01, 31.24)])  # ~1,109 m north-south
    return Asset(
        id=f"p{n}",
        kind=Kind.PIPE,
        geom=line,
        name=f"main {n}",
        source="pipes",
        network=network,
        material=material,
        install_date=installed,
        depth_m=1.5,
    )  # type: ignore[arg-type]


def district() -> Asset:
    return Asset(
        id="area:310115",
        kind=Kind.DISTRICT,
        geom=box(121.4, 31.1, 121.7, 31.4),
        name="浦东新区",
        source="areas",
        props={"code": "310115", "name_en": "Pudong"},
    )  # type: ignore[arg-type]


def ingest(store: Store, at: datetime, *assets: Asset) -> None:
    store.replace_source("pipes", [AssetBatch.from_assets(assets)], at=at)


@pytest.fixture
def history(store: Store) -> Store:
    """2022: p1, p2 gas and p3 water. 2023: p1 renewed, p2 removed, p4 added, p3 unchanged. 2024: p3 re-lined."""
    store.replace_source("areas", [AssetBatch.from_assets([district()])], at=Y2022)
    ingest(
        store,
        Y2022,
        pipe(1, installed=date(1990, 5, 1)),
        pipe(2, installed=date(1985, 1, 1)),
        pipe(3, installed=date(2001, 1, 1), network="water"),
    )
    ingest(
        store,
        Y2023,
        pipe(1, installed=date(2022, 6, 1), material="PE"),
        pipe(3, installed=date(2001, 1, 1), network="water"),
        pipe(4, installed=date(2022, 9, 1)),
    )
    store.upsert_assets(
        AssetBatch.from_assets([pipe(3, installed=date(2001, 1, 1), network="water", material="lined steel")]),
        at=Y2024,
        by="engineer",
    )
    return store


def ids(store: Store) -> list[str]:
    return [a.id for a in store.find_assets(AssetQuery(kinds=[Kind.PIPE]))]


def test_the_model_as_of_a_date_is_the_versions_valid_then(history: Store) -> None:
    db = sql_store(history)
    assert ids(history) == ["p1", "p3", "p4"]
    mid_2022 = db.as_of(datetime(2022, 6, 30, tzinfo=UTC))
    assert ids(mid_2022) == ["p1", "p2", "p3"]
    assert mid_2022.get_asset("p1").install_date == date(1990, 5, 1)
    assert mid_2022.get_asset("p3").material == "steel"
    mid_2023 = db.as_of(datetime(2023, 6, 30, tzinfo=UTC))
    assert ids(mid_2023) == ["p1", "p3", "p4"]
    assert (mid_2023.get_asset("p1").install_date, mid_2023.get_asset("p1").material) == (date(2022, 6, 1), "PE")
    assert mid_2023.get_asset("p3").material == "steel"
    assert history.get_asset("p3").material == "lined steel"
    assert mid_2023.count_by_kind() == {"district": 1, "pipe": 3}
    # a change at exactly a date is in the model as of that date
    assert db.as_of(Y2023).get_asset("p1").material == "PE"


def test_an_unchanged_asset_keeps_one_version_and_each_change_adds_one(history: Store) -> None:
    db = sql_store(history)
    rows = db.select_rows(
        "SELECT id, count(*) AS n, sum(CASE WHEN valid_to IS NULL THEN 1 ELSE 0 END) AS current "
        "FROM asset_versions GROUP BY id ORDER BY id"
    )
    assert {r["id"]: (int(r["n"]), int(r["current"])) for r in rows} == {
        "area:310115": (1, 1),
        "p1": (2, 1),
        "p2": (1, 0),
        "p3": (2, 1),
        "p4": (1, 1),
    }
    made = db.select_rows("SELECT change, changed_by FROM asset_versions WHERE id = 'p3' AND valid_to IS NULL")
    assert made == [{"change": "edit", "changed_by": "engineer"}]


def test_what_changed_in_2023_counts_and_measures_by_district(history: Store) -> None:
    db = sql_store(history)
    window = Window(datetime(2022, 6, 30, tzinfo=UTC), datetime(2023, 6, 30, tzinfo=UTC))
    summary = change_summary(db, window, by=("network", "district", "change"))
    got = {(r["network"], r["district"], r["change"]): (r["count"], r["length_m"]) for r in summary}
    assert set(got) == {("gas", "310115", "renewed"), ("gas", "310115", "removed"), ("gas", "310115", "added")}
    for count, length in got.values():
        assert count == 1
        assert length == pytest.approx(1109, rel=0.01)
    rows, total = change_rows(db, window)
    assert total == 3
    by_id = {r["id"]: r for r in rows}
    assert by_id["p1"]["change"] == "renewed"
    assert set(by_id["p1"]["fields"]) == {"install_date", "material"}
    assert by_id["p1"]["before"]["install_date"] == "1990-05-01"
    assert (by_id["p2"]["change"], by_id["p4"]["change"]) == ("removed", "added")
    rows_2024, _ = change_rows(db, Window(datetime(2023, 6, 30, tzinfo=UTC), datetime(2024, 6, 30, tzinfo=UTC)))
    assert [(r["id"], r["change"], r["fields"]) for r in rows_2024] == [("p3", "changed", ["material"])]


def test_a_change_undone_inside_the_window_is_no_change(store: Store) -> None:
    ingest(store, Y2022, pipe(1, installed=date(1990, 1, 1)))
    ingest(store, Y2022 + timedelta(days=100), pipe(1, installed=date(1990, 1, 1), material="PE"))
    ingest(store, Y2022 + timedelta(days=200), pipe(1, installed=date(1990, 1, 1)))
    window = Window(Y2022 + timedelta(days=50), Y2023)
    assert change_rows(sql_store(store), window) == ([], 0)


def test_removing_a_source_ends_its_assets_and_keeps_their_past(history: Store) -> None:
    history.delete_assets(source="pipes", at=Y2024 + timedelta(days=10))
    db = sql_store(history)
    assert ids(history) == []
    assert ids(db.as_of(datetime(2023, 6, 30, tzinfo=UTC))) == ["p1", "p3", "p4"]
    summary = change_summary(db, Window(Y2024, Y2024 + timedelta(days=20)), by=("change",))
    assert summary == [{"change": "removed", "count": 3, "length_m": pytest.approx(3 * 1109, rel=0.01)}]


def test_bad_dates_are_refused_clearly_and_lose_nothing(history: Store) -> None:
    db = sql_store(history)
    with pytest.raises(InvalidInput, match="before the model's history, which begins 2022-01-01"):
        db.as_of(datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput, match="in the future"):
        db.as_of(datetime.now(UTC) + timedelta(days=30))
    with pytest.raises(InvalidInput, match="before the latest recorded change"):
        ingest(history, datetime(2022, 6, 1, tzinfo=UTC), pipe(9, installed=date(2020, 1, 1)))
    with pytest.raises(InvalidInput, match="in the future"):
        ingest(history, datetime.now(UTC) + timedelta(days=1), pipe(9, installed=date(2020, 1, 1)))
    with pytest.raises(InvalidInput, match="read-only"):
        db.as_of(Y2023).upsert_assets(AssetBatch.from_assets([pipe(9, installed=date(2020, 1, 1))]))
    with pytest.raises(InvalidInput, match="must end after it starts"):
        Window(Y2024, Y2023)
    assert ids(history) == ["p1", "p3", "p4"]
    assert ids(db.as_of(datetime(2022, 6, 30, tzinfo=UTC))) == ["p1", "p2", "p3"]


def test_concurrent_edits_of_one_asset_each_leave_a_version(store: Store) -> None:
    ingest(store, Y2022, pipe(1, installed=date(1990, 1, 1)))
    db = sql_store(store)
    errors: list[BaseException] = []

    def edit(worker: int) -> None:
        try:
            for i in range(5):
                db.edit_asset(
                    "p1", lambda a, m=f"m{worker}-{i}": a and dataclasses.replace(a, material=m), by=f"w{worker}"
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = db.select_rows(
        "SELECT count(*) AS n, sum(CASE WHEN valid_to IS NULL THEN 1 ELSE 0 END) AS current FROM asset_versions"
    )
    assert (int(rows[0]["n"]), int(rows[0]["current"])) == (31, 1)
    current = db.select_rows("SELECT material FROM asset_versions WHERE valid_to IS NULL")
    assert current[0]["material"] == store.get_asset("p1").material


def test_an_items_page_as_of_a_date_in_a_small_window_reads_the_versions_then_after_optimize(history: Store) -> None:
    from cim.queries.items import ItemsQuery, find_features

    history.optimize()  # reorders the versions too (DuckDB): none is lost, the page reads them by window
    db = sql_store(history)
    assert db.select_rows("SELECT count(*) AS n FROM asset_versions")[0]["n"] == 7
    window = (121.505, 31.225, 121.525, 31.245)  # p1 and p2 only
    page = find_features(db.as_of(datetime(2022, 6, 30, tzinfo=UTC)), ItemsQuery(kind=Kind.PIPE, bbox=window))
    assert [(a.id, a.install_date) for a in page.assets] == [("p1", date(1990, 5, 1)), ("p2", date(1985, 1, 1))]
    assert page.matched == 2
    now = find_features(history, ItemsQuery(kind=Kind.PIPE, bbox=window))
    assert [(a.id, a.install_date) for a in now.assets] == [("p1", date(2022, 6, 1))]
