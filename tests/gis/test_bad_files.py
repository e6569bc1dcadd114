"""Hostile files, one test case each, ingested into a store that already holds a real layer (68 bus shelters and
their meshes): a clear error naming the file (or the bad features as findings), and the store as it was — or with
exactly the good part added."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from shapely.geometry import Point

from cim.errors import CimError
from cim.gis.cityjson import is_cityjson
from cim.gis.mapping import LayerMapping
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import Store, open_store
from cim.store.meshes import MeshStore
from tests.unchanged import snapshot

Make = Callable[[Path, Path], Path]  # (folder to write in, shared data) → the file to ingest
STOPS = LayerMapping(kind=Kind.TRANSIT_STOP)


def shelters(data: Path) -> dict[str, Any]:
    return json.loads((data / "gis" / "TRANS_BusShelters.geojson").read_text(encoding="utf-8"))


def text(name: str, content: str | bytes) -> Make:
    def make(folder: Path, data: Path) -> Path:
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


def head_of(relative: str, size: int, name: str | None = None) -> Make:
    """The first ``size`` bytes of a shared file: a download cut short."""

    def make(folder: Path, data: Path) -> Path:
        path = folder / (name or Path(relative).name)
        path.write_bytes((data / relative).read_bytes()[:size])
        return path

    return make


def geojson(change: Callable[[dict[str, Any]], Any], name: str = "stops.geojson") -> Make:
    def make(folder: Path, data: Path) -> Path:
        document = shelters(data)
        change(document)
        path = folder / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    return make


def shapefile(drop: str | None = None, prj: str | None = None, cut: int | None = None) -> Make:
    def make(folder: Path, data: Path) -> Path:
        path = folder / "poles.shp"
        frame = gpd.GeoDataFrame({"pid": [1, 2]}, geometry=[Point(121.5, 31.2), Point(121.51, 31.21)], crs=4326)
        frame.to_file(path)
        if drop:
            path.with_suffix(drop).unlink()
        if prj is not None:
            path.with_suffix(".prj").write_text(prj)
        if cut is not None:
            path.write_bytes(path.read_bytes()[:cut])
        return path

    return make


def parquet(geo: bytes | None) -> Make:
    def make(folder: Path, data: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "stops.parquet"
        table = pa.table({"a": [1], "geometry": [Point(121.5, 31.2).wkb]})
        pq.write_table(table.replace_schema_metadata(None if geo is None else {b"geo": geo}), path)
        return path

    return make


def sqlite_not_gpkg(folder: Path, data: Path) -> Path:
    path = folder / "plain.gpkg"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    return path


def a_directory(folder: Path, data: Path) -> Path:
    (folder / "layer.geojson").mkdir()
    return folder / "layer.geojson"


def dangling_link(folder: Path, data: Path) -> Path:
    (folder / "gone.geojson").symlink_to(folder / "nowhere.geojson")
    return folder / "gone.geojson"


CUBE = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]


def cityjson(change: Callable[[dict[str, Any]], Any] = lambda d: None, raw: str | None = None) -> Make:
    """A one-building CityJSON in RD New + NAP, changed by ``change`` (or its text replaced by ``raw``)."""

    def make(folder: Path, data: Path) -> Path:
        document = cube_document()
        change(document)
        path = folder / "cube.city.json"
        path.write_text(raw if raw is not None else json.dumps(document), encoding="utf-8")
        return path

    return make


def cube_document() -> dict[str, Any]:
    x, y = 155000, 463000
    corners = [[x, y, 0], [x + 10, y, 0], [x + 10, y + 10, 0], [x, y + 10, 0]]
    return {
        "type": "CityJSON",
        "version": "2.0",
        "transform": {"scale": [1.0, 1.0, 1.0], "translate": [0.0, 0.0, 0.0]},
        "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
        "CityObjects": {"b1": {"type": "Building", "geometry": [{"type": "Solid", "lod": 1, "boundaries": [CUBE]}]}},
        "vertices": corners + [[a, b, 8] for a, b, _ in corners],
    }


CUBES = cube_document()


def boundaries(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["CityObjects"]["b1"]["geometry"][0]["boundaries"] = value

    return change


def setting(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document[key] = value

    return change


def stream_with_bad_line(folder: Path, data: Path) -> Path:
    header = {"type": "CityJSON", "version": "2.0", "CityObjects": {}, "vertices": [],
              "metadata": {"referenceSystem": "EPSG:7415"}}  # fmt: skip
    feature = json.loads(cityjson()(folder, data).read_text())
    line = json.dumps(
        {"type": "CityJSONFeature", "CityObjects": feature["CityObjects"], "vertices": feature["vertices"]}
    )
    path = folder / "stream.city.jsonl"
    path.write_text("\n".join([json.dumps(header), line, line.replace("b1", "b2"), "{oops", line]), encoding="utf-8")
    return path


#: id → (how to make the file, the words the error must hold). Every one is refused whole and changes nothing.
REFUSED: dict[str, tuple[Make, str]] = {
    # GeoJSON and other GDAL files
    "geojson-truncated": (head_of("gis/TRANS_BusShelters.geojson", 700), "not a GIS file"),
    "geojson-garbage-text": (text("notes.geojson", "this is not geojson"), "not a GIS file"),
    "geojson-binary-junk": (text("junk.geojson", bytes(range(256)) * 40), "not a GIS file"),
    "geojson-empty-file": (text("empty.geojson", b""), "not a GIS file"),
    "geojson-deeply-nested": (text("deep.geojson", "[" * 100_000), "not a GIS file"),
    "geojson-bare-1e400": (text("big.geojson", '{"type":"Point","coordinates":[1e400,0]}'), "outside_lonlat"),
    "geojson-not-utf8": (
        text("latin.geojson", b'{"type": "Feature", "properties": {"name": "Caf\xe9"}, "geometry": null}'),
        "not UTF-8",
    ),
    "geojson-all-in-metres": (
        geojson(lambda d: [f["geometry"].update(type="Point", coordinates=[355000, 3454000]) for f in d["features"]]),
        "yields no valid asset: all 68 features were rejected (outside_lonlat",
    ),
    "geojson-all-without-geometry": (
        geojson(lambda d: [f.update(geometry=None) for f in d["features"]]),
        "all 68 features were rejected (unreadable_geometry",
    ),
    "a-directory": (a_directory, "is a directory"),
    "a-dangling-link": (dangling_link, "does not exist"),
    "missing-file": (lambda folder, data: folder / "missing.geojson", "does not exist"),
    # GeoPackage
    "gpkg-truncated": (head_of("gis/bubenec.gpkg", 8192), "bubenec.gpkg"),
    "gpkg-junk": (text("junk.gpkg", b"\x00\xff" * 5000), "not a GIS file"),
    "gpkg-plain-sqlite": (sqlite_not_gpkg, "plain.gpkg"),
    "gpkg-several-layers-none-named": (head_of("gis/bubenec.gpkg", 10**9), "name one as FILE:LAYER"),
    # Shapefile parts
    "shp-without-shx": (shapefile(drop=".shx"), "poles.shp"),
    "shp-without-prj": (shapefile(drop=".prj"), "has no CRS; give one with --crs"),
    "shp-garbage-prj": (shapefile(prj="GEOGCS[nonsense"), "poles.shp"),
    "shp-truncated": (shapefile(cut=120), "poles.shp"),
    # GeoParquet
    "parquet-without-geo": (parquet(None), "without GeoParquet metadata"),
    "parquet-geo-not-json": (parquet(b"{oops"), "stops.parquet"),
    "parquet-geo-no-column": (parquet(json.dumps({"primary_column": "geometry"}).encode()), "stops.parquet"),
    "parquet-geo-wkt": (
        parquet(json.dumps({"primary_column": "geometry", "columns": {"geometry": {"encoding": "WKT"}}}).encode()),
        "encoding 'WKT' is not supported",
    ),
    "parquet-truncated": (head_of("gis/TRANS_BusShelters.geojson", 100, "cut.parquet"), "not a GeoParquet file"),
    # CityJSON
    "cityjson-truncated": (cityjson(raw='{"type": "CityJSON", "CityObj'), "is not valid JSON"),
    "cityjson-empty-file": (cityjson(raw=""), "is not valid JSON"),
    "cityjson-an-array": (cityjson(raw="[]"), "is not CityJSON"),
    "cityjson-deeply-nested": (cityjson(raw='{"type": "CityJSON", "a": ' + "[" * 100_000), "cube.city.json"),
    "cityjson-nan-literal": (cityjson(raw='{"type": "CityJSON", "vertices": [[NaN, 0, 0]]}'), "NaN"),
    "cityjson-negative-index": (cityjson(boundaries([[[[-5, 3, 2, 1]], *CUBE[1:]]])), "bad_vertex_index:negative"),
    "cityjson-index-past-the-end": (cityjson(boundaries([[[[99, 3, 2, 1]], *CUBE[1:]]])), "past the last vertex"),
    "cityjson-index-text": (cityjson(boundaries([[[["0", 3, 2, 1]], *CUBE[1:]]])), "not an integer"),
    "cityjson-boundaries-too-deep": (cityjson(boundaries([[[[[[[0]]]]]]])), "bad_vertex_index"),
    "cityjson-boundaries-too-shallow": (cityjson(boundaries([0, 1, 2])), "cube:b1"),
    "cityjson-infinity": (cityjson(setting("vertices", [[1e400, 0, 0]] * 8)), "Infinity is not a JSON number"),
    "cityjson-1e400-vertex": (cityjson(raw=json.dumps(CUBES).replace("155000", "1e400")), "outside_lonlat"),
    "cityjson-huge-integer": (cityjson(setting("vertices", [[10**400, 0, 0]] * 8)), "vertices"),
    "cityjson-ragged-vertices": (cityjson(setting("vertices", [[0, 0]] * 8)), "vertices"),
    "cityjson-scale-text": (cityjson(setting("transform", {"scale": "big", "translate": [0, 0, 0]})), "scale"),
    "cityjson-scale-zero": (cityjson(setting("transform", {"scale": [0, 1, 1], "translate": [0, 0, 0]})), "zero"),
    "cityjson-objects-a-list": (cityjson(setting("CityObjects", [1, 2])), "CityObjects"),
    "cityjson-metadata-a-string": (cityjson(setting("metadata", "RD New")), "metadata"),
    "cityjson-crs-unknown-code": (cityjson(setting("metadata", {"referenceSystem": "EPSG:999999"})), "999999"),
    "cityjson-wrong-crs": (
        cityjson(setting("metadata", {"referenceSystem": "EPSG:4326"})),
        "outside_lonlat",
    ),
    "cityjson-stream-bad-line": (stream_with_bad_line, "line 4 — is not valid JSON"),
}


def ingest(store: Store, meshes: MeshStore, path: Path) -> Any:
    if is_cityjson(path):
        return write_source(store, path, read_as="cityjson", meshes=meshes)
    return write_source(store, path, mapping=STOPS, meshes=meshes)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def city(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> Iterator[tuple[Store, MeshStore]]:
    """One store per backend for the module, holding the 68 bus shelters and their meshes. Each case compares its
    own before and after, so a case that broke the store would not hide another's fault."""
    folder = tmp_path_factory.mktemp("city")
    if request.param == "duckdb":
        url = str(folder / "city.duckdb")
    else:
        url = f"{request.getfixturevalue('postgres_url')}?schema=t_bad_{uuid.uuid4().hex[:10]}"
    try:
        with open_store(url) as store, MeshStore(folder / "city.meshes.duckdb") as meshes:
            ingest(store, meshes, data_dir / "gis" / "TRANS_BusShelters.geojson")
            yield store, meshes
    finally:
        if request.param == "postgis":
            drop_schema(url)


def drop_schema(url: str) -> None:
    import psycopg

    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.parametrize("case", REFUSED)
def test_a_hostile_file_is_one_clear_error_and_changes_nothing(
    city: tuple[Store, MeshStore], tmp_path: Path, data_dir: Path, case: str
) -> None:
    store, meshes = city
    before = snapshot(store, meshes)
    assert before.kinds == {"transit_stop": 68}
    make, words = REFUSED[case]
    path = make(tmp_path, data_dir)
    with pytest.raises(CimError) as caught:
        ingest(store, meshes, path)
    message = str(caught.value)
    assert " — " in message and path.name in message and words in message, message
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert snapshot(store, meshes) == before


def point_as(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


#: id → (how to make the file, the assets its good part adds, the rule that must report the bad part)
PARTLY_BAD: dict[str, tuple[Make, dict[str, int], str]] = {
    "geojson-one-feature-off-the-earth": (
        geojson(lambda d: d["features"][3]["geometry"].update(type="Point", coordinates=[500, 0])),
        {"transit_stop": 67},
        "outside_lonlat",
    ),
    "geojson-one-feature-1e300": (
        geojson(lambda d: d["features"][3]["geometry"].update(type="Point", coordinates=[1e300, 0])),
        {"transit_stop": 67},
        "outside_lonlat",
    ),
    "geojson-one-without-geometry": (
        geojson(lambda d: d["features"][5].update(geometry=None)),
        {"transit_stop": 67},
        "unreadable_geometry",
    ),
    "geojson-one-polygon-of-two-points": (
        geojson(lambda d: d["features"][5]["geometry"].update(coordinates=[[[121.5, 31.2], [121.6, 31.2]]])),
        {"transit_stop": 67},
        "unreadable_geometry",
    ),
    "cityjson-one-good-one-negative-index": (
        cityjson(
            lambda d: d["CityObjects"].update(
                b2={
                    **d["CityObjects"]["b1"],
                    "geometry": [{"type": "Solid", "lod": 1, "boundaries": [[[[-5, 3, 2, 1]], *CUBE[1:]]]}],
                }
            )
        ),
        {"building": 1},
        "bad_vertex_index:negative",
    ),
}


@pytest.mark.parametrize("case", PARTLY_BAD)
def test_a_partly_bad_file_adds_exactly_its_good_part(
    city: tuple[Store, MeshStore], tmp_path: Path, data_dir: Path, case: str
) -> None:
    store, meshes = city
    base = "TRANS_BusShelters.geojson:TRANS_BusShelters:transit_stop"
    before = snapshot(store, source=base)
    make, added, rule = PARTLY_BAD[case]
    path = make(tmp_path, data_dir)
    everything = snapshot(store)
    summary = ingest(store, meshes, path)
    try:
        assert summary.assets == added
        assert [f["rule"] for f in summary.findings] == [rule] and summary.rejected == 1
        assert snapshot(store, source=base) == before  # the layer already there is untouched
        expected = {kind: everything.kinds.get(kind, 0) + added.get(kind, 0) for kind in {*everything.kinds, *added}}
        assert store.count_by_kind() == expected
    finally:
        source = f"{path.name}:cityjson" if is_cityjson(path) else f"{path.name}:{path.stem}:transit_stop"
        store.delete_assets(source=source)
        meshes.delete(source=source)
