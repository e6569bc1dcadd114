"""External tilesets in the viewer: beside the demo city, a tileset written by CesiumGS's 3d-tiles-tools (a red
sphere and a yellow column, placed near Lujiazui by the mount's transform) and a neighbour's buildings built by our
own ``cim build`` from another store, each listed as a layer by its title (zh-CN first), its tiles loaded and drawn,
switchable; a mount whose folder vanished shows its note with the server's reason.

The tiles folder is a copy of the session's city (mounting rewrites its root tileset: the other viewer tests keep
theirs), served by its own uvicorn. The screenshot is written to ``CIM_EXTERNAL_SHOT`` (default
``/tmp/tilesets-viewer.png``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cim.tiling.external import MountSpec, mount_tilesets, place_matrix
from tests.tiling.conftest import M_LAT, M_LON
from tests.tiling.external_tilesets import made_once
from tests.viewer.conftest import CESIUM, VIEWER, City, Watch, changed, serving, watched_page
from tests.viewer.test_viewer import MAP, open_viewer, pixels, settle, wait_for_tiles

#: The sphere and column stand here (lon, lat, height, heading°); the neighbour's towers south-east of them.
MESH_PLACE = (121.5008, 31.2255, 4.0, 30.0)
NEIGHBOUR_AT = (121.5080, 31.2230)
#: South of both, looking north over them to Lujiazui's towers.
CAMERA = "121.5030,31.2110,700,0,-25"
SHOT = Path(os.environ.get("CIM_EXTERNAL_SHOT", "/tmp/tilesets-viewer.png"))
#: Where the neighbour's towers stand in the screenshot (x, y, w, h), above the legend.
NEIGHBOUR_BOX = (900, 120, 300, 320)


@pytest.fixture(scope="module")
def mounted(city: City, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server over a copy of the city's tiles with three mounts ("mesh", "neighbour", and "gone", whose folder is
    deleted after mounting); its base URL."""
    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

    if not (CESIUM / "index.js").is_file():
        pytest.fail(f"CesiumJS is not installed in {CESIUM}: run `npm ci` in viewer/ (scripts/env.sh does)")
    base = tmp_path_factory.mktemp("viewer-external")
    tiles = base / "tiles"
    shutil.copytree(city.tiles.joinpath("city").resolve(), tiles / "city")
    made = made_once(tmp_path_factory, *NEIGHBOUR_AT)
    third, neighbour = made["third"], made["neighbour"]
    gone = Path(shutil.copytree(third, base / "gone"))
    specs = [
        MountSpec(
            "mesh", path=third, matrix=tuple(place_matrix(*MESH_PLACE)), title="Reality mesh", title_zh="实景模型"
        ),
        MountSpec("neighbour", path=neighbour, title="Neighbour's buildings", title_zh="邻区建筑"),
        MountSpec("gone", path=gone, matrix=tuple(place_matrix(121.49, 31.22, 0.0)), title="Gone", title_zh="已移走"),
    ]
    summary = mount_tilesets(tiles / "city", specs)
    assert summary.mounted == ["mesh", "neighbour", "gone"], summary
    shutil.rmtree(gone)
    settings = AppSettings(
        store=StoreSettings(store=city.store), server=ServerSettings(tiles_dir=tiles, viewer_dir=VIEWER), viewer=True
    )
    with serving(create_app(settings)) as base_url:
        yield base_url


#: Where a place (lon, lat, height) is drawn in the window: [x, y].
WINDOW_AT = """([lon, lat, height]) => {
  const { viewer, Cesium } = window.cim;
  const place = Cesium.Cartesian3.fromDegrees(lon, lat, height);
  const at = Cesium.SceneTransforms.worldToWindowCoordinates(viewer.scene, place);
  return [at.x, at.y];
}"""

TILES_OF = """(name) => {
  const tileset = window.cim.viewer.scene.primitives._primitives.find((p) => p.cimGroup === name);
  if (!tileset) return -1;
  let ready = 0;
  const walk = (tile) => {
    if (tile.contentReady && !tile.hasTilesetContent && !tile.hasEmptyContent) ready++;
    tile.children.forEach(walk);
  };
  walk(tileset.root);
  return ready;
}"""


def red_share(page: Any, png: bytes) -> float:
    """The share of the map's pixels in the sphere's (shaded) red."""
    import base64

    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return float(
        page.evaluate(
            """async ([url, [x, y, w, h]]) => {
              const img = new Image(); img.src = url; await img.decode();
              const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
              const g = c.getContext("2d"); g.drawImage(img, 0, 0);
              const d = g.getImageData(x, y, w, h).data;
              let hit = 0;
              for (let i = 0; i < d.length; i += 4) {
                if (d[i] > 150 && d[i] > 1.6 * d[i + 1] && d[i] > 1.6 * d[i + 2]) hit++;
              }
              return hit / (d.length / 4);
            }""",
            [url, list(MAP)],
        )
    )


def test_mounted_tilesets_are_listed_loaded_and_drawn_beside_the_city(browser: Any, mounted: str) -> None:
    watch = Watch()
    context, tab = watched_page(
        browser,
        watch,
        viewport={"width": 1280, "height": 800},
        init_script="try { localStorage.setItem('cim.lang', 'both') } catch {}",
    )
    try:
        open_viewer(tab, mounted, f"?cam={CAMERA}")
        wait_for_tiles(tab)
        # listed by title, Chinese first, beside the city's groups
        for name, zh, en in [("mesh", "实景模型", "Reality mesh"), ("neighbour", "邻区建筑", "Neighbour's buildings")]:
            label = tab.locator(f"#layer-ext-{name}")
            assert label.get_attribute("data-external") == "true"
            text = label.inner_text()
            assert zh in text and en in text and text.index(zh) < text.index(en), text
        assert tab.locator("#layer-buildings").count() == 1
        # their tiles load (content from /tiles/city/external/…) and are drawn
        tab.wait_for_function(f"({TILES_OF})('ext-mesh') >= 2", timeout=60_000)
        tab.wait_for_function(f"({TILES_OF})('ext-neighbour') >= 1", timeout=60_000)
        settle(tab, 2)
        png = tab.screenshot(path=str(SHOT))
        print(f"screenshot of the mounted tilesets beside the city: {SHOT}")
        share = red_share(tab, png)
        assert share > 0.002, share  # the red sphere is in view
        assert pixels(tab, png, MAP)["colours"] > 50  # not a blank map
        # switchable like the groups
        tab.locator('input[data-layer="ext-mesh"]').uncheck()
        settle(tab, 1)
        assert red_share(tab, tab.screenshot()) < share / 4
        tab.locator('input[data-layer="ext-mesh"]').check()
        settle(tab, 1)
        with_neighbour = tab.screenshot()
        tab.locator('input[data-layer="ext-neighbour"]').uncheck()
        settle(tab, 1)
        share_changed = changed(tab, with_neighbour, tab.screenshot(), NEIGHBOUR_BOX)
        print(f"switching the neighbour's buildings off changes {share_changed:.1%} of their part of the map")
        assert share_changed > 0.05, share_changed
        # a neighbour's tower picked: its tile properties and the tileset's title, no asset detail asked of this city
        tab.locator('input[data-layer="ext-neighbour"]').check()
        settle(tab, 1)
        assets: list[str] = []
        tab.on("request", lambda r: assets.append(r.url) if "/assets/" in r.url else None)
        at = tab.evaluate(WINDOW_AT, [NEIGHBOUR_AT[0] + 2 * 90 / M_LON, NEIGHBOUR_AT[1] + 3 * 90 / M_LAT, 150.0])
        tab.mouse.click(at[0], at[1])
        tab.wait_for_selector("#inspect-panel:not([hidden])", timeout=10_000)
        assert "Neighbour 11" in tab.locator("#inspect-title").inner_text()
        assert "邻区建筑 Neighbour's buildings" in tab.locator("#inspect-body").inner_text()
        assert not assets, assets
        # the vanished mount: its note, and the server's reason as the switch's tooltip
        gone = tab.locator("#layer-ext-gone")
        tab.wait_for_function("document.querySelector('#layer-ext-gone')?.title?.length > 0", timeout=30_000)
        assert "加载失败" in gone.inner_text() and "failed to load" in gone.inner_text()
        assert "its folder is no longer there" in (gone.get_attribute("title") or "")
        assert tab.locator('input[data-layer="ext-gone"]').is_disabled()
    finally:
        context.close()
    # the vanished mount's 404 is the only console error allowed
    watch.errors = [e for e in watch.errors if "404" not in e]
    watch.check()
