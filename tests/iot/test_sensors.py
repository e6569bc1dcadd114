"""Loading the sensors: what an alert names — the watched asset, its street and district — on both stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shapely.geometry import LineString, Point, box

from cim.iot.rules import RuleEngine
from cim.iot.sensors import load_sensors, sensor_asset
from cim.model import Asset, AssetBatch, Kind, Reading
from cim.store import Store
from tests.store.test_areas import area_assets


def city(store: Store) -> None:
    tower = Asset(id="b-1", kind=Kind.BUILDING, name="Jinmao Tower", geom=box(121.05, 31.05, 121.06, 31.06))
    lift = Asset(id="lift-3", kind=Kind.LIFT, name="Lift 3", parent_id="b-1", geom=Point(121.055, 31.055))
    main = Asset(
        id="pipe-7", kind=Kind.PIPE, name="Lujiazui Rd main", geom=LineString([(121.25, 31.05), (121.26, 31.05)])
    )
    sensors = [
        sensor_asset(id="ls-3", parent_id="lift-3", quantity="lift_status", thresholds={"status": ["fault"]},
                     name="Lift status 3", geom=Point(121.055, 31.055)),
        sensor_asset(id="gp-1", parent_id="pipe-7", quantity="gas_pressure", unit="kPa",
                     thresholds={"above": 3.5}, geom=Point(121.255, 31.05)),
        sensor_asset(id="alone", parent_id=None, quantity="water_level", unit="m", geom=Point(121.35, 31.15)),
        sensor_asset(id="outside", parent_id=None, quantity="water_level", unit="m", geom=Point(125.0, 35.0)),
    ]  # fmt: skip
    store.upsert_assets(AssetBatch.from_assets([*area_assets(), tower, lift, main, *sensors]))


def test_sensors_know_their_assets_name_street_and_district(store: Store) -> None:
    city(store)
    sensors = load_sensors(store)
    lift, gas, alone, outside = (sensors[i] for i in ("ls-3", "gp-1", "alone", "outside"))
    assert (lift.name, lift.parent_kind, lift.asset_name) == ("Lift status 3", "lift", "Lift 3 of Jinmao Tower")
    assert (lift.street, lift.district, lift.street_zh, lift.district_zh) == (
        "Area 900001001", "Area 900001", "区域900001001", "区域900001",
    )  # fmt: skip
    assert (gas.asset_name, gas.street, gas.district) == ("Lujiazui Rd main", "Area 900002001", "Area 900002")
    assert (alone.asset_name, alone.street, alone.district) == (None, None, "Area 900002")  # its own point
    assert (outside.street, outside.district) == (None, None)


def test_an_alert_names_the_place_and_a_renamed_district_shows_at_the_next_load(store: Store) -> None:
    city(store)
    engine = RuleEngine()
    engine.set_sensors(load_sensors(store))
    now = datetime.now(UTC)
    (alert,) = engine.evaluate(Reading(sensor_id="gp-1", time=now, value=4.1))
    assert alert.message == "Gas pressure 4.1 kPa above 3.5 kPa — Lujiazui Rd main, Area 900002001, Area 900002"
    assert alert.details["message_zh"] == "燃气压力 4.1 kPa 高于 3.5 kPa — Lujiazui Rd main, 区域900002001, 区域900002"
    district = next(a for a in area_assets() if a.id == "area:900002")
    store.upsert_assets(AssetBatch.from_assets([replace(district, props={**district.props, "name_en": "Pudong"})]))
    assert load_sensors(store)["gp-1"].district == "Pudong"
