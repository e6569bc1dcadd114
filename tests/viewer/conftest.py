"""A real CIM server with the viewer over a small demo city, and Debian's Chromium driven by Playwright.

The city is the seeded demo generator's (:mod:`cim.synth`, 2,000 buildings at Shanghai's named places, and its
districts, streets and grid cells) ingested with meshes and built into 3D Tiles by
:func:`cim.tiling.build.build_tiles`, once per session, with the demo pipeline's responsible units and case rules
(``pipelines/shanghai-demo.toml``), so the server dispatches the cases the tests report. The server is uvicorn
running the real :func:`cim.api.create_app` with the viewer router, on a free port, in a thread of this process.
Every browser request is checked: one that leaves 127.0.0.1 is aborted and fails the test.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_service
from tests.tiling.checks import check_all
from tests.tiling.second_client import store_rows

ROOT = Path(__file__).resolve().parents[2]
VIEWER = ROOT / "viewer"
CESIUM = VIEWER / "node_modules" / "cesium" / "Build" / "Cesium"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    # WebGL in software: headless Chromium without a GPU has no WebGL otherwise.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
LOCAL = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:", "about:")
#: Console noise that is not the page's: SwiftShader's performance notes.
IGNORED_CONSOLE = ("GPU stall due to ReadPixels", "GL Driver Message")


@dataclass
class City:
    store: str
    tiles: Path


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    """The demo city in a DuckDB store with its tiles in ``tiles/city``, its areas and the demo's units."""
    from cim.pipeline.model import Pipeline, SynthSource, load_pipeline
    from cim.pipeline.run import run_pipeline
    from cim.store import open_store
    from cim.store.meshes import MeshStore, mesh_path_for
    from cim.tiling.build import build_tiles

    folder = tmp_path_factory.mktemp("viewer-city")
    store = str(folder / "city.duckdb")
    demo = load_pipeline(ROOT / "pipelines" / "shanghai-demo.toml")
    pipeline = Pipeline(
        name="viewer-test",
        store=store,
        synth=SynthSource(out=str(folder / "synth"), buildings=2000, seed=7, towers=0),
        units=demo.units,
        case_rules=demo.case_rules,
    )
    here = Path.cwd()
    os.chdir(ROOT)  # the generator names its layer mappings relative to the repository
    try:
        summary = run_pipeline(pipeline)
    finally:
        os.chdir(here)
    failed = [f"{s.path}: {s.error}" for s in summary.sources if not s.ok]
    assert not failed, failed
    with open_store(store) as opened, MeshStore(mesh_path_for(opened.url)) as meshes:
        build_tiles(opened, meshes, folder / "tiles" / "city", workers=1)
    check_all(folder / "tiles" / "city", store_rows(store))  # the schemas, gltf-validator, loaders.gl, the store
    return City(store=store, tiles=folder / "tiles")


WRITE_TOKEN = "viewer-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(city: City) -> Iterator[str]:
    """uvicorn serving ``create_app`` as ``cim serve`` does (viewer, live IoT with HTTP ingest); its base URL.
    Stopped after the session."""
    from cim.api import create_app
    from cim.settings import AppSettings, ServerSettings, StoreSettings

    if not (CESIUM / "index.js").is_file():
        pytest.fail(f"CesiumJS is not installed in {CESIUM}: run `npm ci` in viewer/ (scripts/env.sh does)")
    settings = AppSettings(
        store=StoreSettings(store=city.store),
        server=ServerSettings(tiles_dir=city.tiles, viewer_dir=VIEWER, write_token=WRITE_TOKEN),
        live=True,
        viewer=True,
    )
    with serving(create_app(settings)) as base:
        yield base


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port in a thread, as ``cim serve`` serves it (cached tiles answered by
    the protocol fast path); its base URL. Stopped when the block ends."""
    import uvicorn

    from cim.api.fastpath import tile_protocol

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=tile_protocol(app))
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the CIM server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium (never Playwright's own download) through Playwright. Closed when the viewer tests are
    done: Playwright's sync API keeps an event loop running in this thread while it is open, and anyio's async
    tests cannot start their own beside it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("the Python package playwright is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        missing_service("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watch:
    """What a page did that a test may not allow: requests off this machine, console errors, uncaught errors."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.outside, f"requests that leave 127.0.0.1: {self.outside[:10]}"
        assert not self.errors, f"console errors: {self.errors[:10]}"


def watched_page(browser: Any, watch: Watch, *, init_script: str | None = None, **context_args: Any) -> tuple[Any, Any]:
    """A new browser context (``context_args``: viewport, locale …) and its page, whose every request and
    WebSocket must stay on 127.0.0.1 (others are aborted and noted in ``watch``), console errors and uncaught
    exceptions noted too; the caller closes the context and runs ``watch.check()``."""
    context = browser.new_context(**context_args)

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(LOCAL):
            route.continue_()
        else:
            watch.outside.append(url)
            route.abort()

    context.route("**/*", guard)
    if init_script:
        context.add_init_script(init_script)
    opened = context.new_page()
    opened.on("websocket", lambda ws: None if ws.url.startswith(LOCAL) else watch.outside.append(ws.url))
    opened.on(
        "console",
        lambda m: (
            watch.errors.append(m.text) if m.type == "error" and not any(s in m.text for s in IGNORED_CONSOLE) else None
        ),
    )
    opened.on("pageerror", lambda e: watch.errors.append(f"uncaught: {e}"))
    return context, opened


@pytest.fixture
def page(browser: Any, server: str, tmp_path: Path) -> Iterator[tuple[Any, Watch]]:
    """A fresh page (1280×800) whose every request is checked; the checks run when the test ends."""
    watch = Watch()
    # Both languages, as the viewer showed before it followed the browser's (test_languages_viewer covers that);
    # a test's own choice (set_lang) is kept.
    context, opened = watched_page(
        browser,
        watch,
        viewport={"width": 1280, "height": 800},
        init_script="try { localStorage.getItem('cim.lang') || localStorage.setItem('cim.lang', 'both') } catch {}",
    )
    try:
        yield opened, watch
    finally:
        context.close()
    watch.check()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (printed, so a person can look at them)."""
    folder = Path(os.environ.get("CIM_VIEWER_SHOTS") or tmp_path_factory.mktemp("viewer-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"viewer screenshots in {folder}")
    return folder


def changed(page: Any, before: bytes, after: bytes, box: tuple[int, int, int, int]) -> float:
    """The share of a region's pixels that differ between two screenshots (by more than a little noise)."""
    urls = ["data:image/png;base64," + base64.b64encode(png).decode() for png in (before, after)]
    return float(
        page.evaluate(
            """async ([urls, [x, y, w, h]]) => {
              const data = [];
              for (const url of urls) {
                const img = new Image(); img.src = url; await img.decode();
                const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
                const g = c.getContext("2d"); g.drawImage(img, 0, 0);
                data.push(g.getImageData(x, y, w, h).data);
              }
              const [a, b] = data; let n = 0;
              for (let i = 0; i < a.length; i += 4) {
                if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 30) n++;
              }
              return n / (a.length / 4);
            }""",
            [urls, list(box)],
        )
    )
