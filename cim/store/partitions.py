"""The day partitions of PostgreSQL's ``readings`` (schema step 5): made when a batch needs them, dropped by
retention.

A partition ``readings_pYYYYMMDD`` holds one UTC day. An append makes the partitions of the days its readings fall
on, and of the day after (ahead), for days from the raw-retention cutoff to tomorrow; a reading outside those (a
late one from before the cutoff, a clock years ahead) lands in the default partition ``readings_default``, so
nothing is ever refused. Making a partition takes an advisory lock (two ingest processes may need the same day at
once; the second finds it made), moves any rows of that day out of the default partition, and ATTACHes the table:
unlike ``CREATE TABLE … PARTITION OF``, which locks the whole ``readings`` table against reads until the appending
transaction ends, ATTACH leaves reads and other writers alone. The store caches the days it knows, so the check
per batch is a set lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

PARTITION = re.compile(r"^readings_p(\d{8})$")
DEFAULT_PARTITION = "readings_default"


def partition_name(day: date) -> str:
    """The name of the partition of ``day``.

    >>> partition_name(date(2026, 5, 1))
    'readings_p20260501'
    """
    return f"readings_p{day:%Y%m%d}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def days_of(table: pa.Table) -> set[date]:
    """The UTC days the readings of an Arrow batch fall on."""
    days = pc.unique(pc.cast(table.column("time"), pa.date32()))
    return {d for d in days.to_pylist() if d is not None}


def wanted_days(days: Iterable[date], *, today: date, oldest: date) -> set[date]:
    """The day partitions a batch on ``days`` needs: each day from ``oldest`` to tomorrow, and the day after it.

    >>> sorted(wanted_days([date(2026, 5, 1), date(2020, 1, 1)], today=date(2026, 5, 1), oldest=date(2026, 4, 1)))
    [datetime.date(2026, 5, 1), datetime.date(2026, 5, 2)]
    """
    tomorrow = today + timedelta(days=1)
    wanted: set[date] = set()
    for day in days:
        if oldest <= day <= tomorrow:
            wanted.add(day)
            wanted.add(min(day + timedelta(days=1), tomorrow))
    return wanted


def existing_days(con: psycopg.Connection[Any]) -> set[date]:
    """The days that have a partition, from the catalog (in this connection's schema)."""
    rows = con.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass"
    ).fetchall()
    return {datetime.strptime(m[1], "%Y%m%d").date() for (name,) in rows if (m := PARTITION.match(name))}


def make_partitions(con: psycopg.Connection[Any], days: Iterable[date], *, lock_key: str) -> set[date]:
    """Inside the caller's transaction: make the partitions of ``days`` that are missing. Returns the days that
    have one now."""
    con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [lock_key])
    have = existing_days(con)
    for day in sorted(set(days) - have):
        # literals built from a date (DDL takes no parameters)
        name, low, high = partition_name(day), _literal(day), _literal(day + timedelta(days=1))
        con.execute(f"CREATE TABLE {name} (LIKE readings INCLUDING DEFAULTS)")
        # rows of that day the default partition took meanwhile move over first: ATTACH refuses while it has any
        con.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE time >= {low} AND time < {high} RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        )
        # the constraint spares ATTACH a scan of the new table to prove its rows fit
        con.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_day CHECK (time >= {low} AND time < {high})")
        con.execute(f"ALTER TABLE readings ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
        con.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_day")
        have.add(day)
    return have


def drop_partitions_before(con: psycopg.Connection[Any], cutoff: datetime) -> tuple[dict[str, int], set[date]]:
    """Inside the caller's transaction: drop the day partitions wholly before ``cutoff`` (no row is read) and delete
    the default partition's rows before it. Returns (what went: partitions and default rows, the days that still
    have a partition)."""
    have = existing_days(con)
    gone = {day for day in have if day_start(day + timedelta(days=1)) <= cutoff}
    for day in sorted(gone):
        con.execute(f"DROP TABLE {partition_name(day)}")
    deleted = con.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE time < %s", [cutoff]).rowcount
    return {"readings_partitions": len(gone), "readings": max(deleted, 0)}, have - gone


def _literal(day: date) -> str:
    """The start of ``day`` as a TIMESTAMPTZ literal (DDL takes no parameters).

    >>> _literal(date(2026, 5, 1))
    "'2026-05-01 00:00:00+00'"
    """
    return f"'{day:%Y-%m-%d} 00:00:00+00'"
