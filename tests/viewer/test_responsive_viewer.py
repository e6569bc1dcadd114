"""The viewer stays responsive and its query answers read on screen (issue 25, items 5 and 8), in Debian's Chromium
against a live server: while the buried-gas query runs and a layer is switched after it, the page keeps drawing
animation frames (a heartbeat never stops for long); the found pipes glow on the screenshot, seen from above at city
scale; the drawn area shows whole, with the count at its centre. The figures are printed; the bench
(bench/viewer_bench.py) carries the timings against the targets, with a bound here only generous enough for a
shared machine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.viewer.conftest import Watch
from tests.viewer.test_viewer import api, open_viewer, settle, wait_for_tiles

#: Every animation frame's time, kept from the page's start.
HEARTBEAT = """
window.__beats = [];
(function beat(t) { window.__beats.push(t); requestAnimationFrame(beat); })(performance.now());
"""
#: The longest gap between animation frames since `from` (ms), the gap up to now included.
LONGEST_GAP = """(from) => { const b = window.__beats.filter(t => t >= from - 100); let gap = 0;
  for (let i = 1; i < b.length; i++) gap = Math.max(gap, b[i] - b[i - 1]);
  return Math.max(gap, performance.now() - b[b.length - 1]); }"""
#: A generous bound: software WebGL draws a frame in 100–300 ms; a page that froze (the issue saw a layer switch time
#: out after 30 s) misses it by far.
MAX_GAP_MS = 2000
#: Found pipes' colour (queries.js PIPE_FOUND #ff2bd6) and its glow: red high, green low, blue high.
MAGENTA = "(r, g, b) => r > 180 && g < 110 && b > 150"


def gas_area(server: str) -> tuple[list[list[float]], int]:
    """A square ~800 m across around the first gas main, and how many gas pipes the server finds in it."""
    gas = api(server, "/collections/pipe/items?limit=1&filter=network%20%3D%20%27gas%27")["features"]
    lon, lat = gas[0]["geometry"]["coordinates"][0][:2]
    d = 0.004
    bbox = f"{lon - d},{lat - d},{lon + d},{lat + d}"
    expected = len(api(server, f"/queries/buried-pipes?network=gas&bbox={bbox}")["pipes"])
    return [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d]], expected


def look_down_on(tab: Any, ring: list[list[float]]) -> float:
    """Look straight down on the ring with a margin around it; the camera's height (m)."""
    return float(
        tab.evaluate(
            """(ring) => { const { viewer, Cesium } = window.cim;
              const xs = ring.map(p => p[0]), ys = ring.map(p => p[1]);
              const m = 0.004; viewer.camera.setView({ destination: Cesium.Rectangle.fromDegrees(
                Math.min(...xs) - m, Math.min(...ys) - m, Math.max(...xs) + m, Math.max(...ys) + m) });
              viewer.scene.requestRender(); return viewer.camera.positionCartographic.height; }""",
            ring,
        )
    )


def test_the_page_keeps_drawing_during_the_gas_query_and_a_layer_switch(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    ring, expected = gas_area(server)
    assert expected
    tab.add_init_script(HEARTBEAT)
    lon, lat = ring[0][0] + 0.004, ring[0][1] - 0.002
    open_viewer(tab, server, f"?cam={lon:.6f},{lat:.6f},900,0,-45")
    wait_for_tiles(tab)
    settle(tab, 0.5)
    started = float(
        tab.evaluate(
            """(ring) => { window.__listed = undefined;
              new MutationObserver((_, obs) => { if (document.querySelector('#result-list li[data-id]')) {
                window.__listed = performance.now(); obs.disconnect(); } })
                .observe(document.getElementById('query-result'), { childList: true, subtree: true });
              const t0 = performance.now(); window.cim.queries.run({ type: 'pipes', network: 'gas', ring });
              return t0; }""",
            ring,
        )
    )
    tab.wait_for_function("window.__listed !== undefined", timeout=30_000)
    listed = float(tab.evaluate("window.__listed")) - started
    asked = tab.evaluate(
        "performance.getEntriesByType('resource').filter(e => e.name.includes('/queries/buried-pipes'))"
        ".map(e => [Math.round(e.startTime), Math.round(e.duration)])"
    )
    # The scene's part: the restyle, underground mode, the glowing lines built in web workers.
    tab.wait_for_function("window.cim.queries.glow && window.cim.queries.glow.ready", timeout=60_000)
    drawn = float(tab.evaluate("performance.now()")) - started
    query_gap = float(tab.evaluate(LONGEST_GAP, started))
    # A layer switch on the styled, underground city: the next frame comes, and the heartbeat does not stop.
    switched = float(tab.evaluate("performance.now()"))
    switch_ms = float(
        tab.evaluate(
            """() => new Promise((resolve) => { const scene = window.cim.viewer.scene; const t0 = performance.now();
              const rm = scene.postRender.addEventListener(() => { rm(); resolve(performance.now() - t0); });
              document.querySelector('#layer-switches input[data-layer="underground"]').click(); })"""
        )
    )
    assert not tab.evaluate("window.cim.queries.layers.tilesets().find(t => t.cimGroup === 'underground').show")
    time.sleep(1)
    switch_gap = float(tab.evaluate(LONGEST_GAP, switched))
    print(
        f"gas query: {expected} pipes listed {listed:.0f} ms after the question (asked at {started:.0f} ms, "
        f"[start, duration] of its requests: {asked}), lines drawn at {drawn:.0f} ms, "
        f"longest frame gap {query_gap:.0f} ms; layer switch: next frame in {switch_ms:.0f} ms, "
        f"longest gap {switch_gap:.0f} ms (bound {MAX_GAP_MS})"
    )
    assert tab.locator("#result-list li[data-id]").count() == min(expected, 300)
    assert query_gap < MAX_GAP_MS, f"the page stopped drawing for {query_gap:.0f} ms during the query"
    assert switch_gap < MAX_GAP_MS, f"the page stopped drawing for {switch_gap:.0f} ms after the layer switch"


#: Pixel statistics of a screenshot at window points: for each point, its colour.
SAMPLE = """async ([url, points]) => {
  const img = new Image(); img.src = url; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  return points.map(([x, y]) => Array.from(g.getImageData(Math.round(x), Math.round(y), 1, 1).data.slice(0, 3)));
}"""
#: Window positions of lon/lat points on the ground (undefined when behind the camera).
TO_WINDOW = """(points) => { const { viewer, Cesium } = window.cim;
  return points.map(([lon, lat]) => { const w = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene,
    Cesium.Cartesian3.fromDegrees(lon, lat, 0)); return w ? [w.x, w.y] : null; }); }"""
#: Count the pixels of a colour test in a region (x, y, w, h) of a screenshot.
COUNT = """async ([url, [x, y, w, h], test]) => {
  const img = new Image(); img.src = url; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0); const d = g.getImageData(x, y, w, h).data;
  const f = eval(test); let n = 0; for (let i = 0; i < d.length; i += 4) if (f(d[i], d[i + 1], d[i + 2])) n++;
  return n; }"""


def data_url(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode()


def test_found_pipes_glow_from_city_scale_and_the_drawn_area_shows_whole(
    page: tuple[Any, Watch], server: str, shots: Path
) -> None:
    tab, _ = page
    ring, expected = gas_area(server)
    open_viewer(tab, server)
    wait_for_tiles(tab)
    height = look_down_on(tab, ring)
    settle(tab, 0.5)
    box = (380, 0, 900, 800)  # the map right of the side panel
    before = tab.screenshot()
    magenta_before = int(tab.evaluate(COUNT, [data_url(before), list(box), MAGENTA]))
    tab.evaluate("(ring) => window.cim.queries.run({ type: 'pipes', network: 'gas', ring })", ring)
    tab.wait_for_selector("#result-list li[data-id]", timeout=30_000)
    tab.wait_for_function(
        "window.cim.queries.glow && window.cim.queries.glow.ready && window.cim.queries.areaFill.ready", timeout=60_000
    )
    settle(tab, 1.5)
    after = tab.screenshot(path=str(shots / "responsive-gas-pipes-glow.png"))
    magenta_after = int(tab.evaluate(COUNT, [data_url(after), list(box), MAGENTA]))
    label = tab.evaluate("window.cim.viewer.entities.getById('query-area').label.text.getValue()")
    print(
        f"from {height:.0f} m up: {expected} gas pipes; magenta pixels {magenta_before} before, {magenta_after} after; "
        f"label {label!r}"
    )
    # The found pipes stand out: thousands of glowing pixels where there were a few (pink metro exits).
    assert magenta_after > max(2000, 10 * magenta_before)
    assert f"{expected} 根管线" in label and f"{expected} pipes" in label
    # The drawn area whole: a 9×9 grid of points inside it are all tinted its blue against points just outside it
    # (a fill that fought the ground's depth showed in fragments); points on a glowing pipe are left out.
    (w, s), (e, n) = ring[0], ring[2]
    inside = [[w + (e - w) * i / 10, s + (n - s) * j / 10] for i in range(1, 10) for j in range(1, 10)]
    outside = [[lon - (e - w) * 0.45, lat] for lon, lat in inside if lon < w + (e - w) / 2] + [
        [lon + (e - w) * 0.45, lat] for lon, lat in inside if lon >= w + (e - w) / 2
    ]
    at_in = tab.evaluate(TO_WINDOW, inside)
    at_out = tab.evaluate(TO_WINDOW, outside)
    assert all(at_in) and all(at_out)
    colours_in = tab.evaluate(SAMPLE, [data_url(after), at_in])
    colours_out = tab.evaluate(SAMPLE, [data_url(after), at_out])
    on_pipe = [r > 150 for r, _, _ in colours_in]
    blue_in = [b - r for (r, _, b), pipe in zip(colours_in, on_pipe, strict=True) if not pipe]
    blue_out = sorted(b - r for r, _, b in colours_out if r <= 150)
    outside_median = blue_out[len(blue_out) // 2]
    tinted = sum(v > outside_median + 8 for v in blue_in)
    print(
        f"area: {tinted} of {len(blue_in)} inside points tinted (blue−red inside {sorted(blue_in)[len(blue_in) // 2]}, "
        f"outside {outside_median})"
    )
    assert len(blue_in) >= 60
    assert tinted >= 0.95 * len(blue_in), "the drawn area is not shown whole"
