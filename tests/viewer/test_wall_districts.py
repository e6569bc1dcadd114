"""The wall's per-district panel: old gas mains by district from ``/collections/pipe/aggregate``, Chinese names
first, agreeing with the endpoint, readable at 1920×1080 beside the vital signs."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from tests.viewer.conftest import Watch
from tests.viewer.test_viewer import WALL, api, open_viewer, settle, wait_for_tiles


def test_the_wall_lists_old_gas_mains_by_district(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    tab.set_viewport_size(WALL)
    path = "/collections/pipe/aggregate?" + urllib.parse.urlencode(
        {"group_by": "district,age_band", "filter": "network = 'gas'"}
    )
    old = [g for g in api(server, path)["groups"] if g["key"]["age_band"] == "30+" and g["key"]["district"]]
    old.sort(key=lambda g: -g["length_m"])
    assert old, "the demo city has old gas mains"
    open_viewer(tab, server, "?mode=wall")
    tab.wait_for_selector("#district-panel:not([hidden]) #district-mains tr", timeout=30_000)
    rows = tab.locator("#district-mains tr")
    assert rows.count() == min(8, len(old))
    first = rows.nth(0).inner_text()
    assert first.startswith(old[0]["names"]["district"]["zh"])  # Chinese first
    assert f"{old[0]['length_m'] / 1000:,.1f}" in first
    panel, vitals = tab.locator("#district-panel").bounding_box(), tab.locator("#vital-signs").bounding_box()
    assert panel["x"] + panel["width"] < vitals["x"]  # beside the vital signs, not over them
    assert panel["y"] + panel["height"] < WALL["height"] - 60  # above the ticker
    wait_for_tiles(tab)
    settle(tab)
    tab.screenshot(path=str(shots / "wall-districts.png"))
