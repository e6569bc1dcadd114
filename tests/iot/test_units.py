"""The units table: conversions within a dimension, refusals across dimensions and of unknown spellings."""

from __future__ import annotations

import pytest

from cim.errors import InvalidInput
from cim.iot.units import UnitMismatch, canonical, convert, dimension


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (350.0, "kPa", "MPa", 0.35),
        (0.35, "MPa", "kPa", 350.0),
        (2.5, "bar", "kPa", 250.0),
        (1013.25, "hPa", "kPa", 101.325),
        (25.0, "mbar", "Pa", 2500.0),
        (1.0, "psi", "kPa", 6.894757293168),
        (1500.0, "Pa", "mPa", 1_500_000.0),  # millipascal, not megapascal
        (1.0, "MPa", "Pa", 1_000_000.0),
        (123.0, "cm", "m", 1.23),
        (4.0, "km", "m", 4000.0),
        (25.0, "mm", "cm", 2.5),
        (20.0, "°C", "K", 293.15),
        (0.0, "K", "°C", -273.15),
        (212.0, "°F", "°C", 100.0),
        (-40.0, "degC", "°F", -40.0),
        (3.6, "m3/h", "L/s", 1.0),
        (90.0, "km/h", "m/s", 25.0),
        (1.0, "kWh", "MJ", 3.6),
        (45.0, "%", "ratio", 0.45),
        (7.0, "count", "count", 7.0),
    ],
)
def test_a_value_converts_within_its_dimension(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_decimal_prefixes_give_the_number_people_write() -> None:
    assert convert(350.0, "kPa", "MPa") == 0.35  # exactly: no 0.35000000000000003 in an alert's text
    assert convert(250_000.0, "Pa", "kPa") == 250.0


def test_another_dimension_is_refused_naming_both_units_and_dimensions() -> None:
    with pytest.raises(UnitMismatch, match=r"°C \(temperature\) → kPa \(pressure\)"):
        convert(20.0, "°C", "kPa")
    with pytest.raises(UnitMismatch, match=r"m \(length\) → L/s \(flow\)"):
        convert(1.0, "m", "L/s")
    assert issubclass(UnitMismatch, InvalidInput)


def test_unknown_or_wrongly_cased_spellings_are_refused_not_guessed() -> None:
    with pytest.raises(UnitMismatch, match="'mpa' is not a known unit"):
        convert(1.0, "mpa", "kPa")  # mPa or MPa? a factor of 10⁹ apart: no guess
    with pytest.raises(UnitMismatch, match="'furlong' is not a known unit"):
        convert(1.0, "kPa", "furlong")
    assert dimension("mpa") is None and dimension("MPA") is None
    assert convert(3.0, "dB", "dB") == 3.0  # a unit the table lacks still converts to itself


def test_aliases_resolve_to_one_unit() -> None:
    assert [canonical(u) for u in ("kpa", "KPa", "kPa")] == ["kPa"] * 3
    assert [canonical(u) for u in ("degC", "C", "℃", "°C")] == ["°C"] * 4
    assert [canonical(u) for u in ("m3/h", "m³/h")] == ["m³/h"] * 2
    assert [dimension(u) for u in ("Pa", "m", "K", "L/s", "kW", "kWh", "%")] == [
        "pressure", "length", "temperature", "flow", "power", "energy", "ratio",
    ]  # fmt: skip
