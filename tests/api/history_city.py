"""A small city with a hand-built history, for ``/changes`` and ``cim changes``: every expected answer is known.

- 2022-01-01: the district of Pudong; gas mains p1, p2 and water main p3 (each ~1,109 m); lift L1 (load 800 kg).
- 2023-01-01: p1 renewed (installed 2022, PE), p2 removed, p4 added (gas), p3 unchanged.
- 2023-03-01: L1's load becomes 1,000 kg (a property).
- 2024-01-01: p3 re-lined (material) by an engineer.
- 2024-02-01: p4 moved 0.01° east (its shape).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from shapely.affinity import translate
from shapely.geometry import Point

from cim.model import Asset, AssetBatch, Kind
from cim.store import Store
from tests.store.test_versions import district, ingest, pipe

Y2022, Y2023, Y2024 = (datetime(y, 1, 1, tzinfo=UTC) for y in (2022, 2023, 2024))
MAIN_M = 1109  # each main's length, ±1%


def lift(load_kg: int) -> Asset:
    return Asset(
        id="L1",
        kind=Kind.LIFT,
        geom=Point(121.55, 31.235),
        name="电梯 1",
        source="lifts",
        install_date=date(2005, 3, 1),
        props={"load_kg": load_kg},
    )  # type: ignore[arg-type]


def build_history(store: Store) -> None:
    store.replace_source("areas", [AssetBatch.from_assets([district()])], at=Y2022)
    ingest(
        store,
        Y2022,
        pipe(1, installed=date(1990, 5, 1)),
        pipe(2, installed=date(1985, 1, 1)),
        pipe(3, installed=date(2001, 1, 1), network="water"),
    )
    store.replace_source("lifts", [AssetBatch.from_assets([lift(800)])], at=Y2022)
    p4 = pipe(4, installed=date(2022, 9, 1))
    ingest(
        store,
        Y2023,
        pipe(1, installed=date(2022, 6, 1), material="PE"),
        pipe(3, installed=date(2001, 1, 1), network="water"),
        p4,
    )
    store.replace_source("lifts", [AssetBatch.from_assets([lift(1000)])], at=datetime(2023, 3, 1, tzinfo=UTC))
    relined = pipe(3, installed=date(2001, 1, 1), network="water", material="lined steel")
    store.upsert_assets(AssetBatch.from_assets([relined]), at=Y2024, by="engineer")
    moved = dataclasses.replace(p4, geom=translate(p4.geom, xoff=0.01))
    store.upsert_assets(AssetBatch.from_assets([moved]), at=datetime(2024, 2, 1, tzinfo=UTC), by="engineer")
