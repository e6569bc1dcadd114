"""Readings history at scale: the rollups, which one a series reads, retention — the SQL both stores share.

Raw readings are in ``readings``; three rollups (``readings_1m``, ``readings_1h``, ``readings_1d``) hold, per sensor
and bucket start (UTC), the count of readings ``n``, the count with a value ``n_values`` and the min, max and sum of
the values (schema step 5, :mod:`cim.store.migrations.v005_reading_history`). Every append merges the batch's own
aggregates into them in the same transaction as the raw rows, so they are never behind the raw table; a late
reading merges into its old bucket the same way.

A series reads the coarsest source that still gives a useful curve (:func:`pick_step`): raw up to 6 hours, minutes
up to 3 days, hours up to 120 days, days beyond. Retention (:class:`Retention`) keeps raw readings 30 days, minute
rollups 90 days, hour rollups 2 years and day rollups for ever; the hour and day curves of a year ago stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from cim.errors import InvalidInput

Step = Literal["raw", "1m", "1h", "1d"]
STEPS: tuple[Step, ...] = get_args(Step)


@dataclass(frozen=True, slots=True)
class Rollup:
    step: Step
    table: str
    unit: str  # date_trunc's field
    width: timedelta

    def aggregate_sql(self, source: str) -> str:
        """The rows of ``source`` (sensor_id, time, value) aggregated into this rollup's buckets."""
        bucket = f"date_trunc('{self.unit}', time)"
        return (
            f"SELECT sensor_id, {bucket} AS bucket, count(*) AS n, count(value) AS n_values, "
            "CASE WHEN count(value) > 1 THEN min(value) END AS min_value, "
            "CASE WHEN count(value) > 1 THEN max(value) END AS max_value, "
            f"coalesce(sum(value), 0) AS sum_value FROM {source} GROUP BY sensor_id, {bucket}"
        )

    def reaggregate_sql(self, source: str) -> str:
        """The rows of a finer rollup-shaped ``source`` aggregated into this rollup's buckets."""
        bucket = f"date_trunc('{self.unit}', bucket)"
        return (
            f"SELECT sensor_id, {bucket} AS bucket, sum(n) AS n, sum(n_values) AS n_values, "
            f"CASE WHEN sum(n_values) > 1 THEN min({LOWEST}) END AS min_value, "
            f"CASE WHEN sum(n_values) > 1 THEN max({HIGHEST}) END AS max_value, "
            f"sum(sum_value) AS sum_value FROM {source} GROUP BY sensor_id, {bucket}"
        )


ROLLUPS: tuple[Rollup, ...] = (
    Rollup("1m", "readings_1m", "minute", timedelta(minutes=1)),
    Rollup("1h", "readings_1h", "hour", timedelta(hours=1)),
    Rollup("1d", "readings_1d", "day", timedelta(days=1)),
)
ROLLUP_OF: dict[str, Rollup] = {r.step: r for r in ROLLUPS}
#: A rollup row's least and greatest value. A bucket holding one value keeps it once, in ``sum_value``, with
#: ``min_value`` and ``max_value`` NULL: a sensor slower than the bucket (a 15-minute meter's minute rows, an hourly
#: gauge's hour rows) would otherwise store each value three times.
LOWEST = "CASE WHEN n_values = 1 THEN sum_value ELSE min_value END"
HIGHEST = "CASE WHEN n_values = 1 THEN sum_value ELSE max_value END"


def _of(expr: str, table: str) -> str:
    return (
        expr.replace("n_values", f"{table}.n_values")
        .replace("sum_value", f"{table}.sum_value")
        .replace("min_value", f"{table}.min_value")
        .replace("max_value", f"{table}.max_value")
    )


#: The merge of a batch's aggregates ``{a}`` into a rollup row ``{t}``: counts and sums add up, extremes widen.
MERGED = {
    "n": "{t}.n + {a}.n",
    "n_values": "{t}.n_values + {a}.n_values",
    "min_value": "CASE WHEN {t}.n_values + {a}.n_values > 1 THEN least("
    + _of(LOWEST, "{t}")
    + ", "
    + _of(LOWEST, "{a}")
    + ") END",
    "max_value": "CASE WHEN {t}.n_values + {a}.n_values > 1 THEN greatest("
    + _of(HIGHEST, "{t}")
    + ", "
    + _of(HIGHEST, "{a}")
    + ") END",
    "sum_value": "{t}.sum_value + {a}.sum_value",
}
ROLLUP_COLUMNS = ("sensor_id", "bucket", *MERGED)

#: The longest window each automatic step is picked for (the rule of :func:`pick_step`).
AUTO_STEPS: tuple[tuple[timedelta, Step], ...] = (
    (timedelta(hours=6), "raw"),
    (timedelta(days=3), "1m"),
    (timedelta(days=120), "1h"),
)
#: Buckets a series may hold per sensor; more is refused (a century of days, a year of minutes).
MAX_SERIES_BUCKETS = 10_000
#: The longest window of raw readings a series reads, and the most points it may return.
MAX_RAW_WINDOW = timedelta(days=7)
MAX_SERIES_POINTS = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesPoint:
    """One bucket of a series: its start, the readings in it (``n``; ``n_values`` with a value) and the min, mean,
    max and sum of their values (None when none had a value). ``sensor_id`` is the sensor's for a series per sensor,
    None for one summed over the selection."""

    bucket: datetime
    n: int
    n_values: int
    min: float | None
    mean: float | None
    max: float | None
    sum: float
    sensor_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bucket": self.bucket.isoformat(),
            "n": self.n,
            "n_values": self.n_values,
            "min": self.min,
            "mean": self.mean,
            "max": self.max,
            "sum": self.sum,
        }
        if self.sensor_id is not None:
            out["sensor_id"] = self.sensor_id
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How long each level of history is kept, in days; None keeps it for ever.

    >>> Retention().cutoffs(datetime(2026, 5, 1, 12, 30, tzinfo=UTC))["readings"].isoformat()
    '2026-04-01T00:00:00+00:00'
    """

    raw_days: int | None = 30
    minute_days: int | None = 90
    hour_days: int | None = 730
    day_days: int | None = None

    def __post_init__(self) -> None:
        for name in ("raw_days", "minute_days", "hour_days", "day_days"):
            days = getattr(self, name)
            if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
                raise InvalidInput(f"retention {name}={days!r}", "must be a whole number of days ≥ 1, or None")

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per table, the time before which its rows go: a UTC midnight, so whole day partitions go at once."""
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days = {
            "readings": self.raw_days,
            "readings_1m": self.minute_days,
            "readings_1h": self.hour_days,
            "readings_1d": self.day_days,
        }
        return {table: midnight - timedelta(days=n) for table, n in days.items() if n is not None}


#: cim_meta keys of the retention settings.
RETENTION_KEYS = {name: f"retention.{name}" for name in ("raw_days", "minute_days", "hour_days", "day_days")}


def pick_step(start: datetime, end: datetime) -> Step:
    """The coarsest source still giving a curve of ~100 points or more: raw for windows up to 6 hours, minutes up
    to 3 days, hours up to 120 days, days beyond.

    >>> t = datetime(2026, 5, 1, tzinfo=UTC)
    >>> [pick_step(t, t + timedelta(hours=h)) for h in (1, 6, 7, 72, 73, 24 * 120, 24 * 121)]
    ['raw', 'raw', '1m', '1m', '1h', '1h', '1d']
    """
    window = end - start
    return next((step for longest, step in AUTO_STEPS if window <= longest), "1d")


def check_window(start: datetime, end: datetime, step: str | None) -> Step:
    """The step a series over [start, end) uses, or :class:`InvalidInput` naming what is wrong."""
    for what, t in (("start", start), ("end", end)):
        if t.tzinfo is None:
            raise InvalidInput(f"series {what} {t.isoformat()}", "has no time zone")
    if start >= end:
        raise InvalidInput(
            f"series window from {start.isoformat()} to {end.isoformat()}", "is empty: from must be before to"
        )
    chosen = pick_step(start, end) if step is None else next((s for s in STEPS if s == step), None)
    if chosen is None:
        raise InvalidInput(f"series step {str(step)[:40]!r}", f"must be one of {', '.join(STEPS)}")
    if chosen == "raw":
        if end - start > MAX_RAW_WINDOW:
            raise InvalidInput(
                f"series step raw over {end - start}", f"reads at most {MAX_RAW_WINDOW.days} days; use 1m, 1h or 1d"
            )
        return chosen
    buckets = (end - start) / ROLLUP_OF[chosen].width
    if buckets > MAX_SERIES_BUCKETS:
        raise InvalidInput(
            f"series of {end - start} in steps of {chosen}",
            f"would hold {buckets:,.0f} buckets, more than {MAX_SERIES_BUCKETS:,}: shorten the window or choose a "
            "coarser step",
        )
    return chosen


def floor_to(t: datetime, step: Step) -> datetime:
    """The start of the bucket of ``step`` holding ``t`` (UTC); ``t`` itself for raw.

    >>> floor_to(datetime(2026, 5, 1, 10, 42, 7, tzinfo=UTC), "1h").isoformat()
    '2026-05-01T10:00:00+00:00'
    """
    t = t.astimezone(UTC)
    if step == "1m":
        return t.replace(second=0, microsecond=0)
    if step == "1h":
        return t.replace(minute=0, second=0, microsecond=0)
    if step == "1d":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t


def text_sql(text: str) -> str:
    """A string as an SQL literal both stores read (quotes doubled), for the same reason as :func:`instant_sql`;
    never given text with a NUL.

    >>> text_sql("O'Brien St")
    "'O''Brien St'"
    """
    if "\x00" in text:
        raise InvalidInput("text", "holds a NUL character")
    return "'" + text.replace("'", "''") + "'"


def instant_sql(t: datetime) -> str:
    """A time as a TIMESTAMPTZ literal both stores read. Times a query compares with are spelled as literals, not
    parameters: DuckDB plans a prepared statement before it sees its parameters and then cannot prune row groups
    by their zone maps, nor PostgreSQL partitions at plan time. Only ``datetime`` objects get here, never text.

    >>> instant_sql(datetime(2026, 5, 1, 8, tzinfo=UTC))
    "TIMESTAMPTZ '2026-05-01T08:00:00+00:00'"
    """
    if not isinstance(t, datetime) or t.tzinfo is None:
        raise InvalidInput(f"time {t!r}", "must be a datetime with a time zone")
    return f"TIMESTAMPTZ '{t.astimezone(UTC).isoformat()}'"
