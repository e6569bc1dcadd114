"""The viewer in Debian's Chromium against a live CIM server: it loads with no outside request and no console error,
the city really renders (pixels, not only DOM), a click opens a building's panel, the old-lifts query lists and
highlights, underground mode changes the globe, wall mode shows the vital signs, a broken link falls back."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.viewer.conftest import WRITE_TOKEN, Watch

READY = "window.cim && window.cim.ready === true"
#: Generous: software WebGL on two cores stalls seconds compiling shaders; the measured figure is printed.
FIRST_TILE_TIMEOUT_MS = 60_000


def api(server: str, path: str) -> Any:
    with urllib.request.urlopen(f"{server}{path}", timeout=30) as response:
        return json.load(response)


#: Toasts last seconds; on a loaded machine a check can come later, so every toast shown is recorded.
RECORD_TOASTS = """
window.__toasts = [];
new MutationObserver((changes) => changes.forEach((c) => c.addedNodes.forEach((n) => {
  if (n.classList && n.classList.contains("toast")) window.__toasts.push(n.textContent);
}))).observe(document, { childList: true, subtree: true });
"""


def toasts_shown(page: Any) -> str:
    return str(page.evaluate("(window.__toasts || []).join('\\n')"))


def open_viewer(page: Any, server: str, query: str = "") -> None:
    page.goto(f"{server}/viewer/{query}")
    page.wait_for_function(READY, timeout=60_000)


def wait_for_tiles(page: Any) -> float:
    page.wait_for_function("window.cim.timings.firstTileMs !== undefined", timeout=FIRST_TILE_TIMEOUT_MS)
    return float(page.evaluate("window.cim.timings.firstTileMs"))


def settle(page: Any, seconds: float = 1.5) -> None:
    """Let pending tiles and flights finish and the last frame be drawn."""
    page.wait_for_function(
        "window.cim.viewer.scene.primitives._primitives.every(p => p.tilesLoaded !== false)", timeout=60_000
    )
    page.evaluate("window.cim.viewer.scene.requestRender()")
    time.sleep(seconds)


def pixels(page: Any, png: bytes, box: tuple[int, int, int, int]) -> dict[str, float]:
    """Statistics of a screenshot's region (x, y, w, h), decoded by the browser's own PNG decoder."""
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return dict(
        page.evaluate(
            """async ([url, [x, y, w, h]]) => {
              const img = new Image(); img.src = url; await img.decode();
              const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
              const g = c.getContext("2d"); g.drawImage(img, 0, 0);
              const d = g.getImageData(x, y, w, h).data;
              const colours = new Set(); let bright = 0, yellow = 0, n = d.length / 4;
              for (let i = 0; i < d.length; i += 4) {
                const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
                colours.add((r >> 3) << 10 | (gr >> 3) << 5 | (b >> 3));
                if (r + gr + b > 450) bright++;
                if (r > 170 && gr > 140 && b < 110) yellow++;
              }
              return {colours: colours.size, bright: bright / n, yellow: yellow / n};
            }""",
            [url, list(box)],
        )
    )


#: The map area right of the side panel.
MAP = (380, 0, 900, 800)


def test_viewer_loads_offline_and_renders_the_city(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, watch = page
    open_viewer(tab, server)
    first_tile_ms = wait_for_tiles(tab)
    print(f"first frame with tiles {first_tile_ms:.0f} ms after navigation (target ≤ 4000 ms)")
    for group in ("buildings", "bim", "underground", "points"):
        assert tab.locator(f'input[data-layer="{group}"]').is_checked(), group
    assert tab.locator('input[data-ground="road"]').count() == 1
    assert tab.locator('input[data-ground="park"]').count() == 1
    settle(tab)
    png = tab.screenshot(path=str(shots / "city.png"))
    stats = pixels(tab, png, MAP)
    # An empty globe is a couple of flat colours; the city has lit walls, roofs, parks, roads and markers.
    assert stats["colours"] > 60, stats
    assert stats["bright"] > 0.02, stats
    tab.locator('input[data-layer="buildings"]').uncheck()
    settle(tab, 1)
    without = pixels(tab, tab.screenshot(path=str(shots / "city-no-buildings.png")), MAP)
    assert without["bright"] < stats["bright"] / 2, (stats, without)
    assert "layers=bim,underground,points" in tab.url  # the switch is in the shareable link
    watch.check()


def test_clicking_a_building_opens_its_panel_with_its_name(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    buildings = api(server, "/collections/building/items?limit=5000")["features"]
    # A tall rectangular building without lifts: its centre is on its roof, and no sensor marker sits there.
    plain = [b for b in buildings if b["properties"].get("shape") == "rectangle"]
    target = max((b for b in plain if not b["properties"].get("lifts")), key=lambda b: b["properties"]["height_m"])
    ring = target["geometry"]["coordinates"][0]
    lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
    lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    height = target["properties"]["height_m"] + 250
    open_viewer(tab, server, f"?cam={lon},{lat},{height:.0f},0,-90")
    wait_for_tiles(tab)
    settle(tab)
    box = tab.locator("#map canvas").bounding_box()
    tab.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tab.wait_for_selector("#inspect-panel:not([hidden])", timeout=10_000)
    tab.wait_for_function("!document.getElementById('inspect-loading')", timeout=20_000)
    assert tab.locator("#inspect-title").inner_text() == target["properties"]["name"]
    panel = tab.locator("#inspect-body").inner_text()
    assert target["id"] in panel  # from the tile's property table and from /assets/{id}
    assert "From the tile" in panel and "year_built" in panel
    assert tab.evaluate("window.cim.styler.selected") == target["id"]


def test_old_lifts_query_lists_and_highlights_the_buildings(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    expected = api(server, "/queries/old-lifts?years=20")["buildings"]
    assert expected, "the demo city has lifts older than 20 years"
    open_viewer(tab, server)
    wait_for_tiles(tab)
    tab.fill("#old-lifts-years", "20")
    tab.click("#old-lifts-form button")
    tab.wait_for_selector("#result-list li", timeout=20_000)
    rows = tab.locator("#result-list li[data-id]")
    assert rows.count() == min(len(expected), 300)
    assert f"{len(expected):,} buildings" in tab.locator("#query-result .summary").inner_text()
    assert tab.evaluate("(ids) => ids.every(id => window.cim.styler.found.has(id))", [b["id"] for b in expected])
    assert "q=old-lifts:20" in tab.url
    # Fly to the first building: the highlighted (yellow) buildings are on screen.
    rows.first.click()
    time.sleep(3)
    settle(tab)
    stats = pixels(tab, tab.screenshot(path=str(shots / "old-lifts.png")), MAP)
    assert stats["yellow"] > 0.002, stats


def test_the_city_is_lit_the_same_at_noon_and_at_midnight(page: tuple[Any, Watch], server: str) -> None:
    """The viewer's light does not follow the clock: with CesiumJS's default sun, the city turned dark at dusk in
    Shanghai and a query's highlights could no longer be told apart."""
    tab, _ = page
    open_viewer(tab, server, "?cam=121.5055,31.225,700,0,-35")
    wait_for_tiles(tab)
    shown = {}
    for name, instant in (("noon", "2026-06-21T04:00:00Z"), ("midnight", "2026-06-21T16:00:00Z")):
        tab.evaluate(
            """(instant) => { const v = window.cim.viewer, JulianDate = v.clock.currentTime.constructor;
                 v.clock.shouldAnimate = false; v.clock.currentTime = JulianDate.fromIso8601(instant); }""",
            instant,
        )
        settle(tab)
        shown[name] = pixels(tab, tab.screenshot(), MAP)
    assert shown["noon"]["colours"] > 50, shown
    assert shown["midnight"]["bright"] == pytest.approx(shown["noon"]["bright"], abs=0.01), shown


def test_a_query_with_no_results_says_so(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    open_viewer(tab, server, "?q=old-lifts:200")
    tab.wait_for_selector("#no-results", timeout=20_000)
    text = tab.locator("#no-results").inner_text()
    assert "No results." in text and "没有结果" in text, text  # both languages by default


def test_underground_switch_makes_the_ground_translucent(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    open_viewer(tab, server, "?cam=121.5055,31.225,400,0,-30")
    wait_for_tiles(tab)
    settle(tab)
    before = pixels(tab, tab.screenshot(), MAP)
    tab.locator("#underground-switch").check()
    settle(tab)
    after = pixels(tab, tab.screenshot(path=str(shots / "underground.png")), MAP)
    assert tab.evaluate("window.cim.viewer.scene.globe.translucency.enabled") is True
    assert not tab.evaluate("window.cim.viewer.scene.screenSpaceCameraController.enableCollisionDetection")
    assert before != after
    assert "under=1" in tab.url


#: The command-centre wall's screen.
WALL = {"width": 1920, "height": 1080}
#: Frames per second over `seconds` with the camera moving every frame (a tour's flight: each frame is drawn in full),
#: recorded in window.cim.timings.wallFps. The tour is stopped first; the camera swings a little left and right.
WALL_FPS = """async (seconds) => {
  const { viewer, wall, timings } = window.cim;
  wall.stopTour();
  let frames = 0;
  const remove = viewer.scene.postRender.addEventListener(() => frames++);
  let moving = true;
  const tick = () => {
    if (!moving) return;
    viewer.camera.lookRight((frames % 2 ? 1 : -1) * 0.002);
    viewer.scene.requestRender();
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  await new Promise((resolve) => setTimeout(resolve, 1000));  // warm up
  const t0 = performance.now();
  frames = 0;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  moving = false;
  remove();
  timings.wallFps = frames / ((performance.now() - t0) / 1000);
  return timings.wallFps;
}"""


def test_wall_mode_shows_the_city_vital_signs(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    tab.set_viewport_size(WALL)
    signs = {i["id"]: i for i in api(server, "/indicators")["indicators"]}
    lifts = api(server, "/queries/old-lifts?years=15")
    count = sum(len(b["lifts"]) for b in lifts["buildings"]) + len(lifts["without_building"])
    assert signs["old_lifts"]["value"] == count  # the vital sign and the query agree
    open_viewer(tab, server, "?mode=wall")
    tab.wait_for_selector('#vital-signs [data-vital="old_lifts"]', timeout=30_000)
    assert tab.locator("#vital-signs").is_visible()
    assert not tab.locator("#sidebar").is_visible()
    assert tab.locator('[data-vital="old_lifts"] .value').inner_text() == f"{count:,} lifts"
    assert tab.locator('[data-vital="old_gas_mains_km"] .value').inner_text().endswith("km")
    assert tab.locator('[data-vital="homes_near_park"]').is_visible()
    assert tab.locator("#ticker").is_visible()
    assert tab.evaluate("window.cim.wall.touring") is True
    tab.wait_for_selector("#tour-caption:not([hidden])", timeout=10_000)
    wait_for_tiles(tab)
    settle(tab)
    fps = float(tab.evaluate(WALL_FPS, 4))
    scale = tab.evaluate("window.cim.viewer.resolutionScale")
    print(f"wall mode at {WALL['width']}×{WALL['height']}, resolutionScale {scale}: {fps:.1f} fps (target ≥ 10)")
    assert fps > 1, fps  # it renders; the figure itself depends on the machine's load, so it is printed
    assert tab.evaluate("window.cim.timings.wallFps") == fps
    time.sleep(2)
    tab.screenshot(path=str(shots / "wall.png"))


def test_a_malformed_link_falls_back_to_the_default_view(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    tab.add_init_script(RECORD_TOASTS)
    open_viewer(tab, server, "?cam=abc,1&layers=%3Cscript%3E&q=old-lifts:x")
    assert "could not be read" in toasts_shown(tab)
    for group in ("buildings", "bim", "underground", "points"):
        assert tab.locator(f'input[data-layer="{group}"]').is_checked()
    camera = tab.evaluate("window.cim.viewer.camera.positionCartographic.height")
    assert 100 < camera < 100_000


def test_the_viewer_router_serves_the_app_and_cesium_but_not_the_package_files(server: str) -> None:
    with urllib.request.urlopen(f"{server}/viewer/") as page:
        assert b'src="/viewer/js/main.js"' in page.read()
    with urllib.request.urlopen(f"{server}/cesium/index.js") as cesium:
        assert cesium.headers["content-type"].startswith("text/javascript")
    for path in ("/viewer/package.json", "/viewer/node_modules/cesium/package.json", "/viewer/../pyproject.toml"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server}{path}")
        assert refused.value.code == 404, path
    assert api(server, "/viewer/config.json")["tilesets"] == ["city"]


def test_a_fault_posted_to_the_server_reaches_the_alert_list_and_a_toast(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    sensors = api(server, "/iot/sensors")
    lift_sensor = next(s for s in sensors if s.get("quantity") == "lift_status")
    tab.add_init_script(RECORD_TOASTS)
    open_viewer(tab, server)
    tab.wait_for_function("window.cim.live.socket && window.cim.live.socket.readyState === 1", timeout=30_000)
    time.sleep(0.5)  # the snapshot arrives first; the fault must come as a change
    post_fault(server, lift_sensor["id"])
    alert_item = tab.locator(f'#alert-list [data-alert*="{lift_sensor["parent_id"]}"]')  # an alert is its asset's
    alert_item.wait_for(timeout=30_000)
    tab.wait_for_function("(window.__toasts || []).some((t) => t.includes('fault'))", timeout=10_000)
    marker = f"window.cim.live.sensors.get({json.dumps(lift_sensor['id'])}).marker"
    tab.wait_for_function(f"{marker}.pixelSize === 14", timeout=10_000)  # the sensor's marker turned red
    assert tab.evaluate(f"{marker}.color.toCssColorString()") == "rgb(229,72,77)"


def post_fault(server: str, sensor_id: str) -> None:
    """A fault reading of ``sensor_id`` posted to the server's HTTP ingest, as a field system sends it."""
    body = json.dumps({"sensor_id": sensor_id, "status": "fault"}).encode()
    request = urllib.request.Request(
        f"{server}/iot/readings",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 202)
