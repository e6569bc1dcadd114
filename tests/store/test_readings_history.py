"""History at scale on both stores: the rollups agree with the raw readings they summarise (batches across bucket
edges, status-only readings, late arrivals), series read the rollup that fits the window, retention drops what is
past it and keeps the coarser rollups, PostgreSQL's day partitions and the upgrade of a v4 store."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cim.errors import InvalidInput
from cim.model import Reading
from cim.store import Store, open_store
from cim.store.history import ROLLUP_OF, Retention, floor_to, pick_step
from cim.store.migrations import MIGRATIONS, SCHEMA_VERSION
from cim.store.sqlstore import SqlStore
from tests.store.test_migrations import open_with

NOW = datetime.now(UTC).replace(microsecond=0)
#: Recent enough for the raw retention (30 days) and a day partition in PostgreSQL.
T0 = (NOW - timedelta(days=2)).replace(hour=22, minute=58, second=0)


def random_batches(seed: int = 7) -> list[list[Reading]]:
    """Four batches of three sensors over ~26 hours from T0 (across minute, hour and day edges), some readings
    status-only, some with both, in shuffled order."""
    rng = random.Random(seed)
    readings = []
    taken: set[tuple[str, datetime]] = set()  # one reading per sensor and time: PostgreSQL keeps a repeat once
    while len(readings) < 400:
        sensor = f"s{rng.randrange(3)}"
        time = T0 + timedelta(seconds=rng.randrange(0, 26 * 3600))
        if (sensor, time) in taken:
            continue
        taken.add((sensor, time))
        kind = rng.random()
        if kind < 0.1:
            readings.append(Reading(sensor_id=sensor, time=time, status="fault"))
        else:
            status = "ok" if kind < 0.2 else None
            readings.append(Reading(sensor_id=sensor, time=time, value=round(rng.uniform(-5, 5), 3), status=status))
    rng.shuffle(readings)
    return [readings[i::4] for i in range(4)]


def expected(readings: list[Reading], step: str) -> dict[tuple[str, datetime], dict[str, Any]]:
    """The aggregates of ``readings`` per (sensor, bucket), computed here."""
    groups: dict[tuple[str, datetime], list[Reading]] = defaultdict(list)
    for r in readings:
        groups[(r.sensor_id, floor_to(r.time, step))].append(r)  # type: ignore[arg-type]
    out = {}
    for key, rs in groups.items():
        values = [r.value for r in rs if r.value is not None]
        out[key] = {
            "n": len(rs),
            "n_values": len(values),
            "min": min(values, default=None),
            "max": max(values, default=None),
            "sum": pytest.approx(sum(values)),
            "mean": pytest.approx(sum(values) / len(values)) if values else None,
        }
    return out


def series_by_key(store: Store, step: str, start: datetime, end: datetime) -> dict[tuple[str, datetime], Any]:
    points = store.reading_series(["s0", "s1", "s2"], start=start, end=end, step=step, per_sensor=True)
    assert [p.bucket for p in points] == sorted(p.bucket for p in points)  # oldest first
    return {
        (p.sensor_id, p.bucket): {"n": p.n, "n_values": p.n_values, "min": p.min, "max": p.max, "sum": p.sum,
                                  "mean": p.mean}
        for p in points
    }  # fmt: skip


@pytest.mark.parametrize("step", ["1m", "1h", "1d"])
def test_rollups_agree_with_the_raw_readings_after_batches_across_bucket_edges(store: Store, step: str) -> None:
    batches = random_batches()
    for batch in batches:
        store.append_readings(batch)
    everything = [r for batch in batches for r in batch]
    start, end = floor_to(T0, "1d"), floor_to(T0, "1d") + timedelta(days=3)
    assert series_by_key(store, step, start, end) == expected(everything, step)
    # and the same from the raw table, aggregated by the database at query time
    raw = store.reading_series(["s0", "s1", "s2"], start=T0, end=T0 + timedelta(days=2), step="raw")
    assert sum(p.n for p in raw) == len(everything)
    summed = store.reading_series(None, start=start, end=end, step=step)
    assert sum(p.n for p in summed) == len(everything)
    assert sum(p.sum for p in summed) == pytest.approx(sum(r.value for r in everything if r.value is not None))


@pytest.mark.postgis
def test_postgis_keeps_a_reading_sent_twice_once_in_the_history_and_in_every_rollup(postgis_schema_url: str) -> None:
    # a QoS-1 redelivery, a spool replayed after a crash: the same (sensor, time) again, in a later batch or the same
    batch = [Reading(sensor_id="s0", time=T0 + timedelta(seconds=s), value=float(s)) for s in range(0, 300, 10)]
    with open_with(postgis_schema_url) as store:
        store.append_readings(batch)
        store.append_readings([*batch[:10], batch[-1], batch[-1]])
        assert len(store.readings("s0")) == len(batch)
        start = floor_to(T0, "1d")
        for step in ("1m", "1h", "1d"):
            points = store.reading_series(["s0"], start=start, end=start + timedelta(days=2), step=step)
            assert sum(p.n for p in points) == len(batch), step
            assert sum(p.sum for p in points) == pytest.approx(sum(r.value for r in batch if r.value)), step


def test_a_late_reading_merges_into_its_old_bucket(store: Store) -> None:
    store.append_readings([Reading(sensor_id="s0", time=T0 + timedelta(minutes=m), value=1.0) for m in range(3)])
    store.append_readings([Reading(sensor_id="s0", time=T0 + timedelta(hours=5), value=2.0)])
    late = [Reading(sensor_id="s0", time=T0 + timedelta(seconds=30), value=-7.0),
            Reading(sensor_id="s0", time=T0 + timedelta(seconds=40), status="fault")]  # fmt: skip
    store.append_readings(late)
    hour = store.reading_series(["s0"], start=floor_to(T0, "1h"), end=floor_to(T0, "1h") + timedelta(hours=1),
                                step="1h")  # fmt: skip
    assert [(p.n, p.n_values, p.min, p.max, p.sum) for p in hour] == [(4, 3, -7.0, 1.0, -5.0)]  # T0 is 22:58
    minute = store.reading_series(["s0"], start=T0, end=T0 + timedelta(minutes=1), step="1m")
    assert [(p.n, p.n_values, p.min, p.mean, p.max) for p in minute] == [(3, 2, -7.0, -3.0, 1.0)]
    assert store.latest_states(["s0"])["s0"].value == 2.0  # the late ones moved no state


def test_readings_are_newest_first_unless_asked(store: Store) -> None:
    store.append_readings([Reading(sensor_id="s0", time=T0 + timedelta(minutes=m), value=float(m)) for m in range(5)])
    assert [r.value for r in store.readings("s0")] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert [r.value for r in store.readings("s0", limit=2)] == [4.0, 3.0]  # the newest two
    assert [r.value for r in store.readings("s0", limit=2, newest_first=False)] == [0.0, 1.0]


def test_a_series_reads_the_rollup_that_fits_its_window(store: Store) -> None:
    store.append_readings([Reading(sensor_id="s0", time=T0 + timedelta(minutes=m), value=float(m)) for m in range(120)])
    assert isinstance(store, SqlStore)
    with store.change("emptying the raw readings"):
        store.execute("DELETE FROM readings")  # what is still answered now comes from the rollups
    assert store.reading_series(["s0"], start=T0, end=T0 + timedelta(hours=6)) == []  # ≤ 6 h: raw
    by_minute = store.reading_series(["s0"], start=T0, end=T0 + timedelta(days=1))  # ≤ 3 days: minutes
    assert len(by_minute) == 120 and by_minute[1].bucket - by_minute[0].bucket == timedelta(minutes=1)
    by_hour = store.reading_series(["s0"], start=T0, end=T0 + timedelta(days=30))
    assert [p.n for p in by_hour] == [2, 60, 58]  # T0 is 22:58
    by_day = store.reading_series(["s0"], start=T0 - timedelta(days=200), end=T0 + timedelta(days=1))
    assert sum(p.n for p in by_day) == 120 and all(p.bucket.hour == 0 for p in by_day)
    assert pick_step(T0, T0 + timedelta(hours=6, seconds=1)) == "1m"


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (NOW - timedelta(days=36_525), NOW, None, "would hold 36,525 buckets"),
        (NOW - timedelta(days=365), NOW, "1m", "525,600 buckets"),
        (NOW, NOW - timedelta(hours=1), None, "is empty: from must be before to"),
        (NOW, NOW, "1h", "is empty"),
        (NOW - timedelta(days=1), NOW, "5m", "must be one of raw, 1m, 1h, 1d"),
        (NOW - timedelta(days=8), NOW, "raw", "reads at most 7 days"),
    ],
)
def test_a_hostile_series_is_refused_clearly(
    store: Store, start: datetime, end: datetime, step: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        store.reading_series(["s0"], start=start, end=end, step=step)


def test_retention_drops_what_is_older_and_keeps_the_coarser_rollups(store: Store) -> None:
    assert isinstance(store, SqlStore)
    old, older, recent = NOW - timedelta(days=40), NOW - timedelta(days=100), NOW - timedelta(hours=1)
    for t in (old, older, recent):
        store.append_readings([Reading(sensor_id="s0", time=t, value=1.0), Reading(sensor_id="s1", time=t, value=2.0)])
    dropped = store.apply_retention(NOW)
    assert dropped["readings"] == 4  # the 40- and 100-day-old raw readings (in PostgreSQL's default partition)
    assert dropped["readings_1m"] == 2 and dropped["readings_1h"] == 0  # minutes kept 90 days, hours 2 years
    assert [r.time for r in store.readings("s0")] == [recent]
    hourly = store.reading_series(["s0", "s1"], start=older - timedelta(hours=1), end=NOW, step="1h")
    assert [(p.bucket, p.n, p.sum) for p in hourly] == [(floor_to(t, "1h"), 2, 3.0) for t in (older, old, recent)]
    minutes = store.reading_series(["s0"], start=older - timedelta(days=1), end=NOW, step="1d")
    assert len(minutes) == 3  # days are kept for ever
    assert store.apply_retention(NOW)["readings_1m"] == 0  # nothing more to drop


def test_the_retention_is_a_setting_of_the_store(store: Store) -> None:
    assert isinstance(store, SqlStore)
    assert store.retention() == Retention()
    store.set_retention(Retention(raw_days=3, minute_days=None))
    assert store.retention() == Retention(raw_days=3, minute_days=None)
    store.append_readings([Reading(sensor_id="s0", time=NOW - timedelta(days=5), value=1.0)])
    store.append_readings([Reading(sensor_id="s0", time=NOW - timedelta(days=200), value=1.0)])
    dropped = store.apply_retention(NOW)
    assert "readings_1m" not in dropped and store.readings("s0") == []
    assert len(store.reading_series(["s0"], start=NOW - timedelta(days=201), end=NOW, step="1d")) == 2
    with pytest.raises(InvalidInput, match="raw_days=0"):
        Retention(raw_days=0)


# --- PostgreSQL's day partitions ---


def partitions_of(store: SqlStore) -> dict[str, int]:
    rows = store.select("SELECT tableoid::regclass::text AS part, count(*) AS n FROM readings GROUP BY 1")
    return {row["part"]: row["n"] for row in rows.to_pylist()}


def partition(t: datetime) -> str:
    return f"readings_p{t:%Y%m%d}"


@pytest.mark.postgis
def test_postgis_makes_a_partition_for_each_new_day_and_takes_far_times_into_the_default(
    postgis_schema_url: str,
) -> None:
    with open_with(postgis_schema_url) as store:
        yesterday, today = NOW - timedelta(days=1), NOW
        store.append_readings([Reading(sensor_id="s0", time=yesterday, value=1.0)])
        store.append_readings([Reading(sensor_id="s0", time=today, value=2.0)])
        far_past = datetime(1999, 12, 31, 23, 59, tzinfo=UTC)
        far_future = NOW + timedelta(days=400)
        store.append_readings([Reading(sensor_id="s0", time=t, value=3.0) for t in (far_past, far_future)])
        assert partitions_of(store) == {partition(yesterday): 1, partition(today): 1, "readings_default": 2}
        tables = {n for (n,) in store.schema_database().run(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'readings_p%%'",
            [])}  # fmt: skip
        assert partition(today + timedelta(days=1)) in tables  # made ahead
        assert [r.value for r in store.readings("s0")] == [3.0, 2.0, 1.0, 3.0]


@pytest.mark.postgis
def test_postgis_moves_default_rows_into_a_day_partition_made_later_and_retention_drops_partitions(
    postgis_schema_url: str,
) -> None:
    with open_with(postgis_schema_url) as store:
        store.set_retention(Retention(raw_days=1))
        four_days_ago = NOW - timedelta(days=4)
        store.append_readings([Reading(sensor_id="s0", time=four_days_ago, value=1.0)])  # before the cutoff
        assert partitions_of(store) == {"readings_default": 1}
        store.set_retention(Retention(raw_days=10))
    with open_with(postgis_schema_url) as store:  # a new process reads the new retention
        store.append_readings([Reading(sensor_id="s0", time=four_days_ago + timedelta(seconds=1), value=2.0)])
        assert partitions_of(store) == {partition(four_days_ago): 2}  # the default's row moved in
        store.set_retention(Retention(raw_days=2))
        dropped = store.apply_retention(NOW)
        assert dropped["readings_partitions"] >= 1 and store.readings("s0") == []
        assert partition(four_days_ago) not in partitions_of(store)
        store.append_readings([Reading(sensor_id="s0", time=NOW, value=3.0)])  # the cache forgot the dropped days
        assert [r.value for r in store.readings("s0")] == [3.0]


@pytest.mark.postgis
def test_two_postgis_writers_making_the_same_day_partition_at_once_both_succeed(postgis_schema_url: str) -> None:
    import threading

    with open_with(postgis_schema_url) as first, open_with(postgis_schema_url) as second:
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def write(store: SqlStore, value: float) -> None:
            barrier.wait()
            try:  # two readings of one day (a second apart: one of the same time would be kept once)
                moment = NOW - timedelta(days=3, seconds=value)
                store.append_readings([Reading(sensor_id="s0", time=moment, value=value)])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(s, v)) for s, v in ((first, 1.0), (second, 2.0))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert partitions_of(first) == {partition(NOW - timedelta(days=3)): 2}
        hour = first.reading_series(["s0"], start=NOW - timedelta(days=4), end=NOW, step="1d")
        assert sum(p.n for p in hour) == 2


# --- the upgrade of a store written before step 5 ---


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def test_a_v4_store_upgrades_with_its_readings_moved_and_rolled_up(
    backend: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    url = str(tmp_path / "v4.duckdb") if backend == "duckdb" else request.getfixturevalue("postgis_schema_url")
    noon = floor_to(NOW, "1d") - timedelta(hours=12)  # yesterday's: a minute before it is the same day
    times = [noon - timedelta(days=d, minutes=m) for d in (0, 1, 45) for m in (0, 1)]
    with open_with(url, MIGRATIONS[:4]) as v4:
        db = v4.schema_database()
        p = db.param
        for i, t in enumerate(times):
            db.run(f"INSERT INTO readings VALUES ('s0', {p}, {p}, NULL)", [t, float(i)])
        db.run(f"INSERT INTO readings VALUES ('s0', {p}, NULL, 'fault')", [times[0] + timedelta(seconds=1)])
    with open_with(url) as store:
        assert store.schema_upgrade is not None and store.schema_upgrade.to_version == SCHEMA_VERSION
        assert len(store.readings("s0")) == 7
        days = store.reading_series(["s0"], start=NOW - timedelta(days=50), end=NOW + timedelta(days=1), step="1d")
        assert [(p.n, p.n_values) for p in days] == [(2, 2), (2, 2), (3, 2)]
        window = {"start": noon - timedelta(days=1, hours=1), "end": noon + timedelta(hours=1)}
        assert sum(p.n for p in store.reading_series(["s0"], **window, step="1m")) == 5
        if backend == "postgis":
            assert partitions_of(store) == {partition(noon - timedelta(days=d)): 3 if d == 0 else 2 for d in (0, 1, 45)}
            assert "readings_v4" not in {n for (n,) in store.schema_database().run(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", [])}  # fmt: skip
    assert ROLLUP_OF["1h"].table == "readings_1h"


def test_cim_store_retention_shows_and_changes_how_long_history_is_kept(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    path = str(tmp_path / "city.duckdb")

    def cim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cim", "store", "retention", "--store", path, *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    with open_store(path):
        pass  # a store with no setting: the defaults
    assert json.loads(cim("--json").stdout) == {"raw_days": 30, "minute_days": 90, "hour_days": 730, "day_days": None}
    changed = cim("--raw", "7", "--day", "forever", "--hour", "365", "--json")
    assert json.loads(changed.stdout) == {"raw_days": 7, "minute_days": 90, "hour_days": 365, "day_days": None}
    with open_store(path) as store:
        assert isinstance(store, SqlStore) and store.retention() == Retention(raw_days=7, hour_days=365)
    for bad, named in ((("--raw", "a week"), "--raw 'a week'"), (("--minute", "0"), "minute_days=0")):
        refused = cim(*bad)
        assert refused.returncode != 0 and named in refused.stderr and "Traceback" not in refused.stderr
    assert "raw readings: 7 days" in cim().stdout
