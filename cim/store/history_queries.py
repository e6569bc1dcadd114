"""The history questions of both SQL stores: series over the rollups and retention (a part of
:class:`~cim.store.sqlstore.SqlStore`, which supplies the statement runners; the rules are in :mod:`cim.store.history`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa

from cim.errors import InvalidInput
from cim.store.history import (
    HIGHEST,
    LOWEST,
    MAX_SERIES_POINTS,
    RETENTION_KEYS,
    ROLLUP_OF,
    ROLLUPS,
    Retention,
    SeriesPoint,
    check_window,
    floor_to,
    instant_sql,
    text_sql,
)
from cim.store.sql import Dialect

#: A series' aggregates of raw readings, and of rollup rows (counts as BIGINT: a sum of them is wider in both).
RAW_AGGREGATES = (
    "count(*) AS n, count(value) AS n_values, min(value) AS min_value, max(value) AS max_value, "
    "coalesce(sum(value), 0) AS sum_value"
)
ROLLUP_AGGREGATES = (
    f"CAST(sum(n) AS BIGINT) AS n, CAST(sum(n_values) AS BIGINT) AS n_values, min({LOWEST}) AS min_value, "
    f"max({HIGHEST}) AS max_value, sum(sum_value) AS sum_value"
)


class HistoryQueries:
    """:meth:`reading_series`, :meth:`apply_retention` and the retention setting, over the store's statements."""

    dialect: Dialect

    # --- supplied by SqlStore ---
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise NotImplementedError

    def _changing(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError

    def _drop_raw_before(self, cutoff: datetime) -> dict[str, int]:
        raise NotImplementedError

    def reading_series(
        self,
        sensor_ids: Sequence[str] | None,
        *,
        start: datetime,
        end: datetime,
        step: str | None = None,
        area: str | None = None,
        per_sensor: bool = False,
    ) -> list[SeriesPoint]:
        chosen = check_window(start, end, step)
        clauses: list[str] = []
        params: list[Any] = []
        if sensor_ids is not None:
            if not sensor_ids:
                return []
            where = self.dialect.key_in("sensor_id", list(dict.fromkeys(sensor_ids)))
            clauses.append(where.sql)
            params += where.params
        if area is not None:
            from cim.store.areas import asset_areas  # areas imports this module

            p = self.dialect.param
            in_area = (
                f"SELECT id FROM {asset_areas(cast(Any, self))} WHERE district = {p} OR street = {p} OR grid_cell = {p}"
            )
            bounds = self._fetch(f"SELECT min(id) AS low, max(id) AS high FROM ({in_area}) a", [area] * 3).to_pylist()
            low, high = bounds[0]["low"], bounds[0]["high"]
            if low is None:
                return []  # no sensor there
            clauses.append(f"sensor_id IN ({in_area})")
            params += [area] * 3
            if "\x00" not in low + high:
                # the range of the area's ids, as constants: a store whose rows are in id blocks (DuckDB's zone
                # maps) skips the rest of the rollup (bench/history_bench.py: a district of 100,000 meters)
                clauses.append(f"sensor_id BETWEEN {text_sql(low)} AND {text_sql(high)}")
        if chosen == "raw":
            source, column, aggregates = "readings", "time", RAW_AGGREGATES
        else:
            source, column, aggregates = ROLLUP_OF[chosen].table, "bucket", ROLLUP_AGGREGATES
        clauses += [f"{column} >= {instant_sql(floor_to(start, chosen))}", f"{column} < {instant_sql(end)}"]
        keys = f"{column}, sensor_id" if per_sensor else column
        rows = self._fetch(
            f"SELECT {column} AS bucket, {'sensor_id, ' if per_sensor else ''}{aggregates} FROM {source} "
            f"WHERE {' AND '.join(clauses)} GROUP BY {keys} ORDER BY {keys} LIMIT {MAX_SERIES_POINTS + 1}",
            params,
        ).to_pylist()
        if len(rows) > MAX_SERIES_POINTS:
            raise InvalidInput(
                f"series from {start.isoformat()} to {end.isoformat()} in steps of {chosen}",
                f"has more than {MAX_SERIES_POINTS:,} points: choose fewer sensors, a shorter window or a coarser step",
            )
        return [_series_point(row) for row in rows]

    def apply_retention(self, now: datetime) -> dict[str, int]:
        cutoffs = self.retention().cutoffs(now)
        dropped: dict[str, int] = {}
        with self._changing("dropping history past its retention"):
            if "readings" in cutoffs:
                dropped.update(self._drop_raw_before(cutoffs["readings"]))
            for rollup in ROLLUPS:
                if rollup.table in cutoffs:
                    cutoff = instant_sql(cutoffs[rollup.table])
                    dropped[rollup.table] = max(self._execute(f"DELETE FROM {rollup.table} WHERE bucket < {cutoff}"), 0)
        return dropped

    def retention(self) -> Retention:
        """How long this store keeps each level of history (``retention.*`` in ``cim_meta``; the defaults of
        :class:`~cim.store.history.Retention` where unset)."""
        keys = list(RETENTION_KEYS.values())
        rows = self._fetch(
            f"SELECT key, value FROM cim_meta WHERE key IN ({', '.join([self.dialect.param] * len(keys))})", keys
        ).to_pylist()
        stored = {row["key"]: row["value"] for row in rows}
        given = {
            name: None if stored[key] == "forever" else int(stored[key])
            for name, key in RETENTION_KEYS.items()
            if key in stored
        }
        return Retention(**given)

    def set_retention(self, retention: Retention) -> None:
        """Keep each level of history as long as ``retention`` says, from the next :meth:`apply_retention` on."""
        with self._changing("setting the history's retention"):
            for name, key in RETENTION_KEYS.items():
                days = getattr(retention, name)
                self._set_meta(key, "forever" if days is None else str(days))


def _series_point(row: dict[str, Any]) -> SeriesPoint:
    n_values = int(row["n_values"] or 0)
    total = float(row["sum_value"] or 0.0)
    return SeriesPoint(
        bucket=row["bucket"].astimezone(UTC),
        n=int(row["n"]),
        n_values=n_values,
        min=row["min_value"],
        mean=total / n_values if n_values else None,
        max=row["max_value"],
        sum=total,
        sensor_id=row.get("sensor_id"),
    )
