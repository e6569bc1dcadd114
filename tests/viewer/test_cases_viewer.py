"""Areas and cases in the viewer, in Chromium against the live server: the district boundaries with their Chinese
names, cases on the map and in the list, the case panel with its timeline and assets, the filters, the heat layer, a
case reported while the page is open arriving over the WebSocket, and the wall's case board and new-case ticker.

The cases are reported through the server's own API (``POST /cases`` with the write token, then steps through
``POST /cases/{id}/transitions``), so they are dispatched by the server's dispatch table as any hotline report."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.viewer.conftest import WRITE_TOKEN, Watch
from tests.viewer.test_viewer import MAP, WALL, api, open_viewer, pixels, settle, wait_for_tiles

OPEN = "reported,filed,dispatched,in_progress,handled,verified"
#: Shanghai from above: every district in view.
CITY_VIEW = "?cam=121.47,30.62,95000,0,-62"
#: The demo city's centre (the Bund and Lujiazui) from 6 km up: grid cells are drawn.
CENTRE_VIEW = "?cam=121.495,31.185,6000,0,-60"
CASES_READY = "window.cim.cases && window.cim.cases.available && document.querySelector('#case-list li.case')"


def post(server: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{server}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


#: (category, severity, steps after the machine's dispatch): a mix of states, one closed (hidden by default).
REPORTS = [
    ("lift_fault", "urgent", ["accept", "handle"]),
    ("manhole_cover", "normal", ["accept"]),
    ("street_light_out", "normal", []),
    ("overflowing_bin", "normal", ["accept", "handle", "verify", "close"]),
    ("waterlogging", "critical", ["accept"]),
    ("gas_leak", "critical", []),
    ("illegal_parking", "normal", []),
    ("pipe_burst", "urgent", ["accept", "handle", "verify"]),
]
NOTES = {"accept": "已到场 on site", "handle": "已修复 fixed", "verify": "现场核查通过 checked", "close": "结案"}


@pytest.fixture(scope="module")
def reported(server: str) -> list[dict[str, Any]]:
    """Cases at buildings of the demo city, reported as the hotline would and taken through some steps."""
    buildings = api(server, "/collections/building/items?limit=400&properties=name")["features"]
    chosen = buildings[:: max(1, len(buildings) // len(REPORTS))][: len(REPORTS)]
    cases = []
    for (category, severity, steps), building in zip(REPORTS, chosen, strict=True):
        case = post(
            server,
            "/cases",
            {
                "category": category,
                "severity": severity,
                "source": "hotline",
                "asset_id": building["id"],
                "title": f"{category} at {building['properties']['name']}",
            },
        )
        for step in steps:
            case = post(server, f"/cases/{case['id']}/transitions", {"action": step, "note": NOTES[step]})
        cases.append(case)
    return cases


def open_cases(server: str, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"state": OPEN, "limit": "2000", **params}.items())
    return list(api(server, f"/cases?{query}")["features"])


def test_the_boundaries_layer_shows_the_districts_by_name(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]], shots: Path
) -> None:
    tab, watch = page
    districts = api(server, "/collections/district/items?limit=100&properties=name,props")["features"]
    assert len(districts) == 16, "the demo holds Shanghai's 16 districts"
    open_viewer(tab, server, CITY_VIEW)
    tab.wait_for_function(
        f"window.cim.areas.layers.get('district')?.features.size === {len(districts)}"
        " && window.cim.areas.labels.length === 16",
        timeout=60_000,
    )
    for kind in ("district", "street", "grid_cell"):
        assert tab.locator(f'input[data-area="{kind}"]').is_checked(), kind
    labels = tab.evaluate("Array.from({length: 16}, (_, i) => window.cim.areas.labels.get(i).text)")
    assert any(label.startswith("黄浦区") for label in labels), labels
    assert any(label.startswith("浦东新区") for label in labels), labels
    assert tab.evaluate("window.cim.areas.layers.get('district').primitive.show") is True
    # Grid cells are not drawn (nor fetched) from this high; the switch says to zoom in.
    assert "zoom in" in tab.locator('label:has(input[data-area="grid_cell"])').inner_text()
    assert tab.evaluate("window.cim.areas.layers.get('grid_cell').features.size") == 0
    tab.wait_for_function(CASES_READY, timeout=30_000)
    wait_for_tiles(tab)
    settle(tab, 2)
    stats = pixels(tab, tab.screenshot(path=str(shots / "cases-boundaries-city.png")), MAP)
    assert stats["colours"] > 20, stats
    tab.locator('input[data-area="district"]').uncheck()
    assert tab.evaluate("window.cim.areas.layers.get('district').primitive.show") is False
    assert tab.evaluate("window.cim.areas.labels.show") is False
    watch.check()


def test_grid_cells_are_fetched_for_the_view_when_zoomed_in(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]], shots: Path
) -> None:
    tab, _ = page
    total = len(api(server, "/collections/grid_cell/items?limit=10000&properties=name")["features"])
    open_viewer(tab, server, CENTRE_VIEW)
    tab.wait_for_function("window.cim.areas.layers.get('grid_cell')?.features.size > 0", timeout=60_000)
    tab.wait_for_function("window.cim.areas.layers.get('grid_cell').primitive?.ready", timeout=60_000)
    loaded = tab.evaluate("window.cim.areas.layers.get('grid_cell').features.size")
    print(f"grid cells fetched for the view: {loaded} of {total}")
    assert loaded < total  # the cells in view, not the city's thousands
    wait_for_tiles(tab)
    settle(tab, 2)
    tab.screenshot(path=str(shots / "cases-grid-centre.png"))


def test_cases_appear_and_a_click_opens_the_panel_with_the_timeline(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]], shots: Path
) -> None:
    tab, watch = page
    expected = open_cases(server)
    assert len(expected) >= len(reported) - 1  # the closed one is not open
    open_viewer(tab, server, CENTRE_VIEW)
    tab.wait_for_function(CASES_READY, timeout=60_000)
    assert tab.locator("#case-list li.case").count() == min(len(expected), 200)
    assert tab.evaluate("window.cim.cases.markers.size") == sum(1 for f in expected if f["geometry"])
    closed = next(c for c in reported if c["properties"]["state"] == "closed")
    assert tab.locator(f'#case-list [data-case="{closed["id"]}"]').count() == 0
    # The lift fault was accepted and handled: its timeline has the report, the machine's file and dispatch, and
    # the two steps, each with its note.
    case = next(c for c in reported if c["properties"]["category"] == "lift_fault")
    detail = api(server, f"/cases/{case['id']}")
    # A click on its marker on the map (not the list): the marker's place on screen from Cesium.
    tab.locator(f'#case-list [data-case="{case["id"]}"]').click()  # flies there
    time.sleep(3)
    settle(tab, 1)
    tab.locator("#case-close").click()
    xy = tab.evaluate(
        """(id) => { const { Cesium, viewer, cases } = window.cim;
             const p = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene, cases.markers.get(id).position);
             return p && [p.x, p.y]; }""",
        case["id"],
    )
    assert xy, "the case's marker is on screen"
    tab.mouse.click(*xy)
    tab.wait_for_selector("#case-timeline li", timeout=20_000)
    title = tab.locator("#case-title").inner_text()
    assert detail["properties"]["category_zh"] in title and detail["properties"]["category_en"] in title
    steps = tab.locator("#case-timeline li")
    assert steps.count() == len(detail["timeline"])
    assert [steps.nth(i).get_attribute("data-action") for i in range(steps.count())] == [
        e["action"] for e in detail["timeline"]
    ]
    body = tab.locator("#case-body").inner_text()
    assert "已修复 fixed" in body and "处置 handled" in body
    assert detail["properties"]["unit_name"] in body
    assert tab.locator('#case-body [data-state="handled"]').count() == 1
    tab.screenshot(path=str(shots / "cases-panel.png"))
    # Its asset opens in the asset inspector beside it.
    asset = detail["assets"][0]
    tab.locator(f'#case-assets [data-asset="{asset["id"]}"]').click()
    tab.wait_for_selector("#inspect-panel:not([hidden])", timeout=10_000)
    tab.wait_for_function("!document.getElementById('inspect-loading')", timeout=20_000)
    assert asset["id"] in tab.locator("#inspect-body").inner_text()
    watch.check()


def test_filters_narrow_the_list_as_the_server_does(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]]
) -> None:
    tab, _ = page
    open_viewer(tab, server, CENTRE_VIEW)
    tab.wait_for_function(CASES_READY, timeout=60_000)
    shown = "document.querySelectorAll('#case-list li.case').length"
    everything = tab.evaluate(shown)
    tab.select_option("#case-category", "gas_leak")
    want = len(open_cases(server, category="gas_leak"))
    tab.wait_for_function(f"{shown} === {want}", timeout=20_000)
    assert want < everything
    assert "category=gas_leak" in tab.evaluate("window.cim.cases.lastQuery")
    tab.select_option("#case-category", "")
    unit = reported[0]["properties"]["unit_id"]
    tab.select_option("#case-unit", unit)
    tab.wait_for_function(f"{shown} === {len(open_cases(server, unit=unit))}", timeout=20_000)
    tab.select_option("#case-unit", "")
    # Only the handled ones; then closed as well shows the closed case.
    for state in ("reported", "filed", "dispatched", "in_progress", "verified"):
        tab.locator(f'#case-states input[data-state="{state}"]').uncheck()
    tab.wait_for_function(f"{shown} === {len(open_cases(server, state='handled'))}", timeout=20_000)
    tab.locator('#case-states input[data-state="closed"]').check()
    tab.wait_for_function(f"{shown} === {len(open_cases(server, state='handled,closed'))}", timeout=20_000)


def test_the_heat_layer_fills_the_grid_cells_with_open_cases(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]], shots: Path
) -> None:
    tab, _ = page
    heat = api(server, "/cases/heat?level=grid_cell")
    busy = {code for code, n in heat["counts"].items() if n}
    assert busy
    open_viewer(tab, server, CENTRE_VIEW + "&heat=grid_cell")
    tab.wait_for_selector("#heat-summary", timeout=60_000)
    tab.wait_for_function("window.cim.areas.heat.primitive?.ready", timeout=60_000)
    filled = set(tab.evaluate("window.cim.areas.heat.filled"))
    assert filled == busy
    total = sum(heat["counts"].values())
    assert f"{total} open cases" in tab.locator("#heat-summary").inner_text()
    assert tab.locator("#case-heat").is_checked()
    wait_for_tiles(tab)
    settle(tab, 2)
    tab.screenshot(path=str(shots / "cases-heat.png"))
    tab.select_option("#heat-level", "district")
    # the link follows once the district figures are drawn (the grid cells' primitive may still be up before)
    tab.wait_for_function("location.search.includes('heat=district')", timeout=30_000)
    assert tab.evaluate("window.cim.areas.heat.level") == "district"


def test_a_case_reported_while_the_page_is_open_arrives_live(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]]
) -> None:
    tab, _ = page
    open_viewer(tab, server, CENTRE_VIEW)
    tab.wait_for_function(CASES_READY, timeout=60_000)
    tab.wait_for_function("window.cim.live.socket && window.cim.live.socket.readyState === 1", timeout=30_000)
    tab.evaluate("window.cim.cases.timer && clearInterval(window.cim.cases.timer)")  # no periodic refresh: live only
    building = api(server, "/collections/building/items?limit=1&offset=7&properties=name")["features"][0]
    case = post(server, "/cases", {"category": "manhole_cover", "source": "inspector", "asset_id": building["id"]})
    tab.wait_for_function(f"window.cim.cases.markers.has({json.dumps(case['id'])})", timeout=20_000)
    tab.wait_for_selector(f'#case-list [data-case="{case["id"]}"]', timeout=20_000)
    post(server, f"/cases/{case['id']}/transitions", {"action": "accept", "note": "on my way"})
    tab.wait_for_function(
        f"window.cim.cases.features.get({json.dumps(case['id'])}).properties.state === 'in_progress'", timeout=20_000
    )


def test_the_wall_shows_the_on_time_rate_by_district_and_new_cases_in_the_ticker(
    page: tuple[Any, Watch], server: str, reported: list[dict[str, Any]], shots: Path
) -> None:
    tab, _ = page
    tab.set_viewport_size(WALL)
    open_viewer(tab, server, "?mode=wall")
    tab.wait_for_selector('#case-board [data-case-figure="on-time"]', timeout=60_000)
    assert tab.locator("#case-board").is_visible()
    rows = api(server, "/indicators/cases?level=district")["rows"]
    handled = sum(r["handled"] for r in rows)
    on_time = sum(r["handled_on_time"] for r in rows)
    want = f"{on_time / handled * 100:.1f}%" if handled else "—"
    assert tab.locator('[data-case-figure="on-time"] .value').inner_text() == want
    heat = api(server, "/cases/heat?level=district")
    open_total = sum(heat["counts"].values())
    assert tab.locator('[data-case-figure="open"] .value').inner_text() == f"{open_total:,}"
    busiest = max(heat["counts"], key=heat["counts"].get)
    assert tab.locator(f'#case-districts tr[data-district="{busiest}"]').count() == 1
    ticker = tab.locator("#ticker-text").inner_text()
    assert "NEW CASES" in ticker and "新案件" in ticker
    newest = api(server, "/cases?limit=1")["features"][0]["properties"]
    assert newest["category_zh"] in ticker
    wait_for_tiles(tab)
    time.sleep(3)
    tab.screenshot(path=str(shots / "cases-wall.png"))
