"""BIM ↔ GIS merge with a real IFC building (AC20-FZK-Haus) placed on a GIS footprint of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

from cim.gis.mapping import LayerMapping
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.pipeline.merge import Link, merge_buildings
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore

FZK = "ifc/AC20-FZK-Haus.ifc"


def footprint_layer(path: Path, features: list[tuple[str, shapely.Geometry, float]]) -> Path:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"bid": bid, "height": height, "name": f"GIS {bid}", "year": 1994},
                "geometry": shapely.geometry.mapping(geom),
            }
            for bid, geom, height in features
        ],
    }
    path.write_text(json.dumps(collection), encoding="utf-8")
    return path


MAPPING = LayerMapping(
    kind=Kind.BUILDING,
    id=["bid"],
    fields={"height_m": "height", "name": "name", "install_date": "year"},
    units={"install_date": "year"},
)


@pytest.fixture
def haus(store: Store, tmp_path: Path, data_dir: Path) -> tuple[MeshStore, shapely.Geometry]:
    """The FZK-Haus ingested with its meshes, and the footprint of its elements."""
    meshes = MeshStore(tmp_path / "meshes.duckdb")
    write_source(store, data_dir / FZK, read_as="ifc", meshes=meshes)
    elements = store.find_assets(AssetQuery(where={"source": "AC20-FZK-Haus.ifc:ifc"}))
    hull = shapely.union_all(
        [a.geom for a in elements if a.geom is not None and a.geom.area > 0 and a.kind is Kind.ELEMENT]
    )
    return meshes, hull


def test_a_bim_building_on_its_gis_footprint_becomes_one_building(
    store: Store, tmp_path: Path, haus: tuple[MeshStore, shapely.Geometry]
) -> None:
    meshes, hull = haus
    far = shapely.affinity.translate(hull, 0.01, 0)
    layer = footprint_layer(
        tmp_path / "blocks.geojson", [("B1", hull.convex_hull.buffer(0.00002), 9.0), ("B2", far, 6)]
    )
    write_source(store, layer, mapping=MAPPING, meshes=meshes)
    buildings_before = store.count_assets(AssetQuery(kinds=[Kind.BUILDING]))
    state = tmp_path / "merges.json"

    report = merge_buildings(store, meshes, state=state)
    assert [m["gis_id"] for m in report.matched] == ["blocks:B1"] and report.matched[0]["method"] == "footprint"
    assert report.matched[0]["overlap"] >= 0.5
    assert store.count_assets(AssetQuery(kinds=[Kind.BUILDING])) == buildings_before - 1  # counted once
    merged = store.get_asset("blocks:B1")
    assert merged.name == "GIS B1" and merged.height_m == 9.0  # GIS wins
    assert merged.props["bim.ifc_class"] == "IfcBuilding"
    storeys = store.children("blocks:B1", kind=Kind.STOREY)
    assert len(storeys) == 2 and all(s.source == "AC20-FZK-Haus.ifc:ifc" for s in storeys)
    assert len(meshes.get(["blocks:B1", "blocks:B2"])) == 1  # the LOD1 block of B1 is gone: the BIM model shows

    again = merge_buildings(store, meshes, state=state)  # idempotent: the same match, the same one asset
    assert [m["gis_id"] for m in again.matched] == ["blocks:B1"]
    assert store.count_assets(AssetQuery(kinds=[Kind.BUILDING])) == buildings_before - 1

    store.delete_assets(source="AC20-FZK-Haus.ifc:ifc")  # the IFC file leaves the pipeline
    meshes.delete(source="AC20-FZK-Haus.ifc:ifc")
    restored = merge_buildings(store, meshes, state=state)
    assert restored.restored == ["blocks:B1"]
    back = store.get_asset("blocks:B1")
    assert not any(k.startswith("bim.") for k in back.props)
    assert len(meshes.get(["blocks:B1"])) == 1  # its LOD1 block is back


def test_two_footprints_under_one_bim_building_are_ambiguous_not_guessed(
    store: Store, tmp_path: Path, haus: tuple[MeshStore, shapely.Geometry]
) -> None:
    meshes, hull = haus
    west, south, east, north = hull.bounds
    middle = (west + east) / 2
    halves = [("W", shapely.box(west, south, middle, north), 6.0), ("E", shapely.box(middle, south, east, north), 6.0)]
    write_source(store, footprint_layer(tmp_path / "halves.geojson", halves), mapping=MAPPING, meshes=meshes)
    report = merge_buildings(store, meshes)
    assert not report.matched and len(report.ambiguous) == 1
    assert {c["id"] for c in report.ambiguous[0]["candidates"]} == {"halves:W", "halves:E"}
    assert "2 GIS footprints overlap" in report.ambiguous[0]["why"]


def test_an_explicit_link_wins_over_geometry_and_unplaced_bim_is_reported(
    store: Store, tmp_path: Path, haus: tuple[MeshStore, shapely.Geometry]
) -> None:
    meshes, hull = haus
    elsewhere = shapely.affinity.translate(hull, 0.05, 0.05)
    write_source(
        store, footprint_layer(tmp_path / "far.geojson", [("F", elsewhere, 6.0)]), mapping=MAPPING, meshes=meshes
    )
    unmatched = merge_buildings(store, meshes)
    assert not unmatched.matched and "no GIS footprint overlaps it" in unmatched.unmatched[0]["why"]
    state = tmp_path / "merges.json"
    link = Link(gis="far:F", ifc="AC20-FZK-Haus.ifc", prefer="bim")
    linked = merge_buildings(store, meshes, links=[link], state=state)
    assert linked.matched[0]["gis_id"] == "far:F" and linked.matched[0]["method"] == "link"
    conflicts = {c["field"]: c for c in linked.matched[0]["conflicts"]}
    assert conflicts["name"] == {"field": "name", "gis": "GIS F", "bim": "FZK-Haus", "kept": "bim"}
    merged = store.get_asset("far:F")
    assert merged.name == "FZK-Haus" and merged.props["gis.name"] == "GIS F"  # the link prefers BIM

    store.delete_assets(source="AC20-FZK-Haus.ifc:ifc")
    assert merge_buildings(store, meshes, state=state).restored == ["far:F"]
    assert store.get_asset("far:F").name == "GIS F"  # the GIS value comes back with the BIM model gone
