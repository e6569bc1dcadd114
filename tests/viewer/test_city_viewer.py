"""A city you recognise: from 2 km off Lujiazui the viewer shows the Huangpu (the store's water layer, drawn by the
ground layer) and the landmark towers generated as BIM at their real places, which can be picked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.viewer.conftest import Watch
from tests.viewer.test_viewer import MAP, api, open_viewer, settle, wait_for_tiles

#: South of Lujiazui, 2 km from the towers, looking north over them to the river and the Bund (so none of the
#: four hides another).
CAMERA = "121.5030,31.2130,1000,0,-22"
WATER_RGB = (0x1D, 0x4A, 0x6E)  # ground.js's water fill

#: The nearest tile feature drawn at a point's screen position (lines of the area layers may lie in front): its id.
PICK_AT = """([lon, lat, height]) => {
  const { viewer, Cesium } = window.cim;
  const scene = viewer.scene;
  const at = Cesium.SceneTransforms.worldToWindowCoordinates(scene, Cesium.Cartesian3.fromDegrees(lon, lat, height));
  if (!at) return null;
  const feature = scene.drillPick(at, 6).find((picked) => picked && picked.getProperty);
  return feature ? String(feature.getProperty("id")) : null;
}"""


def water_share(page: Any, png: bytes, box: tuple[int, int, int, int]) -> float:
    """The share of the region's pixels in (shaded) water colour."""
    import base64

    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return float(
        page.evaluate(
            """async ([url, [x, y, w, h], [wr, wg, wb]]) => {
              const img = new Image(); img.src = url; await img.decode();
              const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
              const g = c.getContext("2d"); g.drawImage(img, 0, 0);
              const d = g.getImageData(x, y, w, h).data;
              let hit = 0;
              for (let i = 0; i < d.length; i += 4) {
                if (Math.abs(d[i] - wr) < 24 && Math.abs(d[i + 1] - wg) < 24 && Math.abs(d[i + 2] - wb) < 30) hit++;
              }
              return hit / (d.length / 4);
            }""",
            [url, list(box), list(WATER_RGB)],
        )
    )


def building_of(server: str, asset_id: str) -> str | None:
    """The name of the building an asset is or belongs to, from its parent chain as /assets answers."""
    detail = api(server, f"/assets/{asset_id}")
    chain = [{"kind": detail["asset"]["properties"].get("kind"), "name": detail["asset"]["properties"].get("name")}]
    return next((a["name"] for a in [*chain, *detail["parents"]] if a["kind"] == "building"), None)


def test_lujiazui_shows_the_river_and_the_landmark_towers(page: tuple[Any, Watch], server: str, shots: Path) -> None:
    tab, watch = page
    waters = api(server, "/collections/water/items?limit=10")["features"]
    assert {f["properties"]["name"] for f in waters} >= {"黄浦江", "长江口", "东海"}
    open_viewer(tab, server, f"?cam={CAMERA}")
    wait_for_tiles(tab)
    assert tab.locator('input[data-ground="water"]').is_checked()
    settle(tab, 3)
    deadline = time.monotonic() + 60  # the ground layers are fetched and drawn after the first frame with tiles
    while (share := water_share(tab, png := tab.screenshot(), MAP)) < 0.02 and time.monotonic() < deadline:
        time.sleep(2)
    settle(tab, 2)
    png = tab.screenshot(path=str(shots / "city-lujiazui.png"))
    share = water_share(tab, png, MAP)
    print(f"water covers {share:.1%} of the map from 2 km off Lujiazui")
    assert share > 0.02, share
    tab.locator('input[data-ground="water"]').uncheck()
    settle(tab, 1)
    assert water_share(tab, tab.screenshot(), MAP) < share / 3  # the blue was the water layer
    tab.locator('input[data-ground="water"]').check()
    found = {}
    for name, (lon, lat) in {
        "上海中心大厦 Shanghai Tower": (121.5055, 31.2335),
        "金茂大厦 Jin Mao Tower": (121.5050, 31.2375),
        "上海环球金融中心 Shanghai World Financial Center": (121.5075, 31.2350),
        "东方明珠广播电视塔 Oriental Pearl Tower": (121.4997, 31.2397),
    }.items():
        picked = tab.evaluate(PICK_AT, [lon, lat, 93.0])  # the Pearl's lower sphere's height
        assert picked, f"nothing drawn where {name} stands"
        found[name] = building_of(server, picked)
    print(f"picked at the landmarks' places: {found}")
    assert all(found[name] == name for name in found), found
    watch.check()
