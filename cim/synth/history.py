"""The demo city's past: yearly states of the layers that change, so the check-up has five years to show.

The current files are the city now (:data:`~cim.synth.buildings.REFERENCE_YEAR`); each state at the end of an earlier
year is written as ``history/<YYYY-MM-DD>/<same file name>``, so ingesting it gives the same source name and ids as
the current layer. Going back from now, a row of a changing layer is described by two years:

- ``since``: the year it was installed (a retrofitted lift, a charger, a pole); a state before that year lacks it.
- ``changed``: the year it changed (a gas or water main renewed, a drainage main inspected, a lift replaced); a state
  before that year holds its ``before`` values (the old install year, material, install kind, last inspection).

``0`` is "before the baseline": the row is in every state, unchanged. Layers that never change have no history file.

>>> state_years()
(2021, 2022, 2023, 2024, 2025)
>>> [str(d) for d in state_dates()][:2]
['2021-12-31', '2022-12-31']
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cim.synth.buildings import REFERENCE_YEAR
from cim.synth.layers import LAYERS
from cim.synth.writer import LayerWriter

#: Years of the states written besides the current files: five year-ends, the first of them the baseline.
YEARS_BACK = 5
#: Batches of states waiting for the writing thread; more make the generator wait (bounds memory).
IN_FLIGHT = 4
#: Layers with a past (the others are the same in every state).
HISTORY_LAYERS = ("pipes", "lifts", "chargers", "poles")
#: The year the past starts from: a row installed or changed in it or before is in the baseline as it is now.
BASELINE_YEAR = REFERENCE_YEAR - YEARS_BACK
FIRST_CHANGE_YEAR = BASELINE_YEAR + 1

# Shares of a network renewed or inspected each year, from the plan's five-year figures over Shanghai's networks.
# The network lengths are round assumptions (gas ≈ 30,000 km, water ≈ 40,000 km, drainage ≈ 25,000 km): the plan
# renews 300 km of old gas mains and 2,000 km of old water mains, and inspects 10,000 km of drainage mains.
GAS_RENEWED_A_YEAR = 300 / 30_000 / YEARS_BACK  # 0.2 % of the gas mains a year, the oldest first
WATER_RENEWED_A_YEAR = 2_000 / 40_000 / YEARS_BACK  # 1 %
DRAINAGE_INSPECTED_A_YEAR = 10_000 / 25_000 / YEARS_BACK  # 8 %


def state_years() -> tuple[int, ...]:
    """The years whose last day has a state: the baseline and the years up to the one before now."""
    return tuple(range(BASELINE_YEAR, REFERENCE_YEAR))


def state_dates() -> tuple[date, ...]:
    return tuple(date(year, 12, 31) for year in state_years())


@dataclass
class Past:
    """How a batch of a layer's rows stood before now (see the module docstring); arrays are the batch's length."""

    since: np.ndarray | None = None
    changed: np.ndarray | None = None
    before: dict[str, Any] = field(default_factory=dict)


def change_schedule(
    candidates: np.ndarray, share: float, total: int, rng: np.random.Generator, *, oldest: np.ndarray | None = None
) -> np.ndarray:
    """For each row, the year it changes (0: not in the five years): ``share`` of ``total`` rows a year (at least one
    while candidates last) taken from the rows where ``candidates`` holds, oldest first when ``oldest`` (a year per
    row) is given, else at random. Each row changes once at most.

    >>> laid = np.array([1980, 1960, 1950, 1970])
    >>> change_schedule(laid < 1975, 0.25, 4, np.random.default_rng(0), oldest=laid).tolist()
    [0, 2023, 2022, 2024]
    """
    years = np.zeros(len(candidates), np.int32)
    pool = np.flatnonzero(candidates)
    key = rng.random(len(pool))
    order = pool[np.lexsort((key, oldest[pool]))] if oldest is not None else pool[np.argsort(key)]
    per_year = max(1, round(share * total)) if len(pool) else 0
    for k, year in enumerate(range(FIRST_CHANGE_YEAR, REFERENCE_YEAR + 1)):
        years[order[k * per_year : (k + 1) * per_year]] = year
    return years


def history_manifest() -> list[dict[str, Any]]:
    """The manifest's ``history`` list, oldest first: each state's date and its layers' files (relative to the
    generated city's folder)."""
    return [
        {"date": day.isoformat(), "layers": {layer: f"history/{day}/{layer}.parquet" for layer in HISTORY_LAYERS}}
        for day in state_dates()
    ]


class HistoryWriters:
    """One :class:`LayerWriter` per state and changing layer, under ``<out>/history/<date>/<layer>.parquet``.

    The states are written on a thread of their own (Parquet encoding releases the GIL), a few batches behind the
    generator, so on two cores the five states cost the generator little more than the current files: measured at
    1,000,000 buildings (``cim synth --towers 0``), see the commit that added this module."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._pending: list[Future[None]] = []
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="synth-history")
        self._writers: dict[tuple[int, str], LayerWriter] = {}
        for year, day in zip(state_years(), state_dates(), strict=True):
            folder = out / "history" / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            for layer in HISTORY_LAYERS:
                schema, types = LAYERS[layer]
                self._writers[year, layer] = LayerWriter(
                    folder / f"{layer}.parquet", schema=schema, geometry_types=types
                )

    def write(self, layer: str, columns: dict[str, Any], geometry: pa.Array, past: Past) -> None:
        """Write the batch ``columns``/``geometry`` of ``layer`` as it stood at each state's date (on the writing
        thread; an error there is raised here or by :meth:`close`)."""
        while len(self._pending) >= IN_FLIGHT:
            self._pending.pop(0).result()
        self._pending.append(self._thread.submit(self._write, layer, columns, geometry, past))

    def _write(self, layer: str, columns: dict[str, Any], geometry: pa.Array, past: Past) -> None:
        schema = LAYERS[layer][0]
        current = {f.name: _array(columns[f.name], f.type) for f in schema}
        before = {name: _array(values, schema.field(name).type) for name, values in past.before.items()}
        for year in state_years():
            state = dict(current)
            if past.changed is not None:
                older = pa.array(past.changed > year)
                for name, values in before.items():
                    state[name] = pc.if_else(older, values, current[name])
            rows = geometry
            if past.since is not None:
                present = pa.array(past.since <= year)
                state = {name: pc.filter(values, present) for name, values in state.items()}
                rows = pc.filter(geometry, present)
            self._writers[year, layer].write(state, rows)

    def rows(self) -> dict[str, dict[str, int]]:
        """Rows per layer in each state, by date."""
        return {
            day.isoformat(): {layer: self._writers[year, layer].rows for layer in HISTORY_LAYERS}
            for year, day in zip(state_years(), state_dates(), strict=True)
        }

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:
            self._thread.shutdown(cancel_futures=True)
            for writer in self._writers.values():
                writer.close()

    def __enter__(self) -> HistoryWriters:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _array(values: Any, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(kind)
    return pa.array(values, type=kind, from_pandas=True)
