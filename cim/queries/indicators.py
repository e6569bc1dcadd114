"""City vital signs: a handful of numbers the city's plan asks to watch, computed from the model and live state.

Each indicator carries its definition and the time it was computed, so a wall screen or a report can say what it
shows. All of them are SQL in the store (metres, never degrees), so they stay fast at city scale.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from typing_extensions import TypedDict

from cim.model import Kind
from cim.queries.domain import years_before
from cim.store import AssetQuery, Store
from cim.store.sqlstore import sql_store
from cim.store.vitals import buried_lengths, dated_counts, near_counts

OLD_LIFT_YEARS = 15
OLD_MAIN_YEARS = 30
PARK_DISTANCE_M = 500.0
METRO_DISTANCE_M = 50.0
#: A sensor whose latest reading is older than this is not "reporting".
REPORTING_WINDOW = timedelta(minutes=15)


class IndicatorOut(TypedDict):
    id: str
    label: str
    value: float | int | None
    unit: str
    total: int | None
    definition: str


class IndicatorsOut(TypedDict):
    computed_at: str
    as_of: str
    indicators: list[IndicatorOut]


def vital_signs(store: Store, *, as_of: date | None = None, now: datetime | None = None) -> IndicatorsOut:
    """Every indicator, computed now (``as_of`` is the date ages are counted to). Given the model as of a past day
    (:func:`cim.queries.params.model_as_of`), the indicators are the model's then; the live ones (sensors
    reporting, open alerts) have no history and no value then."""
    as_of = as_of or date.today()
    now = now or datetime.now(UTC)
    indicators = [
        *_old_lifts(store, as_of),
        *_old_mains(store, as_of),
        _near_share(
            store,
            "homes_near_park",
            "Homes within 500 m of a park",
            Kind.BUILDING,
            Kind.PARK,
            PARK_DISTANCE_M,
            home_filter=True,
        ),
        _near_share(
            store,
            "stops_near_metro",
            "Bus stops within 50 m of a metro exit",
            Kind.TRANSIT_STOP,
            Kind.METRO_EXIT,
            METRO_DISTANCE_M,
        ),
        *_live(store, now),
    ]
    return {"computed_at": now.isoformat(timespec="seconds"), "as_of": as_of.isoformat(), "indicators": indicators}


def _old_lifts(store: Store, as_of: date) -> list[IndicatorOut]:
    total, dated, old = dated_counts(store, kind=Kind.LIFT, installed_before=years_before(as_of, OLD_LIFT_YEARS))
    definition = (
        f"lifts (kind lift) installed more than {OLD_LIFT_YEARS} years before {as_of.isoformat()}; "
        f"{total - dated:,} lifts have no install date and are not counted as old"
    )
    return [
        _out("old_lifts", f"Lifts older than {OLD_LIFT_YEARS} years", old, "lifts", total, definition),
        _out("old_lifts_share", "Share of lifts older than 15 years", _share(old, total), "%", total, definition),
    ]


def _old_mains(store: Store, as_of: date) -> list[IndicatorOut]:
    metres = buried_lengths(store, networks=("gas", "water"), installed_before=years_before(as_of, OLD_MAIN_YEARS))
    out = []
    for network in ("gas", "water"):
        definition = (
            f"length of buried {network} pipes (network '{network}', below ground) installed more than "
            f"{OLD_MAIN_YEARS} years before {as_of.isoformat()}, measured on the spheroid"
        )
        label = f"Buried {network} mains older than {OLD_MAIN_YEARS} years"
        out.append(_out(f"old_{network}_mains_km", label, round(metres.get(network, 0.0) / 1000, 1), "km", None,
                        definition))  # fmt: skip
    return out


def _near_share(
    store: Store,
    key: str,
    label: str,
    kind: Kind,
    near_kind: Kind,
    distance_m: float,
    *,
    home_filter: bool = False,
) -> IndicatorOut:
    extent = store.extent(kind=kind)
    query = AssetQuery(kinds=(kind,))
    what = f"assets of kind {kind}"
    if home_filter and store.count_assets(AssetQuery(kinds=(kind,), where={"props.use": "residential"})):
        query = AssetQuery(kinds=(kind,), where={"props.use": "residential"})
        what = "buildings whose use is residential"
    if extent is None:
        return _out(key, label, None, "%", 0, f"share of {what} with a {near_kind} within {distance_m:g} m: none")
    total, near = near_counts(store, query=query, near_kind=near_kind, distance_m=distance_m, extent=extent)
    definition = f"share of {what} with an asset of kind {near_kind} within {distance_m:g} m (metres on the ground)"
    return _out(key, label, _share(near, total), "%", total, definition)


def _live(store: Store, now: datetime) -> list[IndicatorOut]:
    sensors = store.count_assets(AssetQuery(kinds=(Kind.SENSOR,)))
    if sql_store(store).as_of_time is not None:
        return [
            _out("sensors_reporting", "Sensors reporting", None, "sensors", sensors,
                 "live state: known now only, not for the model as of a past day"),
            _out("open_alerts", "Open alerts", None, "alerts", None,
                 "live state: known now only, not for the model as of a past day"),
        ]  # fmt: skip
    latest = store.latest_states()
    reporting = sum(1 for r in latest.values() if now - r.time <= REPORTING_WINDOW)
    alerts = store.alerts(open=True) if hasattr(store, "alerts") else []
    quantity: dict[str, Any] = {}
    if alerts:
        ids = sorted({a.sensor_id for a in alerts})
        quantity = {a.id: a.props.get("quantity") for a in store.find_assets(AssetQuery(ids=ids))}
    by_kind = Counter(str(quantity.get(a.sensor_id) or "other") for a in alerts)
    minutes = int(REPORTING_WINDOW.total_seconds() // 60)
    out = [
        _out(
            "sensors_reporting",
            "Sensors reporting",
            reporting,
            "sensors",
            sensors,
            f"sensors whose latest reading is at most {minutes} minutes old, of all sensors",
        ),
        _out("open_alerts", "Open alerts", len(alerts), "alerts", None, "alerts opened by a rule and not yet closed"),
    ]
    for name, count in sorted(by_kind.items()):
        out.append(_out(f"open_alerts.{name}", f"Open alerts: {name.replace('_', ' ')}", count, "alerts", None,
                        f"open alerts of sensors measuring {name}"))  # fmt: skip
    return out


def _share(part: int, total: int) -> float | None:
    return round(100.0 * part / total, 1) if total else None


def _out(
    key: str, label: str, value: float | int | None, unit: str, total: int | None, definition: str
) -> IndicatorOut:
    return {"id": key, "label": label, "value": value, "unit": unit, "total": total, "definition": definition}
