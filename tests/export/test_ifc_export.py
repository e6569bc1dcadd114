"""The IFC export hands on the very files the BIM buildings came from: the store keeps each ingested IFC file byte for
byte beside its assets (schema step 9), replaces it with them and removes it with them; the export and the API
answer it whole, old or new but never a mix, and report buildings ingested before the store kept originals."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import ifcopenshell
import pytest
import shapely
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.errors import InvalidInput
from cim.export import writer
from cim.model import Asset, AssetBatch, Kind
from cim.pipeline.ingest import write_source
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import AssetQuery, Store, open_store
from cim.store.duckdb import DuckDBStore
from cim.store.migrations import MIGRATIONS
from cim.store.originals import OriginalFile, replace_original
from cim.store.postgis import PostGISStore
from cim.store.sqlstore import SqlStore
from tests.conftest import DATA
from tests.export.conftest import KillMidWrite

IFC = DATA / "ifc"
HAUS, OPEN_HOUSE = IFC / "AC20-FZK-Haus.ifc", IFC / "duplex.ifc"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def bim_store(store: Store) -> Store:
    for path in (HAUS, OPEN_HOUSE):
        write_source(store, path)
    return store


def test_the_exported_files_are_the_ingested_ones_byte_for_byte(bim_store: Store, tmp_path: Path) -> None:
    summary = writer("ifc")(bim_store, None, tmp_path / "out")
    assert sorted(Path(f).name for f in summary.files) == sorted([HAUS.name, OPEN_HOUSE.name])
    assert summary.objects == {"building": 2} and summary.skipped == []
    for written in map(Path, summary.files):
        assert written.parent == tmp_path / "out"
        assert sha256(written) == sha256(IFC / written.name)
    model = ifcopenshell.open(str(tmp_path / "out" / HAUS.name))
    assert model.schema == "IFC4" and len(model.by_type("IfcBuilding")) == 1 and len(model.by_type("IfcWall")) == 13


def test_a_bbox_selects_the_originals_and_buildings_not_from_ifc_are_reported(bim_store: Store, tmp_path: Path) -> None:
    haus = bim_store.find_assets(AssetQuery(kinds=(Kind.BUILDING,), where={"source": f"{HAUS.name}:ifc"}))[0]
    lon, lat = haus.geom.centroid.x, haus.geom.centroid.y
    gis = Asset(id="gis:1", kind=Kind.BUILDING, geom=shapely.box(lon, lat, lon + 0.001, lat + 0.001), source="b.gpkg")
    bim_store.upsert_assets(AssetBatch.from_assets([gis]))
    summary = writer("ifc")(bim_store, None, tmp_path / "out", bbox=(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01))
    assert [Path(f).name for f in summary.files] == [HAUS.name]
    assert [(s["rule"], s["count"], s["examples"]) for s in summary.skipped] == [("not_from_ifc", 1, ["gis:1"])]


def test_a_reingest_replaces_the_original_and_removing_the_source_removes_it(store: Store, tmp_path: Path) -> None:
    copy = tmp_path / "house.ifc"
    copy.write_bytes(HAUS.read_bytes())
    write_source(store, copy)
    first = store.originals(["house.ifc:ifc"])["house.ifc:ifc"]
    copy.write_bytes(HAUS.read_bytes() + b"/* edited */\n")
    write_source(store, copy)
    second = store.originals(["house.ifc:ifc"])["house.ifc:ifc"]
    assert (second.sha256, second.size) == (sha256(copy), first.size + 13) and second.file_id != first.file_id
    store.delete_assets(source="house.ifc:ifc")
    assert store.originals(["house.ifc:ifc"]) == {}
    assert _chunk_rows(store) == 0


def test_a_reingest_that_fails_keeps_the_old_assets_and_the_old_original(store: Store, tmp_path: Path) -> None:
    write_source(store, HAUS)
    source = f"{HAUS.name}:ifc"
    before = store.originals([source])[source]
    count = store.count_assets(AssetQuery(where={"source": source}))

    new_site = AssetBatch.from_assets([Asset(id="x", kind=Kind.SITE, geom=shapely.Point(8.4, 49.1), source=source)])
    # the new assets are written, then the original cannot be read: the transaction goes back whole
    with pytest.raises(InvalidInput, match="cannot be kept as the original"):
        store.replace_source(source, [new_site], original=OriginalFile(tmp_path / "gone.ifc", HAUS.name))
    assert store.originals([source])[source] == before
    assert store.count_assets(AssetQuery(where={"source": source})) == count


def test_a_building_ingested_before_the_store_kept_originals_is_reported(store_url: str, tmp_path: Path) -> None:
    old_release = MIGRATIONS[:8]
    opened: SqlStore = (
        PostGISStore(store_url, migrations=old_release)
        if store_url.startswith("postgresql")
        else DuckDBStore(store_url, migrations=old_release)
    )
    with opened as old:
        assert old.schema_database().version() == 8
        building = Asset(
            id="2O2Fr$t4X7Zf8NOew3FLOH", kind=Kind.BUILDING, geom=shapely.Point(8.4, 49.1), source="old.ifc:ifc"
        )
        old.upsert_assets(AssetBatch.from_assets([building]))
    with open_store(store_url) as upgraded:
        summary = writer("ifc")(upgraded, None, tmp_path / "out")
    assert summary.files == [] and summary.objects == {}
    [skipped] = summary.skipped
    assert (skipped["rule"], skipped["count"], skipped["examples"]) == ("no_original", 1, ["2O2Fr$t4X7Zf8NOew3FLOH"])
    assert "ingest it again" in str(skipped["why"])


def test_reading_while_a_reingest_replaces_the_file_gives_the_old_or_the_new_never_a_mix(
    store: Store, tmp_path: Path
) -> None:
    assert isinstance(store, SqlStore)
    files = {}
    for name, body in (("a", HAUS.read_bytes()), ("b", OPEN_HOUSE.read_bytes()[:2_000_000])):
        files[name] = tmp_path / f"{name}.ifc"
        files[name].write_bytes(body)
    wanted = {sha256(p) for p in files.values()}
    source = "house.ifc:ifc"

    def replace(name: str) -> None:
        with store.change("replacing the original"):  # small chunks: a read spans many statements
            replace_original(store, source, OriginalFile(files[name], "house.ifc"), chunk_bytes=64 * 1024)

    replace("a")
    stop = threading.Event()

    def reingest() -> None:
        while not stop.is_set():
            for name in ("b", "a"):
                replace(name)
                stop.wait(0.1)  # a re-ingest every few reads: some are cut across, most finish

    thread = threading.Thread(target=reingest)
    thread.start()
    try:
        for _ in range(15):
            buffer = io.BytesIO()
            kept = store.copy_original(source, buffer)
            assert kept is not None and hashlib.sha256(buffer.getvalue()).hexdigest() in wanted
            assert hashlib.sha256(buffer.getvalue()).hexdigest() == kept.sha256
    finally:
        stop.set()
        thread.join()


def test_an_export_killed_mid_write_leaves_nothing_at_out(tmp_path: Path, kill_mid_write: KillMidWrite) -> None:
    url = str(tmp_path / "city.duckdb")
    with open_store(url) as store:
        for path in (HAUS, OPEN_HOUSE):
            write_source(store, path)
    kill_mid_write(url, "ifc", tmp_path / "out")


def test_out_must_not_be_a_file(store: Store, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("")
    with pytest.raises(InvalidInput, match="is a file"):
        writer("ifc")(store, None, tmp_path / "out")


def test_the_api_answers_the_original_of_a_bim_feature_and_404_for_others(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        write_source(store, HAUS)
        gis = Asset(id="gis:1", kind=Kind.BUILDING, geom=shapely.box(8.0, 49.0, 8.001, 49.001), source="blocks.gpkg")
        store.upsert_assets(AssetBatch.from_assets([gis]))
        haus = store.find_assets(AssetQuery(kinds=(Kind.BUILDING,), where={"source": f"{HAUS.name}:ifc"}))[0]
        wall = store.find_assets(AssetQuery(kinds=(Kind.ELEMENT,), where={"source": f"{HAUS.name}:ifc"}, limit=1))[0]
    settings = AppSettings(store=StoreSettings(store=store_url), server=ServerSettings(tiles_dir=tmp_path / "tiles"))
    with TestClient(create_app(settings)) as client:
        for kind, feature in (("building", haus.id), ("element", wall.id)):
            answer = client.get(f"/collections/{kind}/items/{feature}/ifc")
            assert answer.status_code == 200, answer.text
            assert hashlib.sha256(answer.content).hexdigest() == sha256(HAUS)
            assert answer.headers["content-type"] == "application/x-step"
            assert 'attachment; filename="AC20-FZK-Haus.ifc"' in answer.headers["content-disposition"]
        not_bim = client.get("/collections/building/items/gis:1/ifc")
        assert not_bim.status_code == 404 and "came from no IFC file" in not_bim.json()["why"]
        missing = client.get("/collections/building/items/nope/ifc")
        assert missing.status_code == 404
        document = client.get("/api").json()
        assert "/collections/{collectionId}/items/{feature_id}/ifc" in document["paths"]


def _chunk_rows(store: Store) -> int:
    assert isinstance(store, SqlStore)
    return int(store.select_rows("SELECT count(*) AS n FROM source_file_chunks")[0]["n"])
