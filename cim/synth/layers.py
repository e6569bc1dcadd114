"""The layers the generator writes: file names, columns and geometry types. The mappings in
``pipelines/mappings/synth-*.toml`` name these columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.synth.areas import AREA_SCHEMA
from cim.synth.water import WATER_SCHEMA

_S, _I, _F, _B = pa.string(), pa.int32(), pa.float64(), pa.bool_()

THRESHOLDS = pa.struct(
    [
        ("above", _F),
        ("below", _F),
        ("status", pa.list_(_S)),
        ("stale_s", _F),
        ("severity", _S),
        ("unit", _S),  # the unit the limits are written in, when it is not the sensor's
        ("deadband", _F),
        ("min_duration_s", _F),
    ]
)

LAYERS: dict[str, tuple[pa.Schema, list[str]]] = {
    "areas": (AREA_SCHEMA, ["Polygon", "MultiPolygon"]),  # city, districts, streets, grid cells (cim.synth.areas)
    "water": (WATER_SCHEMA, ["Polygon", "MultiPolygon"]),  # the sea, estuary, bay and the Huangpu (cim.synth.water)
    "buildings": (
        pa.schema(
            [
                ("bid", _S),
                ("name", _S),
                ("district", _S),
                ("use", _S),
                ("shape", _S),
                ("storeys", _I),
                ("height_m", _F),
                ("year_built", _I),
                ("lifts", _I),
            ]
        ),
        ["Polygon"],
    ),
    "lifts": (
        pa.schema(
            [
                ("lift_id", _S),
                ("building_id", _S),
                ("name", _S),
                ("install_year", _I),
                ("install_date", _S),
                ("install_kind", _S),
                ("manufacturer", _S),
                ("rated_load_kg", _I),
                ("speed_m_s", _F),
                ("stops", _I),
                ("status", _S),
            ]
        ),
        ["Point"],
    ),
    "roads": (
        pa.schema([("road_id", _S), ("name", _S), ("road_class", _S), ("width_m", _F), ("district", _S)]),
        ["LineString"],
    ),
    "pipes": (
        pa.schema(
            [
                ("pipe_id", _S),
                ("name", _S),
                ("network", _S),
                ("diameter_mm", _I),
                ("material", _S),
                ("install_year", _I),
                ("depth_m", _F),
                ("status", _S),
                ("pressure_class", _S),
                ("length_m", _F),
                ("district", _S),
                ("inspected_on", _S),  # drainage: the last inspection's date (ISO), empty if none is known
            ]
        ),
        ["LineString"],
    ),
    "nodes": (
        pa.schema(
            [
                ("node_id", _S),
                ("name", _S),
                ("network", _S),
                ("node_type", _S),
                ("depth_m", _F),
                ("ground_m", _F),
                ("low_point", _B),
                ("install_year", _I),
                ("district", _S),
            ]
        ),
        ["Point"],
    ),
    "parks": (pa.schema([("park_id", _S), ("name", _S), ("area_m2", _F), ("district", _S)]), ["Polygon"]),
    "metro_exits": (
        pa.schema([("exit_id", _S), ("name", _S), ("station", _S), ("lines", _S), ("district", _S)]),
        ["Point"],
    ),
    "bus_stops": (pa.schema([("stop_id", _S), ("name", _S), ("routes", _I), ("district", _S)]), ["Point"]),
    "poles": (
        pa.schema([("pole_id", _S), ("functions", _S), ("height_m", _F), ("install_year", _I), ("district", _S)]),
        ["Point"],
    ),
    "chargers": (
        pa.schema(
            [
                ("charger_id", _S),
                ("operator", _S),
                ("power_kw", _F),
                ("connector", _S),
                ("install_year", _I),
                ("status", _S),
                ("district", _S),
            ]
        ),
        ["Point"],
    ),
    "sensors": (
        pa.schema(
            [
                ("sensor_id", _S),
                ("parent_id", _S),
                ("name", _S),
                ("quantity", _S),
                ("unit", _S),
                ("network", _S),
                ("nominal", _F),
                ("thresholds", THRESHOLDS),
                ("district", _S),
            ]
        ),
        ["Point"],
    ),
}


def ids(prefix: str, start: int, n: int, width: int = 7) -> pa.Array:
    """``prefix`` followed by zero-padded sequence numbers: ``ids("B-LJZ-", 0, 2)`` → B-LJZ-0000000, B-LJZ-0000001."""
    numbers = pc.utf8_lpad(pa.array(np.arange(start, start + n)).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), numbers, "")


def join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    """Element-wise string concatenation of arrays and literals."""
    return pc.binary_join_element_wise(
        *[pa.scalar(p) if isinstance(p, str) else p.cast(pa.string()) for p in parts], sep
    )


def pick(options: tuple[str, ...], index: np.ndarray) -> pa.Array:
    """``options[index]`` as a string array."""
    return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()), pa.array(options)).cast(pa.string())
