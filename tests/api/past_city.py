"""A small city with a past, written by hand so every answer as of a date is known (issue 26).

- 2022-01-01: a district; building b1 with lift L1 (installed 2000); gas mains p1 (1990) and p2 (1985), water p3.
- 2023-01-01: L1 replaced (installed 2022-06-01); p1 renewed (2022, PE), p2 removed, gas main p4 laid (2022);
  park k1 opened 300 m from b1.

As of 2022-06-30: L1 is old (22.3 years), p1 and p2 are gas mains older than 30 years, no park. As of 2023-06-30
and now: no old lift, no old gas main, b1 has a park within 500 m.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from shapely.geometry import LineString, Point, box

from cim.model import Asset, AssetBatch, Kind
from cim.store import Store

Y2022, Y2023 = datetime(2022, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)
MID_2022, MID_2023 = "2022-06-30", "2023-06-30"
BBOX = "121.49,31.22,121.56,31.25"
X, Y = 121.50, 31.23


def pipe(n: int, *, installed: date, network: str = "gas", material: str = "steel") -> Asset:
    line = LineString([(X + n * 0.01, Y), (X + n * 0.01, Y + 0.01)])  # ~1,109 m north-south
    return Asset(
        id=f"p{n}",
        kind=Kind.PIPE,
        geom=line,
        name=f"main {n}",
        network=network,
        material=material,
        install_date=installed,
        depth_m=1.5,
    )


def buildings(lift_installed: date) -> list[Asset]:
    return [
        Asset(id="b1", kind=Kind.BUILDING, name="Tower 1", geom=box(X, Y + 0.02, X + 0.001, Y + 0.021), storeys=10),
        Asset(id="L1", kind=Kind.LIFT, parent_id="b1", install_date=lift_installed, geom=Point(X + 0.0005, Y + 0.0205)),
    ]


def district() -> Asset:
    return Asset(
        id="area:310115",
        kind=Kind.DISTRICT,
        geom=box(121.4, 31.1, 121.7, 31.4),
        name="浦东新区",
        props={"code": "310115", "name_en": "Pudong"},
    )


def park() -> Asset:
    return Asset(id="k1", kind=Kind.PARK, name="Riverside", geom=box(X + 0.004, Y + 0.02, X + 0.005, Y + 0.021))


def build_history(store: Store) -> None:
    """The city above, each source replaced at its date."""

    def put(source: str, at: datetime, *assets: Asset) -> None:
        batch = AssetBatch.from_assets([dataclasses.replace(a, source=source) for a in assets])
        store.replace_source(source, [batch], at=at)

    put("areas", Y2022, district())
    put("buildings", Y2022, *buildings(date(2000, 3, 1)))
    put("pipes", Y2022, pipe(1, installed=date(1990, 5, 1)), pipe(2, installed=date(1985, 1, 1)),
        pipe(3, installed=date(2001, 1, 1), network="water"))  # fmt: skip
    put("buildings", Y2023, *buildings(date(2022, 6, 1)))
    put("pipes", Y2023, pipe(1, installed=date(2022, 6, 1), material="PE"),
        pipe(3, installed=date(2001, 1, 1), network="water"), pipe(4, installed=date(2022, 9, 1)))  # fmt: skip
    put("parks", Y2023, park())
