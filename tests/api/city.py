"""A small real city for the query and API tests: buildings with storeys and lifts, pipes above and below ground,
parks, bus stops and a sensor with readings, around Lujiazui. Ages are counted to :data:`AS_OF`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shapely.geometry import LineString, Point, box

from cim.model import Asset, AssetBatch, Kind, Reading
from cim.store import Store

AS_OF = date(2026, 5, 1)
#: When the city's assets were recorded: its history begins before AS_OF, so the model as of AS_OF is this city.
RECORDED = datetime(2020, 1, 1, tzinfo=UTC)
X, Y = 121.50, 31.23
#: a 1 km-ish square window (lon 121.50..121.51, lat 31.23..31.239) holding the pipes below
AREA = (121.50, 31.23, 121.51, 31.239)


def city_assets() -> list[Asset]:
    a: list[Asset] = []
    for n in range(1, 4):
        a.append(
            Asset(
                id=f"b{n}",
                kind=Kind.BUILDING,
                name=f"Tower {n}",
                geom=box(X + n * 0.002, Y + 0.001, X + n * 0.002 + 0.0005, Y + 0.0015),
                install_date=date(1990 + n, 1, 1),
                status="in use",
                storeys=10 * n,
                z_min=4.0,
                z_max=4.0 + 30 * n,
                props={"Pset_Owner.Name": f"owner {n}", "floors": 10 * n},
            )
        )
        a.append(Asset(id=f"b{n}-s1", kind=Kind.STOREY, parent_id=f"b{n}", name="level 1"))
    a += [
        # b1: one old lift straight under the building, one under a storey, one new
        Asset(
            id="lift-1a",
            kind=Kind.LIFT,
            parent_id="b1",
            install_date=date(2001, 3, 1),
            geom=Point(X + 0.0021, Y + 0.0011),
        ),
        Asset(id="lift-1b", kind=Kind.LIFT, parent_id="b1-s1", install_date=date(1995, 6, 1)),
        Asset(id="lift-1c", kind=Kind.LIFT, parent_id="b1", install_date=date(2020, 1, 1)),
        # b2: installed exactly 15 years before AS_OF (not older than 15), and one with no date
        Asset(id="lift-2a", kind=Kind.LIFT, parent_id="b2-s1", install_date=date(2011, 5, 1)),
        Asset(id="lift-2b", kind=Kind.LIFT, parent_id="b2"),
        # b3: only new lifts; an old lift whose parent is missing
        Asset(id="lift-3a", kind=Kind.LIFT, parent_id="b3", install_date=date(2019, 1, 1)),
        Asset(id="lift-x", kind=Kind.LIFT, parent_id="gone", install_date=date(1980, 1, 1)),
    ]
    # pipes: gas crossing the area, gas wholly inside, gas above ground, water below, gas outside the area
    a += [
        Asset(
            id="gas-cross",
            kind=Kind.PIPE,
            network="gas",
            geom=LineString([(X - 0.005, Y + 0.004), (X + 0.005, Y + 0.004)]),
            z_min=-2.0,
            z_max=-1.0,
            depth_m=1.0,
            install_date=date(1985, 1, 1),
            material="cast iron",
        ),
        Asset(
            id="gas-inside",
            kind=Kind.PIPE,
            network="gas",
            geom=LineString([(X + 0.002, Y + 0.002), (X + 0.002, Y + 0.006)]),
            z_min=-4.0,
            z_max=-3.0,
            depth_m=3.0,
            install_date=date(2015, 1, 1),
            material="PE",
        ),
        Asset(
            id="gas-overhead",
            kind=Kind.PIPE,
            network="gas",
            geom=LineString([(X + 0.003, Y + 0.002), (X + 0.004, Y + 0.002)]),
            z_min=5.0,
            z_max=6.0,
            install_date=date(1970, 1, 1),
        ),
        Asset(
            id="water-1",
            kind=Kind.PIPE,
            network="water",
            geom=LineString([(X + 0.001, Y + 0.003), (X + 0.008, Y + 0.003)]),
            z_min=-2.0,
            z_max=-1.5,
            depth_m=1.5,
            install_date=date(1960, 1, 1),
        ),
        Asset(
            id="gas-far",
            kind=Kind.PIPE,
            network="gas",
            geom=LineString([(X + 0.1, Y + 0.1), (X + 0.11, Y + 0.1)]),
            z_min=-2.0,
            z_max=-1.0,
            depth_m=1.0,
            install_date=date(1980, 1, 1),
        ),
        Asset(
            id="gas-depth-only",
            kind=Kind.PIPE,
            network="gas",
            geom=LineString([(X + 0.006, Y + 0.005), (X + 0.007, Y + 0.005)]),
            depth_m=2.0,
        ),
    ]
    # parks and bus stops: stop-near is ~45 m from the park edge, stop-far ~ 900 m
    a += [
        Asset(id="park-1", kind=Kind.PARK, name="Century Park", geom=box(X + 0.02, Y + 0.02, X + 0.025, Y + 0.025)),
        Asset(id="stop-near", kind=Kind.TRANSIT_STOP, name="Near", geom=Point(X + 0.02 - 0.00047, Y + 0.022)),
        Asset(id="stop-far", kind=Kind.TRANSIT_STOP, name="Far", geom=Point(X + 0.02 - 0.0094, Y + 0.022)),
        Asset(id="sensor-1", kind=Kind.SENSOR, parent_id="lift-1a", name="lift 1a door", network=None),
    ]
    return a


def build_city(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets(city_assets()), at=RECORDED)
    t0 = datetime(2026, 4, 30, 8, 0, tzinfo=UTC)
    store.append_readings(
        [Reading(sensor_id="sensor-1", time=t0 + timedelta(minutes=m), value=float(m)) for m in range(3)]
    )
