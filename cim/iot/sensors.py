"""Sensors are assets of kind ``sensor`` bound (``parent_id``) to the asset they watch. What they measure lives in
``props``: ``quantity`` (``water_level``, ``gas_pressure``, ``lift_status`` …), ``unit`` and optional
``thresholds`` — ``{"above": 1.2, "below": 0.1, "status": ["fault"], "stale_s": 600, "severity": "critical"}`` —
from which :mod:`cim.iot.rules` builds the sensor's own rules.

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

from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.model import Asset, JsonValue, Kind
from cim.store import AssetQuery, Store

THRESHOLD_KEYS = frozenset({"above", "below", "status", "stale_s", "severity", "unit", "deadband", "min_duration_s"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Sensor:
    """What the ingest needs to know of one sensor asset."""

    id: str
    parent_id: str | None = None
    parent_kind: str | None = None
    quantity: str | None = None
    unit: str | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    nominal: float | None = None

    @classmethod
    def from_asset(cls, asset: Asset, *, parent_kind: str | None = None) -> Sensor:
        if asset.kind is not Kind.SENSOR:
            raise InvalidInput(f"asset {asset.id!r}", f"is a {asset.kind}, not a sensor")
        props = asset.props
        thresholds = props.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise InvalidInput(f"sensor {asset.id!r} props.thresholds", "must be an object such as {'above': 1.0}")
        unknown = set(thresholds) - THRESHOLD_KEYS
        if unknown:
            raise InvalidInput(
                f"sensor {asset.id!r} thresholds {sorted(unknown)}", f"unknown; use {', '.join(sorted(THRESHOLD_KEYS))}"
            )
        return cls(
            id=asset.id,
            parent_id=asset.parent_id,
            parent_kind=parent_kind,
            quantity=_text(props.get("quantity")),
            unit=_text(props.get("unit")),
            thresholds=dict(thresholds),
            nominal=_number(props.get("nominal")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "parent_kind": self.parent_kind,
            "quantity": self.quantity,
            "unit": self.unit,
            "thresholds": dict(self.thresholds),
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
    """Every sensor in the store, with the kind of the asset it is bound to (for per-kind rules)."""
    assets = store.find_assets(AssetQuery(kinds=(Kind.SENSOR,)))
    parent_ids = sorted({a.parent_id for a in assets if a.parent_id})
    parent_kinds: dict[str, str] = {}
    for start in range(0, len(parent_ids), 1000):
        for parent in store.find_assets(AssetQuery(ids=parent_ids[start : start + 1000])):
            parent_kinds[parent.id] = str(parent.kind)
    return {
        a.id: Sensor.from_asset(a, parent_kind=parent_kinds.get(a.parent_id) if a.parent_id else None) for a in assets
    }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
