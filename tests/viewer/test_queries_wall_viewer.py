"""Queries a person can read and a wall that fits (issue 25, items 5 and 6), in Debian's Chromium against a live
server: the old-lifts list is ordered by age (oldest first) with the ages and lift counts shown, and by distance from
the view's centre on request; its download links answer GeoJSON and CSV with as many lifts as the list holds; the
query forms offer only the kinds the store holds; at 1920×1080 and 3840×2160 every vital sign is on screen and clear
of the ticker, in type scaled with the screen; ten alerts leave at most three toasts, the most severe first, the rest
counted."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.viewer.conftest import Watch, watched_page
from tests.viewer.test_viewer import api, open_viewer, post_fault, settle, wait_for_tiles

LANGS = ("both", "zh", "en")


def fetch(server: str, path: str) -> bytes:
    with urllib.request.urlopen(f"{server}{path}", timeout=60) as response:
        return bytes(response.read())


def set_lang(tab: Any, lang: str) -> None:
    tab.add_init_script(f"try {{ localStorage.setItem('cim.lang', {json.dumps(lang)}); }} catch (e) {{}}")


def run_old_lifts(tab: Any, years: int) -> float:
    """Ask for lifts older than `years` in the panel; the milliseconds from the click to the listed rows."""
    tab.fill("#old-lifts-years", str(years))
    tab.evaluate(
        """() => { window.__asked = performance.now(); window.__listed = undefined;
          new MutationObserver((_, obs) => { if (document.querySelector('#result-list li[data-id]')) {
            window.__listed = performance.now(); obs.disconnect(); } })
            .observe(document.getElementById('query-result'), { childList: true, subtree: true }); }"""
    )
    tab.click("#old-lifts-form button")
    tab.wait_for_function("window.__listed !== undefined", timeout=20_000)
    return float(tab.evaluate("window.__listed - window.__asked"))


@pytest.mark.parametrize("lang", LANGS)
def test_old_lifts_are_listed_oldest_first_with_their_figures_and_downloads(
    page: tuple[Any, Watch], server: str, shots: Path, lang: str
) -> None:
    tab, _ = page
    expected = api(server, "/queries/old-lifts?years=20")
    buildings = expected["buildings"]
    lifts = sum(len(b["lifts"]) for b in buildings)
    set_lang(tab, lang)
    open_viewer(tab, server)
    wait_for_tiles(tab)
    settle(tab, 0.5)  # the answer is timed on a loaded city, not while the first tiles still arrive
    ms = run_old_lifts(tab, 20)
    print(f"old lifts ({lang}): listed {ms:.0f} ms after the click (≤ 1500)")
    assert ms <= 1500
    rows = tab.locator("#result-list li[data-id]")
    assert rows.count() == min(len(buildings), 300)
    ages = [
        float(a)
        for a in tab.evaluate("[...document.querySelectorAll('#result-list li[data-id]')].map(li => li.dataset.age)")
    ]
    oldest = sorted((max(lift["age_years"] for lift in b["lifts"]) for b in buildings), reverse=True)
    assert ages == oldest[: len(ages)], "oldest first"
    # Each row shows its age and lift count, in the chosen language(s); the count of buildings and lifts above.
    first = rows.first.inner_text()
    count = tab.locator("#result-count").inner_text()
    age = f"{ages[0]:,.1f}"
    n_first = len(next(b for b in buildings if b["id"] == rows.first.get_attribute("data-id"))["lifts"])
    if lang in ("both", "zh"):
        assert f"最老 {age} 年" in first and f"{n_first} 部电梯" in first, first
        assert f"{len(buildings):,} 栋建筑 · {lifts:,} 部电梯" in count, count
    if lang in ("both", "en"):
        assert f"oldest {age} y" in first and f"{n_first} lift" in first, first
        assert f"{len(buildings):,} buildings with {lifts:,} lifts" in count, count
    if lang == "zh":
        assert "oldest" not in first and "buildings" not in count
    if lang == "en":
        assert "最老" not in first and "栋" not in count
    # The downloads: the same question as GeoJSON (one feature per lift) and CSV, as many as listed.
    geo_href = tab.locator('#query-result a.download[data-format="geojson"]').get_attribute("href")
    csv_href = tab.locator('#query-result a.download[data-format="csv"]').get_attribute("href")
    assert geo_href and "f=geojson" in geo_href and csv_href and "f=csv" in csv_href
    features = json.loads(fetch(server, geo_href))["features"]
    in_buildings = [f for f in features if f["properties"]["group"] == "in_building"]
    assert len(in_buildings) == lifts
    assert len({f["properties"]["building_id"] for f in in_buildings}) == rows.count() == len(buildings)
    table = list(csv.DictReader(io.StringIO(fetch(server, csv_href).decode("utf-8-sig"))))
    assert len(table) == len(features)
    assert sum(1 for r in table if r.get("group") == "in_building") == lifts
    if lang == "both":
        tab.locator("#result-list").scroll_into_view_if_needed()
        tab.locator("#sidebar").screenshot(path=str(shots / "queries-old-lifts-list.png"))
        # By distance from the view's centre: the nearest first.
        oldest_first = rows.first.get_attribute("data-id")
        started = time.monotonic()
        tab.select_option("#result-order", "distance")
        by_distance = tab.evaluate(
            """() => { const c = window.cim.queries.viewCentre(); const k = Math.cos(c[1] * Math.PI / 180);
              const rows = window.cim.queries.shown.rows; const at = new Map(rows.map(r => [r.id, r]));
              return [...document.querySelectorAll('#result-list li[data-id]')].map(li => {
                const r = at.get(li.dataset.id); return Math.hypot((r.lon - c[0]) * k, r.lat - c[1]); }); }"""
        )
        print(f"re-ordered by distance in {1000 * (time.monotonic() - started):.0f} ms")
        assert by_distance == sorted(by_distance) and by_distance != [], by_distance[:5]
        assert (
            tab.evaluate("document.querySelector('#result-list li[data-id]').dataset.id") != oldest_first
            or len(buildings) == 1
        )


def test_the_query_forms_offer_only_the_kinds_the_store_holds(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    kinds = {c["id"] for c in api(server, "/collections")["collections"]}
    assert "hydrant" not in kinds, "the demo city has no hydrants"
    open_viewer(tab, server)
    options = "(id) => [...document.getElementById(id).options].map(o => o.value)"
    for select in ("near-kind", "near-near"):
        offered = tab.evaluate(options, select)
        assert "hydrant" not in offered, offered
        assert offered and set(offered) <= kinds, offered
    assert "building" in tab.evaluate(options, "near-kind") and "park" in tab.evaluate(options, "near-near")
    # A store that holds hydrants: offered again.
    tab.evaluate("(kinds) => window.cim.queries.setKinds(kinds.map(id => ({ id })))", sorted(kinds | {"hydrant"}))
    assert "hydrant" in tab.evaluate(options, "near-kind") and "hydrant" in tab.evaluate(options, "near-near")


@pytest.fixture
def sized(browser: Any, server: str) -> Iterator[Any]:
    """make(width, height): a page of that size, every request checked as in conftest's ``page``."""
    contexts: list[Any] = []
    watch = Watch()

    def make(width: int, height: int) -> Any:
        context, opened = watched_page(browser, watch, viewport={"width": width, "height": height})
        contexts.append(context)
        return opened

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    watch.check()


BOXES = """() => {
  const box = (n) => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const shown = (n) => n && !n.hidden && n.closest('[hidden]') === null && getComputedStyle(n).display !== 'none';
  const panels = ['vital-signs', 'district-panel', 'case-board', 'legend', 'sidebar', 'inspect-panel']
    .map(id => document.getElementById(id)).filter(shown);
  return {
    vitals: [...document.querySelectorAll('#vital-list .vital')].map(box),
    panels: panels.map(p => [p.id, box(p)]),
    ticker: box(document.getElementById('ticker')),
    font: parseFloat(getComputedStyle(document.body).fontSize),
    valueFont: parseFloat(getComputedStyle(document.querySelector('#vital-list .vital .value')).fontSize),
  };
}"""


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (3840, 2160)])
def test_the_wall_fits_the_screen(sized: Any, server: str, shots: Path, width: int, height: int) -> None:
    tab = sized(width, height)
    open_viewer(tab, server, "?mode=wall")
    tab.wait_for_selector("#vital-list .vital", timeout=30_000)
    tab.evaluate("window.cim.wall.stopTour()")
    time.sleep(1)
    got = tab.evaluate(BOXES)
    print(
        f"wall {width}×{height}: {len(got['vitals'])} vital signs, body font {got['font']}px, "
        f"values {got['valueFont']}px, ticker {got['ticker']}, panels {got['panels']}"
    )
    assert len(got["vitals"]) >= 3
    # Type scales with the screen: about 20 px at 1920 wide, 40 px at 3840.
    assert abs(got["font"] - width / 96) <= 1.5
    ticker_top = got["ticker"][1]
    for left, top, right, bottom in got["vitals"] + [b for _, b in got["panels"]]:
        assert left >= 0 and right <= width and top >= 0 and bottom <= height, (left, top, right, bottom)
        assert bottom <= ticker_top, f"{(left, top, right, bottom)} runs under the ticker at {ticker_top}"
    # No panel covers another: the legend and the side panel give the wall's panels their corners.
    panels = got["panels"]
    for i, (a, (al, at, ar, ab)) in enumerate(panels):
        for b, (bl, bt, br, bb) in panels[i + 1 :]:
            assert ar <= bl or br <= al or ab <= bt or bb <= at, f"{a} and {b} overlap"
    settle(tab, 1)
    tab.screenshot(path=str(shots / f"wall-{width}x{height}.png"))


TOASTS = """() => ({
  shown: [...document.querySelectorAll('#toasts .toast:not(.more)')].map(t => t.dataset.severity || ''),
  more: document.getElementById('toast-more')?.innerText ?? '',
})"""
RANK = {"critical": 0, "alarm": 0, "urgent": 1, "warning": 1, "": 1, "info": 2}


def test_ten_alerts_leave_three_toasts_the_most_severe_first(page: tuple[Any, Watch], server: str) -> None:
    tab, _ = page
    sensors = api(server, "/iot/sensors")
    lifts = [s for s in sensors if s.get("quantity") == "lift_status"][-10:]  # not the one test_viewer faults
    assert len(lifts) == 10
    open_viewer(tab, server)
    tab.wait_for_function("window.cim.live.socket && window.cim.live.socket.readyState === 1", timeout=30_000)
    time.sleep(0.5)
    for sensor in lifts:
        post_fault(server, sensor["id"])
    tab.wait_for_function("document.getElementById('toast-more') !== null", timeout=15_000)
    got = tab.evaluate(TOASTS)
    print(f"ten alerts posted: toasts {got}")
    assert 1 <= len(got["shown"]) <= 3
    assert "另有" in got["more"] and "more" in got["more"]
    # The order by severity, with a mix the server's rules need not give: critical first, the rest counted.
    tab.evaluate(
        """async () => { const { toast } = await import('/viewer/js/ui.js');
          for (const s of ['info', 'warning', 'info', 'critical', 'warning', 'info', 'critical', 'info', 'warning',
                           'info']) toast(`test ${s}`, { severity: s, seconds: 30 }); }"""
    )
    got = tab.evaluate(TOASTS)
    print(f"ten mixed toasts: {got}")
    assert len(got["shown"]) == 3
    assert got["shown"][:2] == ["critical", "critical"]
    assert [RANK[s] for s in got["shown"]] == sorted(RANK[s] for s in got["shown"])
    hidden = int(tab.evaluate("document.querySelectorAll('#toasts .toast').length"))  # only the three and the count
    assert hidden == 4
    total = int(got["more"].split("+")[1].split()[0])
    assert f"另有 {total} 条" in got["more"] and total >= 7
    for lang, present, absent in (("zh", "另有", "more"), ("en", "more", "另有")):
        tab.evaluate(
            f"document.body.classList.toggle('lang-zh', {json.dumps(lang == 'zh')});"
            f"document.body.classList.toggle('lang-en', {json.dumps(lang == 'en')})"
        )
        text = tab.evaluate("document.getElementById('toast-more').innerText")
        assert present in text and absent not in text, (lang, text)


def test_buried_pipes_are_styled_listed_with_their_figures_and_downloaded(
    page: tuple[Any, Watch], server: str, shots: Path
) -> None:
    tab, _ = page
    gas = api(server, "/collections/pipe/items?limit=50&filter=network%20%3D%20%27gas%27")["features"]
    lon, lat = gas[0]["geometry"]["coordinates"][0][:2]
    d = 0.004
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d]]
    expected = api(server, f"/queries/buried-pipes?network=gas&bbox={lon - d},{lat - d},{lon + d},{lat + d}")["pipes"]
    assert expected
    open_viewer(tab, server, f"?cam={lon:.6f},{lat - 0.006:.6f},900,0,-45")
    wait_for_tiles(tab)
    settle(tab, 0.5)
    started = time.monotonic()
    tab.evaluate("(ring) => window.cim.queries.run({ type: 'pipes', network: 'gas', ring })", ring)
    tab.wait_for_selector("#result-list li[data-id]", timeout=20_000)
    print(f"buried pipes listed in {1000 * (time.monotonic() - started):.0f} ms")
    rows = tab.locator("#result-list li[data-id]")
    assert rows.count() == min(len(expected), 300)
    count = tab.locator("#result-count").inner_text()
    assert f"{len(expected):,} 根燃气管线" in count and f"{len(expected):,} buried gas pipes" in count, count
    first = rows.first.inner_text()
    assert "燃气 · DN" in first and "年敷设" in first and "gas · " in first and " mm · laid " in first, first
    years = [li.split("laid ")[1][:4] for li in rows.all_inner_texts() if "laid " in li]
    assert years == sorted(years), "oldest first"
    # Highlighted by styling: the found colour, the underground tileset's REPLACE blend; the area one entity.
    assert tab.evaluate("window.cim.styler.foundColor.toCssHexString()") == "#ff2bd6"
    blend = "window.cim.queries.layers.tilesets().find(t => t.cimGroup === 'underground').colorBlendMode"
    assert tab.evaluate(blend) == 1  # Cesium3DTileColorBlendMode.REPLACE
    area = "window.cim.viewer.entities.getById('query-area')"
    assert tab.evaluate(f"Boolean({area}.polyline && {area}.label && window.cim.queries.areaFill)")
    # The download: POSTed with f=geojson, as many features as listed.
    with tab.expect_download() as download:
        tab.click('#query-result a.download[data-format="geojson"]')
    features = json.loads(Path(download.value.path()).read_text())["features"]
    assert len(features) == len(expected)
    with tab.expect_download() as download:
        tab.click('#query-result a.download[data-format="csv"]')
    table = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert len(table) == len(expected)
    # The glow itself is not asserted in pixels: at this view the loaded underground tiles hold the network's nodes,
    # not the pipes (see the report); the screenshot shows the list, the area and the dimmed rest.
    settle(tab)
    tab.screenshot(path=str(shots / "queries-gas-pipes.png"))
