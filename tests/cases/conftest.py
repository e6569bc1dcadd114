"""A small city for the case tests: real area assets in the store (the shape the areas branch writes), a few lifts
and gas nodes with sensors, units declared as the pipeline declares them, and a clock the test moves by hand.

::

    310000 city  box(121.40, 31.10, 121.60, 31.30)
    ├── 310101 Huangpu (west half)
    │   ├── 310101001 street (south)  ── grid cells 310101001001 (west), 310101001002 (east)
    │   └── 310101002 street (north)  ── grid cell 310101002001
    └── 310104 Xuhui (east half)
        └── 310104001 street          ── grid cell 310104001001
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely

from cim.cases import CaseService, CaseServiceOptions, case_rules
from cim.cases.config import area_tree, build_units, save_table
from cim.cases.dispatch import Area
from cim.model import Alert, Asset, AssetBatch, Kind
from cim.store import Store, open_store

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)

#: code, kind, name, name_en, parent code, (west, south, east, north)
AREAS: list[tuple[str, str, str, str, str | None, tuple[float, float, float, float]]] = [
    ("310000", "city", "上海市", "Shanghai", None, (121.40, 31.10, 121.60, 31.30)),
    ("310101", "district", "黄浦区", "Huangpu", "310000", (121.40, 31.10, 121.50, 31.30)),
    ("310104", "district", "徐汇区", "Xuhui", "310000", (121.50, 31.10, 121.60, 31.30)),
    ("310101001", "street", "南街道", "South Street", "310101", (121.40, 31.10, 121.50, 31.20)),
    ("310101002", "street", "北街道", "North Street", "310101", (121.40, 31.20, 121.50, 31.30)),
    ("310104001", "street", "徐家汇街道", "Xujiahui", "310104", (121.50, 31.10, 121.60, 31.30)),
    ("310101001001", "grid_cell", "网格1", "Cell 1", "310101001", (121.40, 31.10, 121.45, 31.20)),
    ("310101001002", "grid_cell", "网格2", "Cell 2", "310101001", (121.45, 31.10, 121.50, 31.20)),
    ("310101002001", "grid_cell", "网格3", "Cell 3", "310101002", (121.40, 31.20, 121.50, 31.30)),
    ("310104001001", "grid_cell", "网格4", "Cell 4", "310104001", (121.50, 31.10, 121.60, 31.30)),
]

#: The tree as plain nodes, for the pure dispatch tests.
TREE = {code: Area(code, name, en, kind, parent) for code, kind, name, en, parent, _ in AREAS}

#: watched asset id, kind, (lon, lat), sensor id, quantity
ASSETS = [
    ("lift:1", Kind.LIFT, (121.420, 31.150), "s-lift-1", "lift_status"),  # cell 1, south street
    ("lift:2", Kind.LIFT, (121.421, 31.150), "s-lift-2", "lift_status"),  # ~95 m east of lift:1
    ("lift:3", Kind.LIFT, (121.440, 31.150), "s-lift-3", "lift_status"),  # ~1.9 km east of lift:1, same cell
    ("lift:4", Kind.LIFT, (121.450, 31.250), "s-lift-4", "lift_status"),  # north street
    ("lift:5", Kind.LIFT, (121.550, 31.200), "s-lift-5", "lift_status"),  # Xuhui
    ("node:g1", Kind.NODE, (121.480, 31.120), "s-gas-1", "gas_pressure"),  # cell 2
]

UNITS: list[dict[str, Any]] = [
    {"id": "city-lift", "name": "市电梯监管", "name_en": "City lift authority", "categories": ["lift_fault"]},
    {
        "per": "district",
        "id": "lift-{code}",
        "name": "{name}电梯公司",
        "name_en": "{name_en} lifts",
        "categories": ["lift_fault"],
        "reports_to": "city-lift",
    },
    {
        "id": "team-south",
        "name": "南街道网格队",
        "categories": ["lift_fault"],
        "areas": ["310101001"],
        "reports_to": "lift-310101",
    },
    {"id": "sh-gas", "name": "上海燃气", "name_en": "Shanghai Gas", "categories": ["gas_leak"]},
]
RULES = case_rules(
    [
        {"id": "lift", "quantity": "lift_status", "category": "lift_fault"},
        {"id": "gas", "quantity": "gas_pressure", "category": "gas_leak", "join_distance_m": 150},
    ]
)


def area_assets() -> list[Asset]:
    return [
        Asset(
            id=f"area:{code}",
            kind=Kind(kind),
            geom=shapely.box(*box),
            name=name,
            parent_id=f"area:{parent}" if parent else None,
            source="test-areas",
            props={"code": code, "level": kind, "name_en": en},
        )
        for code, kind, name, en, parent, box in AREAS
    ]


def city_assets() -> list[Asset]:
    assets = []
    for asset_id, kind, (lon, lat), sensor_id, quantity in ASSETS:
        assets.append(Asset(id=asset_id, kind=kind, geom=shapely.Point(lon, lat), source="test-city"))
        assets.append(
            Asset(
                id=sensor_id,
                kind=Kind.SENSOR,
                geom=shapely.Point(lon, lat),
                parent_id=asset_id,
                source="test-city",
                props={"quantity": quantity},
            )
        )
    return assets


def alert(sensor_id: str, at: datetime, *, closed: datetime | None = None, severity: str = "critical") -> Alert:
    condition = "below" if "gas" in sensor_id else "status"
    return Alert(
        id=f"{sensor_id}:{condition}|{sensor_id}|{at:%Y%m%dT%H%M%S.%fZ}",
        rule=f"{sensor_id}:{condition}",
        sensor_id=sensor_id,
        opened_at=at,
        closed_at=closed,
        severity=severity,
        message=f"{sensor_id}: fault",
    )


def closed(a: Alert, at: datetime) -> Alert:
    return Alert(**{**{f: getattr(a, f) for f in a.__dataclass_fields__}, "closed_at": at})


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def city(store_url: str) -> Iterator[Store]:
    """A store with the areas, the assets and sensors, and the units saved."""
    with open_store(store_url) as store:
        store.upsert_assets(AssetBatch.from_assets(area_assets() + city_assets()))
        save_table(store, build_units(UNITS, area_tree(store)))
        yield store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@asynccontextmanager
async def running(
    store: Store, clock: Clock, *, background: bool = False, options: dict[str, Any] | None = None, **kwargs: Any
) -> AsyncIterator[CaseService]:
    kwargs.setdefault("rules", RULES)
    service = CaseService(store, clock=clock, options=CaseServiceOptions(**(options or {})), **kwargs)
    await service.start(background=background)
    try:
        yield service
    finally:
        await service.stop()
