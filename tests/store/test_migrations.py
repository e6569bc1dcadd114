"""Stores upgrade in place: a store written by the release before migrations (tests/store/fixtures) opens, upgrades
and keeps every row; a newer store is refused; a step that fails or a process killed mid-step changes nothing."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from cim.errors import StoreError, StoreUnavailable
from cim.model import AssetBatch, Kind
from cim.store import AssetQuery, open_store
from cim.store.duckdb import DuckDBStore
from cim.store.meshes import MeshStore, mesh_path_for
from cim.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration, describe
from cim.store.postgis import PostGISStore
from cim.store.schema import BBOX_COLUMNS, COLUMN_NAMES
from cim.store.sqlstore import SqlStore

FIXTURES = Path(__file__).parent / "fixtures"
_HALF_DONE = ("CREATE TABLE half_done (x INTEGER)", "SELECT * FROM nowhere")
#: A step whose first statement works and whose second fails.
FAILING = Migration(SCHEMA_VERSION + 1, "fails", _HALF_DONE, _HALF_DONE)


def v1_duckdb(folder: Path) -> Path:
    """The fixture's DuckDB store and its meshes file, unpacked into ``folder``."""
    for name in ("v1.duckdb", "v1.meshes.duckdb"):
        with gzip.open(FIXTURES / f"{name}.gz") as packed, (folder / name).open("wb") as out:
            shutil.copyfileobj(packed, out)
    return folder / "v1.duckdb"


@pytest.fixture
def v1_postgis(postgis_schema_url: str, postgres_url: str) -> str:
    """The fixture's PostGIS dump restored into the test's own schema."""
    schema = postgis_schema_url.rsplit("schema=", 1)[1]
    dump = (FIXTURES / "v1.postgis.sql").read_text().replace("cim_v1_fixture", schema)
    sql = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))  # psql's \restrict
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(sql)  # type: ignore[arg-type]  (a dump of our own, no parameters)
    return postgis_schema_url


def open_with(url: str, migrations: Sequence[Migration] = MIGRATIONS) -> SqlStore:
    if url.startswith("postgresql://"):
        return PostGISStore(url, migrations=migrations)
    return DuckDBStore(url, migrations=migrations)


def version_of(url: str) -> int:
    with open_store(url, upgrade=False) as store:
        assert isinstance(store, SqlStore)
        return store.schema_database().version()


def tables_of(store: SqlStore) -> set[str]:
    db = store.schema_database()
    rows = db.run(f"SELECT table_name FROM information_schema.tables WHERE table_schema = {db.param}", [db.schema])
    return {name for (name,) in rows}


def assert_the_fixture_data_is_all_there(store: SqlStore) -> None:
    assert store.count_by_kind() == {"building": 1, "lift": 1, "pipe": 1, "sensor": 1}
    lift = store.get_asset("lift-1")
    assert (lift.parent_id, lift.install_date, lift.status, lift.source) == (
        "b1",
        date(2005, 6, 1),
        "in_service",
        "fixture",
    )
    tower = store.get_asset("b1")
    assert tower.props == {"Pset.Use": "office", "floors": 30} and tower.storeys == 30
    assert [a.id for a in store.find_assets(AssetQuery(bbox=(121.499, 31.229, 121.501, 31.231)))] == [
        "b1",
        "lift-1",
        "p1",
        "s1",
    ]
    assert [r.value for r in store.readings("s1", newest_first=False)] == [0.0, 1.0, 2.0]
    assert store.latest_states(["s1"])["s1"].time == datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert [(a.id, a.message) for a in store.alerts(open=True)] == [("a1", "high")]
    assert store.select("SELECT id FROM fixture_lifts").column("id").to_pylist() == ["lift-1"]
    assert store.find_assets(AssetQuery(kinds=(Kind.PIPE,)))[0].diameter_mm == 300.0


def assert_upgraded_from_v1(store: SqlStore) -> None:
    assert store.schema_upgrade is not None
    assert (store.schema_upgrade.from_version, store.schema_upgrade.to_version) == (1, SCHEMA_VERSION)
    described = describe(store.schema_database(), store.url)
    assert described["version"] == SCHEMA_VERSION and described["pending"] == []
    history = described["history"]
    assert [(row["version"], row["name"]) for row in history] == [(m.version, m.name) for m in MIGRATIONS]
    assert history[0]["applied_at"] is None  # step 1 ran before the history was kept
    assert all(row["applied_at"] is not None for row in history[1:])


def assert_history_seeded(store: SqlStore) -> None:
    """Step 7 gave every asset one current version, from the upgrade, whose hash is the one a change compares: an
    unchanged asset written again adds no version, a changed one does."""
    rows = store.select_rows("SELECT id, change, valid_to FROM asset_versions ORDER BY id")
    assert [(r["id"], r["change"], r["valid_to"]) for r in rows] == [
        (i, "migrate", None) for i in ("b1", "lift-1", "p1", "s1")
    ]
    store.upsert_assets(AssetBatch.from_assets([store.get_asset("b1")]))
    store.upsert_assets(AssetBatch.from_assets([dataclasses.replace(store.get_asset("p1"), status="renewed")]))
    counts = store.select_rows("SELECT id, count(*) AS n FROM asset_versions GROUP BY id ORDER BY id")
    assert [(r["id"], int(r["n"])) for r in counts] == [("b1", 1), ("lift-1", 1), ("p1", 2), ("s1", 1)]


def test_a_v1_duckdb_store_upgrades_in_place_and_keeps_every_row(tmp_path: Path) -> None:
    path = v1_duckdb(tmp_path)
    with DuckDBStore(path) as store:
        assert_upgraded_from_v1(store)
        assert_the_fixture_data_is_all_there(store)
        assert_history_seeded(store)
    with MeshStore(mesh_path_for(str(path)), read_only=True) as meshes:
        mesh = meshes.get(["b1"]).to_meshes()[0]
        assert mesh.color == (1.0, 0.0, 0.0, 1.0) and mesh.triangles.tolist() == [[0, 1, 2]]
    with DuckDBStore(path) as again:
        assert again.schema_upgrade is None  # upgraded once


@pytest.mark.postgis
def test_a_v1_postgis_schema_upgrades_in_place_and_keeps_every_row(v1_postgis: str) -> None:
    with PostGISStore(v1_postgis) as store:
        assert_upgraded_from_v1(store)
        assert_the_fixture_data_is_all_there(store)
        assert_history_seeded(store)
    with PostGISStore(v1_postgis) as again:
        assert again.schema_upgrade is None


def test_a_duckdb_store_is_copied_aside_before_it_is_upgraded_never_over_an_earlier_copy(tmp_path: Path) -> None:
    path = v1_duckdb(tmp_path)
    shutil.copyfile(path, tmp_path / "second.duckdb")
    (tmp_path / "v1.v1-backup.duckdb").write_text("an earlier copy")
    with DuckDBStore(path) as store:
        assert store.schema_upgrade is not None
        assert store.schema_upgrade.backup == tmp_path / "v1.v1-backup-2.duckdb"
        assert (
            "the store as it was is kept at " + str(tmp_path / "v1.v1-backup-2.duckdb")
            in store.schema_upgrade.describe()
        )
    assert (tmp_path / "v1.v1-backup.duckdb").read_text() == "an earlier copy"
    assert version_of(str(tmp_path / "v1.v1-backup-2.duckdb")) == 1
    with DuckDBStore(tmp_path / "second.duckdb") as fresh_copy:
        assert fresh_copy.schema_upgrade is not None
        assert fresh_copy.schema_upgrade.backup == tmp_path / "second.v1-backup.duckdb"
    assert not list(tmp_path.glob("*.partial"))


def test_a_new_store_is_made_at_the_latest_version_with_no_copy(store_url: str, tmp_path: Path) -> None:
    with open_with(store_url) as store:
        assert store.schema_upgrade is not None and store.schema_upgrade.from_version == 0
        assert store.schema_upgrade.backup is None
        columns = store.select("SELECT * FROM assets LIMIT 0").column_names
        assert tuple(columns) == COLUMN_NAMES + BBOX_COLUMNS  # the steps and the batches agree
    assert version_of(store_url) == SCHEMA_VERSION
    assert not list(tmp_path.glob("*backup*"))


def test_a_store_newer_than_this_release_is_refused_naming_both_versions(store_url: str) -> None:
    with open_with(store_url) as store:
        store.schema_database().run("UPDATE cim_meta SET value = '99' WHERE key = 'schema_version'", [])
    with pytest.raises(StoreUnavailable) as refused:
        open_store(store_url)
    assert refused.value.what == f"store {store_url}"
    assert f"has schema version 99, newer than version {SCHEMA_VERSION} that this cim" in refused.value.why
    assert version_of(store_url) == 99  # and left alone


def test_a_step_that_fails_leaves_the_store_as_it_was(store_url: str) -> None:
    with open_with(store_url) as store:
        before = tables_of(store)
    with pytest.raises(StoreError, match=rf"version {FAILING.version} \(fails\) failed.*left as it was, at version"):
        open_with(store_url, [*MIGRATIONS, FAILING])
    assert version_of(store_url) == SCHEMA_VERSION
    with open_with(store_url) as store:
        assert tables_of(store) == before  # half_done, made by the step's first statement, is gone


def test_a_failing_upgrade_of_a_v1_duckdb_store_leaves_it_at_v1(tmp_path: Path) -> None:
    path = v1_duckdb(tmp_path)
    with pytest.raises(StoreError, match="left as it was, at version 1"):
        DuckDBStore(path, migrations=[*MIGRATIONS, FAILING])
    assert version_of(str(path)) == 1
    with DuckDBStore(path) as store:  # and a later, good upgrade still runs
        assert_upgraded_from_v1(store)
        assert_the_fixture_data_is_all_there(store)


_SLOW_OPEN = """
import sys
from cim.store.migrations import MIGRATIONS, Migration
from cim.store.duckdb import DuckDBStore
from cim.store.postgis import PostGISStore
endless = "CREATE TABLE slow AS SELECT sum(i) AS s FROM range(100000000000) t(i)"
slow = Migration(len(MIGRATIONS) + 1, "slow", (endless,),
                 ("SELECT pg_sleep(60)",))
url = sys.argv[1]
(PostGISStore if url.startswith("postgresql://") else DuckDBStore)(url, migrations=[*MIGRATIONS, slow])
"""


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def test_a_process_killed_mid_upgrade_leaves_the_store_as_it_was(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    urls = [str(v1_duckdb(tmp_path)) if backend == "duckdb" else request.getfixturevalue("v1_postgis")]
    for url in urls:
        process = subprocess.Popen([sys.executable, "-c", _SLOW_OPEN, url])
        try:
            _wait_until_migrating(url, process)
        finally:
            process.kill()
            process.wait()
        if url.startswith("postgresql://"):  # the server notices a dead client only when its statement ends
            with psycopg.connect(url.split("?")[0], autocommit=True) as con:
                con.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
                )
        assert version_of(url) == 1
        with open_store(url, upgrade=False) as store:
            assert isinstance(store, SqlStore)
            assert "cim_migrations" not in tables_of(store) and "slow" not in tables_of(store)
        with open_with(url) as store:
            assert_upgraded_from_v1(store)
            assert_the_fixture_data_is_all_there(store)


def _wait_until_migrating(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if url.startswith("postgresql://"):
            admin = url.split("?")[0]
            with psycopg.connect(admin, autocommit=True) as con:
                if con.execute("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'").fetchone():
                    return
        elif list(Path(url).parent.glob("v1.v1-backup.duckdb")):  # copied aside: the transaction begins
            time.sleep(1.0)
            return
        time.sleep(0.1)
    pytest.fail(f"the upgrade never started (exit {process.poll()})")


@pytest.mark.postgis
@pytest.mark.parametrize("start", ["new", "v1"])
def test_processes_opening_one_postgis_schema_at_once_migrate_it_once(
    start: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("v1_postgis" if start == "v1" else "postgis_schema_url")
    barrier = threading.Barrier(4)
    upgrades: list[object] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            with PostGISStore(url, pool_size=1) as store:
                upgrades.append(store.schema_upgrade)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(upgrade is not None for upgrade in upgrades) == 1
    assert version_of(url) == SCHEMA_VERSION


def test_cim_store_info_and_upgrade(tmp_path: Path) -> None:
    path = str(v1_duckdb(tmp_path))

    def cim(*args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "cim", "store", *args, "--store", path, "--json"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return dict(json.loads(done.stdout))

    before = cim("info")
    steps = [{"version": m.version, "name": m.name} for m in MIGRATIONS[1:]]
    assert steps[0] == {"version": 2, "name": "migration history"}
    assert (before["version"], before["history"], before["pending"]) == (1, [], steps)
    assert before["tables"] == {
        "alerts": 1,
        "assets": 4,
        "cim_meta": 3,
        "fixture_lifts": 1,
        "readings": 3,
        "sensor_state": 1,
    }
    upgraded = cim("upgrade")
    assert upgraded == {"store": path, "from_version": 1, "to_version": SCHEMA_VERSION,
                        "steps": steps,
                        "backup": str(tmp_path / "v1.v1-backup.duckdb")}  # fmt: skip
    assert cim("upgrade")["steps"] == []
    after = cim("info")
    assert after["version"] == SCHEMA_VERSION and after["pending"] == []
    assert [row["version"] for row in after["history"]] == [m.version for m in MIGRATIONS]  # type: ignore[union-attr, index]


def test_cim_store_info_of_a_missing_store_is_one_error_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "cim", "store", "info", "--store", str(tmp_path / "nope.duckdb")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"error: store {tmp_path / 'nope.duckdb'} — does not exist\n"
    assert not (tmp_path / "nope.duckdb").exists()
