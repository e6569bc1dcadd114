"""Ingest one IFC file: its spatial structure, elements, properties and meshes, as one source of the store.

Assets go in with :meth:`Store.replace_source` and meshes with :meth:`MeshStore.replacing` under the same source
name (``"<file name>:ifc"``); the mesh transaction commits only after the assets did, so a failed asset write
leaves both as they were.

The file is parsed once. The geometry child (:class:`cim.bim.geometry.Geometry`) starts right after the parse and
works while this process reads structure and properties into asset columns; its meshes are then georeferenced a
batch at a time (vectorised) into mesh batches, and the assets go to the store as one columnar batch with no
:class:`~cim.model.Asset` object per element.

Geometry of an asset (``geom``, 2D lon/lat): a meshed element has the convex hull of its mesh in plan; a building
or a storey has its footprint, the union of its meshed descendants' hulls with the holes filled (a polygon, or a
multipolygon when the parts do not touch), so a BIM building can be matched to a GIS footprint and is found by
area queries; ``z_min``/``z_max`` span those descendants. Everything else (site, spaces, elements without or with
failed geometry, a building with no meshed parts) is a point at its placement origin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from cim import geodesy
from cim.bim import geometry, structure
from cim.bim.georef import Georeference, Placement, georeference, length_unit, world_origin
from cim.bim.properties import DIAMETER_PROPERTIES, PropertyIndex, first_values, install_date
from cim.bim.reader import open_ifc
from cim.errors import InvalidInput
from cim.model import KIND_FIELDS, Kind
from cim.store import AssetBatch, Store
from cim.store.meshes import MeshBatch, MeshStore
from cim.store.schema import ASSET_SCHEMA

Progress = Callable[[int], None]
_ROWS = 10_000  # assets per batch handed to the store
_MESH_VERTICES = 500_000  # vertices per mesh batch written (each write costs ~30 ms of fixed DuckDB work)
_FOOTPRINT_KINDS = (Kind.BUILDING, Kind.STOREY)
_PROMOTED = ("Status", "Length", *DIAMETER_PROPERTIES, "RimElevation", "InvertElevation")
_NETWORK_KINDS = KIND_FIELDS["network"]
_DIAMETER_KINDS = KIND_FIELDS["diameter_mm"]


@dataclass
class IfcSummary:
    path: str
    schema: str
    declared_schema: str
    georeference: dict[str, Any]
    assets: dict[str, int] = field(default_factory=dict)
    meshes: int = 0
    failed_elements: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def source_name(path: Path) -> str:
    """The ``source`` of one IFC file's assets and meshes; re-ingesting the file replaces them."""
    return f"{path.name}:ifc"


def ingest_ifc(
    store: Store,
    path: str | Path,
    *,
    meshes: MeshStore | None = None,
    placement: Placement | None = None,
    progress: Progress | None = None,
) -> IfcSummary:
    """Read the IFC file at ``path`` into ``store`` (and its meshes into ``meshes``), replacing an earlier ingest
    of the same file. A file problem (missing, not IFC, truncated, no georeference) raises before anything is
    written; an element whose geometry fails is counted in ``failed_elements`` and kept without a mesh.
    """
    started = time.perf_counter()
    opened = open_ifc(path)
    model = opened.model
    georef = georeference(model, placement=placement)
    source = source_name(opened.path)
    summary = IfcSummary(str(opened.path), opened.schema, opened.declared_schema, georef.summary())
    index = PropertyIndex(model)
    products = structure.describe(model, index.type_of)
    meshable = [s for s, m in zip(products.step_ids, products.meshable, strict=True) if m]
    with geometry.Geometry(model, str(opened.path), meshable) as shapes:
        # the geometry child works from here on; this process reads everything else meanwhile
        columns = _Columns(products, index, length_unit(model), source)
        mesh_context = meshes.replacing(source) if meshes is not None else nullcontext(None)
        with mesh_context as writer:
            pending: list[MeshBatch] = []
            for batch in shapes.batches():
                mesh_batch = columns.add_shapes(batch, georef)
                if writer is not None:
                    pending.append(mesh_batch)
                if sum(len(m.vertices) for m in pending) >= _MESH_VERTICES:
                    writer.add(MeshBatch.concat(pending))  # type: ignore[union-attr]
                    pending = []
                if progress is not None:
                    progress(len(batch))
            if writer is not None and pending:
                writer.add(MeshBatch.concat(pending))
            failures = {products.global_ids[columns.row_of[i]]: why for i, why in shapes.failures.items()}
            rest = columns.finish(georef)
            if progress is not None:
                progress(rest)
            store.replace_source(source, columns.batches())
    summary.assets = columns.counts()
    summary.meshes = columns.meshed
    summary.failed = [{"id": k, "error": v} for k, v in sorted(failures.items())]
    summary.failed_elements = len(summary.failed)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


class _Columns:
    """The asset table of one model, filled column by column: attributes first, geometry as meshes arrive."""

    def __init__(self, products: structure.Products, index: PropertyIndex, unit: float, source: str) -> None:
        self.products, self.unit, self.source = products, unit, source
        n = len(products)
        self.row_of = {step_id: row for row, step_id in enumerate(products.step_ids)}
        self.geoms: npt.NDArray[np.object_] = np.full(n, None, dtype=object)
        self.z_min = np.full(n, np.nan)
        self.z_max = np.full(n, np.nan)
        self.meshed = 0
        self.install_date: list[Any] = [None] * n
        self.status: list[str | None] = [None] * n
        self.material: list[str | None] = [None] * n
        self.network: list[str | None] = [None] * n
        self.diameter_mm: list[float | None] = [None] * n
        self.depth_m: list[float | None] = [None] * n
        self.props: list[str] = [""] * n
        for row in range(n):
            self._attributes(row, index)

    def _attributes(self, row: int, index: PropertyIndex) -> None:
        p, unit = self.products, self.unit
        instance, kind, step_id = p.instances[row], p.kinds[row], p.step_ids[row]
        props = index.props_of(step_id)
        props["ifc_class"] = p.classes[row]
        if p.predefined_types[row]:
            props["ifc_predefined_type"] = p.predefined_types[row]
        found = first_values(props, _PROMOTED)
        self.install_date[row] = install_date(props)
        self.status[row] = _text(found.get("Status"))
        self.material[row] = index.material_of(step_id)
        length = found.get("Length")
        if isinstance(length, (int, float)):
            props["length_m"] = float(length) * unit
        if kind in _NETWORK_KINDS:
            self.network[row] = index.network.get(step_id)
        if kind in _DIAMETER_KINDS:
            diameter = next((found[n] for n in DIAMETER_PROPERTIES if n in found), None)
            if isinstance(diameter, (int, float)) and diameter > 0:
                self.diameter_mm[row] = float(diameter) * unit * 1000.0
        if kind is Kind.NODE:
            rim, invert = found.get("RimElevation"), found.get("InvertElevation")
            if isinstance(rim, (int, float)) and isinstance(invert, (int, float)) and rim >= invert:
                self.depth_m[row] = (float(rim) - float(invert)) * unit
        if kind is Kind.STOREY and getattr(instance, "Elevation", None) is not None:
            props["elevation_m"] = float(instance.Elevation) * unit
        try:
            self.props[row] = json.dumps(props, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"props of asset {p.global_ids[row]!r}", f"not JSON values: {exc}") from None

    def add_shapes(self, batch: geometry.ShapeBatch, georef: Georeference) -> MeshBatch:
        """Georeference one batch of element meshes: their assets' hulls and heights, and the mesh batch."""
        rows = np.array([self.row_of[int(i)] for i in batch.step_ids], dtype=np.int64)
        starts = batch.vertex_offsets[:-1]
        owner = np.repeat(np.arange(len(batch)), np.diff(batch.vertex_offsets))
        lonlat = georef.to_lonlat(batch.vertices)
        centres = (np.minimum.reduceat(batch.vertices, starts) + np.maximum.reduceat(batch.vertices, starts)) / 2
        origins = georef.to_lonlat(centres)
        enu = geodesy.lonlat_to_enu(lonlat[:, 0], lonlat[:, 1], lonlat[:, 2], origins[owner]).astype(np.float32)
        self.geoms[rows] = shapely.convex_hull(shapely.multipoints(lonlat[:, :2], indices=owner))
        self.z_min[rows] = np.minimum.reduceat(lonlat[:, 2], starts)
        self.z_max[rows] = np.maximum.reduceat(lonlat[:, 2], starts)
        self.meshed += len(batch)
        return MeshBatch(
            asset_ids=[self.products.global_ids[r] for r in rows],
            origins=origins,
            vertices=enu,
            vertex_offsets=batch.vertex_offsets,
            triangles=batch.triangles,
            triangle_offsets=batch.triangle_offsets,
            colors=batch.colors,
        )

    def finish(self, georef: Georeference) -> int:
        """Footprints of buildings and storeys, points for the rest; returns how many assets got no mesh."""
        p = self.products
        meshed = np.array([g is not None for g in self.geoms], dtype=bool)
        parts: dict[int, list[int]] = {r: [] for r, k in enumerate(p.kinds) if k in _FOOTPRINT_KINDS}
        if parts:
            for row in np.flatnonzero(meshed).tolist():
                parent, depth = p.parent_rows[row], 0
                while parent >= 0 and depth < 64:  # depth: a malformed file may loop
                    if parent in parts:
                        parts[parent].append(row)
                    parent, depth = p.parent_rows[parent], depth + 1
            for row, below in parts.items():
                if below:
                    self.geoms[row] = footprint(self.geoms[below])
                    self.z_min[row] = float(self.z_min[below].min())
                    self.z_max[row] = float(self.z_max[below].max())
        rest = np.flatnonzero([g is None for g in self.geoms])
        if len(rest):
            origins = np.array([self._origin(int(r)) for r in rest]).reshape(-1, 3)
            lonlat = georef.to_lonlat(origins)
            self.geoms[rest] = shapely.points(lonlat[:, :2])
            self.z_min[rest] = self.z_max[rest] = lonlat[:, 2]
        # hulls of flat elements can be lines or points; an invalid or empty geometry is stored as none
        bad = shapely.is_empty(self.geoms) | ~shapely.is_valid(self.geoms)
        self.geoms[bad] = None
        return len(p) - int(meshed.sum())

    def batches(self) -> Iterator[AssetBatch]:
        p = self.products
        for start in range(0, len(p), _ROWS):
            rows = slice(start, start + _ROWS)
            table = pa.table(
                {
                    "id": p.global_ids[rows],
                    "kind": [k.value for k in p.kinds[rows]],
                    "name": p.names[rows],
                    "parent_id": p.parent_ids[rows],
                    "source": [self.source] * len(p.global_ids[rows]),
                    "geom": shapely.to_wkb(self.geoms[rows]),
                    "z_min": self.z_min[rows],
                    "z_max": self.z_max[rows],
                    "install_date": self.install_date[rows],
                    "status": self.status[rows],
                    "material": self.material[rows],
                    "network": self.network[rows],
                    "diameter_mm": self.diameter_mm[rows],
                    "depth_m": self.depth_m[rows],
                    "props": self.props[rows],
                },
                schema=pa.schema([ASSET_SCHEMA.field(n) for n in _BATCH_COLUMNS]),
            )
            yield AssetBatch.from_table(table)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind in self.products.kinds:
            counts[kind.value] = counts.get(kind.value, 0) + 1
        return dict(sorted(counts.items()))

    def _origin(self, row: int) -> tuple[float, float, float]:
        instance = self.products.instances[row]
        if getattr(instance, "ObjectPlacement", None) is None:
            return (0.0, 0.0, 0.0)
        return world_origin(instance, self.unit)


_BATCH_COLUMNS = (
    "id",
    "kind",
    "name",
    "parent_id",
    "source",
    "geom",
    "z_min",
    "z_max",
    "install_date",
    "status",
    "material",
    "network",
    "diameter_mm",
    "depth_m",
    "props",
)


def footprint(parts: npt.NDArray[np.object_]) -> BaseGeometry:
    """The union of ``parts`` (lon/lat geometries) with the holes of each polygon filled: one polygon, or a
    multipolygon when the parts fall into groups that do not touch.

    Parts are grouped by which touch which (an R-tree query, then union-find) and each group is merged alone:
    GEOS's union of thousands of disjoint polygons takes seconds, of each group milliseconds.

    >>> from shapely.geometry import box
    >>> ring = np.array([box(0, 0, 3, 1), box(0, 2, 3, 3), box(0, 0, 1, 3), box(2, 0, 3, 3), box(5, 0, 6, 1)])
    >>> shape = footprint(ring)  # a ring of four walls (its hole filled) and a box apart
    >>> shape.geom_type, len(shape.geoms), shape.area
    ('MultiPolygon', 2, 10.0)
    """
    areas = parts[shapely.area(parts) > 0]
    if not len(areas):
        return shapely.convex_hull(shapely.union_all(parts))
    left, right = shapely.STRtree(areas).query(areas, predicate="intersects")
    group = _components(len(areas), left, right)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))
    merged = [
        areas[rows[0]] if len(rows) == 1 else shapely.union_all(areas[rows]) for rows in np.split(order, starts[1:])
    ]
    pieces = shapely.get_parts(np.array(merged, dtype=object))
    polygons = pieces[shapely.get_type_id(pieces) == 3]
    filled = shapely.polygons(shapely.get_exterior_ring(polygons))
    if len(filled) == 1:
        return filled[0]
    result = shapely.multipolygons(filled)
    if not result.is_valid:  # a filled ring covers another group (a column inside a ring of walls)
        result = shapely.union_all(filled)
    return result if result.is_valid else shapely.make_valid(result)


def _components(n: int, left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Connected-component label of each of ``n`` nodes joined by the edges ``left[i]``–``right[i]``."""
    root = list(range(n))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        if a != b:
            ra, rb = find(a), find(b)
            if ra != rb:
                root[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
