"""The alerts part of the store contract, on DuckDB and PostGIS alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cim.errors import InvalidInput
from cim.model import Alert
from cim.store import Store, open_store

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def alert(n: int, *, sensor: str = "s1", minutes: int = 0, **fields: object) -> Alert:
    return Alert(
        id=f"a{n}", rule=f"{sensor}:above", sensor_id=sensor, opened_at=T0 + timedelta(minutes=minutes), **fields
    )  # type: ignore[arg-type]


def test_an_alert_comes_back_with_every_field(store: Store) -> None:
    opened = alert(1, severity="critical", message="water level 3.2 m above 3.0 m", value=3.2)
    assert store.save_alerts([opened]) == 1
    assert store.alerts() == [opened]
    assert store.alerts()[0].opened_at == T0


def test_closing_an_alert_replaces_it_and_it_leaves_the_open_list(store: Store) -> None:
    store.save_alerts([alert(1), alert(2, sensor="s2", minutes=5)])
    store.save_alerts([replace(alert(1), closed_at=T0 + timedelta(minutes=9))])
    assert [a.id for a in store.alerts(open=True)] == ["a2"]
    assert [a.id for a in store.alerts()] == ["a2", "a1"]  # newest first
    closed = store.alerts(sensor_id="s1")
    assert len(closed) == 1 and closed[0].closed_at == T0 + timedelta(minutes=9) and not closed[0].is_open


def test_an_alert_keeps_its_asset_and_details(store: Store) -> None:
    details = {
        "quantity": "gas_pressure",
        "unit": "kPa",
        "threshold": 3.5,
        "condition": "above",
        "asset_name": "陆家嘴路 燃气管",
        "street": "Lujiazui",
        "district": "Pudong",
        "sensors": ["gp-1", "gp-2"],
        "message_zh": "燃气压力 4.1 kPa 高于 3.5 kPa — 陆家嘴路 燃气管, 浦东新区",
    }
    opened = alert(1, asset_id="pipe-7", details=details, value=4.1)
    store.save_alerts([opened])
    store.save_alerts([replace(opened, closed_at=T0 + timedelta(minutes=3), details={**details, "sensors": []})])
    (back,) = store.alerts()
    assert back.asset_id == "pipe-7" and back.closed_at == T0 + timedelta(minutes=3)
    assert dict(back.details) == {**details, "sensors": []}  # the close replaced the details too
    store.save_alerts([alert(2)])  # no asset, no details
    assert store.alerts(asset_id="pipe-7") == [back]
    plain = store.alerts(open=True)
    assert [(a.id, a.asset_id, dict(a.details)) for a in plain] == [("a2", None, {})]


def test_open_false_lists_the_closed_alerts_only(store: Store) -> None:
    store.save_alerts([alert(1), alert(2, minutes=1), replace(alert(3, minutes=2), closed_at=T0 + timedelta(hours=1))])
    store.save_alerts([replace(alert(1), closed_at=T0 + timedelta(minutes=5))])
    assert [a.id for a in store.alerts(open=False)] == ["a3", "a1"]
    assert [a.id for a in store.alerts(open=True)] == ["a2"]
    assert [a.id for a in store.alerts()] == ["a3", "a2", "a1"]


def test_alerts_filter_by_sensor_and_limit(store: Store) -> None:
    store.save_alerts([alert(n, sensor=f"s{n % 2}", minutes=n) for n in range(6)])
    assert [a.id for a in store.alerts(sensor_id="s1")] == ["a5", "a3", "a1"]
    assert [a.id for a in store.alerts(limit=2)] == ["a5", "a4"]
    assert store.alerts(open=True, sensor_id="nobody") == []


def test_open_alerts_survive_reopening_the_store(store_url: str) -> None:
    with open_store(store_url) as first:
        first.save_alerts([alert(1), replace(alert(2, minutes=1), closed_at=T0 + timedelta(minutes=2))])
    with open_store(store_url) as second:
        assert [a.id for a in second.alerts(open=True)] == ["a1"]


def test_an_alert_closed_before_it_opened_is_refused() -> None:
    with pytest.raises(InvalidInput, match="closed_at is before opened_at"):
        alert(1, closed_at=T0 - timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="no time zone"):
        Alert(id="a", rule="r", sensor_id="s", opened_at=datetime(2026, 1, 1))
