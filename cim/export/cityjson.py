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

- beside it, where ``meshes`` are given and the building has a stored mesh (CityJSON, CityGML and IFC sources),
  that mesh as it is, a ``MultiSurface`` of triangles at the source's LoD (``2`` when the source does not say; not
  written when the source says LoD 0 or 1: the extruded solid says as much). Without meshes (or for footprint
  buildings, which have none) the export costs no mesh look-up.

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
import pyarrow.compute as pc
import shapely
from pyproj import CRS, Transformer

from cim.errors import InvalidInput
from cim.export import ExportSummary, asset_batches, export_crs, written_whole
from cim.export.solids import extrude, heights, mesh_surfaces
from cim.model import Kind
from cim.model.source import Progress
from cim.store import AssetQuery, BBox, Store
from cim.store.meshes import MeshStore
from cim.store.sqlstore import sql_store

#: Vertex coordinates are integers of this many metres (CityJSON's ``transform.scale``): 1 mm.
SCALE = 0.001
#: The props that say an element asset was a CityGML/CityJSON building part (as the importers write them).
PART_TYPE_KEYS = ("cityjson.type", "citygml.class")
#: Props that say the LoD of the source a stored mesh came from.
LOD_KEYS = ("cityjson.lod", "citygml.lod")
#: Props the importers add about the file they read, not about the building: not exported as attributes.
IMPORT_ONLY_PROPS = frozenset({"cityjson.type", "cityjson.lod", "citygml.class", "citygml.lod"})
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
_SHOWN = 5
#: Rows per batch: a row's objects live until orjson writes them, so a batch smaller than the store's default keeps
#: the peak down (50,000 buildings: 566 MB in batches of 65,536 rows, 343 MB in batches of 16,384).
ROWS = 16_384
IntArray = npt.NDArray[np.int64]


@dataclass
class BuildingParts:
    """The building parts of the selection: part id → its parent, parent id → its parts, and the element parts."""

    parent_of: dict[str, str] = field(default_factory=dict)
    children_of: dict[str, list[str]] = field(default_factory=dict)
    elements: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class VertexFrame:
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
    ...     summary = write_cityjson(store, None, folder / "city.city.json")
    >>> summary.objects, summary.types
    ({'building': 1}, {'Building': 1})
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
        (table for source in sources for table in source),
        out,
        frame=frame,
        parts=parts,
        meshes=meshes,
        progress=progress,
    )


def write_city_objects(
    tables: Iterable[pa.Table],
    out: Path,
    *,
    frame: VertexFrame,
    parts: BuildingParts | None = None,
    meshes: MeshStore | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the buildings of ``tables`` (asset columns, :data:`COLUMNS`) to the CityJSON file ``out`` in ``frame``
    (:func:`make_frame`); ``parts`` says which are parts of which, ``meshes`` holds their stored meshes. Also the
    API's ``f=cityjson`` of a page."""
    summary = ExportSummary(format="cityjson", out=str(out), files=[str(out)])
    writer = _Writer(frame, parts or BuildingParts(), summary, meshes)
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


def make_frame(extent: BBox, crs: str | None = None) -> VertexFrame:
    """How the lon/lat of a selection inside ``extent`` become the file's vertices: in ``crs`` (an EPSG code of a
    projected CRS in metres), else the UTM zone of the extent's centre (:func:`cim.export.export_crs`); translated
    to its south-west corner."""
    target, _ = export_crs(crs, extent)
    west, south, east, north = extent
    to_xy = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    xs, ys = to_xy.transform([west, west, east, east], [south, north, south, north])
    return VertexFrame(crs=target, to_xy=to_xy, translate=(float(np.floor(min(xs))), float(np.floor(min(ys))), 0.0))


def _find_parts(store: Store, bbox: BBox | None) -> BuildingParts:
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
    parts = BuildingParts()
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

    def __init__(
        self, frame: VertexFrame, parts: BuildingParts, summary: ExportSummary, meshes: MeshStore | None
    ) -> None:
        self.meshes = meshes
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
        geoms = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
        base, top = heights(table)
        geometries, xyz = extrude(geoms, base, top, first_vertex=self.vertex_count, to_vertices=self.frame.vertices)
        for i, geometry in enumerate(geometries):
            if geometry is None:
                self.skipped.setdefault("no_footprint", []).append(table.column("id")[i].as_py())
        extra: dict[str, Any] = {}
        if self.meshes is not None:
            extra, mesh_xyz = self._meshes(table, first_vertex=self.vertex_count + len(xyz))
            xyz = np.concatenate([xyz, mesh_xyz]) if len(mesh_xyz) else xyz
        objects = self._objects(table, geometries, extra)
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

    # --- objects ---
    def _meshes(self, table: pa.Table, *, first_vertex: int) -> tuple[dict[str, Any], IntArray]:
        """The stored meshes of the batch's buildings worth writing, by asset id, and their vertices."""
        assert self.meshes is not None
        wanted, lods = [], {}
        for asset_id, text in zip(table.column("id").to_pylist(), table.column("props").to_pylist(), strict=True):
            lod = _source_lod(text)
            if lod is not None:
                wanted.append(asset_id)
                lods[asset_id] = lod
        found = self.meshes.get(wanted) if wanted else None
        if found is None or not len(found.asset_ids):
            return {}, np.zeros((0, 3), np.int64)
        surfaces, xyz = mesh_surfaces(
            found, [lods[i] for i in found.asset_ids], first_vertex=first_vertex, to_vertices=self.frame.vertices
        )
        return dict(zip(found.asset_ids, surfaces, strict=True)), xyz

    def _objects(self, table: pa.Table, geometries: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
        ids = table.column("id").to_pylist()
        attributes = _attributes(table)
        objects: dict[str, Any] = {}
        parent_of, children_of = self.parts.parent_of, self.parts.children_of
        buildings = 0
        for asset_id, attributes_of, geometry in zip(ids, attributes, geometries, strict=True):
            parent = parent_of.get(asset_id) if parent_of else None
            city_object: dict[str, Any] = {
                "type": "Building" if parent is None else "BuildingPart",
                "attributes": attributes_of,
                "geometry": [] if geometry is None else [geometry],
            }
            if extra and asset_id in extra:
                city_object["geometry"].append(extra[asset_id])
            if parent is None:
                buildings += 1
            else:
                city_object["parents"] = [parent]
            children = children_of.get(asset_id) if children_of else None
            if children:
                city_object["children"] = children
            objects[asset_id] = city_object
        for counted in pc.value_counts(table.column("kind")).to_pylist():
            kind = str(counted["values"])
            self.summary.objects[kind] = self.summary.objects.get(kind, 0) + counted["counts"]
        types = self.summary.types
        for name, count in (("Building", buildings), ("BuildingPart", len(ids) - buildings)):
            if count:
                types[name] = types.get(name, 0) + count
        return objects


#: Typed column → the attribute it is written as (CityGML's names where CityGML has one).
TYPED_ATTRIBUTES = {
    "name": "name",
    "height_m": "measuredHeight",
    "storeys": "storeysAboveGround",
    "status": "status",
    "material": "material",
    "source": "source",
}


def _source_lod(props: str | None) -> str | None:
    """The LoD a building's stored mesh is written at: its source's (``cityjson.lod``, ``citygml.lod``), ``2`` when
    the source does not say; None when the source says 0 or 1 (the extruded solid says as much)."""
    said = orjson.loads(props) if props else {}
    lod = next((str(said[k]) for k in LOD_KEYS if isinstance(said, dict) and said.get(k) not in (None, "")), "2")
    return None if lod.split(".")[0] in ("0", "1") else lod


def _attributes(table: pa.Table) -> list[dict[str, Any]]:
    """Each row's attributes: its props, then CityGML's attributes from the typed columns (which win a clash).
    Read column by column: a dict per row from Arrow costs more than the rest of an object."""
    dates = table.column("install_date")
    columns = {name: table.column(column).to_pylist() for column, name in TYPED_ATTRIBUTES.items()}
    columns["yearOfConstruction"] = pc.year(dates).to_pylist()
    columns["installDate"] = dates.cast(pa.string()).to_pylist()
    named = list(columns.items())
    result = []
    for i, text in enumerate(table.column("props").to_pylist()):
        props = orjson.loads(text) if text else None
        attributes: dict[str, Any] = (
            {k: v for k, v in props.items() if v is not None and k not in IMPORT_ONLY_PROPS}
            if isinstance(props, dict)
            else {}
        )
        for name, values in named:
            if values[i] is not None:
                attributes[name] = values[i]
        result.append(attributes)
    return result
