"""Smart gas meters: a day of 15-minute readings for many meters, generated vectorised and deterministic, and the
meters as sensor assets in their districts."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import shapely

from cim.errors import InvalidInput
from cim.iot.meters import READING_SCHEMA, SLOTS, day_bounds, meter_assets, meter_day
from cim.synth.areas import district_boundaries

DAY = date(2026, 5, 1)


def whole(n: int, **kwargs: object) -> pa.Table:
    return pa.concat_tables(meter_day(n, DAY, **kwargs))  # type: ignore[arg-type]


def test_a_day_is_96_readings_a_meter_in_batches_of_the_schema() -> None:
    batches = list(meter_day(5000, DAY, batch_rows=2000))
    assert all(b.schema == READING_SCHEMA and b.num_rows <= 2000 for b in batches)
    table = pa.concat_tables(batches)
    assert table.num_rows == 5000 * SLOTS and table.column("status").null_count == table.num_rows
    times = sorted(set(table.column("time").to_pylist()))
    first, last = day_bounds(DAY)
    assert len(times) == SLOTS and times[0] == first.astimezone(UTC) and times[-1] == last.astimezone(UTC)
    assert times[0] == datetime(2026, 4, 30, 16, tzinfo=UTC)  # midnight in Shanghai
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(times))
    per_meter = {
        m: c
        for m, c in zip(
            *np.unique(table.column("sensor_id").to_numpy(zero_copy_only=False), return_counts=True), strict=True
        )
    }
    assert len(per_meter) == 5000 and set(per_meter.values()) == {SLOTS}


def test_the_same_arguments_give_the_same_readings_and_another_seed_others() -> None:
    assert whole(300).equals(whole(300))
    assert whole(300, batch_rows=77).column("value").to_pylist() == whole(300).column("value").to_pylist()
    assert not whole(300, seed=2).column("value").equals(whole(300).column("value"))


def test_households_use_most_at_the_evening_meal_and_about_0_8_m3_a_day() -> None:
    table = whole(20_000)
    value = table.column("value").to_numpy()
    assert (value >= 0).all() and 0.7 < value.sum() / 20_000 < 0.9
    by_slot = value.reshape(SLOTS, 20_000)
    assert by_slot.sum(axis=1).argmax() // 4 in (17, 18)  # 17:00–19:00 in Shanghai
    assert (by_slot[12] == 0).mean() > 0.9  # 03:00: nearly everyone asleep
    assert np.allclose(value, np.round(value, 3))


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="meters 0"):
        next(meter_day(0, DAY))


def test_meter_assets_are_sensors_spread_evenly_inside_their_districts() -> None:
    districts = district_boundaries()[:3]
    batch = meter_assets(3000, districts, seed=2)
    table = batch.table
    assert len(batch) == 3000 and set(table.column("kind").to_pylist()) == {"sensor"}
    assert table.column("id").to_pylist() == whole(3000).column("sensor_id").to_pylist()[:3000]
    props = [json.loads(p) for p in table.column("props").to_pylist()]
    assert {p["quantity"] for p in props} == {"gas_volume"} and {p["unit"] for p in props} == {"m3"}
    points = batch.geometries()
    for code, polygon in districts:
        mine = np.array([p["district"] == code for p in props])
        assert mine.sum() == 1000 and shapely.contains(polygon, points[mine]).all()
