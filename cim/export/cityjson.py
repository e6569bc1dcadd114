"""The CityJSON 2.0 export: the city's buildings (and their parts) as one ``.city.json`` that CityJSON and CityGML
tools read (cjio, 3DCityDB, QGIS, ninja).

What a file holds (https://www.cityjson.org/specs/2.0.1/):

- ``"type": "CityJSON"``, ``"version": "2.0"``, a ``transform`` (scale 1 mm, translate the selection's south-west
  corner) and integer ``vertices``;
- ``metadata.referenceSystem``: the OGC URL of a projected CRS in metres. A UTM zone, the one of the selection's
  centre, unless ``crs`` names another: CityJSON wants a CRS whose x, y and z share one unit (lon/lat degrees beside
  heights in metres are not one), and a UTM zone is defined everywhere, needs no national grid, and distorts less
  than 0.1 % within its zone. Heights are written as stored, ellipsoidal (WGS 84): no EPSG code names UTM with
  ellipsoidal heights, so ``metadata.title`` says so;
- one ``Building`` per building asset and one ``BuildingPart`` per part (an asset whose parent is an exported
  building: a building asset, or an element imported as a ``BuildingPart``), with ``parents``/``children``;
- each with a LoD1 ``Solid`` extruded from its footprint between ``z_min`` and ``z_max`` (or ``height_m`` above
  ``z_min``), its surfaces labelled ``GroundSurface``, ``RoofSurface`` and ``WallSurface``, and each shell oriented
  outwards (exterior rings counter-clockwise seen from outside); a multi-polygon footprint is a ``MultiSolid``; a
  building with no height is its footprint as a LoD0 ``MultiSurface``;
- attributes: CityGML's ``measuredHeight``, ``storeysAboveGround`` and ``yearOfConstruction``, the asset's name,
  status, material, install date and source, then its ``props``.

Stored meshes (LoD2 from CityJSON, CityGML and IFC sources) are not written: the export is the model's LoD1.

Streamed and vectorised: the store's rows come in batches (:func:`cim.export.asset_batches`), each batch's rings,
vertices and walls are numpy arrays, its CityObjects one ``orjson`` call, and its vertices go to a second temporary
file that is appended at the end; memory holds one batch. Written beside ``out`` and renamed when whole.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryFile
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import shapely
from pyproj import CRS, Transformer

from cim.errors import InvalidInput
from cim.export import ExportSummary, asset_batches, written_whole
from cim.geodesy import utm_epsg
from cim.model import Kind
from cim.model.source import Progress
from cim.store import AssetQuery, BBox, Store
from cim.store.meshes import MeshStore
from cim.store.sqlstore import sql_store

#: Vertex coordinates are integers of this many metres (CityJSON's ``transform.scale``): 1 mm.
SCALE = 0.001
#: The props that say an element asset was a CityGML/CityJSON building part (as the importers write them).
PART_TYPE_KEYS = ("cityjson.type", "citygml.type")
#: Props the importers add about the file they read, not about the building: not exported as attributes.
IMPORT_ONLY_PROPS = frozenset({"cityjson.type", "cityjson.lod", "citygml.type", "citygml.lod"})
COLUMNS = (
    "id",
    "kind",
    "name",
    "source",
    "geom",
    "z_min",
    "z_max",
    "height_m",
    "storeys",
    "install_date",
    "status",
    "material",
    "props",
)
_SEMANTICS = [{"type": "GroundSurface"}, {"type": "RoofSurface"}, {"type": "WallSurface"}]
_SHOWN = 5
#: Rows per batch: each row becomes dozens of Python lists before orjson writes them, so a smaller batch than the
#: store's default keeps the peak memory down (65,536 rows: 566 MB peak for 50,000 buildings; 16,384: see bench).
ROWS = 16_384
IntArray = npt.NDArray[np.int64]


@dataclass
class _Parts:
    """The building parts of the selection: part id → its parent, parent id → its parts, and the element parts."""

    parent_of: dict[str, str] = field(default_factory=dict)
    children_of: dict[str, list[str]] = field(default_factory=dict)
    elements: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Frame:
    """lon/lat → the integer vertices of the file."""

    crs: CRS
    to_xy: Transformer
    translate: tuple[float, float, float]

    def vertices(self, lonlat: npt.NDArray[np.float64], z: npt.NDArray[np.float64]) -> IntArray:
        x, y = self.to_xy.transform(lonlat[:, 0], lonlat[:, 1])
        xyz = np.column_stack([x, y, z]) - np.asarray(self.translate)
        return np.rint(xyz / SCALE).astype(np.int64)


def write_cityjson(
    store: Store,
    meshes: MeshStore | None,
    out: Path,
    *,
    kinds: Sequence[Kind] | None = None,
    bbox: BBox | None = None,
    progress: Progress | None = None,
    crs: str | None = None,
) -> ExportSummary:
    """Write the buildings inside ``bbox`` (and their parts) to the CityJSON 2.0 file ``out``, in ``crs`` (an EPSG
    code of a projected CRS in metres; default the UTM zone of the selection's centre). ``kinds`` may only name
    ``building``: CityJSON's other city objects need geometry the model does not keep (use ``gpkg``).

    >>> import tempfile, pathlib, json
    >>> from cim.store.duckdb import DuckDBStore
    >>> from cim.model import Asset, AssetBatch
    >>> from shapely.geometry import box
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> house = Asset(id="h1", kind=Kind.BUILDING, geom=box(121.5, 31.2, 121.5001, 31.2001), z_min=4, z_max=10)
    >>> with DuckDBStore(folder / "city.duckdb") as store:
    ...     _ = store.upsert_assets(AssetBatch.from_assets([house]))
    ...     write_cityjson(store, None, folder / "city.city.json").objects
    {'Building': 1}
    >>> json.loads((folder / "city.city.json").read_text())["CityObjects"]["h1"]["geometry"][0]["type"]
    'Solid'
    """
    if kinds is not None and set(kinds) - {Kind.BUILDING}:
        others = ", ".join(sorted(k.value for k in set(kinds) - {Kind.BUILDING}))
        raise InvalidInput(f"--kind {others}", "CityJSON export holds buildings and their parts; use gpkg for others")
    count = store.count_assets(AssetQuery(kinds=[Kind.BUILDING], bbox=bbox))
    if not count:
        raise InvalidInput(
            "the selection" + ("" if bbox is None else f" (bbox {bbox})"), "holds no buildings: nothing to export"
        )
    extent = bbox if bbox is not None else store.extent(kind=Kind.BUILDING)
    assert extent is not None  # there are buildings
    frame = make_frame(extent, crs)  # before anything is written: a bad --crs is refused first
    parts = _find_parts(store, bbox)
    sources = [asset_batches(store, kinds=[Kind.BUILDING], bbox=bbox, columns=COLUMNS, rows=ROWS)]
    if parts.elements:
        sources.append(asset_batches(store, kinds=[Kind.ELEMENT], ids=parts.elements, columns=COLUMNS, rows=ROWS))
    return write_city_objects(
        (table for source in sources for table in source), out, frame=frame, parts=parts, progress=progress
    )


def write_city_objects(
    tables: Iterable[pa.Table],
    out: Path,
    *,
    frame: _Frame,
    parts: _Parts | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the buildings of ``tables`` (asset columns, :data:`COLUMNS`) to the CityJSON file ``out`` in ``frame``
    (:func:`make_frame`); ``parts`` says which are parts of which. Also the API's ``f=cityjson`` of a page."""
    summary = ExportSummary(format="cityjson", out=str(out), files=[str(out)])
    writer = _Writer(frame, parts or _Parts(), summary)
    # the vertices wait in an unnamed temporary file (gone with the process, however it ends) until the objects are
    # written: CityJSON puts them in one array after the objects that number them
    with written_whole(out) as partial, partial.open("wb") as body, TemporaryFile(dir=out.parent) as vertices:
        writer.start(body)
        for table in tables:
            writer.add(table, body, vertices)
            if progress is not None:
                progress(table.num_rows)
        writer.finish(body, vertices)
    return summary


def make_frame(extent: BBox, crs: str | None = None) -> _Frame:
    """How the lon/lat of a selection inside ``extent`` become the file's vertices: in ``crs`` (an EPSG code of a
    projected CRS in metres), else the UTM zone of the extent's centre; translated to its south-west corner."""
    west, south, east, north = extent
    if crs is None:
        target = CRS.from_epsg(utm_epsg((west + east) / 2, (south + north) / 2))
    else:
        try:
            target = CRS.from_user_input(crs)
        except Exception:  # pyproj raises its CRSError, or a ValueError for some inputs
            raise InvalidInput(f"--crs {crs[:60]!r}", "is not a CRS pyproj knows; give e.g. EPSG:32651") from None
        unit = target.axis_info[0].unit_name if target.axis_info else ""
        if not target.is_projected or unit not in ("metre", "meter") or target.to_epsg() is None:
            raise InvalidInput(f"--crs {crs[:60]!r}", "must be an EPSG code of a projected CRS in metres")
    to_xy = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    xs, ys = to_xy.transform([west, west, east, east], [south, north, south, north])
    return _Frame(crs=target, to_xy=to_xy, translate=(float(np.floor(min(xs))), float(np.floor(min(ys))), 0.0))


def _find_parts(store: Store, bbox: BBox | None) -> _Parts:
    """The building parts of the selection whose parent is an exported building (few: one query, no stream)."""
    db = sql_store(store)
    dialect = db.dialect
    selected = dialect.where(AssetQuery(kinds=[Kind.BUILDING, Kind.ELEMENT], bbox=bbox))
    typed = " OR ".join(f"{dialect.props_text()} = {dialect.param}" for _ in PART_TYPE_KEYS)
    typed_params: list[Any] = [v for key in PART_TYPE_KEYS for v in (dialect.props_key(key), "BuildingPart")]
    rows = db.select(
        f"SELECT id, kind, parent_id FROM {db.assets_table} AS assets WHERE {selected.sql} AND parent_id IS NOT NULL "
        f"AND (kind = {dialect.param} OR {typed})",
        [*selected.params, Kind.BUILDING.value, *typed_params],
    ).to_pylist()
    parts = _Parts()
    if not rows:
        return parts
    wanted = sorted({row["parent_id"] for row in rows})
    parents = {
        row["id"]
        for table in asset_batches(store, kinds=[Kind.BUILDING], bbox=bbox, ids=wanted, columns=["id"])
        for row in table.to_pylist()
    }
    for row in sorted(rows, key=lambda r: r["id"]):
        if row["parent_id"] in parents:
            parts.parent_of[row["id"]] = row["parent_id"]
            parts.children_of.setdefault(row["parent_id"], []).append(row["id"])
            if row["kind"] == Kind.ELEMENT.value:
                parts.elements.append(row["id"])
    return parts


class _Writer:
    """Writes the file's parts in order: the header, the CityObjects batch by batch, then vertices and metadata."""

    def __init__(self, frame: _Frame, parts: _Parts, summary: ExportSummary) -> None:
        self.frame = frame
        self.parts = parts
        self.summary = summary
        self.vertex_count = 0
        self.first = True
        self.low = np.full(3, np.inf)
        self.high = np.full(3, -np.inf)
        self.skipped: dict[str, list[str]] = {}

    def start(self, body: IO[bytes]) -> None:
        header = {
            "type": "CityJSON",
            "version": "2.0",
            "transform": {"scale": [SCALE, SCALE, SCALE], "translate": list(self.frame.translate)},
        }
        body.write(orjson.dumps(header)[:-1] + b',"CityObjects":{')

    def add(self, table: pa.Table, body: IO[bytes], vertices: IO[bytes]) -> None:
        geometries, xyz = self._geometries(table)
        objects = self._objects(table, geometries)
        if not objects:
            return
        text = orjson.dumps(objects, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
        body.write(text if self.first else b"," + text)
        self.first = False
        if len(xyz):
            listed = orjson.dumps(xyz, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
            vertices.write(listed if self.vertex_count == 0 else b"," + listed)
            self.vertex_count += len(xyz)
            self.low = np.minimum(self.low, xyz.min(axis=0))
            self.high = np.maximum(self.high, xyz.max(axis=0))

    def finish(self, body: IO[bytes], vertices: IO[bytes]) -> None:
        body.write(b'},"vertices":[')
        vertices.seek(0)
        shutil.copyfileobj(vertices, body, 1 << 20)
        translate = np.asarray(self.frame.translate)
        extent = (
            [*(self.low * SCALE + translate), *(self.high * SCALE + translate)]
            if self.vertex_count
            else [*translate, *translate]
        )
        epsg = self.frame.crs.to_epsg()
        metadata = {
            "referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{epsg}",
            "geographicalExtent": [round(float(v), 3) for v in extent],
            "title": f"CIM export: buildings in {self.frame.crs.name}, heights in metres above the WGS 84 ellipsoid",
        }
        body.write(b'],"metadata":' + orjson.dumps(metadata) + b"}")
        for rule, ids in self.skipped.items():
            self.summary.skipped.append({"rule": rule, "count": len(ids), "examples": ids[:_SHOWN]})

    # --- geometry ---
    def _geometries(self, table: pa.Table) -> tuple[list[dict[str, Any] | None], IntArray]:
        """Each row's CityJSON geometry (None: none) and the batch's new vertices, numbered from
        ``vertex_count``."""
        n = table.num_rows
        geoms = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
        base, top = _heights(table)
        areal = shapely.get_type_id(geoms) if n else np.zeros(0, np.int64)
        areal = np.isin(areal, (3, 6))  # Polygon, MultiPolygon
        for i in np.flatnonzero(~areal):
            self.skipped.setdefault("no_footprint", []).append(table.column("id")[int(i)].as_py())
        parts, owner = shapely.get_parts(geoms[areal], return_index=True)
        owner = np.flatnonzero(areal)[owner]
        parts = shapely.orient_polygons(parts, exterior_cw=False)
        rings, ring_polygon = shapely.get_rings(parts, return_index=True)
        coords, point_ring = shapely.get_coordinates(rings, return_index=True)
        # a ring's closing point repeats its first: CityJSON rings are not closed
        ring_sizes = np.bincount(point_ring, minlength=len(rings))
        last = np.cumsum(ring_sizes) - 1
        keep = np.ones(len(coords), bool)
        keep[last] = False
        coords, point_ring = coords[keep], point_ring[keep]
        ring_sizes = ring_sizes - 1
        point_owner = owner[ring_polygon[point_ring]]
        extruded = np.isfinite(top[point_owner])
        points = len(coords)
        bottom_index = self.vertex_count + np.arange(points)
        top_index = np.full(points, -1, np.int64)
        top_index[extruded] = self.vertex_count + points + np.arange(int(extruded.sum()))
        xyz = np.concatenate(
            [
                self.frame.vertices(coords, base[point_owner]),
                self.frame.vertices(coords[extruded], top[point_owner][extruded]),
            ]
        )
        # walls: each edge of each ring, from its point to the next (the ring's first after its last)
        ring_start = np.cumsum(ring_sizes) - ring_sizes
        position = np.arange(points) - ring_start[point_ring]
        following = ring_start[point_ring] + (position + 1) % ring_sizes[point_ring]
        walls = np.column_stack([bottom_index, bottom_index[following], top_index[following], top_index]).tolist()
        bottoms, tops = bottom_index.tolist(), top_index.tolist()
        # each row's polygons, each polygon's rings, each ring's points: slices of the arrays above
        polygon_rings = np.r_[0, np.cumsum(np.bincount(ring_polygon, minlength=len(parts)))]
        ring_points = np.r_[0, np.cumsum(ring_sizes)]
        row_polygons: list[list[int]] = [[] for _ in range(n)]
        for p, row in enumerate(owner.tolist()):
            row_polygons[row].append(p)
        result: list[dict[str, Any] | None] = []
        for row in range(n):
            polygons = row_polygons[row]
            if not polygons:
                result.append(None)
                continue
            shells = []
            for p in polygons:
                ring_range = range(int(polygon_rings[p]), int(polygon_rings[p + 1]))
                spans = [(int(ring_points[r]), int(ring_points[r + 1])) for r in ring_range]
                if np.isfinite(top[row]):
                    ground = [bottoms[a:b][::-1] for a, b in spans]
                    roof = [tops[a:b] for a, b in spans]
                    shells.append([ground, roof, *([wall] for a, b in spans for wall in walls[a:b])])
                else:
                    shells.append([bottoms[a:b] for a, b in spans])
            result.append(_geometry(shells, extruded=bool(np.isfinite(top[row]))))
        return result, xyz

    # --- objects ---
    def _objects(self, table: pa.Table, geometries: list[dict[str, Any] | None]) -> dict[str, Any]:
        rows = table.drop_columns(["geom"]).to_pylist()
        objects: dict[str, Any] = {}
        for row, geometry in zip(rows, geometries, strict=True):
            asset_id = row["id"]
            parent = self.parts.parent_of.get(asset_id)
            city_object: dict[str, Any] = {
                "type": "BuildingPart" if parent is not None else "Building",
                "attributes": _attributes(row),
                "geometry": [] if geometry is None else [geometry],
            }
            if parent is not None:
                city_object["parents"] = [parent]
            children = self.parts.children_of.get(asset_id)
            if children:
                city_object["children"] = children
            objects[asset_id] = city_object
            self.summary.objects[city_object["type"]] = self.summary.objects.get(city_object["type"], 0) + 1
        return objects


def _heights(table: pa.Table) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each row's base and top: ``z_min`` (else ``z_max - height_m``, else 0) and ``z_max`` (else base +
    ``height_m``); top is NaN where no height is known or it is not above the base (no solid)."""

    def floats(name: str) -> npt.NDArray[np.float64]:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    z_min, z_max, height = floats("z_min"), floats("z_max"), floats("height_m")
    base = np.where(np.isfinite(z_min), z_min, np.where(np.isfinite(z_max - height), z_max - height, 0.0))
    top = np.where(np.isfinite(z_max), z_max, base + height)
    top = np.where(top > base, top, np.nan)
    return base, top


def _geometry(shells: list[Any], *, extruded: bool) -> dict[str, Any]:
    if not extruded:  # footprints at the base: each polygon one surface
        return {"type": "MultiSurface", "lod": "0", "boundaries": shells}
    values = [[0, 1, *([2] * (len(shell) - 2))] for shell in shells]
    if len(shells) == 1:
        return {
            "type": "Solid",
            "lod": "1",
            "boundaries": [shells[0]],
            "semantics": {"surfaces": _SEMANTICS, "values": values},
        }
    return {
        "type": "MultiSolid",
        "lod": "1",
        "boundaries": [[shell] for shell in shells],
        "semantics": {"surfaces": _SEMANTICS, "values": [[v] for v in values]},
    }


def _attributes(row: dict[str, Any]) -> dict[str, Any]:
    """CityGML's attributes from the typed columns, then the asset's props (the typed ones win a clash)."""
    attributes: dict[str, Any] = {}
    props = orjson.loads(row["props"]) if row["props"] else {}
    if isinstance(props, dict):
        attributes.update({k: v for k, v in props.items() if k not in IMPORT_ONLY_PROPS and v is not None})
    typed = {
        "name": row["name"],
        "measuredHeight": row["height_m"],
        "storeysAboveGround": row["storeys"],
        "yearOfConstruction": None if row["install_date"] is None else row["install_date"].year,
        "installDate": None if row["install_date"] is None else row["install_date"].isoformat(),
        "status": row["status"],
        "material": row["material"],
        "source": row["source"],
    }
    attributes.update({k: v for k, v in typed.items() if v is not None})
    return attributes
