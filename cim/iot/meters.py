"""Smart gas meters at a city's scale: a day of 15-minute readings for millions of households, generated vectorised
(for benches of the reading history), and the meters as sensor assets spread over districts.

A reading is the gas a household used in one 15-minute interval, in m³ (quantity ``gas_volume``), stamped with the
interval's start; 96 a day. A household's daily use is log-normal around 0.8 m³ (a Shanghai household cooks and
heats water with gas, about 300 m³ a year), shared over the day by the cooking curve in Shanghai time: most
intervals at night are zero, the evening meal is the peak.

>>> from datetime import date
>>> table = next(meter_day(1000, date(2026, 5, 1), batch_rows=96_000))  # the 1,000 readings of 00:00
>>> table.num_rows, table.schema.names, str(table.schema.field("time").type)
(1000, ['sensor_id', 'time', 'value', 'status'], 'timestamp[us, tz=UTC]')
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.iot.behaviours import SHANGHAI, demand
from cim.model import AssetBatch

QUANTITY = "gas_volume"
UNIT = "m3"
SLOTS = 96  # 15-minute intervals in a day
MEAN_DAILY_M3 = 0.8
ID_PREFIX = "GM-"
_BLOCK = 1 << 20  # meters drawn at once
READING_SCHEMA = pa.schema(
    [
        ("sensor_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("value", pa.float64()),
        ("status", pa.string()),
    ]
)


def meter_ids(n_meters: int) -> pa.Array:
    """The ids of meters 0 … n-1: ``GM-0000000`` …"""
    numbers = pc.utf8_lpad(pa.array(np.arange(n_meters)).cast(pa.string()), width=7, padding="0")
    return pc.binary_join_element_wise(pa.scalar(ID_PREFIX), numbers, "")


def slot_shares() -> np.ndarray:
    """The share of a household's daily gas used in each 15-minute interval of the day (sums to 1)."""
    weights = np.array([demand((k + 0.5) / 4) for k in range(SLOTS)])
    return np.asarray(weights / weights.sum())


def meter_day(n_meters: int, day: date, *, seed: int = 1, batch_rows: int = 4_000_000) -> Iterator[pa.Table]:
    """A day of readings of ``n_meters`` meters, as tables of at most ``batch_rows`` rows of one interval each,
    interval by interval (every meter's 00:00 reading, then 00:15 …) as they would arrive. Columns: sensor_id
    (string), time (timestamp[us, tz=UTC]), value (float64, m³, 0.001 resolution), status (string, null). The same
    arguments give the same readings."""
    if n_meters < 1:
        raise InvalidInput(f"meters {n_meters}", "must be at least 1")
    if batch_rows < 1:
        raise InvalidInput(f"batch_rows {batch_rows}", "must be at least 1")
    ids = meter_ids(n_meters)
    rng = np.random.default_rng([seed, day.toordinal()])
    daily = rng.lognormal(np.log(MEAN_DAILY_M3) - 0.125, 0.5, n_meters)  # mean MEAN_DAILY_M3
    shares = slot_shares()
    # a household uses gas in an interval with a chance that follows the curve; what it uses then makes the mean
    active = np.clip(shares * SLOTS * 0.3, 0.02, 0.9)
    midnight = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    start_us = int(midnight.timestamp()) * 1_000_000
    for slot in range(SLOTS):
        time_us = start_us + slot * 15 * 60 * 1_000_000
        # the random draws go by fixed blocks of meters, so the readings do not depend on the batch size
        for block in range(0, n_meters, _BLOCK):
            end = min(block + _BLOCK, n_meters)
            draws = np.random.default_rng([seed, day.toordinal(), slot, block])
            uses = draws.random(end - block) < active[slot]
            amount = daily[block:end] * (shares[slot] / active[slot]) * draws.gamma(4.0, 0.25, end - block)
            values = np.round(np.where(uses, amount, 0.0), 3)
            for first in range(block, end, batch_rows):
                rows = min(batch_rows, end - first)
                yield pa.Table.from_arrays(
                    [
                        ids.slice(first, rows),
                        pa.array(np.full(rows, time_us, dtype="int64")).cast(READING_SCHEMA.field("time").type),
                        pa.array(values[first - block : first - block + rows]),
                        pa.nulls(rows, pa.string()),
                    ],
                    schema=READING_SCHEMA,
                )


def meter_assets(n: int, districts: Sequence[tuple[str, BaseGeometry]], seed: int = 1) -> AssetBatch:
    """``n`` meter sensor assets (ids as :func:`meter_day` gives them), shared evenly over ``districts`` — (name or
    code, lon/lat polygon), e.g. :func:`cim.synth.areas.district_boundaries` — in consecutive blocks of ids, each
    at a random point inside its district."""
    if n < 1:
        raise InvalidInput(f"meters {n}", "must be at least 1")
    if not districts:
        raise InvalidInput("districts", "none given to spread the meters over")
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, n, len(districts) + 1).astype(int)
    xs, ys, which = np.empty(n), np.empty(n), np.empty(n, dtype=np.int32)
    for index, ((_, polygon), lo, hi) in enumerate(zip(districts, bounds[:-1], bounds[1:], strict=True)):
        xs[lo:hi], ys[lo:hi] = _points_in(polygon, hi - lo, rng)
        which[lo:hi] = index
    ids = meter_ids(n)
    props = pa.array(
        [json.dumps({"quantity": QUANTITY, "unit": UNIT, "district": name}) for name, _ in districts]
    ).take(pa.array(which))
    table = pa.table(
        {
            "id": ids,
            "kind": pa.array(np.full(n, "sensor")),
            "name": pc.binary_join_element_wise(pa.scalar("Gas meter "), ids, ""),
            "geom": pa.array(shapely.to_wkb(shapely.points(xs, ys)), pa.binary()),
            "source": pa.array(np.full(n, "cim.iot.meters")),
            "props": props,
        }
    )
    return AssetBatch.from_table(table)


def _points_in(polygon: BaseGeometry, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    minx, miny, maxx, maxy = polygon.bounds
    xs, ys = np.empty(0), np.empty(0)
    shapely.prepare(polygon)
    while len(xs) < count:
        want = max(2 * (count - len(xs)), 16)
        x, y = rng.uniform(minx, maxx, want), rng.uniform(miny, maxy, want)
        inside = shapely.contains_xy(polygon, x, y)
        xs, ys = np.concatenate([xs, x[inside]]), np.concatenate([ys, y[inside]])
    return xs[:count], ys[:count]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The first and last reading time of ``day`` (Shanghai), as :func:`meter_day` stamps them."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    return midnight, midnight + timedelta(minutes=15 * (SLOTS - 1))
