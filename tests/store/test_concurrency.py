"""Many threads on one store, as a server's request threads use it: on DuckDB and PostGIS alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from cim.model import AssetBatch, Kind
from cim.store import AssetQuery, Store
from tests.store.test_contract import building

BATCH = 50


def test_reads_go_on_while_a_change_is_open_and_never_see_half_of_it(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets([building(n) for n in range(BATCH)]))
    inside, release = threading.Event(), threading.Event()

    def slow_batches() -> Iterator[AssetBatch]:
        yield AssetBatch.from_assets([building(n) for n in range(BATCH, 2 * BATCH)])
        inside.set()
        assert release.wait(30)
        yield AssetBatch.from_assets([building(n) for n in range(2 * BATCH, 3 * BATCH)])

    writer = threading.Thread(target=lambda: store.replace_source("slow", slow_batches()))
    writer.start()
    try:
        assert inside.wait(30)
        started = time.monotonic()
        counts = [store.count_assets(AssetQuery(kinds=(Kind.BUILDING,))) for _ in range(5)]
        assert time.monotonic() - started < 5  # not held up by the open change
        assert counts == [BATCH] * 5  # the change is invisible until it commits
    finally:
        release.set()
        writer.join(30)
    assert store.count_assets(AssetQuery(kinds=(Kind.BUILDING,))) == 3 * BATCH


def test_many_threads_read_while_one_writes_and_all_answers_are_whole(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets([building(n) for n in range(BATCH)]))
    stop = threading.Event()
    seen: list[int] = []

    def write() -> None:
        for start in range(BATCH, 6 * BATCH, BATCH):
            store.upsert_assets(AssetBatch.from_assets([building(n) for n in range(start, start + BATCH)]))
        stop.set()

    def read(n: int) -> int:
        answers = 0
        while not stop.is_set() or answers < 3:
            found = store.find_assets(AssetQuery(kinds=(Kind.BUILDING,)))
            seen.append(len(found))
            assert store.get_asset(f"b{n % BATCH}").id == f"b{n % BATCH}"
            answers += 1
        return answers

    with ThreadPoolExecutor(17) as pool:
        readers = [pool.submit(read, n) for n in range(16)]
        pool.submit(write).result(60)
        assert all(r.result(60) >= 3 for r in readers)
    assert set(seen) <= {BATCH * k for k in range(1, 7)}  # a batch is seen whole or not at all
    assert store.count_assets(AssetQuery(kinds=(Kind.BUILDING,))) == 6 * BATCH


def test_a_derived_table_found_stale_by_many_threads_at_once_is_rebuilt_and_right(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets([building(n) for n in range(BATCH)]))
    select = "SELECT id FROM assets WHERE kind = 'building'"
    derived = store.derived_table  # type: ignore[attr-defined]

    def count(_: int) -> int:
        name = derived("cim_test_buildings", select)
        return int(store.select(f"SELECT count(*) AS n FROM {name}").column("n")[0].as_py())  # type: ignore[attr-defined]

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(count, range(24))) == {BATCH}
    store.upsert_assets(AssetBatch.from_assets([building(BATCH)]))
    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(count, range(24))) == {BATCH + 1}


def test_a_read_past_the_time_limit_is_stopped_with_a_clear_error(store_url: str) -> None:
    from cim.errors import StoreTimeout
    from cim.store.duckdb import DuckDBStore
    from cim.store.postgis import PostGISStore

    slow = "SELECT count(*) AS n FROM range(100000000000) a"
    if store_url.startswith("postgres"):
        store: Store = PostGISStore(store_url, read_timeout_s=0.5)
        slow = "SELECT pg_sleep(30) AS n"
    else:
        store = DuckDBStore(store_url, read_timeout_s=0.5)
    with store:
        started = time.monotonic()
        try:
            store.select(slow)  # type: ignore[attr-defined]
        except StoreTimeout as exc:
            assert "ran longer than 0.5 s" in str(exc)
        else:
            raise AssertionError("the slow read was not stopped")
        assert time.monotonic() - started < 5
        assert store.count_assets(AssetQuery()) == 0  # and the store still answers


def test_the_pools_check_drops_a_connection_the_server_ended_without_a_round_trip(postgres_url: str) -> None:
    import psycopg
    import pytest

    from cim.store.postgis import _alive

    with (
        psycopg.connect(postgres_url, autocommit=True) as healthy,
        psycopg.connect(postgres_url, autocommit=True) as admin,
    ):
        _alive(healthy)  # an idle healthy connection passes, and stays usable
        assert healthy.execute("SELECT 1").fetchone() == (1,)
        ended = psycopg.connect(postgres_url, autocommit=True)
        pid = ended.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(psycopg.OperationalError):
            _alive(ended)
        assert ended.closed  # closed, so the pool discards it rather than lending it again
        _alive(healthy)
