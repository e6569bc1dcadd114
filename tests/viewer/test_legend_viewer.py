"""Sensors, the legend and the vertical section in Chromium: the sensor layer is off by default (only sensors in alert
drawn), on it clusters by zoom (counts far out, single markers near, a cluster in its worst member's colour) and a
single sensor still opens its reading; the legend names every layer and colour in use in both languages, with the
very colours the tiles are built with; a vertical section cuts the city's tiles and keeps the ground."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cim.api.viewer import css_color
from cim.tiling.glb import KIND_COLORS
from tests.viewer.conftest import Watch, changed
from tests.viewer.test_measure_viewer import click_map
from tests.viewer.test_viewer import MAP, api, open_viewer, post_fault, settle, wait_for_tiles

#: High over the demo's centre: the whole city, where sensors crowd.
FAR = "?cam=121.49,31.2,4500,0,-60"
LIVE_READY = "window.cim.live && window.cim.live.sensors.size > 0 && document.getElementById('sensors-switch')"
#: The drawn sensor markers and clusters, and the states of all sensors with a position.
DRAWN = """() => {
  const { live, viewer, Cesium } = window.cim;
  const placed = [...live.sensors.values()].filter((s) => s.marker);
  const states = placed.map((s) => live.stateOf(s.id));
  const canvas = viewer.scene.canvas;
  const seen = (position) => {
    const p = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene, position);
    return p && p.x >= 0 && p.y >= 0 && p.x < canvas.clientWidth && p.y < canvas.clientHeight;
  };
  const onScreen = placed.filter((s) => seen(s.marker.position));
  return { ...live.drawn(), sensors: states.length, alerting: states.filter((s) => s === 'alert').length,
           onScreen: onScreen.length, onScreenMarkers: onScreen.filter((s) => s.marker.show).length,
           onScreenClusters: live.clusters.list.filter((c) => seen(c.position)).length,
           clustered: live.clusters.list.reduce((n, c) => n + c.count, 0),
           biggest: Math.max(0, ...live.clusters.list.map((c) => c.count)) };
}"""


def legend_text(page: Any) -> str:
    return str(page.locator("#legend").inner_text())


def test_sensors_are_hidden_by_default_and_clustered_by_zoom(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    open_viewer(tab, server, FAR)
    wait_for_tiles(tab)
    tab.wait_for_function(LIVE_READY, timeout=30_000)
    tab.wait_for_function("window.cim.live.socket && window.cim.live.socket.readyState === 1", timeout=30_000)
    settle(tab)
    off = tab.evaluate(DRAWN)
    print(f"sensor layer off: {off}")
    assert not tab.locator("#sensors-switch").is_checked()
    assert off["sensors"] > 100
    assert off["clusters"] == 0
    assert off["markers"] == off["alerting"]  # only a sensor in alert is drawn with the layer off
    tab.screenshot(path=str(shots / "sensors-off.png"))
    # A sensor in alert is drawn with the layer off: where something is wrong is seen without a switch.
    lift = [s for s in api(server, "/iot/sensors") if s.get("quantity") == "lift_status"][1]  # not another test's
    faulty = f"window.cim.live.sensors.get({json.dumps(lift['id'])})"
    post_fault(server, lift["id"])
    tab.wait_for_function(f"{faulty}.marker.show && window.cim.live.stateOf({json.dumps(lift['id'])}) === 'alert'")
    assert tab.evaluate(DRAWN)["markers"] == tab.evaluate(DRAWN)["alerting"] >= 1

    t0 = time.monotonic()
    tab.locator("#sensors-switch").check()
    tab.wait_for_function("window.cim.live.clusters.list.length > 0", timeout=5_000)
    print(f"sensor layer on → clusters in {(time.monotonic() - t0) * 1000:.0f} ms")
    far = tab.evaluate(DRAWN)
    print(f"sensor layer on, far: {far}")
    settle(tab, 1.0)
    tab.screenshot(path=str(shots / "sensors-far-clusters.png"))
    assert far["biggest"] >= 10  # far out, many sensors share a cluster
    assert far["clustered"] + far["markers"] == far["sensors"]  # each sensor once: in a cluster or on its own
    # On screen, far fewer things are drawn than there are sensors.
    assert far["onScreenMarkers"] + far["onScreenClusters"] < far["onScreen"] / 3
    # A cluster is in the colour of its worst member; its label says how many.
    worst = tab.evaluate(
        """() => {
          const { live } = window.cim; const rank = { none: 0, ok: 1, warning: 2, alert: 3 };
          const discs = live.clusters.discs;
          return live.clusters.list.map((c, i) => {
            const states = c.ids.map((id) => live.stateOf(id));
            const expected = states.reduce((a, s) => (rank[s] > rank[a] ? s : a), 'none');
            const drawn = discs.get(i);
            return [expected, c.state, drawn.id.cimSensorCluster === c, drawn.image === `${expected}:${c.count}`];
          });
        }"""
    )
    assert all(expected == state and same and image for expected, state, same, image in worst), worst
    in_alert = tab.evaluate(
        f"window.cim.live.clusters.list.find((c) => c.ids.includes({json.dumps(lift['id'])}))?.state ?? 'single'"
    )
    assert in_alert in ("alert", "single")  # the faulty lift's cluster is red
    legend = tab.locator('#legend [data-group="sensors"]')
    assert legend.locator('[data-sensor="cluster"]').count() == 1

    # Near one sensor, every sensor is its own marker; a click on it opens its reading.
    sensor = tab.evaluate(
        """() => { const { live } = window.cim;
                   const s = [...live.sensors.values()].find((s) => s.marker && live.states.has(s.id));
                   return { id: s.id, lon: s.lon, lat: s.lat }; }"""
    )
    tab.evaluate(
        """([lon, lat]) => new Promise((resolve) => {
          const { viewer, Cesium } = window.cim;
          const remove = viewer.camera.moveEnd.addEventListener(() => { remove(); resolve(); });
          viewer.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(lon, lat, 220),
                                  orientation: { heading: 0, pitch: Cesium.Math.toRadians(-90), roll: 0 } });
        })""",
        [sensor["lon"], sensor["lat"]],
    )
    tab.wait_for_function("window.cim.live.clusters.list.length === 0", timeout=5_000)
    near = tab.evaluate(DRAWN)
    print(f"sensor layer on, near: {near}")
    assert near["markers"] == near["sensors"]
    settle(tab, 1.0)
    tab.screenshot(path=str(shots / "sensors-near.png"))
    x, y = tab.evaluate(
        """(id) => { const { viewer, Cesium, live } = window.cim;
          const p = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene, live.sensors.get(id).marker.position);
          return [p.x, p.y]; }""",
        sensor["id"],
    )
    click_map(tab, x, y)
    tab.wait_for_function("!document.getElementById('inspect-loading') && window.cim.styler.selected", timeout=10_000)
    picked = tab.evaluate("window.cim.styler.selected")
    assert tab.locator("#inspect-panel").is_visible()
    # The sensor itself or, where a sensor stands on its asset, one of the two: the panel shows the latest reading.
    assert picked == sensor["id"] or "Latest sensor state" in tab.locator("#inspect-body").inner_text(), picked
    tab.screenshot(path=str(shots / "sensor-picked.png"))

    tab.locator("#sensors-switch").uncheck()
    tab.wait_for_function("!window.cim.live.shown", timeout=5_000)
    after = tab.evaluate(DRAWN)
    assert after["markers"] == after["alerting"] and after["clusters"] == 0


def test_legend_names_what_is_shown_with_the_tiles_colours(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    served = api(server, "/viewer/colors.json")["kinds"]
    assert {k: v["css"] for k, v in served.items()} == {k: css_color(v) for k, v in KIND_COLORS.items()}
    open_viewer(tab, server, FAR)
    wait_for_tiles(tab)
    tab.wait_for_function(LIVE_READY, timeout=30_000)
    settle(tab)
    tab.wait_for_function("document.querySelectorAll('#legend [data-ground]').length > 0", timeout=30_000)
    # Every kind swatch has the colour the tiles are built with (glb.py's table, as sRGB).
    swatches = tab.evaluate(
        """() => [...document.querySelectorAll('#legend [data-kind]')].map((n) =>
             [n.dataset.kind, n.querySelector('.swatch').dataset.colour])"""
    )
    print(f"legend kinds: {swatches}")
    assert any(kind == "building" for kind, _ in swatches)
    assert all(colour == css_color(KIND_COLORS[kind]) for kind, colour in swatches), swatches
    # Only the ground layers switched on: the store's land use starts off.
    grounds = tab.evaluate("[...document.querySelectorAll('#legend [data-ground]')].map((n) => n.dataset.ground)")
    on = tab.evaluate("[...document.querySelectorAll('#ground-switches input:checked')].map((n) => n.dataset.ground)")
    assert sorted(grounds) == sorted(on) and "park" in grounds, (grounds, on)
    groups = tab.evaluate("[...document.querySelectorAll('#legend [data-group]')].map((n) => n.dataset.group)")
    print(f"legend groups: {groups}")
    assert "highlight" not in groups
    cases = tab.evaluate("window.cim.cases.available && window.cim.cases.markers.size > 0")
    if cases:  # the case points' state colours, as cases.js draws them
        case_swatch = "document.querySelector('#legend [data-group=\"cases\"] [data-case-state]')"
        tab.wait_for_function(case_swatch, timeout=10_000)
    sensors_off = tab.evaluate("[...document.querySelectorAll('#legend [data-sensor]')].map((n) => n.dataset.sensor)")
    assert set(sensors_off) <= {"alert"}  # with the layer off only alerting sensors are on the map

    # Switches: sensors on → their states and clusters; a query → its highlight colour and count.
    tab.locator("#sensors-switch").check()
    tab.wait_for_function("document.querySelector('#legend [data-sensor=\"cluster\"]')", timeout=5_000)
    tab.locator("#old-lifts-form button[type=submit]").click()
    tab.wait_for_function("document.querySelector('#legend [data-highlight=\"found\"]')", timeout=30_000)
    found = tab.evaluate(
        """() => ({ colour: document.querySelector('#legend [data-highlight] .swatch').dataset.colour,
                    n: window.cim.styler.found.size, styler: window.cim.styler.foundCss() })"""
    )
    assert found["colour"] == found["styler"] and found["n"] > 0, found
    assert str(found["n"]) in tab.locator('#legend [data-highlight="found"]').inner_text()
    tab.locator('input[data-ground="park"]').uncheck()
    tab.wait_for_function("!document.querySelector('#legend [data-ground=\"park\"]')", timeout=5_000)
    settle(tab, 1.0)
    tab.screenshot(path=str(shots / "legend-city.png"))
    tab.locator("#legend").screenshot(path=str(shots / "legend-box.png"))

    # Both languages: the 中/EN switch cycles both → 中 → EN.
    both = legend_text(tab)
    assert "图例" in both and "Legend" in both and "传感器" in both and "Sensors" in both, both
    tab.click("#lang-switch")
    zh = legend_text(tab)
    assert "图例" in zh and "Legend" not in zh and "聚合" in zh and "cluster" not in zh, zh
    tab.locator("#legend").screenshot(path=str(shots / "legend-zh.png"))
    tab.click("#lang-switch")
    en = legend_text(tab)
    assert "Legend" in en and "图例" not in en and "query results" in en, en
    tab.locator("#legend").screenshot(path=str(shots / "legend-en.png"))
    print(json.dumps({"zh": zh, "en": en}, ensure_ascii=False))


def test_vertical_section_cuts_tiles_and_keeps_the_ground(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    open_viewer(tab, server, "?cam=121.5055,31.222,500,0,-35")
    wait_for_tiles(tab)
    settle(tab)
    x, y, w, h = MAP
    foreground = (x, y + h * 3 // 4, w, h // 4)  # the ground between the camera and the cut
    before = tab.screenshot(path=str(shots / "vsection-before.png"))
    tab.click("#section-pick")
    tab.select_option("#section-kind", "vertical")
    click_map(tab, 550, 150)
    tab.wait_for_function("window.cim.section.on && !window.cim.section.picking", timeout=10_000)
    assert not tab.evaluate("window.cim.viewer.scene.globe.clippingPlanes.enabled")
    clipped = tab.evaluate(
        "window.cim.viewer.scene.primitives._primitives.filter(p => p.clippingPlanes?.enabled).length"
    )
    assert clipped == tab.evaluate("document.querySelectorAll('input[data-layer]').length")
    settle(tab)
    after = tab.screenshot(path=str(shots / "vsection-vertical.png"))
    whole, front = changed(tab, before, after, MAP), changed(tab, before, after, foreground)
    print(f"vertical cut changed {whole:.1%} of the map, {front:.1%} of the ground in front of it")
    # The ground in front is still drawn (with the globe cut too, 63% of it turned into a black void).
    assert front < 0.1 and whole > 0.002  # the building at the cut is opened (its orange edge)
    tab.select_option("#section-kind", "horizontal")
    tab.wait_for_function("window.cim.viewer.scene.globe.clippingPlanes.enabled", timeout=5_000)
    tab.click("#section-off")
