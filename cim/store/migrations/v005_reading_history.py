"""Schema version 5: readings history at scale (issue 22, item 5) — rollups, and day partitions in PostgreSQL.

- ``readings_1m``, ``readings_1h``, ``readings_1d``: per sensor and bucket start (UTC) the number of readings
  ``n``, of those with a value ``n_values``, and ``min_value``, ``max_value``, ``sum_value`` of the values (mean =
  sum / n_values; a status-only reading counts in ``n`` only; ``sum_value`` is 0 when there is no value; a bucket of
  one value keeps it in ``sum_value`` alone, its min and max NULL — stored once, not three times). The store
  keeps them current at every append (:mod:`cim.store.history`); this step fills them from the readings there are.
- PostgreSQL: ``readings`` becomes a table partitioned by range of ``time``, one partition a day
  (``readings_pYYYYMMDD``) and a default partition for times no day partition takes, so nothing is ever refused.
  The old table's rows move over in this step: renamed aside, a partition made for each day it holds, copied,
  dropped. Retention then drops whole day partitions instead of deleting rows from one big table. Each partition
  has the (sensor_id, time) btree, which answers one sensor's window; it is unique: a reading is kept once, however
  often it arrives (a QoS-1 redelivery, a spool replayed after a crash, two servers sharing a subscription), and a
  duplicate the old table held is dropped in the move. The rollups have their key as primary key
  (the upsert's target) and a BRIN index on the bucket for retention's deletes (they are written in time order).
- DuckDB has no table partitioning: ``readings`` stays one table in insert order, whose zone maps (min/max per row
  group of ~120k rows) prune by time; its rollups carry no index (DuckDB's keys are in-memory ART indexes, too big
  for hundreds of millions of rows): an append merges into them with ``MERGE INTO``.
"""

NAME = "reading history"

_ROLLUPS = ("readings_1m", "readings_1h", "readings_1d")
_UNITS = {"readings_1m": "minute", "readings_1h": "hour", "readings_1d": "day"}


def _fill(table: str) -> str:
    unit = _UNITS[table]
    return (
        f"INSERT INTO {table} SELECT sensor_id, date_trunc('{unit}', time) AS bucket, count(*), count(value), "
        "CASE WHEN count(value) > 1 THEN min(value) END, CASE WHEN count(value) > 1 THEN max(value) END, "
        f"coalesce(sum(value), 0) FROM readings GROUP BY sensor_id, date_trunc('{unit}', time)"
    )


def _rollup_table(table: str, *, text: str, double: str, key: str) -> str:
    return (
        f"CREATE TABLE {table} (sensor_id {text} NOT NULL, bucket TIMESTAMPTZ NOT NULL, n BIGINT NOT NULL, "
        f"n_values BIGINT NOT NULL, min_value {double}, max_value {double}, sum_value {double} NOT NULL{key})"
    )


DUCKDB = (
    *(_rollup_table(t, text="VARCHAR", double="DOUBLE", key="") for t in _ROLLUPS),
    *(_fill(t) for t in _ROLLUPS),
)

#: One partition for each day the old table holds; names and bounds built with quote_ident/quote_literal (no
#: percent sign: the statements run through a driver that reads %s as a parameter).
_PARTITION_EACH_DAY = """DO $$
DECLARE
  day date;
BEGIN
  FOR day IN SELECT DISTINCT (time AT TIME ZONE 'UTC')::date FROM readings_v4 LOOP
    EXECUTE 'CREATE TABLE ' || quote_ident('readings_p' || to_char(day, 'YYYYMMDD'))
      || ' PARTITION OF readings FOR VALUES FROM ('
      || quote_literal(to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00') || ') TO ('
      || quote_literal(to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00') || ')';
  END LOOP;
END $$"""

POSTGRES = (
    "DROP INDEX IF EXISTS readings_sensor_time",
    "ALTER TABLE readings RENAME TO readings_v4",
    "CREATE TABLE readings (sensor_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, value DOUBLE PRECISION, "
    "status TEXT) PARTITION BY RANGE (time)",
    "CREATE TABLE readings_default PARTITION OF readings DEFAULT",
    "CREATE UNIQUE INDEX readings_sensor_time ON readings (sensor_id, time)",
    _PARTITION_EACH_DAY,
    "INSERT INTO readings SELECT sensor_id, time, value, status FROM readings_v4 ORDER BY time ON CONFLICT DO NOTHING",
    "DROP TABLE readings_v4",
    *(
        _rollup_table(t, text="TEXT", double="DOUBLE PRECISION", key=", PRIMARY KEY (sensor_id, bucket)")
        for t in _ROLLUPS
    ),
    *(f"CREATE INDEX {t}_bucket ON {t} USING BRIN (bucket)" for t in _ROLLUPS),
    *(_fill(t) for t in _ROLLUPS),
)
