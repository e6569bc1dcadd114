"""zh-CN and English, chosen from the browser: Chromium started with a zh-CN locale opens the viewer in Chinese, with
en-US in English, and every label the side panel and each tool's panel show is in that language only (Chinese where
the English is hidden, and the other way round); named places answer the search by either name; the switch cycles
both → 中 → EN and is remembered over the browser's choice."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.viewer.conftest import VIEWER, WRITE_TOKEN, Watch, watched_page
from tests.viewer.test_measure_viewer import click_map
from tests.viewer.test_viewer import open_viewer, settle, wait_for_tiles

#: The browser's locale → the language the viewer opens in.
LOCALES = {"zh-CN": "zh", "en-US": "en"}

#: Every visible text node (and placeholder, title, aria-label of visible elements) under `roots`, with whether it sits
#: in a .zh or .en span. Data is skipped: names marked translate=no, ids in <code>, a result row's own name (the text
#: directly in a list item that stands for an asset), and the language switch (中/EN is its label in both).
VISIBLE_TEXTS = """(roots) => {
  const out = [];
  const skip = (node) => node.closest('[translate="no"], code, script, style, #lang-switch') ||
    node.matches('li[data-id]');
  const shown = (node) => node.closest('option') ? !!node.closest('select')?.checkVisibility()
    : node.checkVisibility({ checkOpacity: false, checkVisibilityCSS: true });
  for (const selector of roots) {
    for (const root of document.querySelectorAll(selector)) {
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const text = n.textContent.trim();
        const host = n.parentElement;
        if (!text || !host || skip(host) || !shown(host)) continue;
        out.push({ text, where: host.closest('[id]')?.id ?? host.tagName });
      }
      for (const node of [root, ...root.querySelectorAll('[placeholder], [title], [aria-label]')]) {
        if (!node.checkVisibility?.() || skip(node)) continue;
        for (const attr of ['placeholder', 'title', 'aria-label']) {
          const text = node.getAttribute(attr)?.trim();
          if (text) out.push({ text, where: `${node.id || node.tagName}@${attr}` });
        }
      }
    }
  }
  return out;
}"""

#: Where the labels are: the side panel with every tool's panel, the asset and case panels, the legend, the toasts.
ROOTS = ["#sidebar", "#inspect-panel", "#case-panel", "#legend", "#toasts", "#wall"]

#: Latin words that are no language's label: units, formats and names of things.
ALLOWED = {"m", "km", "mm", "y", "DN", "CIM", "BIM", "IFC", "GeoJSON", "CSV", "EN", "Esc", "W", "T", "U"}


def has_cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\u3000" <= c <= "\u303f" for c in text)


def english_words(text: str) -> list[str]:
    """The words of ``text`` that are English: all letters, two or more, not a unit or a name (ids, which hold
    digits, underscores or hyphens, are not words)."""
    tokens = text.replace("…", " ").replace("·", " ").split()
    words = [t.strip(".,:;()（）[]!?'\"/%+-×›→") for t in tokens]
    return [w for w in words if len(w) >= 2 and w.isascii() and w.isalpha() and w not in ALLOWED]


def wrong_language(tab: Any, lang: str, roots: list[str] = ROOTS) -> list[dict[str, str]]:
    """The visible texts not in ``lang``: English words without Chinese in 中 mode, Chinese in EN mode."""
    texts = tab.evaluate(VISIBLE_TEXTS, roots)
    if lang == "zh":
        return [t for t in texts if not has_cjk(t["text"]) and english_words(t["text"])]
    return [t for t in texts if has_cjk(t["text"])]


@pytest.fixture
def browser_in(browser: Any, server: str) -> Iterator[Any]:
    """A page factory: a fresh 1280×800 page whose browser speaks ``locale``; requests and console checked."""
    contexts: list[tuple[Any, Watch]] = []

    def make(locale: str) -> Any:
        watch = Watch()
        context, tab = watched_page(browser, watch, viewport={"width": 1280, "height": 800}, locale=locale)
        contexts.append((context, watch))
        return tab

    yield make
    for context, watch in contexts:
        context.close()
        watch.check()


def report_case(server: str) -> None:
    """One case at a building, as the hotline reports it, so the case list has a row to read."""
    with urllib.request.urlopen(f"{server}/collections/building/items?limit=1", timeout=30) as response:
        building = json.load(response)["features"][0]
    body = {"category": "lift_fault", "severity": "urgent", "source": "hotline", "asset_id": building["id"]}
    request = urllib.request.Request(
        f"{server}/cases",
        data=json.dumps({**body, "title": "电梯困人 lift stuck"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).close()


def search(tab: Any, text: str) -> str:
    """Type ``text`` into the search box; the visible text of the named place's row once it is listed."""
    box = tab.locator("#search-input")
    box.fill("")
    box.press_sequentially(text, delay=30)
    row = tab.locator("#search-results li[data-id='place:Lujiazui']")
    row.wait_for(timeout=10_000)
    return str(row.inner_text())


@pytest.mark.parametrize("locale", list(LOCALES))
def test_the_browser_language_is_chosen_and_every_tool_speaks_it(
    browser_in: Any, server: str, shots: Path, locale: str
) -> None:
    lang = LOCALES[locale]
    report_case(server)
    tab = browser_in(locale)
    open_viewer(tab, server, "?cam=121.5055,31.222,900,0,-40")
    wait_for_tiles(tab)
    assert tab.evaluate("document.body.className").split() == [f"lang-{lang}"]
    assert tab.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
    assert tab.locator("#lang-switch").inner_text() == {"zh": "中", "en": "EN"}[lang]
    tab.wait_for_function("window.cim.ready === true", timeout=60_000)
    problems: dict[str, list[dict[str, str]]] = {}

    def check(step: str, roots: list[str] = ROOTS) -> None:
        if found := wrong_language(tab, lang, roots):
            problems[step] = found

    check("opened")
    placeholder = tab.get_attribute("#search-input", "placeholder") or ""
    assert has_cjk(placeholder) == (lang == "zh") and bool(english_words(placeholder)) == (lang == "en"), placeholder

    # Search: the named place by its Chinese and by its English name, shown in the language.
    for typed in ("陆家嘴", "Lujiazui"):
        row = search(tab, typed)
        assert row.splitlines()[0].strip() == {"zh": "陆家嘴", "en": "Lujiazui"}[lang], row
        check(f"search {typed}")
    tab.screenshot(path=str(shots / f"lang-{lang}-search.png"))
    tab.locator("#search-input").press("Escape")
    time.sleep(0.5)  # past the debounce: a list still on its way stays hidden
    assert tab.locator("#search-results").is_hidden()

    # Measure: the hint, then a distance between two clicks.
    tab.click('button[data-measure="distance"]')
    check("measure hint")
    box = tab.locator("#map canvas").bounding_box()
    for x, y in ((box["width"] * 0.45, box["height"] * 0.6), (box["width"] * 0.7, box["height"] * 0.7)):
        click_map(tab, x, y)
    tab.wait_for_selector("#measure-total", timeout=10_000)
    assert ("总长" in tab.locator("#measure-total").inner_text()) == (lang == "zh")
    check("measure distance")
    settle(tab, 0.5)
    tab.screenshot(path=str(shots / f"lang-{lang}-measure.png"))
    tab.click("#measure-clear")

    # Section: picked, cut, read out.
    tab.click("#section-pick")
    check("section pick")
    click_map(tab, box["width"] * 0.6, box["height"] * 0.55)
    tab.wait_for_function("window.cim.section.on === true", timeout=10_000)
    check("section on")
    tab.click("#section-off")

    # Queries: old lifts listed, the other forms opened.
    tab.locator("#q-pipes summary").click()
    tab.locator("#q-near summary").click()
    tab.click("#old-lifts-form button[type=submit]")
    tab.wait_for_selector("#result-count", timeout=20_000)
    check("queries")
    tab.screenshot(path=str(shots / f"lang-{lang}-queries.png"))
    tab.keyboard.press("Escape")

    # Underground: the mode, its legend.
    tab.locator("#underground-switch").click()
    tab.wait_for_function("window.cim.underground.on === true", timeout=10_000)
    settle(tab, 1)
    check("underground")
    tab.screenshot(path=str(shots / f"lang-{lang}-underground.png"))
    tab.locator("#underground-switch").click()

    # Cases: the list, a case's panel, the asset inspector.
    tab.wait_for_selector("#case-list li.case", timeout=60_000)
    tab.locator("#case-list li.case").first.click()
    tab.wait_for_selector("#case-timeline li", timeout=20_000)
    check("cases")
    tab.screenshot(path=str(shots / f"lang-{lang}-cases.png"))
    tab.locator("#case-assets [data-asset]").first.click()
    tab.wait_for_function("!document.getElementById('inspect-loading')", timeout=20_000)
    check("inspector")
    tab.locator("#case-close").click()
    tab.locator("#inspect-close").click()

    # The wall: its vital signs and ticker.
    tab.keyboard.press("w")
    tab.wait_for_selector("#vital-list .vital", timeout=30_000)
    tab.keyboard.press("t")  # the guided tour: the place's name in the language
    tab.wait_for_selector("#tour-caption:not([hidden])", timeout=10_000)
    caption = tab.locator("#tour-caption").inner_text().strip()
    places = json.loads((VIEWER / "places.json").read_text(encoding="utf-8"))["places"]
    names = {p["name"]: p["name_zh"] for p in places}
    assert caption in (names.values() if lang == "zh" else names), caption
    check("wall", ["#wall"])
    tab.screenshot(path=str(shots / f"lang-{lang}-wall.png"))

    listed = [f"{step}: {t['where']}: {t['text']!r}" for step, found in problems.items() for t in found]
    assert not problems, "\n".join(listed)


def test_the_switch_cycles_and_is_remembered_over_the_browser_language(browser_in: Any, server: str) -> None:
    tab = browser_in("zh-CN")
    open_viewer(tab, server)
    assert tab.evaluate("document.body.className") == "lang-zh"
    tab.wait_for_function("window.cim.ready === true", timeout=60_000)
    tab.click("#old-lifts-form button[type=submit]")
    tab.wait_for_selector("#result-count", timeout=20_000)
    # Switched to English with the panels already drawn: nothing Chinese is left behind, and back.
    tab.click("#lang-switch")
    assert tab.evaluate("document.body.className") == "lang-en"
    assert not wrong_language(tab, "en")
    tab.click("#lang-switch")
    tab.click("#lang-switch")
    assert tab.evaluate("document.body.className") == "lang-zh"
    assert not wrong_language(tab, "zh")
    seen = []
    for _ in range(3):
        tab.click("#lang-switch")
        seen.append((tab.locator("#lang-switch").inner_text(), tab.evaluate("document.body.className")))
        placeholder = tab.get_attribute("#search-input", "placeholder") or ""
        assert has_cjk(placeholder) == (seen[-1][0] != "EN"), placeholder
    assert seen == [("EN", "lang-en"), ("中/EN", ""), ("中", "lang-zh")]
    tab.click("#lang-switch")  # EN, stored: a reload keeps it though the browser asks for Chinese
    open_viewer(tab, server)
    assert tab.evaluate("document.body.className") == "lang-en"
    assert tab.evaluate("document.title") == "City information model"


def test_a_browser_in_neither_language_gets_both(browser_in: Any, server: str) -> None:
    tab = browser_in("fr-FR")
    open_viewer(tab, server)
    assert tab.evaluate("document.body.className") == ""
    assert tab.locator("#lang-switch").inner_text() == "中/EN"
