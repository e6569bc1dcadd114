"""City vital signs on a small city built in the test, on both stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shapely.geometry import LineString, Point, box

from cim.model import Alert, Asset, AssetBatch, Kind, Reading
from cim.queries.indicators import vital_signs
from cim.store import Store

AS_OF = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DEG_PER_M = 1 / 111_320  # of latitude


def city() -> list[Asset]:
    lon, lat = 121.5, 31.2
    park = Asset(id="park", kind=Kind.PARK, geom=box(lon, lat, lon + 0.001, lat + 0.001))
    homes = [  # 300 m and 800 m north of the park; an office 100 m away does not count as a home
        Asset(id=f"home{i}", kind=Kind.BUILDING, props={"use": "residential"},
              geom=box(lon, lat + 0.001 + d * DEG_PER_M, lon + 0.0002, lat + 0.0012 + d * DEG_PER_M))
        for i, d in enumerate((300, 800))
    ]  # fmt: skip
    office_box = box(lon, lat - 0.0012, lon + 0.0002, lat)
    office = Asset(id="office", kind=Kind.BUILDING, props={"use": "office"}, geom=office_box)
    lifts = [
        Asset(id="lift-old", kind=Kind.LIFT, parent_id="home0", geom=Point(lon, lat), install_date=date(2001, 1, 1)),
        Asset(id="lift-new", kind=Kind.LIFT, parent_id="home0", geom=Point(lon, lat), install_date=date(2020, 1, 1)),
        Asset(id="lift-unknown", kind=Kind.LIFT, parent_id="home1", geom=Point(lon, lat)),
    ]
    one_km = LineString([(lon, lat - 0.01), (lon, lat - 0.01 + 1000 * DEG_PER_M)])
    pipes = [
        Asset(id="gas-old", kind=Kind.PIPE, network="gas", geom=one_km, z_min=-1.5, z_max=-1.2, depth_m=1.2,
              install_date=date(1980, 1, 1)),
        Asset(id="gas-new", kind=Kind.PIPE, network="gas", geom=one_km, z_min=-1.5, z_max=-1.2, depth_m=1.2,
              install_date=date(2010, 1, 1)),
        Asset(id="water-old-above", kind=Kind.PIPE, network="water", geom=one_km, z_min=0, z_max=0.3,
              install_date=date(1970, 1, 1)),
    ]  # fmt: skip
    metro = Asset(id="exit", kind=Kind.METRO_EXIT, geom=Point(lon + 0.01, lat))
    stops = [
        Asset(id="stop-near", kind=Kind.TRANSIT_STOP, geom=Point(lon + 0.01, lat + 30 * DEG_PER_M)),
        Asset(id="stop-far", kind=Kind.TRANSIT_STOP, geom=Point(lon + 0.01, lat + 200 * DEG_PER_M)),
    ]
    sensors = [Asset(id=f"s{i}", kind=Kind.SENSOR, parent_id="lift-old", geom=Point(lon, lat),
                     props={"quantity": "lift_status"}) for i in range(2)]  # fmt: skip
    return [park, *homes, office, *lifts, *pipes, metro, *stops, *sensors]


def test_vital_signs_count_what_their_definitions_say(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets(city()))
    store.append_readings(
        [
            Reading(sensor_id="s0", time=NOW - timedelta(minutes=2), status="running"),
            Reading(sensor_id="s1", time=NOW - timedelta(hours=2), status="fault"),
        ]
    )
    store.save_alerts([Alert(id="a1", rule="s1:status", sensor_id="s1", opened_at=NOW - timedelta(hours=2))])
    signs = {i["id"]: i for i in vital_signs(store, as_of=AS_OF, now=NOW)["indicators"]}

    assert signs["old_lifts"]["value"] == 1 and signs["old_lifts"]["total"] == 3
    assert "1 lifts have no install date" in signs["old_lifts"]["definition"]
    assert signs["old_lifts_share"]["value"] == 33.3
    assert abs(signs["old_gas_mains_km"]["value"] - 1.0) < 0.02  # only the old buried one
    assert signs["old_water_mains_km"]["value"] == 0  # the old water pipe lies above ground
    assert signs["homes_near_park"]["value"] == 50.0 and signs["homes_near_park"]["total"] == 2
    assert signs["stops_near_metro"]["value"] == 50.0
    assert signs["sensors_reporting"]["value"] == 1 and signs["sensors_reporting"]["total"] == 2
    assert signs["open_alerts"]["value"] == 1 and signs["open_alerts.lift_status"]["value"] == 1
