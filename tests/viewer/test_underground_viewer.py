"""Underground mode in the browser: the camera goes below ground to the pipes, coloured by network; a picked pipe is
labelled (network, diameter, depth, age) in both languages; the legend names the layers and networks shown; leaving
restores the camera and styles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.viewer.conftest import Watch
from tests.viewer.test_viewer import MAP, api, open_viewer, settle, wait_for_tiles

START = "?cam=121.5055,31.225,400,0,-30"

#: Pixels of a screenshot's region near each given colour: the same hue family (chromaticity within 0.1, the nearest
#: of them) and not too dark to tell. Lighting scales a colour's brightness: it is compared loosely, hue closely.
NEAR_COLOURS = """async ([url, [x, y, w, h], colours, skip]) => {
  const img = new Image(); img.src = url; await img.decode();
  const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0);
  const d = g.getImageData(x, y, w, h).data;
  const chroma = ([r, gr, b]) => { const s = r + gr + b || 1; return [r / s, gr / s, b / s]; };
  const targets = Object.entries(colours).map(([name, rgb]) => [name, chroma(rgb), rgb[0] + rgb[1] + rgb[2]]);
  const counts = Object.fromEntries(targets.map(([name]) => [name, 0]));
  for (let i = 0; i < d.length; i += 4) {
    const [px0, py0] = [x + (i / 4) % w, y + Math.floor(i / 4 / w)];
    if (skip && px0 >= skip.x && px0 < skip.x + skip.width && py0 >= skip.y && py0 < skip.y + skip.height) continue;
    const px = [d[i], d[i + 1], d[i + 2]];
    const sum = px[0] + px[1] + px[2];
    if (sum < 90) continue;
    const cp = chroma(px);
    let best, bestDist = 0.16;  // lit faces shift the chroma: thin water mains are lighter than their swatch
    for (const [name, ct, tsum] of targets) {
      const dist = Math.hypot(cp[0] - ct[0], cp[1] - ct[1], cp[2] - ct[2]);
      if (dist < bestDist && sum > tsum * 0.3 && sum < tsum * 1.6) [best, bestDist] = [name, dist];
    }
    if (best) counts[best]++;
  }
  return counts;
}"""

#: The legend's networks and their swatch colours, [r, g, b].
LEGEND_NETWORKS = """() => Object.fromEntries([...document.querySelectorAll('#legend [data-network]')].map((n) => [
  n.dataset.network,
  getComputedStyle(n.querySelector('.swatch')).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number),
]))"""

#: A buried pipe's screen position, found by picking a grid over the map: [x, y, diameter_mm, depth_m, score, kind] or
#: null.
FIND_PIPE = """() => {
  const { viewer, Cesium } = window.cim;
  const canvas = viewer.scene.canvas;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  let best = null;
  for (let y = 0.3 * h; y < 0.9 * h; y += 24) {
    for (let x = 0.35 * w; x < 0.95 * w; x += 24) {
      const p = viewer.scene.pick(new Cesium.Cartesian2(x, y));
      const buried = p instanceof Cesium.Cesium3DTileFeature && p.tileset.cimGroup === 'underground';
      if (buried && p.getProperty('depth_m') > 0) {
        // a pipe before a valve or chamber (nodes sit on the pipes), then the nearest the middle
        const d = Math.hypot(x - 0.65 * w, y - 0.6 * h) + (p.getProperty('kind') === 'pipe' ? 0 : 10000);
        const props = ['diameter_mm', 'depth_m'].map((k) => p.getProperty(k));
        if (!best || d < best[4]) best = [x, y, ...props, d, p.getProperty('kind')];
      }
    }
  }
  return best;
}"""


def near_colours(page: Any, png: bytes, box: tuple[int, int, int, int], colours: dict[str, list[int]]) -> Any:
    import base64

    url = "data:image/png;base64," + base64.b64encode(png).decode()
    legend = page.locator("#legend").bounding_box()  # its swatches are the colours looked for: not counted
    return page.evaluate(NEAR_COLOURS, [url, list(box), colours, legend])


def camera_height(page: Any) -> float:
    return float(page.evaluate("window.cim.viewer.camera.positionCartographic.height"))


def switch_underground(page: Any, on: bool) -> float:
    """Click the switch; the time until the first frame drawn after it, in ms (the flight is waited for too)."""
    page.evaluate("delete window.cim.timings.undergroundAnswerMs; delete window.cim.timings.undergroundFlightMs")
    page.locator("#underground-switch").click()
    assert page.locator("#underground-switch").is_checked() is on
    page.wait_for_function("window.cim.timings.undergroundFlightMs !== undefined", timeout=30_000)
    answer = float(page.evaluate("window.cim.timings.undergroundAnswerMs"))
    flight = float(page.evaluate("window.cim.timings.undergroundFlightMs"))
    print(f"underground {'on' if on else 'off'}: first frame {answer:.0f} ms, flight done {flight:.0f} ms")
    assert answer <= 1500, answer
    return flight


def set_lang(page: Any, lang: str) -> None:
    """Cycle the 中/EN switch (both → zh → en) until `lang` is chosen."""
    for _ in range(3):
        if page.evaluate("localStorage.getItem('cim.lang') || 'both'") == lang:
            return
        page.locator("#lang-switch").click()
    raise AssertionError(f"language {lang} not reached")


def test_underground_mode_goes_below_to_the_pipes_by_network(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, watch = page
    networks = {row["key"]["network"] for row in api(server, "/collections/pipe/aggregate?group_by=network")["groups"]}
    open_viewer(tab, server, START)
    wait_for_tiles(tab)
    settle(tab)
    above = camera_height(tab)
    legend = tab.evaluate(LEGEND_NETWORKS)
    assert set(legend) == networks, (legend, networks)  # the legend names the networks the tiles hold, no others
    before = near_colours(tab, tab.screenshot(path=str(shots / "underground-before.png")), MAP, legend)
    print(f"network-coloured pixels above ground: {before}")

    switch_underground(tab, True)
    settle(tab)
    png = tab.screenshot(path=str(shots / "underground-pipes.png"))
    below = near_colours(tab, png, MAP, legend)
    print(f"network-coloured pixels below ground: {below}; camera at {camera_height(tab):.1f} m")
    assert camera_height(tab) < 0
    for network in networks:
        assert below[network] > 300, (network, below)
        assert below[network] > 3 * before[network], (network, before, below)
    assert tab.evaluate("window.cim.styler.ghost.alpha") == 0  # buildings and BIM out of the way
    assert tab.evaluate("window.cim.viewer.scene.globe.translucency.enabled") is True
    assert "under=1" in tab.url
    assert "hidden underground" in tab.locator("#legend").inner_text()

    # Picking a pipe labels it, in each language.
    found = tab.evaluate(FIND_PIPE)
    assert found, "no pipe on screen to pick"
    x, y, diameter, depth, _, kind = found
    print(f"picking a {kind} at ({x:.0f}, {y:.0f}): DN{diameter:.0f}, {depth:.2f} m deep")
    box = tab.locator("#map canvas").bounding_box()
    # the label says what the picked feature's own row says
    size_en = [f"diameter {round(diameter)} mm"] if diameter > 0 else []
    size_zh = [f"DN{round(diameter)}"] if diameter > 0 else []
    for lang, expect, absent in (
        ("both", ["埋深", f"depth {depth:.1f} m", *size_en, *size_zh], []),
        ("en", [f"depth {depth:.1f} m", "laid ", *size_en], ["埋深"]),
        ("zh", [f"埋深 {depth:.1f} 米", "年敷设", *size_zh], ["depth"]),
    ):
        set_lang(tab, lang)
        tab.evaluate("window.cim.underground.clearLabel()")
        # From the button's press, in the page: the time the viewer takes, not the test's round trips.
        tab.evaluate("""() => window.cim.viewer.scene.canvas.addEventListener('pointerdown',
          () => { window.__pressed = performance.now(); }, { once: true, capture: true })""")
        tab.mouse.click(box["x"] + x, box["y"] + y)
        tab.wait_for_function("window.cim.underground.labelText !== ''", timeout=10_000)
        elapsed = float(tab.evaluate("window.cim.timings.labelAt - window.__pressed"))
        text = tab.evaluate("window.cim.underground.labelText")
        print(f"label ({lang}) in {elapsed:.0f} ms: {text!r}")
        assert elapsed <= 1500, elapsed
        for part in expect:
            assert part in text, (part, text)
        for part in absent:
            assert part not in text, (part, text)
        legend_text = tab.locator("#legend").inner_text()
        assert ("燃气" in legend_text) is (lang != "en") and ("gas" in legend_text) is (lang != "zh"), legend_text
    set_lang(tab, "both")
    tab.evaluate("window.cim.underground.clearLabel()")  # a click on the label itself would take it away
    tab.mouse.click(box["x"] + x, box["y"] + y)
    tab.wait_for_function("window.cim.underground.labelText !== ''", timeout=10_000)
    settle(tab, 0.5)
    tab.screenshot(path=str(shots / "underground-label.png"))

    switch_underground(tab, False)
    settle(tab)
    tab.screenshot(path=str(shots / "underground-left.png"))
    assert abs(camera_height(tab) - above) < 5, (camera_height(tab), above)
    assert tab.evaluate("window.cim.styler.ghost") is None
    assert tab.evaluate("window.cim.viewer.scene.globe.translucency.enabled") is False
    assert tab.evaluate("window.cim.underground.label") is None
    assert "under=1" not in tab.url
    watch.check()


def test_legend_follows_the_layer_switches(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, _ = page
    open_viewer(tab, server, START)
    wait_for_tiles(tab)
    settle(tab)
    tab.wait_for_function("document.querySelectorAll('#legend [data-ground]').length > 0", timeout=30_000)
    tab.locator("#legend").screenshot(path=str(shots / "legend.png"))
    groups = tab.evaluate("[...document.querySelectorAll('#legend [data-group]')].map((n) => n.dataset.group)")
    assert {"buildings", "underground", "points", "ground"} <= set(groups), groups
    assert tab.locator('#legend [data-kind="building"]').count() == 1
    assert tab.locator('#legend [data-ground="road"]').count() == 1
    t0 = time.monotonic()
    tab.locator('input[data-layer="underground"]').uncheck()
    tab.locator('input[data-ground="road"]').uncheck()
    tab.wait_for_function("!document.querySelector('#legend [data-network]')", timeout=5_000)
    print(f"legend updated in {(time.monotonic() - t0) * 1000:.0f} ms")
    assert tab.locator('#legend [data-ground="road"]').count() == 0
    assert tab.locator('#legend [data-kind="building"]').count() == 1
    for name in ("buildings", "bim", "points"):
        tab.locator(f'input[data-layer="{name}"]').uncheck()
    tab.wait_for_function("!document.querySelector('#legend [data-group=\"points\"]')", timeout=5_000)
    assert tab.locator("#legend [data-kind]").count() == 0
    tab.locator('input[data-layer="underground"]').check()
    tab.wait_for_function("document.querySelector('#legend [data-network]')", timeout=5_000)


def test_buried_tiles_expose_their_pipes_to_cesium(page: tuple[Any, Watch], server: str) -> None:
    """CesiumJS reads one property table per model: a tile holding pipes and nodes has one table for both, so the
    pipes are read with their own rows (with a table per kind they read the nodes')."""
    tab, _ = page
    open_viewer(tab, server, START)
    wait_for_tiles(tab)
    settle(tab)
    kinds = tab.evaluate("[...(window.cim.legend.kinds.get('underground') || [])]")
    print(f"kinds CesiumJS reads from the underground tiles: {kinds}")
    assert "pipe" in kinds
