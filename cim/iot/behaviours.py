"""How simulated sensors behave: daily curves in Shanghai time, fault episodes at real-world rates, and water levels
that follow a real river series.

Every behaviour is a function of *simulated* time (Unix seconds), never of how often it is read: a fault is an
episode of a Poisson process in simulated time, drawn from the sensor's own random stream, so reading a lift ten
times a second or once a minute sees the same faults at the same times (:meth:`Behaviour.next_change` tells the
publisher when the state next changes, so it can report that change as a real device reports on alarm).

- lift status: ``running``; faults at :attr:`FaultRates.lift_faults_per_day` (a few a day per thousand lifts),
  repaired within 1–4 h; maintenance every fortnight or so (``maintenance``: a day-time visit of about an hour,
  TSG T5002 asks for one every 15 days).
- gas pressure: the nominal of the main's class, dipping at the breakfast, lunch and evening cooking peaks, with a
  little noise, always well inside the thresholds; an excursion (a leak or a regulator fault: below or above the
  limits) at :attr:`FaultRates.gas_excursions_per_day`, lasting 2–15 min.
- water level at a drainage low point: the river's discharge (:class:`RiverSeries`) mapped so that a chamber floods
  only when the series is in flood (above its 99th percentile), the lowest-lying chambers first: at the series'
  record flood about :data:`FLOODED_AT_RECORD` of them.
- anything else: its nominal (else the middle of its thresholds) with a little noise, inside the thresholds.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cim.errors import InvalidInput
from cim.iot.sensors import Sensor

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY_S = 86_400.0
CHOPTANK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "timeseries" / "ChoptankRiverFlow.txt"
#: Share of the drainage chambers under water at the series' record flood (Hurricane Irene, 28 Aug 2011).
FLOODED_AT_RECORD = 0.10
#: Where a river series starts being replayed when nothing else is asked: the morning before the Choptank's record
#: flood, so a demo sees the water rise within hours of simulated time.
DEFAULT_SERIES_START = datetime(2011, 8, 27, 8, 0, tzinfo=UTC)

# (hour of the day in Shanghai, weight, spread in hours): breakfast, lunch, the evening meal, the evening bath
_COOKING = ((7.0, 0.55, 0.8), (11.5, 0.7, 0.8), (18.0, 1.0, 1.0), (21.0, 0.35, 1.2))


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often things go wrong, per device and real (simulated) day."""

    lift_faults_per_day: float = 3 / 1000
    lift_repair_h: tuple[float, float] = (1.0, 4.0)
    lift_maintenance_every_days: float = 15.0
    gas_excursions_per_day: float = 1 / 1000
    gas_excursion_min: tuple[float, float] = (2.0, 15.0)


def demand(hour: float) -> float:
    """Household gas demand at ``hour`` (0–24, Shanghai time), 1.0 at the evening meal's peak.

    >>> round(demand(18.0), 2), demand(3.0) < 0.15 < demand(7.0)
    (1.0, True)
    """
    total = 0.08 + sum(w * math.exp(-0.5 * (min(abs(hour - h), 24 - abs(hour - h)) / s) ** 2) for h, w, s in _COOKING)
    return min(total / 1.08, 1.0)


def shanghai_hour(t: float) -> float:
    """The hour of the day (0–24) in Shanghai at Unix time ``t``."""
    local = datetime.fromtimestamp(t, SHANGHAI)
    return local.hour + local.minute / 60 + local.second / 3600


def read_discharge(path: Path = CHOPTANK) -> list[float]:
    """The daily mean discharges (m³/s) of a USGS tab-separated ``date  Qdaily`` file."""
    return RiverSeries.read(path).discharge


@dataclass(frozen=True)
class RiverSeries:
    """A daily discharge series (m³/s), each day's mean placed at its noon and read in between linearly."""

    first_day: date
    discharge: list[float]

    @classmethod
    def read(cls, path: Path = CHOPTANK) -> RiverSeries:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise InvalidInput(f"series {path}", f"cannot be read: {exc.strerror}") from None
        first: date | None = None
        values = []
        for line in lines[1:]:
            parts = line.split("\t")
            if len(parts) == 2 and parts[1].strip():
                if first is None:
                    month, day, year = (int(p) for p in parts[0].split("/"))
                    first = date(year, month, day)
                values.append(float(parts[1]))
        if first is None:
            raise InvalidInput(f"series {path}", "holds no values")
        return cls(first, values)

    @cached_property
    def flood(self) -> float:
        """The discharge above which the series is in flood: its 99th percentile (3–4 days a year)."""
        ordered = sorted(self.discharge)
        return ordered[int(0.99 * (len(ordered) - 1))]

    @cached_property
    def median(self) -> float:
        return sorted(self.discharge)[len(self.discharge) // 2]

    def flood_days(self) -> set[date]:
        return {self.first_day + timedelta(days=i) for i, q in enumerate(self.discharge) if q > self.flood}

    def at(self, when: datetime) -> float:
        """The discharge at ``when`` (wrapping round the series' end)."""
        start = datetime(self.first_day.year, self.first_day.month, self.first_day.day, 12, tzinfo=UTC)
        days = ((when - start).total_seconds() / DAY_S) % len(self.discharge)
        i = int(days)
        a, b = self.discharge[i], self.discharge[(i + 1) % len(self.discharge)]
        return a + (b - a) * (days - i)


@dataclass(slots=True)
class Clock:
    """Simulated time: ``speedup`` simulated seconds for each real one from ``real_start``; the river series is
    replayed from ``series_start`` at the same pace."""

    real_start: float
    sim_start: float
    speedup: float = 1.0
    series_start: datetime = DEFAULT_SERIES_START

    def sim(self, real: float) -> float:
        return self.sim_start + (real - self.real_start) * self.speedup

    def series_time(self, sim: float) -> datetime:
        return self.series_start + timedelta(seconds=sim - self.sim_start)


class Episodes:
    """Episodes (a fault, a visit) of a Poisson process in simulated time: the next one starts an exponential wait
    after the last one ended. Drawn lazily from the sensor's own stream, so reading them is free of side effects
    on what comes later."""

    __slots__ = ("_durations", "_rate", "_rng", "end", "start")

    def __init__(self, rng: random.Random, per_day: float, duration_s: tuple[float, float], since: float) -> None:
        self._rng, self._rate, self._durations = rng, per_day / DAY_S, duration_s
        self.start, self.end = math.inf, math.inf
        if self._rate > 0:
            # begin a long repair before the simulation, so episodes already under way at its start are there
            self._draw(since - 2 * duration_s[1])

    def _draw(self, after: float) -> None:
        self.start = after + self._rng.expovariate(self._rate)
        self.end = self.start + self._rng.uniform(*self._durations)

    def active(self, t: float) -> bool:
        while self.end <= t:
            self._draw(self.end)
        return self.start <= t

    def next_change(self, t: float) -> float:
        self.active(t)
        return self.start if t < self.start else self.end


def _sensor_rng(seed: int, sensor_id: str, stream: int) -> random.Random:
    return random.Random(f"{seed}:{stream}:{zlib.crc32(sensor_id.encode())}:{sensor_id}")


class Behaviour:
    """One sensor's readings in simulated time."""

    def __init__(self, sensor: Sensor, seed: int) -> None:
        self.sensor = sensor
        self.noise = _sensor_rng(seed, sensor.id, 0)

    def reading(self, t: float) -> tuple[float | None, str | None]:
        raise NotImplementedError

    def next_change(self, t: float) -> float:
        """When (simulated) the sensor's state next changes in a way worth reporting at once; inf if never."""
        return math.inf


class Lift(Behaviour):
    def __init__(self, sensor: Sensor, seed: int, since: float, rates: FaultRates) -> None:
        super().__init__(sensor, seed)
        repair = (rates.lift_repair_h[0] * 3600, rates.lift_repair_h[1] * 3600)
        self.faults = Episodes(_sensor_rng(seed, sensor.id, 1), rates.lift_faults_per_day, repair, since)
        visits = 1 / rates.lift_maintenance_every_days if rates.lift_maintenance_every_days > 0 else 0.0
        self.visits = Episodes(_sensor_rng(seed, sensor.id, 2), visits, (2400.0, 5400.0), since)

    def reading(self, t: float) -> tuple[float | None, str | None]:
        if self.faults.active(t):
            return None, "fault"
        # a visit drawn at night is read as not happening: maintenance crews come by day
        if self.visits.active(t) and 8.0 <= shanghai_hour(self.visits.start) < 17.0:
            return None, "maintenance"
        return None, "running"

    def next_change(self, t: float) -> float:
        return min(self.faults.next_change(t), self.visits.next_change(t))


class Bounded(Behaviour):
    """A value around the nominal, kept inside the sensor's thresholds by a margin (a quarter of the way in from
    each limit), so normal readings never alert whatever deadband the rules use."""

    def __init__(self, sensor: Sensor, seed: int) -> None:
        super().__init__(sensor, seed)
        t = sensor.thresholds
        self.below = _float(t.get("below"))
        self.above = _float(t.get("above"))
        nominal = getattr(sensor, "nominal", None)
        if nominal is None:
            known = [v for v in (self.below, self.above) if v is not None]
            nominal = sum(known) / len(known) if len(known) == 2 else (known[0] * 0.8 if known else 1.0)
        self.nominal = nominal
        lo = self.below + 0.25 * (nominal - self.below) if self.below is not None else -math.inf
        hi = self.above - 0.25 * (self.above - nominal) if self.above is not None else math.inf
        self.lo, self.hi = lo, hi
        self.digits = max(0, 3 - math.floor(math.log10(abs(nominal)))) if nominal else 3

    def clamp(self, value: float) -> float:
        return round(min(max(value, self.lo), self.hi), self.digits)

    def reading(self, t: float) -> tuple[float | None, str | None]:
        return self.clamp(self.nominal * (1 + self.noise.gauss(0, 0.005))), None


class GasPressure(Bounded):
    def __init__(self, sensor: Sensor, seed: int, since: float, rates: FaultRates, dip: float = 0.08) -> None:
        """``dip``: the share of the pressure lost at the evening peak (clamped inside the thresholds)."""
        super().__init__(sensor, seed)
        self.level = self.nominal * self.noise.uniform(0.98, 1.02)  # each point of a network sits a little apart
        self.dip = dip
        minutes = rates.gas_excursion_min
        rng = _sensor_rng(seed, sensor.id, 1)
        self.excursions = Episodes(rng, rates.gas_excursions_per_day, (minutes[0] * 60, minutes[1] * 60), since)

    def reading(self, t: float) -> tuple[float | None, str | None]:
        if self.excursions.active(t):
            # the same excursion always goes the same way: 70 % a leak (pressure lost), else a regulator fault
            side = random.Random(self.excursions.start).random()
            depth = 0.2 + 0.3 * random.Random(self.excursions.end).random()
            if side < 0.7 and self.below is not None:
                return round(self.below - depth * (self.nominal - self.below), self.digits), "low"
            if self.above is not None:
                return round(self.above + depth * (self.above - self.nominal), self.digits), "high"
        value = self.level * (1 - self.dip * demand(shanghai_hour(t))) * (1 + self.noise.gauss(0, 0.004))
        return self.clamp(value), "ok"

    def next_change(self, t: float) -> float:
        return self.excursions.next_change(t)


class WaterLevel(Bounded):
    """The level in a drainage chamber: its nominal in a dry spell, rising with the river's stage (√discharge) to
    reach its ``above`` threshold at the discharge this chamber floods at — never below the series' flood level."""

    def __init__(self, sensor: Sensor, seed: int, series: RiverSeries, clock: Clock) -> None:
        super().__init__(sensor, seed)
        self.series, self.clock = series, clock
        self.flood = series.flood
        # the lowest-lying FLOODED_AT_RECORD of chambers flood below the record discharge, spread on a log scale
        share = _sensor_rng(seed, sensor.id, 1).random() / FLOODED_AT_RECORD
        record = max(series.discharge)
        self.floods_at = self.flood * (record / self.flood) ** share
        self.base = math.sqrt(series.median)

    def level(self, discharge: float) -> float:
        if self.above is None:
            return self.nominal * math.sqrt(max(discharge, 0.0) / self.series.median)
        rise = (math.sqrt(max(discharge, 0.0)) - self.base) / (math.sqrt(self.floods_at) - self.base)
        return max(self.nominal + (self.above - self.nominal) * rise, 0.4 * self.nominal)

    def reading(self, t: float) -> tuple[float | None, str | None]:
        discharge = self.series.at(self.clock.series_time(t))
        value = self.level(discharge) + self.noise.gauss(0, 0.005)
        if self.above is not None and discharge < self.floods_at:
            value = min(value, self.above - 0.02)  # noise never floods a chamber the river has not
        return round(max(value, 0.0), 3), None


def behaviour_of(sensor: Sensor, *, seed: int, clock: Clock, series: RiverSeries, rates: FaultRates) -> Behaviour:
    """The behaviour that fits the sensor's quantity."""
    since = clock.sim_start
    if sensor.quantity == "lift_status":
        return Lift(sensor, seed, since, rates)
    if sensor.quantity == "gas_pressure":
        return GasPressure(sensor, seed, since, rates)
    if sensor.quantity == "water_level":
        return WaterLevel(sensor, seed, series, clock)
    return Bounded(sensor, seed)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
