"""The plan's targets, tracked: a declarative target file, each target computed from the model and its history, with
progress, the pace needed, and a forecast at today's pace — for the city and per district (issue 26, item 4).

A target file (TOML) names the plan, its baseline date and deadline, the share of the city the model covers
(``scale``: target values are multiplied by it, so a demo city of a few thousand buildings is measured against its
share of the plan), and its targets::

    baseline = 2021-12-31
    deadline = 2026-12-31
    [[target]]
    id = "gas_mains_renewed"
    name = "老旧燃气管道更新改造"
    name_en = "Old buried gas mains renewed"
    indicator = "renewed_length"      # one of INDICATORS
    kind = "pipe"
    where = { network = "gas" }
    unit = "km"
    target = 300

Indicators are either *flows* counted from the baseline (what changed since: ``renewed_length``, ``renewed_count``,
``added_count``; or assets whose date ``field`` is on or after the baseline: ``dated_length``, ``dated_count``) —
their baseline value is 0 — or *stocks* read from the model as of a date (``count``, ``length``,
``share_near``), whose baseline value is the model's as of the baseline date (or as of the first day of its history
when that is later; the answer says so).

Progress is (value − baseline) / (target − baseline); the pace is what was achieved per year since the baseline; the
pace needed is what is left per year until the deadline; the forecast is the value at the deadline at today's pace.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cim.errors import InvalidInput
from cim.model import Kind
from cim.queries.params import end_of_day, model_as_of
from cim.store import AssetQuery, Store
from cim.store.aggregates import aggregate, area_names
from cim.store.changes import Window, change_summary
from cim.store.sql import Where
from cim.store.sqlstore import sql_store
from cim.store.versions import history_span
from cim.store.vitals import near_counts

#: indicator → (the units it may be given in, whether it is a flow counted from the baseline)
INDICATORS: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "renewed_length": (("km", "m"), True),
    "renewed_count": (("count",), True),
    "added_count": (("count",), True),
    "dated_length": (("km", "m"), True),
    "dated_count": (("count",), True),
    "count": (("count",), False),
    "length": (("km", "m"), False),
    "share_near": (("%",), False),
}
_PER_METRE = {"km": 0.001, "m": 1.0}
_YEAR_DAYS = 365.25


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    name: str
    name_en: str
    indicator: str
    kind: Kind
    unit: str
    target: float
    where: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    field: str | None = None  # dated_*: the date column or props.<key>
    near_kind: Kind | None = None  # share_near
    distance_m: float | None = None  # share_near

    @property
    def flow(self) -> bool:
        return INDICATORS[self.indicator][1]


@dataclass(frozen=True, slots=True)
class TargetFile:
    name: str
    name_en: str
    baseline: date
    deadline: date
    scale: float
    targets: tuple[Target, ...]


def load_targets(path: str | Path, *, scale: float | None = None) -> TargetFile:
    """Read and check a target file; every problem names the file, the target and the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"target file {path.name}", f"cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"target file {path.name}", f"is not valid TOML ({exc})") from None
    where = f"target file {path.name}"
    baseline, deadline = _day(raw, "baseline", where), _day(raw, "deadline", where)
    if deadline <= baseline:
        raise InvalidInput(f"{where}: deadline", "must come after the baseline")
    factor = float(scale if scale is not None else raw.get("scale", 1.0))
    if not (math.isfinite(factor) and factor > 0):
        raise InvalidInput(f"{where}: scale", "must be a positive number")
    entries = raw.get("target")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput(where, "has no [[target]] entries")
    targets = tuple(_target(entry, f"{where}: target {i + 1}") for i, entry in enumerate(entries))
    seen = [t.id for t in targets]
    if len(set(seen)) != len(seen):
        raise InvalidInput(f"{where}: id", "each target needs its own id")
    return TargetFile(str(raw.get("name", path.stem)), str(raw.get("name_en", "")), baseline, deadline, factor, targets)


def _day(raw: Mapping[str, Any], key: str, where: str) -> date:
    value = raw.get(key)
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInput(f"{where}: {key}", "must be a date (YYYY-MM-DD)")


def _target(entry: Any, where: str) -> Target:
    if not isinstance(entry, dict):
        raise InvalidInput(where, "must be a table")
    known = {
        "id",
        "name",
        "name_en",
        "indicator",
        "kind",
        "unit",
        "target",
        "where",
        "field",
        "near_kind",
        "distance_m",
    }
    if extra := sorted(set(entry) - known):
        raise InvalidInput(f"{where}: {extra[0]}", f"is not a target field; use {', '.join(sorted(known))}")
    for key in ("id", "indicator", "kind", "unit", "target"):
        if key not in entry:
            raise InvalidInput(f"{where}: {key}", "is missing")
    where = f"{where} ({entry['id']})"
    indicator = str(entry["indicator"])
    if indicator not in INDICATORS:
        raise InvalidInput(f"{where}: indicator {indicator!r}", f"is unknown; use one of {', '.join(INDICATORS)}")
    units = INDICATORS[indicator][0]
    if entry["unit"] not in units:
        raise InvalidInput(f"{where}: unit {entry['unit']!r}", f"does not fit {indicator}; use {' or '.join(units)}")
    kinds = {str(k) for k in Kind}
    for key in ("kind", "near_kind"):
        if key in entry and entry[key] not in kinds:
            raise InvalidInput(f"{where}: {key} {entry[key]!r}", "is not an asset kind")
    value = entry["target"]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{where}: target", "must be a positive number")
    if indicator.startswith("dated_") and not entry.get("field"):
        raise InvalidInput(
            f"{where}: field", f"{indicator} needs the date field it counts (install_date or props.<key>)"
        )
    if indicator == "share_near" and not (entry.get("near_kind") and entry.get("distance_m")):
        raise InvalidInput(f"{where}: near_kind", "share_near needs near_kind and distance_m")
    conditions = entry.get("where", {})
    if not isinstance(conditions, dict):
        raise InvalidInput(f"{where}: where", "must be a table of field = value")
    if indicator in ("renewed_length", "renewed_count", "added_count") and set(conditions) - {"network"}:
        raise InvalidInput(f"{where}: where", f"{indicator} can be narrowed by network only")
    AssetQuery(where=conditions)  # checks the field names
    return Target(
        id=str(entry["id"]),
        name=str(entry.get("name", entry["id"])),
        name_en=str(entry.get("name_en", "")),
        indicator=indicator,
        kind=Kind(entry["kind"]),
        unit=str(entry["unit"]),
        target=float(value),
        where=conditions,
        field=entry.get("field"),
        near_kind=Kind(entry["near_kind"]) if entry.get("near_kind") else None,
        distance_m=float(entry["distance_m"]) if entry.get("distance_m") else None,
    )


def plan_dict(plan: TargetFile) -> dict[str, Any]:
    """The plan's own fields, for answers."""
    return {
        "plan": plan.name,
        "plan_en": plan.name_en,
        "baseline": plan.baseline.isoformat(),
        "deadline": plan.deadline.isoformat(),
        "scale": plan.scale,
    }


def measure(store: Store, target: Target, baseline: date, day: date) -> dict[str | None, float]:
    """The target's value as of the end of ``day``, per district code (None: in no district), in its unit."""
    if target.flow and day <= baseline:
        return {}
    if target.indicator in ("renewed_length", "renewed_count", "added_count"):
        change = "added" if target.indicator == "added_count" else "renewed"
        window = Window(end_of_day(baseline), end_of_day(day))
        rows = change_summary(sql_store(store), window, by=("network", "district", "change"), kinds=[target.kind])
        network = target.where.get("network")
        out: dict[str | None, float] = {}
        for row in rows:
            if row["change"] == change and (network is None or row["network"] == network):
                amount = row["count"] if target.unit == "count" else (row["length_m"] or 0.0) * _PER_METRE[target.unit]
                out[row["district"]] = out.get(row["district"], 0.0) + amount
        return out
    model = model_as_of(store, day)
    if target.indicator == "share_near":
        assert target.near_kind is not None and target.distance_m is not None
        extent = model.extent(kind=target.kind)
        if extent is None:
            return {}
        query = AssetQuery(kinds=(target.kind,), where=target.where or None)
        total, near = near_counts(model, query=query, near_kind=target.near_kind, distance_m=target.distance_m,
                                  extent=extent)  # fmt: skip
        return {None: round(100.0 * near / total, 1)} if total else {}
    db = sql_store(model)
    condition = db.dialect.where(AssetQuery(where=target.where or None))
    if target.indicator.startswith("dated_"):
        condition = _and(condition, _on_or_after(db.dialect, str(target.field), baseline))
    groups = aggregate(model, kind=target.kind, group_by=["district"], as_of=day, condition=condition)
    per_metre = _PER_METRE.get(target.unit)
    return {g.key["district"]: float(g.count) if per_metre is None else (g.length_m or 0.0) * per_metre for g in groups}


def _on_or_after(dialect: Any, field_name: str, day: date) -> Where:
    if field_name.startswith("props."):
        text = dialect.props_value(field_name.removeprefix("props."), numeric=False)
        return Where(f"{text.sql} >= {dialect.param}", [*text.params, day.isoformat()])
    if field_name != "install_date":
        raise InvalidInput(f"field {field_name!r}", "a dated indicator reads install_date or props.<key>")
    return Where(f"install_date >= {dialect.param}", [day])


def _and(a: Where, b: Where) -> Where:
    return Where(f"({a.sql}) AND ({b.sql})", [*a.params, *b.params])


def target_progress(store: Store, plan: TargetFile, day: date) -> list[dict[str, Any]]:
    """Every target's progress as of the end of ``day``: city-wide and per district."""
    first, _ = history_span(sql_store(store))
    if day < plan.baseline:
        raise InvalidInput(f"as_of {day}", f"is before the plan's baseline ({plan.baseline})")
    if day > datetime.now(UTC).date():
        raise InvalidInput(f"as_of {day}", f"is in the future (today is {datetime.now(UTC).date()})")
    start = plan.baseline
    if first is not None and end_of_day(start) < first:
        start = first.astimezone(UTC).date()  # the stock as of the first day the model has
    names = area_names(store, ["district"])
    return [_progress(store, plan, target, day, start, names) for target in plan.targets]


def _progress(
    store: Store, plan: TargetFile, target: Target, day: date, start: date, names: Mapping[str, Any]
) -> dict[str, Any]:
    now = measure(store, target, plan.baseline, day)
    base = {} if target.flow else measure(store, target, plan.baseline, start)
    goal = target.target * (plan.scale if target.unit != "%" else 1.0)
    elapsed = max((day - plan.baseline).days, 1) / _YEAR_DAYS
    left = max((plan.deadline - day).days, 0) / _YEAR_DAYS

    def figures(value: float, baseline: float, goal: float | None) -> dict[str, Any]:
        pace = (value - baseline) / elapsed
        out: dict[str, Any] = {
            "value": _round(value),
            "baseline_value": _round(baseline),
            "pace_per_year": _round(pace),
        }
        if goal is not None:
            span = goal - baseline
            out["progress"] = None if span <= 0 else round(min(max((value - baseline) / span, 0.0), 1.0), 3)
            out["pace_needed_per_year"] = _round(max(goal - value, 0.0) / left) if left > 0 else None
            out["forecast"] = _round(value + pace * left)
            out["on_track"] = value + pace * left >= goal
        return out

    districts = [
        {
            "code": code,
            "name": (names.get(code) or (None, None))[0],
            "name_en": (names.get(code) or (None, None))[1],
            **figures(now.get(code, 0.0), base.get(code, 0.0), None),
        }
        for code in sorted({*now, *base}, key=lambda c: (c is None, c or ""))
        if code is not None
    ]
    value = now.get(None, 0.0) if target.indicator == "share_near" else sum(now.values())
    baseline = base.get(None, 0.0) if target.indicator == "share_near" else sum(base.values())
    return {
        "id": target.id,
        "name": target.name,
        "name_en": target.name_en,
        "indicator": target.indicator,
        "unit": target.unit,
        "baseline_date": plan.baseline.isoformat(),
        "stock_baseline_date": None if target.flow else start.isoformat(),
        "deadline": plan.deadline.isoformat(),
        "as_of": day.isoformat(),
        "target": _round(goal),
        **figures(value, baseline, goal),
        "districts": districts,
    }


def _round(value: float) -> float:
    return round(value, 3)
