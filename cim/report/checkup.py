"""The annual city check-up as data: per district, the vital signs at the year's end and over the five years
before, what changed in the year, the plan's targets and their progress, cases and their on-time rate.

Every figure is one the API answers: the city's vital signs are :func:`cim.queries.indicators.vital_signs` of the
model as of the year's end (:func:`cim.queries.params.model_as_of`), the per-district signs count the same things
in the same way per district (:mod:`cim.store.district_vitals`), the changes are
:func:`cim.store.changes.change_summary`, the cases :func:`cim.store.assessment.assess`. The year's end is 31
December, or today for the current year; a year in the future or before the model's history is refused.

>>> CHANGE_METRICS[0].id
'gas_renewed_km'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cim.cases.reading import CITY_ZONE
from cim.errors import InvalidInput
from cim.model import Kind
from cim.queries.domain import years_before
from cim.queries.indicators import (
    METRO_DISTANCE_M,
    OLD_LIFT_YEARS,
    OLD_MAIN_YEARS,
    PARK_DISTANCE_M,
    vital_signs,
)
from cim.queries.params import end_of_day, model_as_of
from cim.queries.targets import load_targets, plan_dict, target_progress
from cim.store import AssetQuery, Store
from cim.store.aggregates import area_names
from cim.store.assessment import assess
from cim.store.changes import Window, change_summary
from cim.store.district_vitals import buried_lengths_by_district, dated_counts_by_district, near_counts_by_district
from cim.store.sqlstore import sql_store
from cim.store.versions import history_span

#: Years of trend shown, the report's year included.
TREND_YEARS = 5
#: A street needs this many handled cases in the year to be ranked by its on-time rate.
MIN_HANDLED = 5
#: How many worst and best areas are listed.
RANKED = 5


@dataclass(frozen=True, slots=True)
class Metric:
    id: str
    zh: str
    en: str
    unit: str
    better: str = "higher"  # "higher", "lower" or "" (no ranking: a count that follows a district's size)


SIGNS: tuple[Metric, ...] = (
    Metric("old_lifts", f"{OLD_LIFT_YEARS}年以上老旧电梯", f"Lifts older than {OLD_LIFT_YEARS} years", "lifts", ""),
    Metric("old_lifts_share", "老旧电梯占比", f"Share of lifts older than {OLD_LIFT_YEARS} years", "%", "lower"),
    Metric("old_gas_mains_km", f"{OLD_MAIN_YEARS}年以上埋地燃气管道", "Old buried gas mains", "km", ""),
    Metric("old_water_mains_km", f"{OLD_MAIN_YEARS}年以上埋地供水管道", "Old buried water mains", "km", ""),
    Metric("stops_near_metro", f"公交站{METRO_DISTANCE_M:g}米内有地铁口", "Bus stops near a metro exit", "%"),
    Metric("homes_near_park", f"住宅{PARK_DISTANCE_M:g}米内有公园", "Homes within 500 m of a park", "%"),
    Metric("chargers", "充电桩", "Chargers", "chargers", ""),
    Metric("poles", "多功能杆", "Multi-function poles", "poles", ""),
)
#: What changed in the year, from the change summary: (kind, network or None, change) summed as count or km.
CHANGE_METRICS: tuple[Metric, ...] = (
    Metric("gas_renewed_km", "燃气管道更新", "Gas mains renewed", "km"),
    Metric("water_renewed_km", "供水管道更新", "Water mains renewed", "km"),
    Metric("drainage_renewed_km", "排水管道更新", "Drainage mains renewed", "km"),
    Metric("lifts_renewed", "电梯更新", "Lifts replaced", "lifts"),
    Metric("lifts_added", "加装电梯", "Lifts added", "lifts"),
    Metric("chargers_added", "新增充电桩", "Chargers installed", "chargers"),
    Metric("poles_added", "新增多功能杆", "Poles installed", "poles"),
)
_CHANGE_SOURCES: dict[str, tuple[str, str | None, str]] = {
    "gas_renewed_km": ("pipe", "gas", "renewed"),
    "water_renewed_km": ("pipe", "water", "renewed"),
    "drainage_renewed_km": ("pipe", "drainage", "renewed"),
    "lifts_renewed": ("lift", None, "renewed"),
    "lifts_added": ("lift", None, "added"),
    "chargers_added": ("charger", None, "added"),
    "poles_added": ("pole", None, "added"),
}


def checkup_day(year: int, *, today: date | None = None) -> date:
    """The day a year's check-up is as of: 31 December, or today for the current year; a later year is refused.

    >>> checkup_day(2025, today=date(2026, 12, 5)), checkup_day(2026, today=date(2026, 12, 5))
    (datetime.date(2025, 12, 31), datetime.date(2026, 12, 5))
    """
    today = today or datetime.now(UTC).date()
    if not isinstance(year, int) or year < 1900:
        raise InvalidInput(f"year {year!r}", "must be a year such as 2026")
    if year > today.year:
        raise InvalidInput(f"year {year}", f"is in the future (today is {today.isoformat()})")
    return min(date(year, 12, 31), today)


def checkup(
    store: Store,
    year: int,
    *,
    targets: Path | None = None,
    targets_scale: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The check-up of ``year`` as JSON-able data (see the module's docstring); ``targets`` is the plan's target
    file (its ``scale`` replaced by ``targets_scale`` when given)."""
    now = now or datetime.now(UTC)
    day = checkup_day(year, today=now.date())
    db = sql_store(store)
    first, _ = history_span(db)
    if first is None:
        raise InvalidInput(f"year {year}", "the model has no history yet (nothing was ingested)")
    if end_of_day(day) < first:
        raise InvalidInput(f"year {year}", f"is before the model's history, which begins {first:%Y-%m-%d}")
    names = area_names(store, ["district"])
    districts = [{"code": code, "name": zh, "name_en": en} for code, (zh, en) in sorted(names.items())]
    years = [y for y in range(year - TREND_YEARS + 1, year + 1) if end_of_day(checkup_day(y, today=day)) >= first]
    vitals: dict[str, dict[str, dict[str, float | int | None]]] = {}
    city_trend: dict[str, dict[str, float | int | None]] = {}
    for y in years:
        y_day = checkup_day(y, today=day)
        per_district, city = _signs(model_as_of(store, y_day), y_day)
        vitals[str(y)], city_trend[str(y)] = per_district, city
    view = model_as_of(store, day)
    city_signs = vital_signs(view, as_of=day, now=now)
    start = end_of_day(date(year - 1, 12, 31))
    changes = _changes(db, Window(start, end_of_day(day)), [str(d["code"]) for d in districts])
    cases = _cases(store, year, names)
    return {
        "year": year,
        "as_of": day.isoformat(),
        "history_begins": first.date().isoformat(),
        "computed_at": now.isoformat(timespec="seconds"),
        "districts": districts,
        "signs": [_metric_out(m) for m in SIGNS],
        "change_metrics": [_metric_out(m) for m in CHANGE_METRICS],
        "years": [str(y) for y in years],
        "city": city_signs,
        "vitals": vitals,
        "city_trend": city_trend,
        "changes": changes,
        "targets": _targets(store, targets, targets_scale, day),
        "cases": cases,
        "ranking": _ranking(vitals[str(year)], districts, cases["districts"]),
    }


def _signs(view: Store, day: date) -> tuple[dict[str, dict[str, float | int | None]], dict[str, float | int | None]]:
    """Per district code and for the whole city: each of :data:`SIGNS` as of ``day``."""
    raw: dict[str | None, dict[str, float]] = {}

    def put(code: str | None, key: str, value: float) -> None:
        raw.setdefault(code, {})[key] = raw.get(code, {}).get(key, 0.0) + value

    lifts = dated_counts_by_district(view, kind=Kind.LIFT, installed_before=years_before(day, OLD_LIFT_YEARS))
    for code, (total, old) in lifts.items():
        put(code, "lifts", total)
        put(code, "old_lifts", old)
    old_before = years_before(day, OLD_MAIN_YEARS)
    mains = buried_lengths_by_district(view, networks=("gas", "water"), installed_before=old_before)
    for (code, network), metres in mains.items():
        put(code, f"old_{network}_m", metres)
    for key, kind, near_kind, distance, homes in (
        ("stops", Kind.TRANSIT_STOP, Kind.METRO_EXIT, METRO_DISTANCE_M, False),
        ("homes", Kind.BUILDING, Kind.PARK, PARK_DISTANCE_M, True),
    ):
        extent = view.extent(kind=kind)
        if extent is None:
            continue
        query = AssetQuery(kinds=(kind,))
        residential = AssetQuery(kinds=(kind,), where={"props.use": "residential"})
        if homes and view.count_assets(residential):
            query = residential
        near = near_counts_by_district(view, query=query, near_kind=near_kind, distance_m=distance, extent=extent)
        for code, (total, hits) in near.items():
            put(code, f"{key}_total", total)
            put(code, f"{key}_near", hits)
    for kind in (Kind.CHARGER, Kind.POLE):
        for code, (total, _) in dated_counts_by_district(view, kind=kind, installed_before=day).items():
            put(code, f"{kind}s", total)
    city: dict[str, float] = {}
    for values in raw.values():
        for key, value in values.items():
            city[key] = city.get(key, 0.0) + value
    per_district = {code: _sign_values(values) for code, values in raw.items() if code is not None}
    return per_district, _sign_values(city)


def _sign_values(raw: dict[str, float]) -> dict[str, float | int | None]:
    return {
        "old_lifts": int(raw.get("old_lifts", 0)),
        "old_lifts_share": _share(raw.get("old_lifts", 0), raw.get("lifts", 0)),
        "old_gas_mains_km": round(raw.get("old_gas_m", 0.0) / 1000, 1),
        "old_water_mains_km": round(raw.get("old_water_m", 0.0) / 1000, 1),
        "stops_near_metro": _share(raw.get("stops_near", 0), raw.get("stops_total", 0)),
        "homes_near_park": _share(raw.get("homes_near", 0), raw.get("homes_total", 0)),
        "chargers": int(raw.get("chargers", 0)),
        "poles": int(raw.get("poles", 0)),
    }


def _changes(db: Any, window: Window, codes: list[str]) -> dict[str, dict[str, float | int]]:
    """Per district code (and ``city``): each of :data:`CHANGE_METRICS` in the window."""
    out: dict[str, dict[str, float | int]] = {c: dict.fromkeys(_CHANGE_SOURCES, 0) for c in [*codes, "city"]}
    kinds = sorted({kind for kind, _, _ in _CHANGE_SOURCES.values()})
    for row in change_summary(db, window, by=("kind", "network", "district", "change"), kinds=kinds):
        for metric, (kind, network, change) in _CHANGE_SOURCES.items():
            if row["kind"] != kind or row["change"] != change or (network is not None and row["network"] != network):
                continue
            value = (row["length_m"] or 0.0) / 1000 if metric.endswith("_km") else row["count"]
            for code in {row["district"] or "", "city"} & set(out):
                out[code][metric] += value
    for figures in out.values():
        for metric in figures:
            if metric.endswith("_km"):
                figures[metric] = round(figures[metric], 1)
    return out


def _cases(store: Store, year: int, names: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
    """The year's cases per district and for the city, and the streets closing theirs on time worst and best."""
    start, end = datetime(year, 1, 1, tzinfo=CITY_ZONE), datetime(year + 1, 1, 1, tzinfo=CITY_ZONE)
    districts = assess(store, level="district", start=start, end=end)
    for row in districts:
        row["name"], row["name_en"] = names.get(row["code"], (None, None))
    city = assess(store, level="city", start=start, end=end)
    streets = [r for r in assess(store, level="street", start=start, end=end) if r["handled"] >= MIN_HANDLED]
    street_names = area_names(store, ["street"]) if streets else {}
    for row in streets:
        row["name"], row["name_en"] = street_names.get(row["code"], (None, None))
    ranked = sorted(streets, key=lambda r: (r["on_time_rate"], -r["handled"], r["code"]))
    return {
        "districts": districts,
        "city": city[0] if city else None,
        "worst_streets": ranked[:RANKED],
        "best_streets": list(reversed(ranked[-RANKED:])) if len(ranked) > RANKED else list(reversed(ranked)),
        "min_handled": MIN_HANDLED,
    }


def _ranking(
    signs: dict[str, dict[str, float | int | None]], districts: list[dict[str, Any]], cases: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per ranked sign (and the on-time rate): the worst and the best district."""
    label = {d["code"]: d for d in districts}
    table = [(m.id, m.zh, m.en, m.unit, m.better, {c: v.get(m.id) for c, v in signs.items()}) for m in SIGNS]
    rates = {r["code"]: None if r["on_time_rate"] is None else round(100 * r["on_time_rate"], 1) for r in cases}
    table.append(("on_time_rate", "案件按时处置率", "Cases handled on time", "%", "higher", rates))
    out = []
    for key, zh, en, unit, better, values in table:
        known = sorted((v, c) for c, v in values.items() if v is not None and c in label)
        if not better or len(known) < 2:
            continue
        low, high = known[0], known[-1]
        worst, best = (low, high) if better == "higher" else (high, low)
        out.append({
            "id": key, "zh": zh, "en": en, "unit": unit,
            "worst": {**label[worst[1]], "value": worst[0]}, "best": {**label[best[1]], "value": best[0]},
        })  # fmt: skip
    return out


def _targets(store: Store, path: Path | None, scale: float | None, day: date) -> dict[str, Any] | None:
    """The plan of the target file at ``path`` and its targets' progress as of ``day``
    (:func:`cim.queries.targets.target_progress`, as ``/targets`` answers); None without a file, no targets
    (``[]``) for a day before the plan's baseline."""
    if path is None:
        return None
    plan = load_targets(path, scale=scale)
    progress = target_progress(store, plan, day) if day >= plan.baseline else []
    return {**plan_dict(plan), "targets": progress}


def _metric_out(m: Metric) -> dict[str, str]:
    return {"id": m.id, "zh": m.zh, "en": m.en, "unit": m.unit, "better": m.better}


def _share(part: float, total: float) -> float | None:
    return round(100.0 * part / total, 1) if total else None
