"""Sensors are assets of kind ``sensor`` bound (``parent_id``) to the asset they watch. What they measure lives in
``props``: ``quantity`` (``water_level``, ``gas_pressure``, ``lift_status`` …), ``unit`` (readings are kept in
it; :mod:`cim.iot.units`), ``nominal`` (the normal value) and optional ``thresholds`` — ``{"above": 1.2,
"below": 0.1, "status": ["fault"], "stale_s": 600, "severity": "critical", "unit": "m", "deadband": 0.05,
"min_duration_s": 60}`` — from which :mod:`cim.iot.rules` builds the sensor's own rules: ``unit`` is the unit the
thresholds and the deadband are written in (default: the sensor's), ``severity`` one of :data:`SEVERITIES`.

:func:`load_sensors` adds what an alert's text names: the watched asset's name and the English and Chinese names
of its street and district.

>>> a = sensor_asset(id="wl-1", parent_id="node:7", quantity="water_level", unit="m", thresholds={"above": 1.0})
>>> s = Sensor.from_asset(a, parent_kind="node")
>>> (s.quantity, s.unit, s.thresholds["above"])
('water_level', 'm', 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.model import Asset, JsonValue, Kind
from cim.store import Store
from cim.store.areas import AreaNode, area_tree, asset_areas, asset_areas_sql
from cim.store.sqlstore import sql_store

THRESHOLD_KEYS = frozenset({"above", "below", "status", "stale_s", "severity", "unit", "deadband", "min_duration_s"})
#: Alert severities, least urgent first.
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sensor:
    """What the ingest needs to know of one sensor asset."""

    id: str
    parent_id: str | None = None
    parent_kind: str | None = None
    quantity: str | None = None
    unit: str | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None  # the sensor asset's name
    nominal: float | None = None  # props.nominal: the normal value, in ``unit``
    asset_name: str | None = None  # the watched (parent) asset's name
    street: str | None = None  # the English names of the watched asset's (else the sensor's) street and district
    district: str | None = None
    street_zh: str | None = None  # … and their Chinese names
    district_zh: str | None = None

    @classmethod
    def from_asset(
        cls,
        asset: Asset,
        *,
        parent_kind: str | None = None,
        asset_name: str | None = None,
        street: AreaNode | None = None,
        district: AreaNode | None = None,
    ) -> Sensor:
        if asset.kind is not Kind.SENSOR:
            raise InvalidInput(f"asset {asset.id!r}", f"is a {asset.kind}, not a sensor")
        return cls.from_props(
            asset.id,
            asset.props,
            parent_id=asset.parent_id,
            name=asset.name,
            parent_kind=parent_kind,
            asset_name=asset_name,
            street=street,
            district=district,
        )

    @classmethod
    def from_props(
        cls,
        id: str,
        props: Mapping[str, Any],
        *,
        parent_id: str | None = None,
        name: str | None = None,
        parent_kind: str | None = None,
        asset_name: str | None = None,
        street: AreaNode | None = None,
        district: AreaNode | None = None,
    ) -> Sensor:
        """The sensor of the asset ``id`` whose ``props`` these are; bad thresholds raise :class:`InvalidInput`
        naming the sensor and the key."""
        thresholds = props.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise InvalidInput(f"sensor {id!r} props.thresholds", "must be an object such as {'above': 1.0}")
        unknown = set(thresholds) - THRESHOLD_KEYS
        if unknown:
            raise InvalidInput(
                f"sensor {id!r} thresholds {sorted(unknown)}", f"unknown; use {', '.join(sorted(THRESHOLD_KEYS))}"
            )
        severity = thresholds.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise InvalidInput(
                f"sensor {id!r} thresholds.severity {severity!r}", f"must be one of {', '.join(SEVERITIES)}"
            )
        if thresholds.get("unit") is not None and not isinstance(thresholds["unit"], str):
            raise InvalidInput(f"sensor {id!r} thresholds.unit", "must be a unit such as 'kPa'")
        nominal = props.get("nominal")
        return cls(
            id=id,
            parent_id=parent_id,
            parent_kind=parent_kind,
            quantity=_text(props.get("quantity")),
            unit=_text(props.get("unit")),
            thresholds=dict(thresholds),
            name=name,
            nominal=float(nominal) if isinstance(nominal, int | float) and _finite(nominal) else None,
            asset_name=asset_name,
            street=_english(street),
            district=_english(district),
            street_zh=street.name if street else None,
            district_zh=district.name if district else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "parent_kind": self.parent_kind,
            "quantity": self.quantity,
            "unit": self.unit,
            "thresholds": dict(self.thresholds),
            "name": self.name,
            "nominal": self.nominal,
            "asset_name": self.asset_name,
            "street": self.street,
            "district": self.district,
        }


def sensor_asset(
    *,
    id: str,
    parent_id: str | None,
    quantity: str,
    unit: str | None = None,
    thresholds: Mapping[str, JsonValue] | None = None,
    geom: BaseGeometry | None = None,
    name: str | None = None,
    source: str | None = None,
) -> Asset:
    """A sensor asset, ready for :meth:`Store.upsert_assets`."""
    props: dict[str, JsonValue] = {"quantity": quantity}
    if unit is not None:
        props["unit"] = unit
    if thresholds:
        props["thresholds"] = dict(thresholds)
    return Asset(id=id, kind=Kind.SENSOR, parent_id=parent_id, geom=geom, name=name, source=source, props=props)


def load_sensors(store: Store) -> dict[str, Sensor]:
    """Every sensor in the store, with the kind and name of the asset it is bound to (for per-kind rules and the
    alerts' text) and the names of that asset's street and district.

    One query whatever the number of sensors (the service reloads them every 30 s): the sensors, their parents
    with the grandparents' names (a lift is named "Lift 3" in its building) and the watched assets' area codes
    (the derived table of :func:`~cim.store.areas.asset_areas`, rebuilt first when assets changed); plus the
    area tree for the names, kept while the assets do not change."""
    db = sql_store(store)
    areas = asset_areas(store)
    stamp = db.refresh_derived(areas, asset_areas_sql(db.dialect))[0]  # built just now: only reads the stamps
    # the sensors' props as text (no geometry, no Asset: a third of the time of find_assets); the parents and
    # grandparents picked by id first (a join of the whole table took 3× as long in DuckDB)
    sensor = f"'{Kind.SENSOR}'"
    rows = db.select(
        f"WITH s AS (SELECT id, parent_id, name, props FROM assets WHERE kind = {sensor}), "
        "p AS (SELECT id, kind, name, parent_id FROM assets WHERE id IN (SELECT parent_id FROM s)), "
        "g AS (SELECT id, name FROM assets WHERE id IN (SELECT parent_id FROM p)) "
        "SELECT s.id, s.parent_id, s.name, CAST(s.props AS TEXT) AS props, p.kind AS parent_kind, "
        "p.name AS parent_name, g.name AS whole, a.street, a.district FROM s LEFT JOIN p ON p.id = s.parent_id "
        f"LEFT JOIN g ON g.id = p.parent_id LEFT JOIN {areas} a ON a.id = COALESCE(p.id, s.id) ORDER BY s.id"
    ).to_pylist()
    if not rows:
        return {}
    tree = _area_tree(store, stamp)
    sensors: dict[str, Sensor] = {}
    for row in rows:
        street, district = row["street"], row["district"]
        sensors[row["id"]] = Sensor.from_props(
            row["id"],
            orjson.loads(row["props"]) if row["props"] else {},
            parent_id=row["parent_id"],
            name=row["name"],
            parent_kind=row["parent_kind"],
            asset_name=_asset_name(row),
            street=tree.get(street) if street else None,
            district=tree.get(district) if district else None,
        )
    return sensors


#: The area tree of a store (by URL) at one version of its assets: areas change with the assets only.
_TREES: dict[str, tuple[str, dict[str, AreaNode]]] = {}


def _area_tree(store: Store, stamp: str) -> dict[str, AreaNode]:
    cached = _TREES.get(store.url)
    if cached is None or cached[0] != stamp:
        cached = _TREES[store.url] = (stamp, area_tree(store))
    return cached[1]


def _asset_name(row: Mapping[str, Any]) -> str | None:
    """A watched asset's name, with the whole it belongs to when its own name says little ("Lift 3 of Jinmao
    Tower"); None when it has no name (a text then names it by id)."""
    name, whole = row["parent_name"], row["whole"]
    if name and whole and row["parent_kind"] in _PART_KINDS:
        return f"{name} of {whole}"
    return name or None


#: Kinds whose names are numbers within their parent's ("Lift 3").
_PART_KINDS = frozenset({str(Kind.LIFT), str(Kind.STOREY), str(Kind.SPACE)})


def _english(area: AreaNode | None) -> str | None:
    return None if area is None else area.name_en or area.name


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
