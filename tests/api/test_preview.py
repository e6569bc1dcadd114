"""``/assets/{id}/preview.png`` and ``cim render``: off-screen pictures of a few LOD1 buildings, checked pixel-wise.

Rendering needs an off-screen OpenGL (Mesa's EGL here); where there is none the tests skip, and fail under CI=true.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from shapely.geometry import box, mapping

from cim.api import create_app
from cim.api.preview import PictureCache
from cim.errors import InvalidInput, NotFound
from cim.gis.mapping import LayerMapping
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.render import RenderUnavailable, open_meshes_for, render_asset
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import AssetQuery, open_store
from cim.store.meshes import MeshStore, mesh_path_for
from tests.conftest import missing_service

X, Y = 121.50, 31.23
BLOCKS = LayerMapping(kind=Kind.BUILDING, id=["bid"], fields={"height_m": "height", "name": "name"})
CENTRE = "blocks:b11"


@pytest.fixture
def blocks_store(tmp_path: Path) -> str:
    """A DuckDB store with a 3 × 3 grid of LOD1 buildings ingested with their meshes."""
    features = [
        {
            "type": "Feature",
            "properties": {"bid": f"b{i}{j}", "height": 12.0 + 6 * (i + j), "name": f"block {i}{j}"},
            "geometry": mapping(box(X + i * 0.0006, Y + j * 0.0006, X + i * 0.0006 + 0.0003, Y + j * 0.0006 + 0.0003)),
        }
        for i in range(3)
        for j in range(3)
    ]
    layer = tmp_path / "blocks.geojson"
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    url = str(tmp_path / "city.duckdb")
    with open_store(url) as store, MeshStore(mesh_path_for(store.url)) as meshes:
        assert write_source(store, layer, mapping=BLOCKS, meshes=meshes).meshes == 9
    return url


@pytest.fixture
def client(blocks_store: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = AppSettings(store=StoreSettings(store=blocks_store), server=ServerSettings(tiles_dir=tmp_path))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def can_render(blocks_store: str) -> None:
    """Skip (fail under CI=true) when this machine cannot render off-screen."""
    with open_store(blocks_store) as store:
        try:
            render_asset(store, None, CENTRE, width=64, height=64)
        except RenderUnavailable as exc:
            missing_service(f"no off-screen rendering: {exc}")


def pixels(png: bytes) -> npt.NDArray[np.int16]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def highlighted(rgb: npt.NDArray[np.int16]) -> int:
    """How many pixels are the highlight's orange (whatever the shading): red well above blue, green between."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 90) & (r - b > 60) & (g < r - 30) & (g > b)).sum())


@pytest.mark.usefixtures("can_render")
def test_a_preview_is_a_png_of_the_asked_size_with_the_asset_highlighted(client: TestClient) -> None:
    response = client.get(f"/assets/{CENTRE}/preview.png", params={"width": 320, "height": 200})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    rgb = pixels(response.content)
    assert rgb.shape == (200, 320, 3)
    assert rgb.std() > 20, "the picture is blank"
    assert highlighted(rgb) > 0.02 * 320 * 200, "the asset is not drawn in the highlight colour"
    greys = (np.abs(rgb[..., 0] - rgb[..., 2]) < 12) & (rgb[..., 0] < 190)
    assert greys.sum() > 0.02 * 320 * 200, "no neighbours drawn in grey"


@pytest.mark.usefixtures("can_render")
def test_the_highlight_follows_the_asset_asked_for(client: TestClient) -> None:
    centre = pixels(client.get(f"/assets/{CENTRE}/preview.png", params={"width": 128, "height": 96}).content)
    corner = pixels(client.get("/assets/blocks:b00/preview.png", params={"width": 128, "height": 96}).content)
    assert highlighted(centre) > 0 and highlighted(corner) > 0
    assert not np.array_equal(centre, corner)


@pytest.mark.usefixtures("can_render")
def test_a_second_request_is_the_same_picture_and_etag_allows_304(client: TestClient) -> None:
    url = f"/assets/{CENTRE}/preview.png?width=96&height=96"
    first, second = client.get(url), client.get(url)
    assert first.content == second.content
    etag = first.headers["etag"]
    assert etag == second.headers["etag"] and "96x96" in etag
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content


@pytest.mark.usefixtures("can_render")
def test_default_size_and_a_store_without_meshes_draw_from_the_geometry(blocks_store: str, client: TestClient) -> None:
    mesh_path_for(blocks_store).unlink()
    response = client.get(f"/assets/{CENTRE}/preview.png")
    assert response.status_code == 200, response.text
    rgb = pixels(response.content)
    assert rgb.shape == (480, 640, 3) and highlighted(rgb) > 0


def test_an_unknown_asset_is_404(client: TestClient) -> None:
    response = client.get("/assets/no-such-asset/preview.png")
    assert response.status_code == 404
    assert response.json()["what"] == "asset 'no-such-asset'"


@pytest.mark.parametrize(
    "params", [{"width": 10}, {"height": 5000}, {"width": "wide"}, {"width": -1}, {"height": 63}, {"width": 2049}]
)
def test_a_bad_size_is_400(client: TestClient, params: dict[str, object]) -> None:
    response = client.get(f"/assets/{CENTRE}/preview.png", params=params)
    assert response.status_code == 400
    assert "width" in response.text or "height" in response.text


def test_the_library_checks_size_and_asset(blocks_store: str) -> None:
    with open_store(blocks_store) as store:
        meshes = open_meshes_for(store.url)
        assert meshes is not None
        with meshes, pytest.raises(InvalidInput, match="between 64 and 2048"):
            render_asset(store, meshes, CENTRE, width=4096, height=100)
        with pytest.raises(NotFound):
            render_asset(store, None, "nope", width=100, height=100)


def test_the_picture_cache_is_bounded_in_bytes_and_items() -> None:
    cache = PictureCache(max_bytes=100, max_items=3)
    for n in range(5):
        cache.put((f"a{n}", 64, 64, "d"), b"x" * 30)
    assert len(cache) == 3 and cache.get(("a0", 64, 64, "d")) is None and cache.get(("a4", 64, 64, "d"))
    cache.put(("big", 64, 64, "d"), b"x" * 101)
    assert cache.get(("big", 64, 64, "d")) is None


@pytest.mark.usefixtures("can_render")
def test_cim_render_writes_a_png(blocks_store: str, tmp_path: Path) -> None:
    out = tmp_path / "b11.png"
    args = ["render", CENTRE, "--store", blocks_store, "--out", str(out), "--width", "200", "--height", "150"]
    result = subprocess.run([sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rgb = pixels(out.read_bytes())
    assert rgb.shape == (150, 200, 3) and highlighted(rgb) > 0


def test_cim_render_of_an_unknown_asset_is_one_error_line(blocks_store: str, tmp_path: Path) -> None:
    args = ["render", "nope", "--store", blocks_store, "--out", str(tmp_path / "x.png")]
    result = subprocess.run([sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == "error: asset 'nope' — is not in the store\n"
    assert not (tmp_path / "x.png").exists()


@pytest.mark.usefixtures("can_render")
def test_every_asset_of_a_mixed_city_is_a_picture_or_a_clear_404(city_url: str, tmp_path: Path) -> None:
    """Points, pipes, parks and buildings without meshes are drawn from their geometry; no geometry is a 404."""
    settings = AppSettings(store=StoreSettings(store=city_url), server=ServerSettings(tiles_dir=tmp_path))
    with open_store(city_url) as store:
        assets = store.find_assets(AssetQuery())
    with TestClient(create_app(settings)) as city:
        for asset in assets:
            response = city.get(f"/assets/{asset.id}/preview.png", params={"width": 64, "height": 64})
            if asset.geom is None:
                assert response.status_code == 404, asset.id
                assert "no mesh and no geometry" in response.json()["why"]
            else:
                assert response.status_code == 200, (asset.id, response.text)
                assert highlighted(pixels(response.content)) > 0, asset.id
