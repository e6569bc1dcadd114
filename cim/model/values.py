"""The city model: assets, their meshes, sensor readings and alerts. Plain typed values, no I/O.

An :class:`Asset` is one governed object of the city (a building, a lift, a pipe, a hydrant …). Its geometry is 2D
WGS84 lon/lat (for spatial queries); its vertical extent is ``z_min``/``z_max`` in metres above the ellipsoid. Common
attributes are typed columns; a few columns belong to some kinds only (:data:`KIND_FIELDS`); everything else lives in
``props``, IFC property sets flattened as ``"Pset_Name.Property"``.

A :class:`Mesh` is the asset's 3D shape, kept apart from the relational store: float32 vertices in a local
east-north-up frame in metres around a float64 ``origin`` (lon, lat, ellipsoidal height), so city-scale coordinates
never lose precision in float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput

JsonValue: TypeAlias = bool | int | float | str | list[Any] | dict[str, Any] | None


class Kind(StrEnum):
    """What an asset is. The store refuses any other value."""

    SITE = "site"
    BUILDING = "building"
    STOREY = "storey"
    SPACE = "space"
    LIFT = "lift"
    ELEMENT = "element"
    PIPE = "pipe"
    NODE = "node"
    HYDRANT = "hydrant"
    PARK = "park"
    WATER = "water"
    ROAD = "road"
    RAILWAY = "railway"
    BRIDGE = "bridge"
    LAND_USE = "land_use"
    VEGETATION = "vegetation"
    TRANSIT_STOP = "transit_stop"
    METRO_EXIT = "metro_exit"
    POLE = "pole"
    CHARGER = "charger"
    SENSOR = "sensor"
    CITY = "city"
    DISTRICT = "district"
    STREET = "street"
    GRID_CELL = "grid_cell"


#: Typed columns every asset may carry.
COMMON_FIELDS: tuple[str, ...] = ("install_date", "status", "material", "height_m")

#: Typed columns that belong to some kinds only; setting one on another kind is an error.
KIND_FIELDS: Mapping[str, frozenset[Kind]] = {
    "network": frozenset({Kind.PIPE, Kind.NODE, Kind.HYDRANT, Kind.SENSOR}),
    "diameter_mm": frozenset({Kind.PIPE, Kind.NODE, Kind.HYDRANT}),
    "depth_m": frozenset({Kind.PIPE, Kind.NODE, Kind.SENSOR}),
    "storeys": frozenset({Kind.BUILDING}),
}


def fields_of(kind: Kind) -> tuple[str, ...]:
    """The typed columns that apply to ``kind``, common ones first.

    >>> fields_of(Kind.PIPE)
    ('install_date', 'status', 'material', 'height_m', 'network', 'diameter_mm', 'depth_m')
    """
    return COMMON_FIELDS + tuple(name for name, kinds in KIND_FIELDS.items() if kind in kinds)


def parse_kind(value: str) -> Kind:
    """``value`` as a :class:`Kind`, or an error listing the known kinds."""
    try:
        return Kind(value)
    except ValueError:
        known = ", ".join(k.value for k in Kind)
        raise InvalidInput(f"kind {value!r}", f"unknown asset kind; known kinds: {known}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    """One governed object of the city.

    >>> from shapely.geometry import Point
    >>> a = Asset(id="hydrant:1", kind=Kind.HYDRANT, geom=Point(121.5, 31.2), install_date=date(1990, 5, 1))
    >>> a.kind, a.props
    (<Kind.HYDRANT: 'hydrant'>, {})
    """

    id: str
    kind: Kind
    geom: BaseGeometry | None = None
    name: str | None = None
    parent_id: str | None = None
    source: str | None = None
    z_min: float | None = None
    z_max: float | None = None
    install_date: date | None = None
    status: str | None = None
    material: str | None = None
    height_m: float | None = None
    network: str | None = None
    diameter_mm: float | None = None
    depth_m: float | None = None
    storeys: int | None = None
    props: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidInput("asset id", f"must be a non-empty string, got {self.id!r}")
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", parse_kind(str(self.kind)))
        for name, kinds in KIND_FIELDS.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                allowed = ", ".join(sorted(k.value for k in kinds))
                raise InvalidInput(
                    f"asset {self.id!r} field {name}", f"does not apply to kind {self.kind}; it applies to: {allowed}"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class Mesh:
    """Triangles of one asset in a local east-north-up frame (metres) around ``origin`` (lon, lat, height).

    >>> m = Mesh(asset_id="b1", origin=(121.5, 31.2, 4.0),
    ...          vertices=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32),
    ...          triangles=np.array([[0, 1, 2]], dtype=np.uint32))
    >>> m.triangle_count
    1
    """

    asset_id: str
    origin: tuple[float, float, float]
    vertices: npt.NDArray[np.float32]
    triangles: npt.NDArray[np.uint32]
    color: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        what = f"mesh of asset {self.asset_id!r}"
        if len(self.origin) != 3 or not all(math.isfinite(v) for v in self.origin):
            raise InvalidInput(what, f"origin must be three finite numbers (lon, lat, height), got {self.origin!r}")
        if self.vertices.dtype != np.float32 or self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise InvalidInput(
                what, f"vertices must be float32 of shape (n, 3), got {self.vertices.dtype} {self.vertices.shape}"
            )
        if self.triangles.dtype != np.uint32 or self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise InvalidInput(
                what, f"triangles must be uint32 of shape (m, 3), got {self.triangles.dtype} {self.triangles.shape}"
            )
        if self.triangles.size and int(self.triangles.max()) >= len(self.vertices):
            raise InvalidInput(what, "a triangle refers to a vertex that does not exist")

    @property
    def triangle_count(self) -> int:
        return int(self.triangles.shape[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One observation of a sensor: a value, a status, or both, at a time (timezone-aware).

    >>> from datetime import UTC
    >>> Reading(sensor_id="s1", time=datetime(2026, 1, 1, tzinfo=UTC), value=1.5).status is None
    True
    """

    sensor_id: str
    time: datetime
    value: float | None = None
    status: str | None = None

    def __post_init__(self) -> None:
        what = f"reading of sensor {self.sensor_id!r}"
        if not self.sensor_id:
            raise InvalidInput("reading sensor_id", "must be a non-empty string")
        if self.time.tzinfo is None:
            raise InvalidInput(what, f"time {self.time.isoformat()} has no time zone")
        if self.value is not None and not math.isfinite(self.value):
            raise InvalidInput(what, f"value must be a finite number, got {self.value!r}")
        if self.value is None and self.status is None:
            raise InvalidInput(what, "needs a value, a status, or both")


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A rule that fired on an asset's sensors: open while ``closed_at`` is None. ``id`` is stable across open and
    close, so saving the closed alert replaces the open one. ``asset_id`` is the asset the alert is about (the
    sensor's parent, else the sensor), ``sensor_id`` the sensor that opened it, ``details`` what a list shows
    without looking the sensor up (quantity, unit, threshold, condition, asset_name, street, district, sensors,
    message_zh: see :mod:`cim.iot.rules`).

    >>> from datetime import UTC
    >>> a = Alert(id="a1", rule="s1:above", sensor_id="s1", opened_at=datetime(2026, 1, 1, tzinfo=UTC), value=3.2)
    >>> a.is_open
    True
    """

    id: str
    rule: str
    sensor_id: str
    opened_at: datetime
    closed_at: datetime | None = None
    severity: str = "warning"
    message: str = ""
    value: float | None = None
    asset_id: str | None = None
    details: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or not self.rule or not self.sensor_id:
            raise InvalidInput(f"alert {self.id!r}", "needs an id, a rule and a sensor id")
        for name in ("opened_at", "closed_at"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"alert {self.id!r}", f"{name} {moment.isoformat()} has no time zone")
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise InvalidInput(f"alert {self.id!r}", "closed_at is before opened_at")

    @property
    def is_open(self) -> bool:
        return self.closed_at is None
