"""The generated layers go through the normal GIS ingest, on both stores, and their parent ids resolve."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from cim.gis.mapping import load_mapping
from cim.model import Kind
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store
from cim.synth.generate import SynthSummary, mapping_file

ROOT = Path(__file__).resolve().parents[2]
KINDS = {
    "buildings": "building",
    "lifts": "lift",
    "roads": "road",
    "pipes": "pipe",
    "nodes": "node",
    "parks": "park",
    "metro_exits": "metro_exit",
    "bus_stops": "transit_stop",
    "poles": "pole",
    "chargers": "charger",
    "sensors": "sensor",
    "water": "water",  # the sea, estuary, bay and the Huangpu (cim.synth.water)
    "tower_plots": "building",  # the cadastre footprints the BIM towers merge into
}


def test_every_layer_ingests_and_every_parent_exists(store: Store, city: tuple[Path, SynthSummary]) -> None:
    out, summary = city
    for layer in summary.layers:
        result = write_source(store, out / f"{layer}.parquet", mapping=load_mapping(ROOT / mapping_file(layer)))
        assert result.rejected == 0 and not result.findings, (layer, result.findings)
    # the areas layer holds four kinds (city, district, street, grid_cell) in its kind column
    expected = Counter(pq.read_table(out / "areas.parquet", columns=["kind"]).column("kind").to_pylist())
    for layer, rows in summary.layers.items():
        if layer != "areas":
            expected[KINDS[layer]] += rows
    assert store.count_by_kind() == dict(expected)
    areas = store.find_assets(AssetQuery(kinds=[Kind.CITY, Kind.DISTRICT, Kind.STREET, Kind.GRID_CELL]))
    area_ids = {a.id for a in areas}
    assert all(a.parent_id in area_ids for a in areas if a.kind is not Kind.CITY)
    lifts = store.find_assets(AssetQuery(kinds=[Kind.LIFT]))
    parents = {a.id: a for a in store.find_assets(AssetQuery(ids=sorted({lift.parent_id for lift in lifts})))}
    assert all(lift.parent_id in parents and parents[lift.parent_id].kind is Kind.BUILDING for lift in lifts)
    assert any(lift.install_date is None for lift in lifts) and any(lift.install_date for lift in lifts)
    sensors = store.find_assets(AssetQuery(kinds=[Kind.SENSOR]))
    watched = {a.id: a.kind for a in store.find_assets(AssetQuery(ids=sorted({s.parent_id for s in sensors})))}
    assert {watched[s.parent_id] for s in sensors} == {Kind.LIFT, Kind.PIPE, Kind.NODE}
    assert all(isinstance(s.props["thresholds"], dict) for s in sensors)
    pipes = store.find_assets(AssetQuery(kinds=[Kind.PIPE]))
    assert all(p.z_max is not None and p.z_max < 0 and p.depth_m for p in pipes)
