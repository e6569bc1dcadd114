"""``GET /history``: the days the model's history covers, which the viewer's time slider spans (issue 26)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from shapely.geometry import Point

from cim.api import create_app
from cim.model import Asset, AssetBatch, Kind
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import open_store


def test_history_names_the_first_and_latest_day_of_the_models_history(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        for year, ids in ((2022, ["a"]), (2024, ["a", "b"])):
            assets = [Asset(id=i, kind=Kind.POLE, geom=Point(121.5, 31.2), source="poles") for i in ids]  # type: ignore[arg-type]
            store.replace_source("poles", [AssetBatch.from_assets(assets)], at=datetime(year, 3, 4, 12, tzinfo=UTC))
    settings = AppSettings(store=StoreSettings(store=store_url), server=ServerSettings(tiles_dir=tmp_path))
    with TestClient(create_app(settings)) as client:
        body = client.get("/history").json()
        assert body == {"first": "2022-03-04", "latest": "2024-03-04", "today": f"{datetime.now(UTC):%Y-%m-%d}"}


def test_an_empty_model_has_no_history_span(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url):
        pass
    settings = AppSettings(store=StoreSettings(store=store_url), server=ServerSettings(tiles_dir=tmp_path))
    with TestClient(create_app(settings)) as client:
        body = client.get("/history").json()
        assert (body["first"], body["latest"]) == (None, None)
