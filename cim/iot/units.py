"""Units of the quantities sensors measure, and converting a value between two units of one dimension.

A small table rather than a units library: the ingest converts on the hot path (a dictionary lookup and one
multiply-add per reading, the pair's factors cached), the set of units city sensors report in is short, and
``pint`` (the library that would do it) is not installed and brings a registry, a parser and NumPy wrappers for
what is ~40 lines of data here. Each unit maps to its dimension and a ``factor`` and ``offset`` to the dimension's
base unit: ``base = value × factor + offset`` (an offset only for temperatures).

Spellings are the SI symbols plus the aliases listed with them, case-sensitive: ``mPa`` is a millipascal and
``MPa`` a megapascal, so no unit is guessed from its case; ``kpa`` and ``KPa`` are listed as aliases of ``kPa``
because no other unit is spelled so.

>>> convert(350.0, "kPa", "MPa")
0.35
>>> round(convert(20.0, "°C", "K"), 2), dimension("bar"), dimension("furlong")
(293.15, 'pressure', None)
>>> convert(1.0, "kPa", "m")
Traceback (most recent call last):
...
cim.iot.units.UnitMismatch: unit kPa (pressure) → m (length) — cannot convert between different dimensions
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from cim.errors import InvalidInput


class UnitMismatch(InvalidInput):
    """A value cannot be converted between two units: different dimensions, or a unit this table does not know."""


class _Unit(NamedTuple):
    dimension: str
    factor: float  # to the dimension's base unit
    offset: float = 0.0


_KELVIN_OF_CELSIUS = 273.15
_UNITS: dict[str, _Unit] = {
    # pressure, base Pa
    "Pa": _Unit("pressure", 1.0),
    "mPa": _Unit("pressure", 1e-3),
    "hPa": _Unit("pressure", 1e2),
    "kPa": _Unit("pressure", 1e3),
    "MPa": _Unit("pressure", 1e6),
    "mbar": _Unit("pressure", 1e2),
    "bar": _Unit("pressure", 1e5),
    "psi": _Unit("pressure", 6894.757293168),
    # length, base m
    "mm": _Unit("length", 1e-3),
    "cm": _Unit("length", 1e-2),
    "m": _Unit("length", 1.0),
    "km": _Unit("length", 1e3),
    # temperature, base K
    "K": _Unit("temperature", 1.0),
    "°C": _Unit("temperature", 1.0, _KELVIN_OF_CELSIUS),
    "°F": _Unit("temperature", 5 / 9, _KELVIN_OF_CELSIUS - 32 * 5 / 9),
    # volume flow, base m³/s
    "m³/s": _Unit("flow", 1.0),
    "m³/h": _Unit("flow", 1 / 3600),
    "L/s": _Unit("flow", 1e-3),
    "L/min": _Unit("flow", 1e-3 / 60),
    # speed, base m/s
    "m/s": _Unit("speed", 1.0),
    "km/h": _Unit("speed", 1 / 3.6),
    # power, base W
    "W": _Unit("power", 1.0),
    "kW": _Unit("power", 1e3),
    "MW": _Unit("power", 1e6),
    # energy, base J
    "J": _Unit("energy", 1.0),
    "kJ": _Unit("energy", 1e3),
    "MJ": _Unit("energy", 1e6),
    "Wh": _Unit("energy", 3600.0),
    "kWh": _Unit("energy", 3.6e6),
    "MWh": _Unit("energy", 3.6e9),
    # electric
    "V": _Unit("voltage", 1.0),
    "kV": _Unit("voltage", 1e3),
    "A": _Unit("current", 1.0),
    # ratios and counts
    "%": _Unit("ratio", 1e-2),
    "ratio": _Unit("ratio", 1.0),
    "count": _Unit("count", 1.0),
}
_ALIASES: dict[str, str] = {
    "pa": "Pa",
    "hpa": "hPa",
    "kpa": "kPa",
    "KPa": "kPa",
    "millibar": "mbar",
    "meter": "m",
    "metre": "m",
    "meters": "m",
    "metres": "m",
    "degC": "°C",
    "C": "°C",
    "℃": "°C",
    "celsius": "°C",
    "degF": "°F",
    "F": "°F",
    "kelvin": "K",
    "m3/s": "m³/s",
    "m3/h": "m³/h",
    "l/s": "L/s",
    "l/min": "L/min",
    "kph": "km/h",
    "percent": "%",
}


def canonical(unit: str) -> str | None:
    """The table's spelling of ``unit`` (an alias resolved), or None when the table does not know it.

    >>> canonical("kpa"), canonical("degC"), canonical("MPa"), canonical("mpa")
    ('kPa', '°C', 'MPa', None)
    """
    if unit in _UNITS:
        return unit
    return _ALIASES.get(unit.strip())


def dimension(unit: str) -> str | None:
    """What ``unit`` measures (``pressure``, ``length``, ``temperature`` …), or None for a unit the table does not
    know."""
    name = canonical(unit)
    return None if name is None else _UNITS[name].dimension


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit``, expressed in ``to_unit``. Raises :class:`UnitMismatch` naming both units when
    their dimensions differ or one is unknown (a unit converts to its own spelling even when unknown)."""
    factor, shift, divisor = conversion(from_unit, to_unit)
    return (value * factor + shift) / divisor


@functools.cache
def conversion(from_unit: str, to_unit: str) -> tuple[float, float, float]:
    """``(factor, shift, divisor)`` with ``value_in_to = (value_in_from × factor + shift) / divisor`` (cached: the
    ingest asks per reading; multiplying by one factor and dividing by the other keeps decimal prefixes exact:
    350 kPa is 0.35 MPa, not 0.35000000000000003). Raises :class:`UnitMismatch` as :func:`convert` does."""
    if from_unit == to_unit:
        return 1.0, 0.0, 1.0
    source, target = canonical(from_unit), canonical(to_unit)
    if source is None or target is None:
        unknown = from_unit if source is None else to_unit
        raise UnitMismatch(
            f"unit {from_unit} → {to_unit}", f"{unknown!r} is not a known unit (known: {', '.join(_UNITS)})"
        )
    a, b = _UNITS[source], _UNITS[target]
    if a.dimension != b.dimension:
        raise UnitMismatch(
            f"unit {from_unit} ({a.dimension}) → {to_unit} ({b.dimension})",
            "cannot convert between different dimensions",
        )
    # base = v·fa + oa; target = (base − ob) / fb
    return a.factor, a.offset - b.offset, b.factor
