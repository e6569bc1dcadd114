"""An app over a small real city on each store, in-process (TestClient) and live (``cim serve`` on a free port)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store
from tests.api.city import build_city


@pytest.fixture
def tiles_dir(tmp_path: Path) -> Path:
    """A tiles folder with a tileset, a glb, a secret beside the folder and a symlink pointing at it."""
    root = tmp_path / "tiles"
    (root / "city").mkdir(parents=True)
    tileset = {"asset": {"version": "1.1"}, "geometricError": 500, "root": {"content": {"uri": "0.glb"}}}
    (root / "city" / "tileset.json").write_text(json.dumps(tileset | {"padding": "x" * 4000}))
    (root / "city" / "0.glb").write_bytes(b"glTF" + bytes(range(256)) * 8)
    (tmp_path / "secret.txt").write_text("not for the web")
    (root / "city" / "escape.json").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
def city_url(store_url: str) -> str:
    with open_store(store_url) as store:
        build_city(store)
    return store_url


@pytest.fixture
def settings(city_url: str, tiles_dir: Path) -> AppSettings:
    return AppSettings(store=StoreSettings(store=city_url), server=ServerSettings(tiles_dir=tiles_dir))


@pytest.fixture
def client(settings: AppSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(city_url: str, tiles_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``cim serve`` in a subprocess on a free port: (base URL, its log file). Stopped after the test."""
    log = tmp_path / "server.log"
    with cim_serve(city_url, tiles_dir, log) as base:
        yield base, log


@contextmanager
def cim_serve(store_url: str, tiles_dir: Path, log: Path, *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``cim serve`` over the store and tiles folder, in a subprocess on a free port: its base URL. ``env`` adds
    settings (``CIM_WRITE_TOKEN`` …)."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cim",
                "serve",
                "--store",
                store_url,
                "--tiles",
                str(tiles_dir),
                "--port",
                str(port),
                "--access-log",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CIM_HOST": "127.0.0.1", **(env or {})},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"cim serve did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
