"""A small city for the export tests: buildings of every shape the CityJSON export distinguishes (a box, one with a
courtyard, one of two polygons, one with no height, one with three parts), pipes, poles and a park, in Shanghai."""

from __future__ import annotations

from datetime import date

from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from cim.model import Asset, AssetBatch, Kind
from cim.store import Store

#: About 10 m in degrees of longitude / latitude at 31.2° N.
DX, DY = 0.000105, 0.00009
LON, LAT = 121.47, 31.23


def square(i: int, j: int, size: float = 2.0) -> Polygon:
    x, y = LON + i * 3 * DX, LAT + j * 3 * DY
    return box(x, y, x + size * DX, y + size * DY)


def buildings() -> list[Asset]:
    courtyard = Polygon(
        square(1, 0, 2.5).exterior.coords, [list(square(1, 0, 2.5).centroid.buffer(DX / 2).exterior.coords)]
    )
    return [
        Asset(
            id="b-box", kind=Kind.BUILDING, geom=square(0, 0), name="方塊 Box", source="test", z_min=4.0, z_max=34.0,
            height_m=30.0, storeys=10, install_date=date(1990, 5, 1), status="in_use", material="concrete",
            props={"owner": "city", "Pset_Building.Use": "office", "floors": [1, 2]},
        ),
        Asset(id="b-court", kind=Kind.BUILDING, geom=courtyard, source="test", z_min=3.0, z_max=15.0, height_m=12.0),
        Asset(
            id="b-twin", kind=Kind.BUILDING, geom=MultiPolygon([square(2, 0), square(2, 1)]), source="test",
            z_min=5.0, height_m=20.0,
        ),
        Asset(id="b-flat", kind=Kind.BUILDING, geom=square(3, 0), source="test", name="no height"),
        Asset(id="b-main", kind=Kind.BUILDING, geom=square(0, 2, 2.5), source="test", z_min=4.0, z_max=24.0),
        Asset(
            id="b-main-part", kind=Kind.ELEMENT, geom=square(0, 2, 1.0), parent_id="b-main", source="test",
            z_min=24.0, z_max=30.0, props={"cityjson.type": "BuildingPart"},
        ),
        # parts as the other importers keep them: a building under a building, a CityGML BuildingPart element
        Asset(
            id="b-main-garage", kind=Kind.BUILDING, geom=square(1, 2, 1.0), parent_id="b-main", source="test",
            z_min=4.0, z_max=7.0,
        ),
        Asset(
            id="b-main-wing", kind=Kind.ELEMENT, geom=square(0, 3, 1.0), parent_id="b-main", source="test",
            z_min=4.0, z_max=12.0, props={"citygml.class": "BuildingPart", "citygml.lod": "2"},
        ),
        # an element under a building that is no part (a lift shaft kept as an element): not in CityJSON
        Asset(id="b-main-shaft", kind=Kind.ELEMENT, geom=square(0, 2, 0.3), parent_id="b-main", source="test"),
    ]  # fmt: skip


def others() -> list[Asset]:
    start = (LON, LAT - 2 * DY)
    return [
        Asset(
            id="pipe-1", kind=Kind.PIPE, geom=LineString([start, (LON + 10 * DX, LAT - 2 * DY)]), source="test",
            network="gas", diameter_mm=300.0, depth_m=1.5, install_date=date(1975, 1, 1), material="cast iron",
            z_min=-2.0, z_max=-1.5,
        ),
        Asset(
            id="pipe-2", kind=Kind.PIPE, geom=LineString([start, (LON, LAT - 9 * DY)]), source="test", network="water"
        ),
        Asset(id="pole-1", kind=Kind.POLE, geom=Point(LON - DX, LAT), source="test", props={"lamp": "LED"}),
        Asset(id="park-1", kind=Kind.PARK, geom=square(-3, -3, 2.5), name="人民公园", source="test"),
    ]  # fmt: skip


def write_city(store: Store) -> None:
    store.upsert_assets(AssetBatch.from_assets([*buildings(), *others()]))
