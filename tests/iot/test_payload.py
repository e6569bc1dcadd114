"""Parsing one payload into a reading: units, bare numbers, times too old — the refusals and their reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cim.iot.payload import Dropped, DropReason, decode_payload, parse_reading

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def parse(payload: bytes, unit: str | None = "kPa", **options: Any) -> float | None:
    return parse_reading("gp-1", decode_payload(payload), now=NOW, unit=unit, **options).value


def refusal(payload: bytes, unit: str | None = "kPa", **options: Any) -> tuple[DropReason, str]:
    with pytest.raises(Dropped) as caught:
        parse(payload, unit, **options)
    return caught.value.reason, str(caught.value)


def test_a_value_in_another_unit_of_the_dimension_is_converted_to_the_sensors() -> None:
    assert parse(b'{"value": 4100, "unit": "Pa"}') == pytest.approx(4.1)
    assert parse(b'{"value": 0.0041, "unit": "MPa"}') == pytest.approx(4.1)
    assert parse(b'{"value": 0.041, "unit": "bar"}') == pytest.approx(4.1)
    assert parse(b'{"value": 4.1, "unit": "kPa"}') == 4.1
    assert parse(b'{"value": 4.1}') == 4.1  # no unit: the sensor's


def test_a_value_of_another_dimension_is_dropped_as_wrong_unit_naming_both() -> None:
    reason, text = refusal(b'{"value": 20, "unit": "degC"}')
    assert reason is DropReason.WRONG_UNIT and "gp-1" in text and "temperature" in text and "pressure" in text
    assert refusal(b'{"value": 20, "unit": "mpa"}')[0] is DropReason.WRONG_UNIT  # not a unit: no guess
    assert refusal(b'{"value": 20, "unit": 3}')[0] is DropReason.WRONG_TYPE
    reason, text = refusal(b'{"value": 1.0, "unit": "m"}', unit=None)
    assert reason is DropReason.WRONG_UNIT and "declares no unit" in text


def test_a_bare_number_is_a_value_now() -> None:
    reading = parse_reading("gp-1", decode_payload(b"4.1"), now=NOW, unit="kPa")
    assert (reading.value, reading.time, reading.status) == (4.1, NOW, None)
    assert parse(b"3") == 3.0
    assert refusal(b"true")[0] is DropReason.WRONG_TYPE  # a boolean is no number
    assert refusal(b'"4.1"')[0] is DropReason.WRONG_TYPE
    assert refusal(b"NaN")[0] is DropReason.NOT_FINITE
    assert refusal(b"1e400")[0] is DropReason.NOT_FINITE


def test_a_time_over_a_year_old_is_dropped_as_too_old() -> None:
    old = (NOW - timedelta(days=365 * 20)).isoformat().encode()
    reason, text = refusal(b'{"value": 1.0, "time": "' + old + b'"}')
    assert reason is DropReason.TOO_OLD and "366 days" in text
    assert refusal(b'{"value": 1.0, "time": 1000000000}')[0] is DropReason.TOO_OLD  # 2001, in Unix seconds
    month_ago = (NOW - timedelta(days=30)).isoformat().encode()
    assert parse(b'{"value": 1.0, "time": "' + month_ago + b'"}') == 1.0
    assert refusal(b'{"value": 1.0, "time": "' + month_ago + b'"}', max_age=timedelta(days=7))[0] is DropReason.TOO_OLD


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_time_that_parses_but_falls_outside_the_calendar_in_utc_is_a_bad_time(time: str) -> None:
    reason, text = refusal(b'{"value": 1.0, "time": "' + time.encode() + b'"}')
    assert reason is DropReason.BAD_TIME and "out of range" in text and time in text
