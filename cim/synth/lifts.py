"""Lifts in the buildings' cores, with install years, and the status sensors on one lift in four.

A lift was installed with its building, replaced once since (buildings older than 20 years, often), or retrofitted
into a six-storey estate (Shanghai's programme since 2018); for some the date is unknown. Their past
(:mod:`cim.synth.history`): a lift replaced since the baseline was its original before; one retrofitted since was not
there.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cim.synth.buildings import REFERENCE_YEAR, Typology
from cim.synth.history import BASELINE_YEAR, Past
from cim.synth.layers import ids, join, pick
from cim.synth.networks import Layer
from cim.synth.places import FloatArray
from cim.synth.writer import points_wkb

MANUFACTURERS = ("Shanghai Mitsubishi", "Otis", "Schindler", "KONE", "Hitachi", "ThyssenKrupp")
UNKNOWN_DATE_SHARE = 0.07
SENSOR_SHARE = 0.1


def lifts(
    *,
    building_ids: pa.Array,
    lift_counts: np.ndarray,
    storeys: np.ndarray,
    year_built: np.ndarray,
    typology: np.ndarray,
    x: FloatArray,
    y: FloatArray,
    first_id: int,
    district_code: str,
    rng: np.random.Generator,
) -> tuple[Layer, Layer, Past]:
    """Lifts of the buildings, as points in their cores (``x``, ``y``: each building's core in projected metres),
    their status sensors, and their past."""
    b = np.repeat(np.arange(len(lift_counts)), lift_counts)
    n = len(b)
    k = np.arange(n) - np.repeat(np.cumsum(lift_counts) - lift_counts, lift_counts)
    built = year_built[b]
    retrofit = typology[b] == Typology.SLAB
    replaced = ~retrofit & (REFERENCE_YEAR - built > 20) & (rng.random(n) < 0.45)
    year = np.where(retrofit, rng.integers(2018, REFERENCE_YEAR + 1, n), built + rng.integers(0, 2, n))
    first = np.minimum(year, REFERENCE_YEAR)
    year = np.where(replaced, rng.integers(np.minimum(built + 20, REFERENCE_YEAR), REFERENCE_YEAR + 1), year)
    year = np.minimum(year, REFERENCE_YEAR)
    unknown = rng.random(n) < UNKNOWN_DATE_SHARE
    install_kind = np.select([unknown, retrofit, replaced], [3, 2, 1], 0)
    recent = ~unknown & (year > BASELINE_YEAR)
    past = Past(
        since=np.where(recent & retrofit, year, 0),
        changed=np.where(recent & replaced, year, 0),
        before={
            "install_year": first,
            "install_date": join(pa.array(first).cast(pa.string()), "-01-01"),
            "install_kind": np.full(n, "original"),
        },
    )
    lift_ids = ids(f"L-{district_code}-", first_id, n)
    parent = building_ids.take(pa.array(b))
    tall = storeys[b] >= 30
    columns = {
        "lift_id": lift_ids,
        "building_id": join("buildings:", parent),
        "name": join("Lift ", pa.array(k + 1).cast(pa.string())),
        "install_year": pa.array(np.where(unknown, 0, year), mask=unknown, type=pa.int32()),
        # also as ISO text: the GIS ingest's "year" unit cannot take an empty year yet
        "install_date": join(pa.array(np.where(unknown, 0, year), mask=unknown).cast(pa.string()), "-01-01"),
        "install_kind": pick(("original", "replacement", "retrofit", "unknown"), install_kind),
        "manufacturer": pick(MANUFACTURERS, rng.integers(0, len(MANUFACTURERS), n)),
        "rated_load_kg": np.where(tall, rng.choice([1350, 1600, 2000], n), rng.choice([630, 800, 1000], n)),
        "speed_m_s": np.where(tall, rng.choice([4.0, 6.0, 10.0], n), rng.choice([1.0, 1.5, 1.75], n)),
        "stops": storeys[b],
        "status": np.full(n, "in_service"),
    }
    # lifts side by side in the core, 2.5 m apart, in rows of up to 8
    per_row = np.minimum(lift_counts[b], 8)
    rows = np.ceil(lift_counts[b] / 8)
    lx = x[b] + (k % 8 - (per_row - 1) / 2) * 2.5
    ly = y[b] + (k // 8 - (rows - 1) / 2) * 2.5
    watched = np.flatnonzero(rng.random(n) < SENSOR_SHARE)
    m = len(watched)
    watched_ids = lift_ids.take(pa.array(watched))
    sensors = {
        "sensor_id": join("S-LS-", watched_ids),
        "parent_id": join("lifts:", watched_ids),
        "name": join("Lift status ", watched_ids),
        "quantity": np.full(m, "lift_status"),
        "unit": np.full(m, None),
        "network": np.full(m, None),
        "nominal": np.full(m, np.nan),
        "thresholds": [
            {
                "above": None,
                "below": None,
                "status": ["fault"],
                "stale_s": 900.0,
                "severity": "warning",
                "unit": None,
                "deadband": None,
                "min_duration_s": None,
            }
        ]
        * m,
        "district": np.full(m, district_code),
    }
    lift_points = points_wkb(lx, ly)
    return (columns, lift_points), (sensors, lift_points.take(pa.array(watched))), past
