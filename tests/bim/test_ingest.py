"""IFC ingest against every shared IFC file, generated lift models and bad input, on both stores."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import ifcopenshell
import ifcopenshell.api.pset
import pytest
from pyproj import Transformer
from shapely.geometry import Point

from cim.bim.asset_rows import source_name
from cim.bim.georef import Placement
from cim.bim.reader import open_ifc
from cim.errors import CimError, InvalidInput, NotFound
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore
from tests.bim.conftest import build_model, write_model

GEOREFERENCED = ("duplex.ifc", "AC20-FZK-Haus.ifc", "geographic-referencing.ifc")
NEEDS_PLACEMENT = ("IfcOpenHouse_IFC4.ifc", "PR-Twin-Branch-PavementElements.ifc", "linear-placement-of-signal.ifc")


@pytest.fixture
def meshes(tmp_path: Path):  # type: ignore[no-untyped-def]
    with MeshStore(tmp_path / "meshes.duckdb") as opened:
        yield opened


def expected_count(model: ifcopenshell.file) -> int:
    spatial = "IfcSpatialStructureElement" if model.schema == "IFC2X3" else "IfcSpatialElement"
    elements = [
        e
        for e in model.by_type("IfcElement")
        if not e.is_a("IfcFeatureElementSubtraction") and not e.is_a("IfcVirtualElement")
    ]
    return len(model.by_type(spatial)) + len(elements)


def expected_lonlat(model: ifcopenshell.file) -> tuple[float, float]:
    """Independently of cim.bim.georef: pyproj on the map conversion numbers, or the site's DMS."""
    if model.schema != "IFC2X3" and model.by_type("IfcMapConversion"):
        mc = model.by_type("IfcMapConversion")[0]
        lon, lat = Transformer.from_crs(mc.TargetCRS.Name, "EPSG:4326", always_xy=True).transform(
            mc.Eastings, mc.Northings
        )
        return lon, lat
    site = model.by_type("IfcSite")[0]
    dd = [
        sum(v / s for v, s in zip(a, (1, 60, 3600, 3.6e9), strict=False)) for a in (site.RefLongitude, site.RefLatitude)
    ]
    return dd[0], dd[1]


@pytest.mark.parametrize("name", GEOREFERENCED)
def test_georeferenced_file_ingests_all_products_near_its_reference(
    name: str, data_dir: Path, store: Store, meshes: MeshStore
) -> None:
    path = data_dir / "ifc" / name
    model = ifcopenshell.open(str(path))
    summary = write_source(store, path, read_as="ifc", meshes=meshes)
    assert sum(summary.assets.values()) == expected_count(model)
    assert store.count_assets(AssetQuery()) == expected_count(model)
    lon, lat = expected_lonlat(model)
    assert summary.georeference["lon"] == pytest.approx(lon, abs=1e-5)  # ~1 m
    assert summary.georeference["lat"] == pytest.approx(lat, abs=1e-5)
    site = store.find_assets(AssetQuery(kinds=(Kind.SITE,)))[0]
    assert site.geom is not None and site.geom.distance(Point(lon, lat)) < 1e-3
    assert meshes.count() == summary.meshes


@pytest.mark.parametrize("name", NEEDS_PLACEMENT)
def test_file_without_usable_georeference_fails_clearly_then_ingests_with_placement(
    name: str, data_dir: Path, store: Store, meshes: MeshStore
) -> None:
    path = data_dir / "ifc" / name
    with pytest.raises(InvalidInput, match="georeference — none usable"):
        write_source(store, path, read_as="ifc", meshes=meshes)
    assert store.count_assets(AssetQuery()) == 0
    summary = write_source(store, path, read_as="ifc", meshes=meshes, placement=Placement(121.5, 31.2, 4.0))
    assert summary.georeference["method"] == "placement"
    assert sum(summary.assets.values()) == expected_count(ifcopenshell.open(str(path)))
    # elements only: PR-Twin places its IfcSite/IfcBuilding ~3,000 km from its elements (a quirk of that export)
    boxes = [a.geom.bounds for a in store.find_assets(AssetQuery(kinds=(Kind.ELEMENT,))) if a.geom is not None]
    assert boxes and all(abs(b[0] - 121.5) < 0.05 and abs(b[1] - 31.2) < 0.05 for b in boxes)


def test_drainage_rc3_pipes_and_chambers(data_dir: Path, store: Store, meshes: MeshStore) -> None:
    path = data_dir / "ifc" / "DrainageSystem-1-2.ifc"
    summary = write_source(store, path, read_as="ifc", meshes=meshes, placement=Placement(24.94, 60.17, 20.0))
    assert summary.declared_schema == "IFC4X3_RC3" and summary.schema == "IFC4X3_ADD2"
    pipes = store.find_assets(AssetQuery(kinds=(Kind.PIPE,)))
    nodes = store.find_assets(AssetQuery(kinds=(Kind.NODE,)))
    assert (len(pipes), len(nodes)) == (6, 7)
    assert {p.network for p in pipes} == {"storm_water"}
    assert {p.material for p in pipes} == {"concrete", "PVC hard"}
    assert all(p.diameter_mm and p.diameter_mm > 100 for p in pipes)
    model = open_ifc(path).model
    for node in nodes:
        props = node.props
        rim, invert = (
            props.get("imPset_DistributionChamberElementCommon.RimElevation"),
            props.get("imPset_DistributionChamberElementCommon.InvertElevation"),
        )
        if isinstance(rim, float | int) and isinstance(invert, float | int):
            assert node.depth_m == pytest.approx(rim - invert)
        assert model.by_guid(node.id).is_a("IfcDistributionChamberElement")
    assert any(n.depth_m for n in nodes)
    assert all(p.geom is not None and abs(p.geom.centroid.x - 24.94) < 0.1 for p in pipes)


@pytest.mark.parametrize("schema", ["IFC2X3", "IFC4"])
def test_lift_in_generated_model_has_install_date_and_parent_chain(
    schema: str, tmp_path: Path, store: Store, meshes: MeshStore
) -> None:
    path = write_model(tmp_path, schema)
    write_source(store, path, read_as="ifc", meshes=meshes)
    (lift,) = store.find_assets(AssetQuery(kinds=(Kind.LIFT,)))
    assert lift.install_date is not None and lift.install_date.year == (2003 if schema == "IFC2X3" else 2009)
    chain = []
    parent = lift.parent_id
    while parent:
        asset = store.get_asset(parent)
        chain.append(asset.kind)
        parent = asset.parent_id
    assert chain == [Kind.STOREY, Kind.BUILDING, Kind.SITE]
    assert lift.geom is not None and abs(lift.geom.centroid.x - 121.5) < 0.001
    assert 4.0 <= (lift.z_min or 0) < (lift.z_max or 0) <= 7.5


def test_element_whose_geometry_fails_is_counted_and_kept(data_dir: Path, store: Store, meshes: MeshStore) -> None:
    summary = write_source(store, data_dir / "ifc" / "geographic-referencing.ifc", read_as="ifc", meshes=meshes)
    assert summary.failed_elements == 1 and summary.failed[0]["id"] == "0rBru4syGxGOZb$M8kVJuS"
    assert store.get_asset("0rBru4syGxGOZb$M8kVJuS").geom is not None


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (None, NotFound, "does not exist"),
        (b"just some text\n", InvalidInput, "not an IFC file"),
        ("truncate", InvalidInput, "truncated"),
    ],
)
def test_bad_input_fails_clearly_and_keeps_earlier_ingest(
    content: bytes | str | None, error: type[CimError], match: str, tmp_path: Path, data_dir: Path, store: Store,
    meshes: MeshStore,
) -> None:  # fmt: skip
    good = write_model(tmp_path, "IFC4")
    write_source(store, good, read_as="ifc", meshes=meshes)
    before, meshes_before = store.count_assets(AssetQuery()), meshes.count()
    bad = tmp_path / "bad.ifc"
    if content == "truncate":
        bad.write_bytes((data_dir / "ifc" / "duplex.ifc").read_bytes()[:500_000])
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    with pytest.raises(error, match=match):
        write_source(store, bad, read_as="ifc", meshes=meshes)
    assert store.count_assets(AssetQuery()) == before and meshes.count() == meshes_before


def test_reingest_replaces_the_source(tmp_path: Path, store: Store, meshes: MeshStore) -> None:
    path = write_model(tmp_path, "IFC4", walls=3)
    write_source(store, path, read_as="ifc", meshes=meshes)
    write_model(tmp_path, "IFC4", walls=1)
    summary = write_source(store, path, read_as="ifc", meshes=meshes)
    assert store.count_assets(AssetQuery()) == sum(summary.assets.values()) == 5
    assert summary.meshes == meshes.count() == 2
    assert source_name(path) == "generated-IFC4.ifc:ifc"


@pytest.mark.parametrize("kind", [Kind.BUILDING, Kind.STOREY])
def test_building_and_storey_get_the_footprint_of_their_elements(
    kind: Kind, tmp_path: Path, store: Store, meshes: MeshStore
) -> None:
    write_source(store, write_model(tmp_path, "IFC4", walls=3, lifts=1), read_as="ifc", meshes=meshes)
    parts = store.find_assets(AssetQuery(kinds=(Kind.ELEMENT, Kind.LIFT)))
    (asset,) = store.find_assets(AssetQuery(kinds=(kind,)))
    assert asset.geom is not None and asset.geom.geom_type == "MultiPolygon"  # three walls and a lift apart
    assert all(p.geom is not None and asset.geom.buffer(1e-9).covers(p.geom) for p in parts)
    assert asset.geom.area == pytest.approx(sum(p.geom.area for p in parts if p.geom is not None), rel=1e-6)
    assert asset.z_min == min(p.z_min for p in parts if p.z_min is not None)
    assert asset.z_max == max(p.z_max for p in parts if p.z_max is not None)
    far_wall = max(parts, key=lambda p: p.geom.centroid.x if p.geom is not None else 0.0)
    assert far_wall.geom is not None
    x, y = far_wall.geom.centroid.x, far_wall.geom.centroid.y
    found = store.find_assets(AssetQuery(kinds=(kind,), bbox=(x - 1e-6, y - 1e-6, x + 1e-6, y + 1e-6)))
    assert [a.id for a in found] == [asset.id]


def test_footprint_of_partial_footprints_is_the_footprint_of_all_parts() -> None:
    """The ingest folds hulls into partial footprints while the kernel works and merges those at the end: the
    result must be the footprint of all parts, also where a hole is closed only by parts of different folds."""
    import numpy as np
    from shapely.geometry import box

    from cim.bim.asset_rows import footprint

    walls = [box(0, 0, 10, 1), box(0, 9, 10, 10), box(0, 0, 1, 10), box(9, 0, 10, 10)]  # a ring: its hole filled
    apart = [box(20 + i, 0, 20.5 + i, 0.5) for i in range(6)] + [box(4, 4, 6, 6)]  # separate; one in the hole
    parts = np.array([*walls, *apart], dtype=object)
    whole = footprint(parts)
    for chunks in ([[0, 2], [1, 3, 4, 5], [6, 7, 8, 9, 10]], [[0], [1], [2], [3], list(range(4, 11))]):
        folded = footprint(np.array([footprint(parts[c]) for c in chunks], dtype=object))
        assert folded.equals(whole) and whole.area == pytest.approx(100 + 6 * 0.25)


def test_footprint_folded_during_a_long_ingest_covers_every_part(
    tmp_path: Path, store: Store, meshes: MeshStore
) -> None:
    """Enough walls that hulls are folded into partial footprints while the kernel works."""
    import numpy as np

    from cim.bim.asset_rows import footprint

    write_source(store, write_model(tmp_path, "IFC4", walls=1200, lifts=0), read_as="ifc", meshes=meshes)
    parts = np.array([a.geom for a in store.find_assets(AssetQuery(kinds=(Kind.ELEMENT,)))], dtype=object)
    (building,) = store.find_assets(AssetQuery(kinds=(Kind.BUILDING,)))
    assert len(parts) == 1200 and building.geom is not None
    assert building.geom.symmetric_difference(footprint(parts)).area < 1e-12


def test_building_footprint_of_a_real_model_is_one_polygon(data_dir: Path, store: Store, meshes: MeshStore) -> None:
    write_source(store, data_dir / "ifc" / "AC20-FZK-Haus.ifc", read_as="ifc", meshes=meshes)
    (building,) = store.find_assets(AssetQuery(kinds=(Kind.BUILDING,)))
    assert building.geom is not None and building.geom.geom_type == "Polygon"
    walls = [
        a
        for a in store.find_assets(AssetQuery(kinds=(Kind.ELEMENT,)))
        if str(a.props["ifc_class"]).startswith("IfcWall")
    ]
    assert walls and all(w.geom is not None and building.geom.buffer(1e-9).covers(w.geom) for w in walls)


def test_ifc2x3_epset_map_conversion_places_the_model(tmp_path: Path, store: Store, meshes: MeshStore) -> None:
    model = build_model("IFC2X3")
    project = model.by_type("IfcProject")[0]
    conversion = ifcopenshell.api.pset.add_pset(model, product=project, name="ePset_MapConversion")
    ifcopenshell.api.pset.edit_pset(
        model, pset=conversion, properties={"Eastings": 355_000.0, "Northings": 3_452_000.0, "OrthogonalHeight": 4.0}
    )
    crs = ifcopenshell.api.pset.add_pset(model, product=project, name="ePset_ProjectedCRS")
    ifcopenshell.api.pset.edit_pset(model, pset=crs, properties={"Name": "EPSG:32651"})
    path = tmp_path / "epset.ifc"
    model.write(str(path))
    summary = write_source(store, path, read_as="ifc", meshes=meshes)
    lon, lat = Transformer.from_crs("EPSG:32651", "EPSG:4326", always_xy=True).transform(355_000.0, 3_452_000.0)
    assert summary.georeference["method"] == "epset_map_conversion"
    assert summary.georeference["lon"] == pytest.approx(lon, abs=1e-5)
    assert summary.georeference["lat"] == pytest.approx(lat, abs=1e-5)


def test_ifczip_ingests_like_the_file_it_holds(tmp_path: Path, data_dir: Path, store: Store, meshes: MeshStore) -> None:
    plain = data_dir / "ifc" / "AC20-FZK-Haus.ifc"
    zipped = tmp_path / "AC20-FZK-Haus.ifczip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(plain, "AC20-FZK-Haus.ifc")
    from_zip = write_source(store, zipped, read_as="ifc", meshes=meshes)
    assert store.count_assets(AssetQuery(where={"source": source_name(zipped)})) == sum(from_zip.assets.values())
    from_file = write_source(store, plain, read_as="ifc", meshes=meshes)  # the same GlobalIds: it takes the assets over
    assert from_zip.assets == from_file.assets and from_zip.meshes == from_file.meshes > 0
    assert from_zip.georeference == from_file.georeference


@pytest.mark.parametrize(
    ("members", "match"),
    [({"readme.txt": b"x"}, "holding no .ifc file"), ({"a.ifc": b"x", "b.ifc": b"y"}, "holding 2 .ifc files")],
)
def test_ifczip_without_exactly_one_ifc_fails_clearly(tmp_path: Path, members: dict[str, bytes], match: str) -> None:
    zipped = tmp_path / "model.ifczip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(InvalidInput, match=match):
        open_ifc(zipped)


def _processes_in_group(group: int) -> list[int]:
    """Live processes (not zombies) whose process group is ``group``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("walls", [30, 3000])  # 3,000: its geometry children still work when it dies
def test_reader_process_that_dies_is_one_files_error_and_keeps_earlier_ingest(
    walls: int, tmp_path: Path, store: Store, meshes: MeshStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is read in a child process: if it dies (a crash in ifcopenshell's C++), the caller gets an error
    naming the file, and the store and the meshes are as they were."""
    import os
    import signal

    import cim.bim.source as ingest

    path = write_model(tmp_path, "IFC4", walls=walls)
    write_source(store, path, read_as="ifc", meshes=meshes)
    before, meshes_before = store.count_assets(AssetQuery()), meshes.count()
    read_rows = ingest.read_rows

    def dies_midway(*args):  # type: ignore[no-untyped-def]
        for n, message in enumerate(read_rows(*args)):
            yield message
            if n == 1:
                os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(ingest, "read_rows", dies_midway)
    with pytest.raises(InvalidInput, match=r"generated-IFC4\.ifc — the IFC reader process ended unexpectedly"):
        write_source(store, path, read_as="ifc", meshes=meshes)
    assert store.count_assets(AssetQuery()) == before and meshes.count() == meshes_before


def test_an_unexpected_error_in_the_reader_is_one_files_error(
    tmp_path: Path, store: Store, meshes: MeshStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cim.bim.source as ingest

    path = write_model(tmp_path, "IFC4", walls=3)
    read_rows = ingest.read_rows

    def fails(*args):  # type: ignore[no-untyped-def]
        for message in read_rows(*args):
            yield message
            raise ValueError("an attribute no exporter writes")

    monkeypatch.setattr(ingest, "read_rows", fails)
    with pytest.raises(InvalidInput, match=r"generated-IFC4\.ifc — could not be read: ValueError: an attribute") as exc:
        write_source(store, path, read_as="ifc", meshes=meshes)
    assert "Traceback" in "".join(exc.value.__notes__)
    assert store.count_assets(AssetQuery()) == 0


def test_a_failed_write_stops_the_reader_and_its_geometry_children(
    tmp_path: Path, store: Store, meshes: MeshStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cim.bim.source as ingest

    path = write_model(tmp_path, "IFC4", walls=3000)
    groups: list[int] = []
    close = ingest._ReaderProcess.close

    def noting_its_group(reader: ingest._ReaderProcess) -> None:
        groups.append(reader._pid)
        close(reader)

    monkeypatch.setattr(ingest._ReaderProcess, "close", noting_its_group)

    def fails_after_one_batch(source, batches, *, at=None, original=None):  # type: ignore[no-untyped-def]
        next(iter(batches))
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(store, "replace_source", fails_after_one_batch)
    with pytest.raises(RuntimeError, match="the disk is full"):
        write_source(store, path, read_as="ifc", meshes=meshes)
    assert len(groups) == 1
    deadline = time.monotonic() + 10  # a killed process takes a moment to go
    while _processes_in_group(groups[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_in_group(groups[0]) == []


def test_without_fork_the_reader_runs_in_this_process_with_the_same_result(
    tmp_path: Path, store: Store, meshes: MeshStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing
    from types import SimpleNamespace

    import cim.bim.source as ingest

    path = write_model(tmp_path, "IFC4", walls=40, lifts=2)
    forked = write_source(store, path, read_as="ifc", meshes=meshes)
    assets = {a.id: a for a in store.find_assets(AssetQuery())}
    no_fork = SimpleNamespace(get_all_start_methods=lambda: ["spawn"], get_context=multiprocessing.get_context)
    monkeypatch.setattr(ingest, "mp", no_fork)
    monkeypatch.setattr(ingest, "_read_and_send", None)  # a child process would fail
    in_process = write_source(store, path, read_as="ifc", meshes=meshes)
    assert (in_process.assets, in_process.meshes, in_process.failed) == (forked.assets, forked.meshes, forked.failed)
    again = {a.id: a for a in store.find_assets(AssetQuery())}
    assert again.keys() == assets.keys()
    for asset_id, asset in assets.items():
        assert again[asset_id].geom is not None and asset.geom is not None
        assert again[asset_id].geom.equals(asset.geom) and again[asset_id].props == asset.props
