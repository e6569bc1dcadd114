"""CityGML in, CityGML 3.0 out, CityGML in again: the shared files imported (cim/gis/citygml.py), exported
(cim/export/citygml.py) and the export imported into a second store keep their buildings, parts, heights, dates,
addresses, places and ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely

from cim.export.citygml import write_citygml
from cim.model import Asset, Kind
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, open_store
from cim.store.meshes import open_meshes
from tests.conftest import DATA

CITYGML = DATA / "citygml"
#: 2.0 with a building part and xAL 2.0; its 3.0 twin; PLATEAU 2.0 in lat/lon with LoD0–2 and thematic surfaces.
FILES = [
    "Building_and_garage_LOD2-EPSG25832.v2.gml",
    "Building_and_garage_LOD2-EPSG25832.v3.gml",
    "53392642_bldg_6697_op2.gml",
]


def _buildings(store_path: Path) -> list[Asset]:
    with open_store(str(store_path)) as store:
        return store.find_assets(AssetQuery(kinds=(Kind.BUILDING, Kind.ELEMENT)))


@pytest.mark.parametrize("name", FILES)
def test_a_citygml_file_survives_export_and_import(name: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    with open_store(str(first)) as store:
        write_source(store, CITYGML / name, meshes=open_meshes(store))
        exported = tmp_path / "exported.gml"
        summary = write_citygml(store, open_meshes(store, read_only=True), exported)
    with open_store(str(second)) as store:
        again = write_source(store, exported, meshes=open_meshes(store))
    assert not [f for f in again.findings if f["rule"] != "skipped_object"], again.findings

    before, after = _buildings(first), _buildings(second)
    assert sum(summary.objects.values()) == len(before)
    assert sorted(a.kind for a in after) == sorted(a.kind for a in before)
    # the same ids (gml:identifier of codeSpace urn:cim:asset-id), and parts stay parts of the same building
    assert {a.id: a.parent_id for a in after} == {a.id: a.parent_id for a in before}
    by_place = {_key(a): a for a in before}
    for asset in after:
        original = min(before, key=lambda b: _distance_m(b, asset))
        assert _distance_m(original, asset) < 1.0, (asset.id, original.id)
        assert asset.kind == original.kind
        assert asset.install_date == original.install_date
        if original.height_m is not None and asset.height_m is not None:
            assert asset.height_m == pytest.approx(original.height_m, abs=0.01)
        assert asset.z_min == pytest.approx(original.z_min, abs=0.01)
        assert asset.z_max == pytest.approx(original.z_max, abs=0.01)
        if original.props.get("address"):
            assert asset.props.get("address") == original.props["address"]
    assert len(by_place) == len(before)


def _key(asset: Asset) -> tuple[float, float]:
    point = shapely.centroid(asset.geom)
    return round(point.x, 6), round(point.y, 6)


def _distance_m(a: Asset, b: Asset) -> float:
    """Metres between the two footprints' centroids (local flat-earth: they are a few metres apart at most)."""
    pa, pb = shapely.centroid(a.geom), shapely.centroid(b.geom)
    east = (pb.x - pa.x) * 111_320 * np.cos(np.radians(pa.y))
    north = (pb.y - pa.y) * 110_540
    return float(np.hypot(east, north))
