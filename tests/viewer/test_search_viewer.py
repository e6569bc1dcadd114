"""Find and go: the search box lists a demo building by its name and a district by its Chinese name as they are
typed (within a second), in the chosen language; ↑/↓/Enter fly there, and a building is picked and highlighted."""

from __future__ import annotations

import base64
import time
import urllib.parse
from pathlib import Path
from typing import Any

from tests.viewer.conftest import Watch
from tests.viewer.test_viewer import api, open_viewer, settle, wait_for_tiles

#: The camera's lon/lat/height and where it looks.
CAMERA = """(() => {
  const C = window.cim.Cesium, cam = window.cim.viewer.camera, p = cam.positionCartographic;
  return [C.Math.toDegrees(p.longitude), C.Math.toDegrees(p.latitude), p.height];
})()"""
LISTED_WITHIN_MS = 1500  # the target is 1 s; generous under the shared machine's load (the figure is printed)


def type_and_time(tab: Any, text: str, shows: str) -> float:
    """Type ``text`` into the search box key by key; ms from the last key until ``shows`` (a selector) is listed."""
    box = tab.locator("#search-input")
    box.fill("")
    box.press_sequentially(text, delay=40)
    typed = tab.evaluate("performance.now()")
    tab.wait_for_selector(shows, timeout=10_000)
    return float(tab.evaluate("performance.now()")) - float(typed)


def selected_share(tab: Any, png: bytes, box: tuple[int, int, int, int]) -> float:
    """The share of a screenshot region's pixels in the styler's selected blue (#46b1e1 times the tile's colour)."""
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return float(
        tab.evaluate(
            """async ([url, [x, y, w, h]]) => {
              const img = new Image(); img.src = url; await img.decode();
              const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
              const g = c.getContext("2d"); g.drawImage(img, 0, 0);
              const d = g.getImageData(x, y, w, h).data;
              let blue = 0;
              for (let i = 0; i < d.length; i += 4) {
                if (d[i + 2] > 90 && d[i + 2] - d[i] > 60 && d[i + 1] > d[i]) blue++;
              }
              return blue / (d.length / 4);
            }""",
            [url, list(box)],
        )
    )


def flown(tab: Any, before: list[float]) -> list[float]:
    """Wait for the flight to end (the camera stops moving away from ``before``) and return where it is."""
    tab.wait_for_function(
        f"""(() => {{ const c = {CAMERA}; return Math.abs(c[0] - {before[0]}) + Math.abs(c[1] - {before[1]})
            + Math.abs(c[2] - {before[2]}) / 1e5 > 1e-4; }})()""",
        timeout=10_000,
    )
    time.sleep(2.0)  # the flight lasts 1.5 s
    return list(tab.evaluate(CAMERA))


def test_search_a_building_and_a_district_and_fly_there(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    buildings = api(server, "/collections/building/items?limit=300")["features"]
    target = max(buildings, key=lambda b: b["properties"]["height_m"] or 0)
    name = target["properties"]["name"]
    answer = api(server, "/search?" + urllib.parse.urlencode({"q": name}))
    assert answer["matches"][0]["id"] == target["id"], answer
    open_viewer(tab, server, "?cam=121.30,31.00,20000,0,-60")  # far from the target
    wait_for_tiles(tab)

    # a building by name: listed within a second of the last key, with its kind and district
    ms = type_and_time(tab, name, f"#search-results li[data-id='{target['id']}']")
    print(f"building listed {ms:.0f} ms after the last key (search.last: {tab.evaluate('window.cim.search.last')})")
    assert ms <= LISTED_WITHIN_MS
    first = tab.locator("#search-results li").nth(0)
    assert first.get_attribute("data-id") == target["id"] and "active" in (first.get_attribute("class") or "")
    assert name in first.inner_text() and "建筑" in first.inner_text() and "building" in first.inner_text()
    before = tab.evaluate(CAMERA)
    tab.locator("#search-input").press("Enter")
    lon, lat, height = flown(tab, before)
    here = answer["matches"][0]
    assert abs(lon - here["lon"]) < 0.01 and abs(lat - here["lat"]) < 0.01 and height < 2000, (lon, lat, height)
    tab.wait_for_function(f"window.cim.styler.selected === {target['id']!r}", timeout=5_000)  # highlighted
    tab.wait_for_selector("#inspect-panel:not([hidden])", timeout=10_000)
    settle(tab)
    png = tab.screenshot(path=str(shots / "search-building.png"))
    share = selected_share(tab, png, (480, 200, 320, 360))  # the middle of the map, where the flight looks
    print(f"selected-blue share of the map's middle: {share:.1%}")
    assert share > 0.05  # the building is drawn highlighted where the camera looks

    # a district by its Chinese name, in Chinese only: 浦东 lists 浦东新区 first; ↓ then ↑ and Enter flies to its bbox
    tab.locator("#lang-switch").click()  # both → 中
    assert tab.evaluate("document.body.classList.contains('lang-zh')")
    ms = type_and_time(tab, "浦东", "#search-results li[data-kind='district']")
    print(f"district listed {ms:.0f} ms after the last key")
    assert ms <= LISTED_WITHIN_MS
    first = tab.locator("#search-results li").nth(0)
    assert first.get_attribute("data-id") == "area:310115"
    assert first.inner_text().split("\n")[0].strip() == "浦东新区"  # English hidden in Chinese mode
    assert "区" in first.inner_text() and "district" not in first.inner_text()
    box = tab.locator("#search-input")
    box.press("ArrowDown")
    assert "active" in (tab.locator("#search-results li").nth(1).get_attribute("class") or "")
    box.press("ArrowUp")
    before = tab.evaluate(CAMERA)
    box.press("Enter")
    lon, lat, height = flown(tab, before)
    district = tab.evaluate("window.cim.search.chosen")
    assert district["id"] == "area:310115"
    west, south, east, north = district["bbox"]
    assert west < lon < east and south < lat < north and height > 20_000, (lon, lat, height)
    settle(tab, 1.0)
    tab.screenshot(path=str(shots / "search-district-zh.png"))

    # the same list in English; Esc clears it
    tab.locator("#lang-switch").click()  # 中 → EN
    assert tab.evaluate("document.body.classList.contains('lang-en')")
    text = tab.locator("#search-results li").nth(0).inner_text()
    assert "浦东" not in text and "Pudong" in text and "district" in text, text
    box.press("Escape")
    assert tab.locator("#search-results").is_hidden() and box.input_value() == ""
