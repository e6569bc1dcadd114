"""CityGML 3.0 (GML 3.2) of the buildings (``cim export --format citygml --out city.gml``).

One ``core:CityModel``: its ``gml:boundedBy`` envelope (``srsName`` and ``srsDimension="3"``), then one
``core:cityObjectMember`` per building, each a ``bldg:Building`` (with its parts as ``bldg:buildingPart`` /
``bldg:BuildingPart`` when the store has them: children that are buildings, or whose kept type is
``BuildingPart``). Per building, in the order the schema's sequences give: ``gml:identifier`` (the asset id as it
is), ``gml:name``, ``core:genericAttribute`` (props, status, material, source), the LoD2 ``boundary`` surfaces and
``lod1Solid``/``lod2Solid`` (:mod:`cim.export.citygml_geometry`; LoD2 from the stored mesh only where the source
said its geometry was LoD2 or finer, :func:`mesh_lod`), ``con:dateOfConstruction`` (install date),
``con:height``, ``bldg:class``/``function``/``usage``/``roofType`` (props of those names),
``bldg:storeysAboveGround`` and ``bldg:address`` (:mod:`cim.export.citygml_attributes`).

The CRS (:func:`cim.export.export_crs`): ``crs`` when given (projected, in metres, with an EPSG code), else the
WGS84 UTM zone of the selection's centre: metric and conformal (a scale error under 0.1 % across a city), an EPSG
code every GIS and CityGML tool knows, and one transform from the store's WGS84 with no datum shift; a national grid
(CGCS2000 Gauss–Krüger for Shanghai, EPSG:4549) is one ``crs`` away. ``srsName`` is
``http://www.opengis.net/def/crs/EPSG/0/<code>``; heights are the store's (see :mod:`cim.export.citygml_geometry`),
said in the CityModel's ``gml:description``.

Streamed: buildings are read a page at a time (by id, no OFFSET) and written through ``lxml.etree.xmlfile`` into a
temporary file beside ``out``, renamed over it at the end (:func:`cim.export.written_whole`: an export killed
mid-write leaves nothing at ``out``).
The envelope must come first but is known last: it is written as a blank of fixed width and filled in place once
every coordinate has been written, so it bounds exactly what the file holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
from lxml import etree  # type: ignore[import-untyped]

from cim.errors import InvalidInput
from cim.export import ExportSummary, export_crs, written_whole
from cim.export.citygml_attributes import (
    BLDG,
    CON,
    CORE,
    GML,
    ID_CODESPACE,
    NSMAP,
    TYPE_KEYS,
    address_keys,
    address_of,
    code_keys,
    codes,
    escaped,
    gml_id,
    leaf,
    write_address,
    write_generic_attributes,
    write_height,
)
from cim.export.citygml_geometry import (
    F64,
    Projector,
    extent_of,
    lod1_solids,
    mesh_surfaces,
    write_lod1,
    write_lod2_boundaries,
    write_lod2_solid,
)
from cim.model import Asset, AssetBatch, Kind, MeshBatch
from cim.model.schema import ASSET_SCHEMA
from cim.model.source import Progress
from cim.store import AssetQuery, BBox, Store
from cim.store.meshes import MeshStore
from cim.store.sqlstore import SqlStore, as_schema, sql_store

#: Buildings read (and their meshes looked up) at a time.
PAGE = 500
#: The envelope's corners as first written: blanks of fixed width (room for three coordinates of any CRS at
#: millimetres), filled in place at the end (:meth:`_Writer.fill_envelope`).
_BLANKS = ("cim-envelope-lower".ljust(120), "cim-envelope-upper".ljust(120))


def write_citygml(
    store: Store,
    meshes: MeshStore | None,
    out: Path,
    *,
    kinds: Sequence[Kind] | None = None,
    bbox: BBox | None = None,
    progress: Progress | None = None,
    crs: str | int | pyproj.CRS | None = None,
) -> ExportSummary:
    """Write the buildings inside ``bbox`` (with their meshes' LoD2 surfaces when ``meshes`` is given) to ``out`` as
    CityGML 3.0, in ``crs`` (default: the UTM zone of their centre). Kinds other than buildings are reported in
    ``skipped``: this format holds buildings."""
    out = Path(out)
    if out.is_dir():
        raise InvalidInput(f"--out {out}", "is a folder; the CityGML export writes one file, e.g. city.gml")
    db = sql_store(store)
    wanted = tuple(kinds or (Kind.BUILDING,))
    summary = ExportSummary(format="citygml", out=str(out), files=[str(out)])
    _report_other_kinds(db, summary, [k for k in wanted if k is not Kind.BUILDING], bbox)
    selection = _Selection(db, bbox, Kind.BUILDING in wanted)
    target, why = export_crs(crs, selection.extent())
    writer = _Writer(db, meshes, Projector(target), summary, progress)
    with written_whole(out) as partial:
        with partial.open("wb") as handle:
            writer.write(handle, selection, target, why)
        writer.fill_envelope(partial)
    return summary


def _report_other_kinds(db: SqlStore, summary: ExportSummary, others: list[Kind], bbox: BBox | None) -> None:
    """One ``not_a_building`` entry per kind asked for that the selection has: its count and a few of its ids."""
    for kind in others:
        count = db.count_assets(AssetQuery(kinds=(kind,), bbox=bbox))
        if count:
            where = db.dialect.where(AssetQuery(kinds=(kind,), bbox=bbox))
            rows = db.select_rows(
                f"SELECT id FROM {db.assets_table} AS assets WHERE {where.sql} ORDER BY id LIMIT 5", where.params
            )
            summary.skipped.append(
                {
                    "rule": "not_a_building",
                    "kind": kind.value,
                    "count": count,
                    "examples": [row["id"] for row in rows],
                    "why": f"the CityGML export writes buildings; export {kind.value} as gpkg",
                }
            )


class _Selection:
    """The top-level buildings inside ``bbox`` (not parts of another building), read a page at a time by id."""

    def __init__(self, db: SqlStore, bbox: BBox | None, any_wanted: bool) -> None:
        self.db = db
        where = db.dialect.where(AssetQuery(kinds=(Kind.BUILDING,), bbox=bbox))
        p = db.dialect.param
        top = (
            f"NOT EXISTS (SELECT 1 FROM {db.assets_table} AS parent WHERE parent.id = assets.parent_id "
            f"AND parent.kind = {p})"
        )
        self.sql = f"{where.sql} AND {top}" + ("" if any_wanted else " AND FALSE")
        self.params = [*where.params, Kind.BUILDING.value]

    def extent(self) -> BBox | None:
        row = self.db.select_rows(
            f"SELECT min(min_x) AS w, min(min_y) AS s, max(max_x) AS e, max(max_y) AS n "
            f"FROM {self.db.assets_table} AS assets WHERE {self.sql}",
            self.params,
        )[0]
        return None if row["w"] is None else (row["w"], row["s"], row["e"], row["n"])

    def pages(self) -> Any:
        p = self.db.dialect.param
        last = ""
        while True:
            table = self.db.select(
                f"SELECT {self.db.dialect.select_list()} FROM {self.db.assets_table} AS assets "
                f"WHERE {self.sql} AND id > {p} ORDER BY id LIMIT {p}",
                [*self.params, last, PAGE],
            )
            if not table.num_rows:
                return
            buildings = AssetBatch(as_schema(table, ASSET_SCHEMA)).to_assets()
            yield buildings, self.parts_of([b.id for b in buildings])
            last = buildings[-1].id

    def parts_of(self, ids: list[str]) -> dict[str, list[Asset]]:
        """The building parts of these buildings, by building id, ordered by id."""
        in_list = self.db.dialect.in_list("parent_id")
        p = self.db.dialect.param
        table = self.db.select(
            f"SELECT {self.db.dialect.select_list()} FROM {self.db.assets_table} AS assets "
            f"WHERE {in_list} AND kind IN ({p}, {p}) ORDER BY id",
            [ids, Kind.BUILDING.value, Kind.ELEMENT.value],
        )
        parts: dict[str, list[Asset]] = {}
        for asset in AssetBatch(as_schema(table, ASSET_SCHEMA)).to_assets():
            if asset.kind is Kind.BUILDING or any(asset.props.get(k) == "BuildingPart" for k in TYPE_KEYS):
                parts.setdefault(str(asset.parent_id), []).append(asset)
        return parts


class _Writer:
    def __init__(
        self,
        db: SqlStore,
        meshes: MeshStore | None,
        projector: Projector,
        summary: ExportSummary,
        progress: Progress | None,
    ) -> None:
        self.db = db
        self.meshes = meshes
        self.projector = projector
        self.summary = summary
        self.progress = progress
        self.low = np.full(3, np.inf)
        self.high = np.full(3, -np.inf)
        self.no_height: list[str] = []
        self.no_height_count = 0

    def write(self, handle: Any, selection: _Selection, crs: pyproj.CRS, why: str) -> None:
        self.srs = f"http://www.opengis.net/def/crs/EPSG/0/{crs.to_epsg()}"
        description = (
            f"Buildings of the CIM store in {crs.name} ({self.srs}): {why}. Heights in metres as the store keeps "
            "them: above the WGS84 ellipsoid for what it ingested from IFC, GIS layers and the generator; a CityJSON "
            "or CityGML source keeps its own height datum, named by its ingest."
        )
        with etree.xmlfile(handle, encoding="utf-8") as xf:
            xf.write_declaration()
            with xf.element(f"{{{CORE}}}CityModel", nsmap=NSMAP):
                leaf(xf, f"{{{GML}}}description", description)
                envelope = {"srsName": self.srs, "srsDimension": "3"}
                with xf.element(f"{{{GML}}}boundedBy"), xf.element(f"{{{GML}}}Envelope", envelope):
                    leaf(xf, f"{{{GML}}}lowerCorner", _BLANKS[0])
                    leaf(xf, f"{{{GML}}}upperCorner", _BLANKS[1])
                for buildings, parts in selection.pages():
                    detailed = [a for a in [*buildings, *(p for ps in parts.values() for p in ps)] if mesh_lod(a) >= 2]
                    mesh_points = self._meshes([a.id for a in detailed])
                    for building in buildings:
                        xf.write("\n")
                        with xf.element(f"{{{CORE}}}cityObjectMember"):
                            self._building(xf, building, parts.get(building.id, []), mesh_points)
                    if self.progress is not None:
                        self.progress(len(buildings))
                xf.write("\n")
        if self.no_height_count:
            self.summary.skipped.append(
                {
                    "rule": "no_lod1",
                    "count": self.no_height_count,
                    "examples": self.no_height[:5],
                    "why": "written without lod1Solid: no footprint with an area, or no z_min with z_max or height_m",
                }
            )

    def _meshes(self, ids: list[str]) -> dict[str, tuple[F64, Any]]:
        """The projected points and triangles of the meshes of these assets that have one."""
        if self.meshes is None or not ids:
            return {}
        batch: MeshBatch = self.meshes.get(ids)
        if not len(batch):
            return {}
        points = self.projector.mesh_points(batch)
        found = {}
        for i, asset_id in enumerate(batch.asset_ids):
            v0, v1 = batch.vertex_offsets[i], batch.vertex_offsets[i + 1]
            t0, t1 = batch.triangle_offsets[i], batch.triangle_offsets[i + 1]
            found[asset_id] = (points[v0:v1], batch.triangles[t0:t1])
        return found

    def _building(
        self, xf: Any, asset: Asset, parts: list[Asset], mesh_points: dict[str, tuple[F64, Any]], tag: str = "Building"
    ) -> None:
        own_id = gml_id(asset.id)
        with xf.element(f"{{{BLDG}}}{tag}", {f"{{{GML}}}id": own_id}):
            leaf(xf, f"{{{GML}}}identifier", asset.id, {"codeSpace": ID_CODESPACE})
            if asset.name:
                leaf(xf, f"{{{GML}}}name", asset.name)
            write_generic_attributes(xf, _generic_values(asset))
            if asset.id in mesh_points:
                surfaces = mesh_surfaces(*mesh_points[asset.id])
                for triangles in (surfaces.roof, surfaces.wall, surfaces.ground, surfaces.ceiling):
                    self._grow(triangles.reshape(-1, 3))
                polygon_ids = write_lod2_boundaries(xf, surfaces, f"cim_{escaped(asset.id)}")
            else:
                polygon_ids = []
            self._lod1(xf, asset)
            if polygon_ids:
                write_lod2_solid(xf, polygon_ids)
            if asset.install_date is not None:
                leaf(xf, f"{{{CON}}}dateOfConstruction", asset.install_date.isoformat())
            if asset.height_m is not None:
                write_height(xf, asset.height_m, measured=True)
            elif asset.z_min is not None and asset.z_max is not None and asset.z_max > asset.z_min:
                write_height(xf, asset.z_max - asset.z_min, measured=False)
            for key, code, space in codes(asset.props):
                leaf(xf, f"{{{BLDG}}}{key}", code, {"codeSpace": space} if space else None)
            if asset.storeys is not None:
                leaf(xf, f"{{{BLDG}}}storeysAboveGround", str(asset.storeys))
            for address in address_of(asset.props):
                write_address(xf, address)
            for part in parts:
                with xf.element(f"{{{BLDG}}}buildingPart"):
                    self._building(xf, part, [], mesh_points, tag="BuildingPart")
        objects, types = self.summary.objects, self.summary.types
        objects[asset.kind.value] = objects.get(asset.kind.value, 0) + 1
        types[tag] = types.get(tag, 0) + 1

    def _lod1(self, xf: Any, asset: Asset) -> None:
        low = asset.z_min
        high = asset.z_max if asset.z_max is not None else None
        if high is None and low is not None and asset.height_m is not None:
            high = low + asset.height_m
        solids = (
            lod1_solids(asset.geom, self.projector, low, high)
            if low is not None and high is not None and high > low
            else []
        )
        if not solids:
            self.no_height_count += 1
            if len(self.no_height) < 5:
                self.no_height.append(asset.id)
            return
        for faces in solids:
            self._grow(np.vstack([ring for rings in faces for ring in rings]))
        write_lod1(xf, solids)

    def _grow(self, points: F64) -> None:
        extent = extent_of([points]) if len(points) else None
        if extent is not None:
            self.low = np.minimum(self.low, extent[:3])
            self.high = np.maximum(self.high, extent[3:])

    def fill_envelope(self, path: Path) -> None:
        """Write the envelope of every coordinate written over its blanks (or the origin, when there were none)."""
        low, high = (self.low, self.high) if np.isfinite(self.low).all() else (np.zeros(3), np.zeros(3))
        with path.open("r+b") as handle:
            head = handle.read(64 * 1024)
            for blank, corner in zip(_BLANKS, (low, high), strict=True):
                at = head.find(blank.encode())
                if at < 0:
                    raise RuntimeError("the envelope's blank was not found in the file's head")
                text = " ".join(f"{v:.3f}" for v in corner).ljust(len(blank))
                handle.seek(at)
                handle.write(text.encode())


#: Property keys that say which LoD an asset's geometry (so its stored mesh) was in its source.
LOD_KEYS = ("citygml.lod", "cityjson.lod", "lod")


def mesh_lod(asset: Asset) -> float:
    """The LoD of the asset's stored mesh as its source said (0 when it did not say): a mesh is written as LoD2
    surfaces only when it was LoD2 or finer; a GIS building's mesh is its footprint extruded, which ``lod1Solid``
    already is."""
    for key in LOD_KEYS:
        try:
            return float(str(asset.props[key]))
        except (KeyError, ValueError):
            continue
    return 0.0


def _generic_values(asset: Asset) -> dict[str, Any]:
    """What becomes generic attributes: the props not written otherwise, then the typed columns CityGML has no
    place for."""
    skipped = address_keys(asset.props) | code_keys(asset.props)
    values: dict[str, Any] = {k: v for k, v in asset.props.items() if k not in skipped}
    for name in ("status", "material", "source"):
        value = getattr(asset, name)
        if value is not None:
            values[f"cim.{name}"] = value
    return values
