"""OGC API – Features – Part 4 (create, replace, update, delete), from the standard's requirements
(opengeospatial/ogcapi-features, extensions/transactions/create-replace-update-delete), on both stores:

- /req/create-replace-delete/insert-response: 201 with ``Location`` of the new item; post-response-rid: the server
  assigns a new, unique id;
- put-rid: an id in a PUT body is ignored; put-rid-exception: PUT of an item that does not exist is a 404;
- delete-response: 200 or 204; /req/update: PATCH with ``application/merge-patch+json`` (RFC 7396: ``null``
  unsets), the id cannot change; /req/update/patch-content-type B: no Content-Type is a 400;
- options-response / options-accept-post: OPTIONS answers 200 with ``Allow`` (and ``Accept-Post``).

Writes need the write token; a bad body is a 400 naming its member and writes nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from cim.api import create_app
from cim.api.ogc_edit import JOB_HEADER
from cim.model import AssetBatch
from cim.settings import AppSettings, ServerSettings, StoreSettings
from cim.store import AssetQuery, open_store
from tests.api.conftest import cim_serve
from tests.tiling.checks import check_all
from tests.tiling.second_client import store_rows

TOKEN = "edit-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATCH = {**AUTH, "Content-Type": "application/merge-patch+json"}
X, Y = 121.52, 31.25
ITEMS = "/collections/building/items"


def square(x: float = X, y: float = Y, size: float = 0.0004) -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def building(**properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": square(), "properties": {"name": "Annex", "height_m": 20, **properties}}


def app_settings(url: str, tiles: Path, token: str | None = TOKEN) -> AppSettings:
    return AppSettings(store=StoreSettings(store=url), server=ServerSettings(tiles_dir=tiles, write_token=token))


@pytest.fixture
def editor(city_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(city_url, tmp_path / "tiles"))) as client:
        yield client


def snapshot(client: TestClient) -> list[dict[str, Any]]:
    """Every building and pipe as the API sends them: what a refused write must leave as it was."""
    found = []
    for kind in ("building", "pipe"):
        found += client.get(f"/collections/{kind}/items", params={"limit": 1000}).json()["features"]
    return found


# --- create ---


def test_a_created_feature_gets_a_new_id_and_reads_back_at_its_location(editor: TestClient) -> None:
    answer = editor.post(ITEMS, json=building(floors=3), headers=AUTH)
    assert answer.status_code == 201
    location = answer.headers["Location"]
    new_id = location.rsplit("/items/", 1)[1]
    assert new_id.startswith("building-") and new_id != answer.json()["id"] + "x"
    stored = editor.get(location).json()
    assert stored["id"] == new_id
    assert stored["properties"]["name"] == "Annex" and stored["properties"]["height_m"] == 20
    assert stored["properties"]["source"] == "api"
    assert stored["geometry"] == square()
    assert editor.post(ITEMS, json=building(), headers=AUTH).headers["Location"] != location  # unique


def test_a_feature_sent_with_a_free_id_keeps_it_and_a_taken_id_is_a_409(editor: TestClient) -> None:
    assert editor.post(ITEMS, json={**building(), "id": "annex-7"}, headers=AUTH).status_code == 201
    assert editor.get(f"{ITEMS}/annex-7").status_code == 200
    again = editor.post(ITEMS, json={**building(name="other"), "id": "annex-7"}, headers=AUTH)
    assert again.status_code == 409 and editor.get(f"{ITEMS}/annex-7").json()["properties"]["name"] == "Annex"
    pipe = {"type": "Feature", "id": "b1", "geometry": {"type": "LineString", "coordinates": [[X, Y], [X, Y + 1e-3]]}}
    assert editor.post("/collections/pipe/items", json=pipe, headers=AUTH).status_code == 409  # ids are the store's


def test_property_set_values_go_in_flattened_prefixed_or_as_a_props_object(editor: TestClient) -> None:
    body = building(**{"Pset_Owner.Name": "city", "props.name": "alias", "props": {"floors": 4}})
    location = editor.post(ITEMS, json=body, headers=AUTH).headers["Location"]
    with_props = editor.get(location).json()["properties"]
    props = with_props.get("props", with_props)  # one props object, or flattened (issue 23's contract 1)
    assert props["Pset_Owner.Name"] == "city" and props["floors"] == 4
    assert with_props["name"] == "Annex" and (props.get("props.name", props.get("name")) == "alias")


# --- replace, update, delete ---


def test_put_replaces_the_whole_feature_and_ignores_an_id_in_the_body(editor: TestClient) -> None:
    answer = editor.put(f"{ITEMS}/b1", json={**building(status="demolished"), "id": "elsewhere"}, headers=AUTH)
    assert answer.status_code == 200
    stored = editor.get(f"{ITEMS}/b1").json()
    assert stored["properties"]["status"] == "demolished" and stored["properties"]["storeys"] is None
    assert "Pset_Owner.Name" not in str(stored["properties"])  # replaced, not merged
    assert stored["geometry"] == square()
    assert editor.get(f"{ITEMS}/elsewhere").status_code == 404


def test_put_of_a_feature_that_is_not_there_is_a_404_and_creates_nothing(editor: TestClient) -> None:
    assert editor.put(f"{ITEMS}/nowhere", json=building(), headers=AUTH).status_code == 404
    assert editor.get(f"{ITEMS}/nowhere").status_code == 404
    pipe = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[X, Y], [X, Y + 1e-3]]}}
    assert editor.put("/collections/pipe/items/b1", json=pipe, headers=AUTH).status_code == 404  # another kind's


def test_a_feature_read_and_sent_back_as_it_is_is_accepted_unchanged(editor: TestClient) -> None:
    before = editor.get(f"{ITEMS}/b2").json()
    assert editor.put(f"{ITEMS}/b2", json=before, headers=AUTH).status_code == 200
    after = editor.get(f"{ITEMS}/b2").json()
    before["properties"].pop("source"), after["properties"].pop("source")
    assert after == before


def test_patch_merges_the_properties_it_names_and_null_unsets(editor: TestClient) -> None:
    patch = {"properties": {"status": "closed", "floors": None, "colour": "red", "install_date": None}}
    answer = editor.patch(f"{ITEMS}/b1", json=patch, headers=PATCH)
    assert answer.status_code == 200
    stored = editor.get(f"{ITEMS}/b1").json()
    assert stored == {**answer.json(), "links": stored["links"]}
    properties = stored["properties"]
    text = str(properties)
    assert properties["status"] == "closed" and properties["install_date"] is None and properties["name"] == "Tower 1"
    assert "'floors'" not in text and "'colour': 'red'" in text and "owner 1" in text
    assert properties["source"] is None  # a patch keeps the asset's source


def test_patch_of_the_geometry_alone_keeps_the_properties(editor: TestClient) -> None:
    before = editor.get(f"{ITEMS}/b3").json()
    assert editor.patch(f"{ITEMS}/b3", json={"geometry": square(X, Y)}, headers=PATCH).status_code == 200
    after = editor.get(f"{ITEMS}/b3").json()
    assert after["geometry"] == square(X, Y) and after["properties"] == before["properties"]


def test_patch_of_height_moves_the_top_of_the_block(editor: TestClient) -> None:
    before = editor.get(f"{ITEMS}/b2").json()["properties"]
    after = editor.patch(f"{ITEMS}/b2", json={"properties": {"height_m": 99}}, headers=PATCH).json()["properties"]
    assert after["z_min"] == before["z_min"] and after["z_max"] == before["z_min"] + 99


def test_delete_removes_the_feature_and_a_second_delete_is_a_404(editor: TestClient) -> None:
    answer = editor.delete(f"{ITEMS}/b3", headers=AUTH)
    assert answer.status_code == 204 and not answer.content
    assert editor.get(f"{ITEMS}/b3").status_code == 404
    assert editor.delete(f"{ITEMS}/b3", headers=AUTH).status_code == 404
    assert editor.delete("/collections/pipe/items/b2", headers=AUTH).status_code == 404
    assert editor.get(f"{ITEMS}/b2").status_code == 200


def test_an_edit_reaches_the_area_tables_and_every_read_at_once(editor: TestClient) -> None:
    district = {"type": "Feature", "id": "area:D9", "geometry": square(X, Y, 0.01), "properties": {"code": "D9"}}
    assert editor.post("/collections/district/items", json=district, headers=AUTH).status_code == 201
    hydrant = {"type": "Feature", "id": "h-9", "geometry": {"type": "Point", "coordinates": [X + 0.005, Y + 0.005]}}
    assert editor.post("/collections/hydrant/items", json=hydrant, headers=AUTH).status_code == 201
    assert editor.get("/assets/h-9").json()["areas"]["district"] == "D9"
    away = {"geometry": {"type": "Point", "coordinates": [X - 0.1, Y]}}
    assert editor.patch("/collections/hydrant/items/h-9", json=away, headers=PATCH).status_code == 200
    assert editor.get("/assets/h-9").json()["areas"] is None
    editor.patch(f"{ITEMS}/b1", json={"properties": {"name": "Renamed"}}, headers=PATCH)
    found = editor.get(ITEMS, params={"filter": "name = 'Renamed'"}).json()["features"]
    assert [f["id"] for f in found] == ["b1"]


# --- OPTIONS and conformance ---


def test_options_lists_the_write_methods_to_a_request_with_the_token(editor: TestClient) -> None:
    items = editor.options(ITEMS, headers=AUTH)
    assert items.status_code == 200 and "POST" in items.headers["Allow"].split(", ")
    assert "application/geo+json" in items.headers["Accept-Post"]
    item = editor.options(f"{ITEMS}/b1", headers=AUTH)
    assert {"PUT", "PATCH", "DELETE"} <= set(item.headers["Allow"].split(", "))
    assert "application/merge-patch+json" in item.headers["Accept-Patch"]
    assert "POST" not in editor.options(ITEMS).headers["Allow"]  # no token: read only, as a client sees it
    assert editor.options("/collections/nothing/items").status_code == 404


def test_the_part_4_conformance_classes_are_declared(editor: TestClient) -> None:
    declared = editor.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete" in declared
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update" in declared


def test_an_edit_session_as_qgis_sends_it_goes_through(editor: TestClient) -> None:
    """QGIS's OAPIF provider (qgsoapifprovider.cpp, 3.32 on; 3.22's cannot edit): OPTIONS on /items and on an
    item to find what it may do, POST without ``id`` and with every field of the layer (nulls included), the id
    read from ``Location`` after ``/items/``, then PATCH (merge patch of properties, or of the geometry alone), PUT
    of the whole feature when PATCH is not offered, DELETE."""
    assert "POST" in editor.options(ITEMS, headers=AUTH).headers["Allow"]
    assert "PATCH" in editor.options(f"{ITEMS}/b1", headers=AUTH).headers["Allow"]
    fields = editor.get(f"{ITEMS}/b1").json()["properties"]
    sent = {name: None for name in fields} | {"kind": "building", "name": "Drawn", "install_date": "2021-06-01"}
    body = {"type": "Feature", "geometry": square(), "properties": sent}
    created = editor.post(ITEMS, content=json.dumps(body), headers={**AUTH, "Content-Type": "application/geo+json"})
    assert created.status_code == 201
    new_id = created.headers["Location"][created.headers["Location"].rfind("/items/") + len("/items/") :]
    item = f"{ITEMS}/{new_id}"
    assert editor.get(item).json()["properties"]["install_date"] == "2021-06-01"
    patch = {**AUTH, "Content-Type": "application/merge-patch+json"}
    assert editor.patch(item, content=json.dumps({"properties": {"name": "Drawn 2"}}), headers=patch).status_code == 200
    moved = {"geometry": square(X + 0.001, Y)}
    assert editor.patch(item, content=json.dumps(moved), headers=patch).status_code == 200
    whole = editor.get(item).json()
    whole["properties"]["status"] = "planned"
    assert editor.put(item, json=whole, headers=AUTH).status_code == 200
    stored = editor.get(item).json()
    assert (stored["properties"]["name"], stored["properties"]["status"]) == ("Drawn 2", "planned")
    assert stored["geometry"] == square(X + 0.001, Y)
    assert editor.delete(item, headers=AUTH).status_code == 204


# --- refused writes ---


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", ITEMS, building()),
        ("PUT", f"{ITEMS}/b1", building()),
        ("PATCH", f"{ITEMS}/b1", {"properties": {"name": "x"}}),
        ("DELETE", f"{ITEMS}/b1", None),
    ],
)
def test_a_write_without_the_token_is_refused_and_writes_nothing(
    editor: TestClient, city_url: str, tmp_path: Path, method: str, path: str, body: Any
) -> None:
    before = snapshot(editor)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        answer = editor.request(method, path, json=body, headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    with TestClient(create_app(app_settings(city_url, tmp_path / "t2", token=None))) as no_writes:
        assert no_writes.request(method, path, json=body, headers=AUTH).status_code == 403
    assert snapshot(editor) == before


BOWTIE = {"type": "Polygon", "coordinates": [[[X, Y], [X + 1e-3, Y + 1e-3], [X + 1e-3, Y], [X, Y + 1e-3], [X, Y]]]}


#: (method, body, the member the 400 names): each refused whole, on one store.
BAD_BODIES: list[tuple[str, Any, str]] = [
    ("POST", {**building(), "geometry": {"type": "Point", "coordinates": [X, Y]}}, "geometry"),
    ("POST", {**building(), "geometry": BOWTIE}, "geometry"),
    ("POST", {**building(), "geometry": {"type": "Polygon", "coordinates": [[[X, Y], [X, 1]]]}}, "geometry"),
    ("POST", {**building(), "geometry": {"type": "Polygon", "coordinates": [[[X, Y, 3.0]] * 4]}}, "geometry"),
    ("POST", {**building(), "geometry": square(200.0, Y)}, "geometry"),
    ("POST", {**building(), "geometry": None}, "geometry"),
    ("POST", {"type": "Feature", "properties": {}}, "geometry"),
    ("POST", building(height_m="tall"), "properties.height_m"),
    ("POST", building(height_m=-3), "properties.height_m"),
    ("POST", building(install_date="last spring"), "properties.install_date"),
    ("POST", building(install_date="2020-02-30"), "properties.install_date"),
    ("POST", building(storeys=2.5), "properties.storeys"),
    ("POST", building(name=7), "properties.name"),
    ("POST", building(kind="pipe"), "properties.kind"),
    ("POST", building(network="gas"), "properties.network"),
    ("POST", {**building(), "type": "FeatureCollection"}, "type"),
    ("POST", {**building(), "id": "a/b"}, "id"),
    ("POST", {**building(), "properties": ["name"]}, "properties"),
    ("POST", [building()], "request body"),
    ("PUT", {**building(), "geometry": {"type": "LineString", "coordinates": [[X, Y], [X, Y + 1]]}}, "geometry"),
    ("PUT", building(height_m="tall"), "properties.height_m"),
    ("PATCH", {"properties": {"height_m": "tall"}}, "properties.height_m"),
    ("PATCH", {"properties": {"install_date": "2020-13-01"}}, "properties.install_date"),
    ("PATCH", {"properties": {"kind": "park"}}, "properties.kind"),
    ("PATCH", {"geometry": None}, "geometry"),
    ("PATCH", {"geometry": {"type": "Point", "coordinates": [X, Y]}}, "geometry"),
    ("PATCH", {"id": "b9"}, "id"),
    ("PATCH", {"properties": None}, "properties"),
    ("PUT", {**building(), "id": {}}, "id"),
    ("PATCH", {"properties": {"z_min": 50, "z_max": 10}}, "z range"),
]


def test_a_bad_body_is_a_400_naming_what_is_wrong_and_writes_nothing(editor: TestClient) -> None:
    before = snapshot(editor)
    for method, body, named in BAD_BODIES:
        path = ITEMS if method == "POST" else f"{ITEMS}/b1"
        answer = editor.request(method, path, json=body, headers=PATCH if method == "PATCH" else AUTH)
        assert answer.status_code == 400, (method, body, answer.text)
        assert answer.json()["what"].startswith(named), (method, body, answer.json())
        assert "Traceback" not in answer.text and "SELECT" not in answer.text
    assert snapshot(editor) == before


def test_a_body_that_is_not_json_too_large_or_of_another_type_is_refused(editor: TestClient) -> None:
    before = snapshot(editor)
    not_json = editor.post(ITEMS, content=b"{nope", headers={**AUTH, "Content-Type": "application/geo+json"})
    assert not_json.status_code == 400 and not_json.json()["what"] == "request body"
    huge = b'{"type": "Feature", "geometry": null, "properties": {"x": "' + b"a" * 9_000_000 + b'"}}'
    too_large = editor.post(ITEMS, content=huge, headers={**AUTH, "Content-Type": "application/geo+json"})
    assert too_large.status_code == 413 and too_large.json()["what"] == "request body"
    xml = editor.post(ITEMS, content=b"<Feature/>", headers={**AUTH, "Content-Type": "application/gml+xml"})
    assert xml.status_code == 415 and xml.json()["what"] == "Content-Type"
    untyped = editor.patch(f"{ITEMS}/b1", content=b'{"properties": {"name": "x"}}', headers=AUTH)
    assert untyped.status_code == 400 and untyped.json()["what"] == "Content-Type"
    crs = editor.post(
        ITEMS, json=building(), headers={**AUTH, "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/3857>"}
    )
    assert crs.status_code == 400 and crs.json()["what"] == "Content-Crs"
    assert snapshot(editor) == before


# --- concurrency, on a live server ---


@pytest.fixture
def live_editor(city_url: str, tiles_dir: Path, tmp_path: Path) -> Iterator[str]:
    with cim_serve(city_url, tiles_dir, tmp_path / "server.log", env={"CIM_WRITE_TOKEN": TOKEN}) as base:
        yield base


def test_sixteen_clients_editing_different_features_at_once_all_land(live_editor: str) -> None:
    results: dict[int, tuple[int, int]] = {}

    def edit(n: int) -> None:
        with httpx.Client(base_url=live_editor, timeout=60) as http:
            body = {**building(name=f"c{n}"), "id": f"conc-{n}", "geometry": square(X + n * 1e-3, Y)}
            created = http.post(ITEMS, json=body, headers=AUTH).status_code
            patched = http.patch(f"{ITEMS}/conc-{n}", json={"properties": {"status": f"s{n}"}}, headers=PATCH)
            results[n] = (created, patched.status_code)

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: (201, 200) for n in range(16)}
    found = httpx.get(f"{live_editor}{ITEMS}", params={"limit": 1000}).json()["features"]
    edited = {f["id"]: f["properties"] for f in found if f["id"].startswith("conc-")}
    assert {i: (p["name"], p["status"]) for i, p in edited.items()} == {
        f"conc-{n}": (f"c{n}", f"s{n}") for n in range(16)
    }


def test_a_patch_racing_a_delete_never_brings_the_feature_back(live_editor: str) -> None:
    with httpx.Client(base_url=live_editor, timeout=60) as http:
        for round_ in range(8):
            feature_id = f"race-{round_}"
            assert http.post(ITEMS, json={**building(), "id": feature_id}, headers=AUTH).status_code == 201
            answers: dict[str, int] = {}
            start = threading.Barrier(2)

            def send(
                method: str, feature_id: str = feature_id, answers: dict[str, int] = answers, start: Any = start
            ) -> None:
                with httpx.Client(base_url=live_editor, timeout=60) as own:
                    start.wait()
                    body = {"properties": {"name": "patched"}} if method == "PATCH" else None
                    answers[method] = own.request(method, f"{ITEMS}/{feature_id}", json=body, headers=PATCH).status_code

            threads = [threading.Thread(target=send, args=(m,)) for m in ("PATCH", "DELETE")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert answers["DELETE"] == 204 and answers["PATCH"] in (200, 404)
            assert http.get(f"{ITEMS}/{feature_id}").status_code == 404


# --- the tiles follow ---


def test_an_edited_building_is_rebuilt_into_its_tile(
    city_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cim.model.shapes import shapes_of_batch
    from cim.store.meshes import MeshStore, mesh_path_for
    from cim.tiling.build import build_tiles

    monkeypatch.chdir(tmp_path)  # a PostGIS store's mesh file goes under ./data
    tiles = tmp_path / "tiles"
    with open_store(city_url) as store:
        # a source, as ingested assets have (the meshes are kept per source)
        table = store.find_batch(AssetQuery()).table
        table = table.set_column(table.schema.get_field_index("source"), "source", pa.array(["city"] * len(table)))
        store.upsert_assets(AssetBatch.from_table(table))
        with MeshStore(mesh_path_for(store.url)) as meshes:
            meshes.replace_source("city", [shapes_of_batch(store.find_batch(AssetQuery()))])
        with MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
            build_tiles(store, meshes, tiles / "city", workers=1)
    before = tile_files(tiles / "city")
    with TestClient(create_app(app_settings(city_url, tiles))) as client:
        # a first height_m in a column empty everywhere else: only b2's tile changes (the column keeps its type)
        first = client.patch(f"{ITEMS}/b2", json={"properties": {"height_m": 124.0}}, headers=PATCH)
        second = client.patch(f"{ITEMS}/b2", json={"properties": {"name": "Tall"}}, headers=PATCH)
        jobs = {first.headers[JOB_HEADER], second.headers[JOB_HEADER]}
        results = [wait_for_job(client, job) for job in jobs]
        after = tile_files(tiles / "city")  # before the edits below queue more builds
        check_all(tiles / "city", store_rows(city_url))  # the rebuilt tiles, b2's edits read back by loaders.gl
        assert (
            client.patch(
                "/collections/lift/items/lift-1a", json={"properties": {"status": "x"}}, headers=PATCH
            ).status_code
            == 200
        )
        assert JOB_HEADER in client.delete(f"{ITEMS}/b3", headers=AUTH).headers  # a tiled kind: rebuilt too
        assert (
            JOB_HEADER
            not in client.patch(
                "/collections/park/items/park-1", json={"properties": {"name": "Green"}}, headers=PATCH
            ).headers
        )  # parks are not tiled
    assert any(r["assets"] == ["b2"] for r in results)
    built = [r["tilesets"]["city"] for r in results]
    assert all(b["reused"] > 0 for b in built), built  # unchanged tiles are linked from the previous version
    if city_url.endswith(".duckdb"):  # its rows carry hashes: the rebuild plans from the changes alone
        assert any(b["planned_from_changes"] for b in built)
    changed = [name for name in before if name.endswith(".glb") and before[name] != after.get(name)]
    assert changed == ["buildings/" + Path(changed[0]).name]  # the tile holding b2, and no other
    assert sum(name.endswith(".glb") for name in before) > 1


def tile_files(folder: Path) -> dict[str, bytes]:
    root = folder.resolve()
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and ".state" not in p.parts
    }


def wait_for_job(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/admin/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("done", "failed"):
            assert job["state"] == "done", job["error"]
            result: dict[str, Any] = job["result"]
            return result
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


# --- a write killed half-way ---


@pytest.mark.postgis
def test_a_write_whose_database_session_is_killed_is_a_503_and_writes_nothing(
    postgis_schema_url: str, tmp_path: Path
) -> None:
    from tests.api.city import build_city

    with open_store(postgis_schema_url) as store:
        build_city(store)
    database, schema = postgis_schema_url.split("?schema=")
    with (
        psycopg.connect(database, autocommit=True) as holder,
        TestClient(create_app(app_settings(postgis_schema_url, tmp_path / "tiles"))) as client,
    ):
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{schema}.asset:b1"])  # the edit waits here
        answer: dict[str, httpx.Response] = {}
        writer = threading.Thread(
            target=lambda: answer.setdefault(
                "r", client.patch(f"{ITEMS}/b1", json={"properties": {"name": "half"}}, headers=PATCH)
            )
        )
        writer.start()
        deadline = time.monotonic() + 20
        killed = 0
        while not killed and time.monotonic() < deadline:
            killed = holder.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE 'SELECT pg_advisory_xact_lock%%' AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            time.sleep(0.05)
        writer.join(30)
        holder.execute("SELECT pg_advisory_unlock_all()")
        assert killed == 1 and answer["r"].status_code == 503
        assert client.get(f"{ITEMS}/b1").json()["properties"]["name"] == "Tower 1"
        assert client.patch(f"{ITEMS}/b1", json={"properties": {"name": "whole"}}, headers=PATCH).status_code == 200


def test_a_browser_on_an_allowed_origin_may_edit_and_read_the_rebuild_job(city_url: str, tmp_path: Path) -> None:
    server = ServerSettings(tiles_dir=tmp_path / "tiles", write_token=TOKEN, cors_origins=["https://ops.example"])
    settings = AppSettings(store=StoreSettings(store=city_url), server=server)
    with TestClient(create_app(settings)) as client:
        for method in ("PUT", "PATCH", "DELETE"):
            asked = {"Origin": "https://ops.example", "Access-Control-Request-Method": method}
            preflight = client.options(
                f"{ITEMS}/b2", headers={**asked, "Access-Control-Request-Headers": "authorization"}
            )
            assert preflight.status_code == 200 and method in preflight.headers["access-control-allow-methods"]
        patched = client.patch(
            f"{ITEMS}/b2", json={"properties": {"name": "Seen"}}, headers={**PATCH, "Origin": "https://ops.example"}
        )
        assert patched.status_code == 200
        exposed = patched.headers["access-control-expose-headers"]
        assert JOB_HEADER in exposed and "Location" in exposed
        refused = client.options(
            f"{ITEMS}/b2", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"}
        )
        assert refused.status_code == 400  # Starlette refuses a preflight from an origin not listed
