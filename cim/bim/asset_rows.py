"""Reading one IFC file into asset rows and meshes: the work of the reader process (see :mod:`cim.bim.source`).

:func:`read_rows` parses the file once and sends what it makes as :data:`Message` tuples. The geometry children
(:class:`cim.bim.geometry.Geometry`, two kernels sharing the elements) start right after the parse and work while
this process reads georeference, structure and properties into asset columns; their meshes are georeferenced a
batch at a time (vectorised) as they come, and their hulls folded into partial footprints. A meshed element's row
and mesh are final when its mesh arrives, so they are sent while the kernel still works; what is left when it ends
is the structure rows (their footprints need every part) and a short tail.

Geometry of an asset (``geom``, 2D lon/lat): a meshed element has the convex hull of its mesh in plan; a building
or a storey has its footprint, the union of its meshed descendants' hulls with the holes filled (a polygon, or a
multipolygon when the parts do not touch), so a BIM building can be matched to a GIS footprint and is found by
area queries; ``z_min``/``z_max`` span those descendants. Everything else (site, spaces, elements without or with
failed geometry, a building with no meshed parts) is a point at its placement origin.
"""

from __future__ import annotations

import ctypes
import json
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from functools import cache
from itertools import compress
from pathlib import Path
from typing import Any

import ifcopenshell
import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from cim import geodesy
from cim.bim import geometry, structure
from cim.bim.georef import Georeference, Placement, georeference, length_unit, world_origin
from cim.bim.properties import DIAMETER_PROPERTIES, PropertyIndex, first_values, install_date
from cim.bim.reader import open_ifc
from cim.errors import InvalidInput
from cim.model import KIND_FIELDS, Kind, MeshBatch

#: What :func:`read_rows` sends, in this order:
#:
#: - ``("ready",)``: the file is parsed and georeferenced (a file problem raises before);
#: - then, mixed: ``("assets", columns)`` (rows that are final: a dict of the store's asset columns),
#:   ``("meshes", MeshBatch)``, ``("progress", elements done)``;
#: - ``("footprints", [partial footprints, …])``: for each footprint of the buildings and storeys with meshed
#:   parts, its partial footprints (WKB), which :func:`merged_footprint` merges (in the writing process, once the
#:   reader has ended); then ``("last_assets", columns)``: those buildings and storeys, whose ``geom`` is the
#:   index of their footprint in that list, and the rest of the rows;
#: - ``("done", IfcSummary)``, the last (the geometry children have ended).
Message = tuple[Any, ...]

_ROWS = 10_000  # assets per batch handed to the store at most
_MESH_VERTICES = 500_000  # vertices per mesh batch written at most (each write costs ~10-30 ms of fixed DuckDB work)
# While waiting for the kernel, send what is done at most this often, and only when it is worth a write (each
# costs ~10-30 ms however small), but the first time whatever its size: the writing process writes that batch at
# once, paying the one-time costs of the writes (~50 ms: DuckDB's first Arrow scan imports pyarrow.dataset, the
# spatial functions load) while the kernel works, and holds the later ones until this process ends
_FLUSH_SECONDS = 0.25
_FLUSH_ROWS = 500
_FLUSH_VERTICES = 100_000
_FOLD_ROWS = 256  # hulls folded into partial footprints at a time, while waiting for the kernel
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


def read_rows(path: Path, placement: Placement | None, with_meshes: bool = True) -> Generator[Message, None, None]:
    """The messages of the IFC file at ``path`` (see :data:`Message`)."""
    opened = open_ifc(path)
    model = opened.model
    with geometry.Geometry(model, str(opened.path)) as shapes:
        # the geometry children work from here on; this process reads everything else meanwhile
        georef = georeference(model, placement=placement)
        source = source_name(opened.path)
        summary = IfcSummary(str(opened.path), opened.schema, opened.declared_schema, georef.summary())
        yield ("ready",)
        index = PropertyIndex(model)
        products = structure.describe(model, index.type_of)
        columns = _Columns(model, products, index, length_unit(model), source, georef)
        yield from columns.stream(shapes, with_meshes)
    failures = {products.global_ids[columns.row_of[i]]: why for i, why in shapes.failures.items()}
    summary.assets = columns.counts()
    summary.meshes = columns.meshed
    summary.failed = [{"id": k, "error": v} for k, v in sorted(failures.items())]
    summary.failed_elements = len(summary.failed)
    yield ("done", summary)


#: props JSON, install date, status, diameter_mm, depth_m: what a product's property sets decide
_FromProps = tuple[str, Any, str | None, float | None, float | None]


class _Columns:
    """The asset table of one model, filled column by column: attributes and placement points first (while the
    geometry children work), hulls as meshes arrive, partial footprints meanwhile (see :meth:`fold`)."""

    def __init__(
        self,
        model: ifcopenshell.file,
        products: structure.Products,
        index: PropertyIndex,
        unit: float,
        source: str,
        georef: Georeference,
    ) -> None:
        self.model, self.products, self.unit, self.source, self.georef = model, products, unit, source, georef
        n = len(products)
        self.row_of = {step_id: row for row, step_id in enumerate(products.step_ids)}
        self.geoms: npt.NDArray[np.object_] = np.full(n, None, dtype=object)
        self.z_min = np.full(n, np.nan)
        self.z_max = np.full(n, np.nan)
        self.has_mesh = np.zeros(n, dtype=bool)
        self.has_hull = np.zeros(n, dtype=bool)  # a meshed element with a valid hull (freed once written: see _wkb)
        self.meshable = np.array(products.meshable, dtype=bool)
        self.meshed = 0
        self.install_date: list[Any] = [None] * n
        self.status: list[str | None] = [None] * n
        self.material: list[str | None] = [None] * n
        self.network: list[str | None] = [None] * n
        self.diameter_mm: list[float | None] = [None] * n
        self.depth_m: list[float | None] = [None] * n
        self.props: list[str] = [""] * n
        shared: dict[tuple[Any, ...], _FromProps] = {}
        for row in range(n):
            self._attributes(row, index, shared)
        self._points(np.flatnonzero(~self.meshable))
        # for each building and storey, which rows lie below it (a footprint is the union of their hulls)
        self.below: dict[int, npt.NDArray[np.bool_]] = {
            r: np.zeros(n, dtype=bool) for r, k in enumerate(products.kinds) if k in _FOOTPRINT_KINDS
        }
        if self.below:
            for row in range(n):
                parent, depth = products.parent_rows[row], 0
                while parent >= 0 and depth < 64:  # depth: a malformed file may loop
                    if parent in self.below:
                        self.below[parent][row] = True
                    parent, depth = products.parent_rows[parent], depth + 1
        # a storey and its building often have the same parts: one footprint for each set of parts, built up from
        # partial footprints of the hulls as they come (see fold)
        self.owners: dict[bytes, list[int]] = {}
        for row, mask in self.below.items():
            self.owners.setdefault((mask & self.meshable).tobytes(), []).append(row)
        # as WKB: a GEOS geometry takes ~6× the memory (40,000 hulls of walls: 34 MB against 5)
        self.partials: dict[bytes, list[bytes]] = {key: [] for key in self.owners}
        self.folded = np.zeros(n, dtype=bool)
        self.footprint_of: dict[int, int] = {}  # building or storey row → its footprint's index (see finish)

    def _attributes(self, row: int, index: PropertyIndex, shared: dict[tuple[Any, ...], _FromProps]) -> None:
        p = self.products
        kind, step_id = p.kinds[row], p.step_ids[row]
        self.material[row] = index.material_of(step_id)
        if kind in _NETWORK_KINDS:
            self.network[row] = index.network.get(step_id)
        # what comes from the property sets is the same for products with the same class, type and sets
        key: tuple[Any, ...] = (p.classes[row], p.predefined_types[row], kind, index.sources_of(step_id))
        if kind is Kind.STOREY:
            key = (*key, row)  # its elevation is its own
        values = shared.get(key)
        if values is None:
            values = shared[key] = self._from_props(row, index)
        self.props[row], self.install_date[row], self.status[row], self.diameter_mm[row], self.depth_m[row] = values

    def _from_props(self, row: int, index: PropertyIndex) -> _FromProps:
        """The props JSON of ``row`` and the fields promoted from it: install date, status, diameter, depth."""
        p, unit = self.products, self.unit
        kind = p.kinds[row]
        props = index.props_of(p.step_ids[row])
        props["ifc_class"] = p.classes[row]
        if p.predefined_types[row]:
            props["ifc_predefined_type"] = p.predefined_types[row]
        found = first_values(props, _PROMOTED)
        length = found.get("Length")
        if isinstance(length, (int, float)):
            props["length_m"] = float(length) * unit
        diameter_mm = depth_m = None
        if kind in _DIAMETER_KINDS:
            diameter = next((found[n] for n in DIAMETER_PROPERTIES if n in found), None)
            if isinstance(diameter, (int, float)) and diameter > 0:
                diameter_mm = float(diameter) * unit * 1000.0
        if kind is Kind.NODE:
            rim, invert = found.get("RimElevation"), found.get("InvertElevation")
            if isinstance(rim, (int, float)) and isinstance(invert, (int, float)) and rim >= invert:
                depth_m = (float(rim) - float(invert)) * unit
        elevation = getattr(self.model.by_id(p.step_ids[row]), "Elevation", None) if kind is Kind.STOREY else None
        if elevation is not None:
            props["elevation_m"] = float(elevation) * unit
        try:
            text = json.dumps(props, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"props of asset {p.global_ids[row]!r}", f"not JSON values: {exc}") from None
        return text, install_date(props), _text(found.get("Status")), diameter_mm, depth_m

    def stream(self, shapes: geometry.Geometry, with_meshes: bool) -> Iterator[Message]:
        """The messages for the writing process (see :data:`Message`): asset rows as they are done, meshes meanwhile
        (when ``with_meshes``), progress.

        Meshed elements are final when their mesh arrives: they and their meshes are sent when this process would
        otherwise wait for the kernel (see :data:`_FLUSH_SECONDS`), or when a batch is full. The rest (structure with
        its footprints, elements without a mesh) follows when the kernel is done, as ``last_assets``."""
        p = self.products
        done = np.zeros(len(p), dtype=bool)
        ready: list[npt.NDArray[np.int64]] = []
        pending: list[MeshBatch] = []
        flushed: float | None = None  # when the last write was
        unfolded_since = 0  # meshed elements when hulls were last folded into footprints
        for batch in shapes.batches(compress(p.step_ids, self.meshable)):
            rows, mesh_batch = self.add_shapes(batch)
            ready.append(rows)
            if with_meshes:
                pending.append(mesh_batch)
            yield ("progress", len(batch))
            rows_ready, vertices = sum(len(r) for r in ready), sum(len(m.vertices) for m in pending)
            worth = rows_ready >= _FLUSH_ROWS or vertices >= _FLUSH_VERTICES
            waiting = shapes.waiting()
            if waiting and self.owners and self.meshed - unfolded_since >= _FOLD_ROWS:
                self.fold()
                unfolded_since = self.meshed
            flush = waiting and (flushed is None or (worth and time.monotonic() - flushed >= _FLUSH_SECONDS))
            if flush or vertices >= _MESH_VERTICES:
                yield from _meshes(pending)
            if flush or rows_ready >= _ROWS:
                rows = np.concatenate(ready)
                done[rows], ready = True, []
                if self.owners:
                    self.fold()
                    unfolded_since = self.meshed
                yield ("assets", self.batch(rows))
                _release_freed_memory()  # the hulls of these rows (GEOS), freed all over the heap
                flushed = time.monotonic()
        yield from _meshes(pending)
        unmeshed, footprints = self.finish()
        yield ("progress", unmeshed)
        yield ("footprints", footprints)
        left = np.flatnonzero(~done)
        for start in range(0, len(left), _ROWS):
            yield ("last_assets", self.batch(left[start : start + _ROWS]))

    def add_shapes(self, batch: geometry.ShapeBatch) -> tuple[npt.NDArray[np.int64], MeshBatch]:
        """Georeference one batch of element meshes: their assets' hulls and heights; returns their rows and the
        mesh batch."""
        georef = self.georef
        rows = np.array([self.row_of[int(i)] for i in batch.step_ids], dtype=np.int64)
        starts = batch.vertex_offsets[:-1]
        owner = np.repeat(np.arange(len(batch)), np.diff(batch.vertex_offsets))
        lonlat = georef.to_lonlat(batch.vertices)
        centres = (np.minimum.reduceat(batch.vertices, starts) + np.maximum.reduceat(batch.vertices, starts)) / 2
        origins = georef.to_lonlat(centres)
        enu = geodesy.lonlat_to_enu(lonlat[:, 0], lonlat[:, 1], lonlat[:, 2], origins[owner]).astype(np.float32)
        # the hull of a line through the vertices is theirs, and lines are built 3× faster than multipoints (a line
        # needs two); a hull of a flat element can be a line or a point (fine), an invalid one is stored as none
        through = shapely.linestrings if (np.diff(batch.vertex_offsets) >= 2).all() else shapely.multipoints
        self.geoms[rows] = _valid(shapely.convex_hull(through(lonlat[:, :2], indices=owner)))
        self.has_hull[rows] = shapely.is_geometry(self.geoms[rows])
        self.z_min[rows] = np.minimum.reduceat(lonlat[:, 2], starts)
        self.z_max[rows] = np.maximum.reduceat(lonlat[:, 2], starts)
        self.has_mesh[rows] = True
        self.meshed += len(batch)
        return rows, MeshBatch(
            asset_ids=[self.products.global_ids[r] for r in rows],
            origins=origins,
            vertices=enu,
            vertex_offsets=batch.vertex_offsets,
            triangles=batch.triangles,
            triangle_offsets=batch.triangle_offsets,
            colors=batch.colors,
        )

    def fold(self) -> None:
        """Merge the hulls that came since the last call into partial footprints, while the kernel works: the
        footprint of the union of parts with holes filled is that of the partial ones (filling is monotone and
        idempotent), so what is left at the end is merging a few of them (5,000 hulls: 25 ms → a few)."""
        new = self.has_hull & ~self.folded
        self.folded |= new
        for key, owners in self.owners.items():
            rows = np.flatnonzero(new & self.below[owners[0]])
            if len(rows):
                self.partials[key].append(shapely.to_wkb(footprint(self.geoms[rows])))

    def finish(self) -> tuple[int, list[list[bytes]]]:
        """Heights of buildings and storeys, points for elements whose geometry failed; returns how many assets
        got no mesh, and the partial footprints (WKB) of the buildings and storeys with meshed parts, to be merged
        by :func:`merged_footprint`: the ``geom`` of such a row is the index of its footprint's partials until then
        (see :meth:`_wkb`)."""
        self.fold()
        footprints: list[list[bytes]] = []
        for key, owners in self.owners.items():
            below = np.flatnonzero(self.below[owners[0]] & self.has_hull)
            if len(below):
                low, high = self.z_min[below].min(), self.z_max[below].max()
                for row in owners:
                    self.geoms[row], self.z_min[row], self.z_max[row] = None, low, high
                    self.footprint_of[row] = len(footprints)
                footprints.append(self.partials.pop(key))
        self._points(np.flatnonzero(self.meshable & ~self.has_mesh))
        return len(self.products) - self.meshed, footprints

    def _points(self, rows: npt.NDArray[np.int64]) -> None:
        """Points at the placement origins of ``rows``."""
        if len(rows):
            origins = np.array([self._origin(int(r)) for r in rows]).reshape(-1, 3)
            lonlat = self.georef.to_lonlat(origins)
            self.geoms[rows] = _valid(shapely.points(lonlat[:, :2]))
            self.z_min[rows] = self.z_max[rows] = lonlat[:, 2]

    def batch(self, rows: npt.NDArray[np.int64]) -> dict[str, Any]:
        """The assets of ``rows``, column by column (the store's names and order; plain lists and arrays, so this
        process needs no pyarrow: the writing process makes the table)."""
        p, at = self.products, rows.tolist()

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in at]

        return {
            "id": pick(p.global_ids),
            "kind": [p.kinds[i].value for i in at],
            "name": pick(p.names),
            "parent_id": pick(p.parent_ids),
            "source": [self.source] * len(at),
            "geom": self._wkb(rows),
            "z_min": self.z_min[rows],
            "z_max": self.z_max[rows],
            "install_date": pick(self.install_date),
            "status": pick(self.status),
            "material": pick(self.material),
            "network": pick(self.network),
            "diameter_mm": pick(self.diameter_mm),
            "depth_m": pick(self.depth_m),
            "props": pick(self.props),
        }

    def _wkb(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """The geometries of ``rows`` as WKB, or for a building or storey with meshed parts the index of its
        footprint's partials (see :meth:`finish`); their shapely objects are let go: a batch's rows are final, and
        a meshed element's hull is folded into the footprints before its batch (see :meth:`stream`), and GEOS takes
        ~6× the memory of WKB."""
        wkb = shapely.to_wkb(self.geoms[rows])
        self.geoms[rows] = None
        for row, index in self.footprint_of.items():  # a few rows, known only after finish
            wkb[rows == row] = index
        return wkb

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind in self.products.kinds:
            counts[kind.value] = counts.get(kind.value, 0) + 1
        return dict(sorted(counts.items()))

    def _origin(self, row: int) -> tuple[float, float, float]:
        instance = self.model.by_id(self.products.step_ids[row])
        if getattr(instance, "ObjectPlacement", None) is None:
            return (0.0, 0.0, 0.0)
        return world_origin(instance, self.unit)


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
    ends = np.append(starts[1:], len(order))
    merged = areas[order[starts]]  # a group of one part is that part
    for i in np.flatnonzero(ends - starts > 1):
        merged[i] = shapely.union_all(areas[order[starts[i] : ends[i]]])
    # polygons without holes are taken as they are: copies of thousands of parts cost as much as the parts
    single = shapely.get_type_id(merged) == 3
    pieces = np.concatenate([merged[single], shapely.get_parts(merged[~single])])
    filled = pieces[shapely.get_type_id(pieces) == 3]
    holed = shapely.get_num_interior_rings(filled) > 0
    filled[holed] = shapely.polygons(shapely.get_exterior_ring(filled[holed]))
    if len(filled) == 1:
        return filled[0]
    # the groups do not touch, so their filled outlines meet only where one lies in another's filled hole (a
    # column inside a ring of walls); when none meet, they are a valid multipolygon as they are
    left, right = shapely.STRtree(filled).query(filled, predicate="intersects")
    if (left == right).all():
        return shapely.multipolygons(filled)
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


@cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def _release_freed_memory() -> None:
    """Give the heap's free pages back to the system: glibc keeps them resident for later allocations, and at
    the reader's peak some 8 MB of them were free (40,000 walls: the process tree's peak 517-520 → 510-512 MB with
    this after each batch, 3 runs each; a call takes well under a millisecond)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def merged_footprint(partials: list[bytes]) -> bytes:
    """The footprint (WKB) of the parts of ``partials``, partial footprints (WKB; see :meth:`_Columns.fold`)."""
    if len(partials) == 1:
        return partials[0]
    # merged from their polygons: GEOS tests whole multipolygons for intersection slowly (5,000 walls apart, in 11
    # partial footprints: 124 ms against 20)
    return bytes(shapely.to_wkb(footprint(shapely.get_parts(shapely.from_wkb(partials)))))


def _meshes(pending: list[MeshBatch]) -> Iterator[Message]:
    """``pending`` (emptied) as one message, if any."""
    if pending:
        yield ("meshes", MeshBatch.concat(pending))
    pending.clear()


def _valid(geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """``geoms`` with the empty or invalid ones as None."""
    geoms[shapely.is_empty(geoms) | ~shapely.is_valid(geoms)] = None
    return geoms


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
