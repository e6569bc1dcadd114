"""CityGML 1.0, 2.0 and 3.0 (``.gml``, ``.xml``, ``.citygml``, their ``.gz``) into assets and meshes, streamed.

One top-level city object at a time (:mod:`cim.gis.gml`): its kind from its class (:data:`KINDS`), its highest LoD
(LoD3 > LoD2 > LoD1 > LoD0; LoD4 only when it has nothing else) as its mesh, every polygon triangulated as it is,
its footprint the union of its downward surfaces seen from above. Where the LoD has thematic boundary surfaces
(wall, roof, ground …, a road's traffic areas) those are the shape, and their counts and areas by class go to
``props``; else the object's own solid / multi-surface is. Attributes: :mod:`cim.gis.citygml_attributes`.

- A BuildingPart (BridgePart, TunnelPart) is an asset of its own, kind ``element``, ``parent_id`` its building.
- A road (railway, square) is one asset: its sections, intersections and traffic spaces are its shape (lanes are
  not governed one by one); ``props`` count them.
- PLATEAU utility pipes (``uro:SewerPipe`` …) are pipes with their network, manholes are nodes.
- Terrain (``dem:ReliefFeature``) and object groups are left out and reported.

Heights are kept as given; the summary names their datum, and an object in another vertical datum than the file's
first is rejected and reported, never mixed in. Asset ids are ``<file stem>:<gml:id>``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from lxml import etree
from pyproj import CRS

from cim.errors import InvalidInput
from cim.geodesy import lonlat_to_enu
from cim.gis import gml
from cim.gis import surfaces as surface_geometry
from cim.gis.citygml_attributes import PIPE_NETWORKS, read_attributes
from cim.gis.layer import LayerSummary, check_not_empty
from cim.gis.quality import REJECTING, Findings
from cim.gis.rings import triangulate_rings
from cim.model import Asset, AssetBatch, Kind, MeshBatch
from cim.model.source import Progress

#: City object class (local name, any module or version) → kind. Classes not listed become ``element``.
KINDS: dict[str, Kind] = {
    "Building": Kind.BUILDING,
    "Road": Kind.ROAD,
    "Track": Kind.ROAD,
    "Square": Kind.ROAD,
    "TransportationComplex": Kind.ROAD,
    "Railway": Kind.RAILWAY,
    "WaterBody": Kind.WATER,
    "PlantCover": Kind.VEGETATION,
    "SolitaryVegetationObject": Kind.VEGETATION,
    "LandUse": Kind.LAND_USE,
    "Bridge": Kind.BRIDGE,
    **{pipe: Kind.PIPE for pipe in PIPE_NETWORKS},
    "Manhole": Kind.NODE,
    "Handhole": Kind.NODE,
}
#: Parts that are assets of their own, under their parent.
PARTS = frozenset({"BuildingPart", "BridgePart", "TunnelPart"})
SKIPPED = {"ReliefFeature": "skipped_terrain", "TINRelief": "skipped_terrain", "CityObjectGroup": "skipped_group"}
#: Thematic surfaces: where a LoD has them they are the shape (a solid xlinks the same polygons).
_THEMATIC = re.compile(r"Surface$|^(TrafficArea|AuxiliaryTrafficArea|Marking|Door|Window|HoleSurface)$")
_LOD = re.compile(r"^lod([0-4])")
_NOT_SHAPE_NAMESPACES = ("/uro/", "/generics/", "/appearance/", "xal", "ciq", "http://www.opengis.net/gml")
BATCH_OBJECTS = 500
_SUB_OBJECTS = ("Section", "Intersection", "TrafficSpace", "AuxiliaryTrafficSpace", "BuildingInstallation")


@dataclass
class CityGmlSummary(LayerSummary):
    """A :class:`~cim.gis.layer.LayerSummary` that also says the file's version, its heights' datum and the LoD
    each asset's shape came from."""

    height_datum: str = ""
    version: str = ""
    lods: dict[str, int] = field(default_factory=dict)


def source_name(path: Path) -> str:
    """The ``source`` of a CityGML file's assets; re-ingesting the file replaces them."""
    return f"{path.name}:citygml"


def file_stem(path: Path) -> str:
    """The file's name without its CityGML suffixes: ``a.v2.gml.gz`` → ``a.v2``."""
    name = path.name
    lowered = name.lower()
    for suffix in (".gz", *gml.SUFFIXES):
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    return name


@contextmanager
def read_citygml(path: Path, *, crs: CRS | None = None) -> Iterator[CityGmlRead]:
    """A CityGML file opened for streaming: a file problem (no XML, an unknown version, declared entities) raises
    here, before anything is written. An object that cannot be read is left out and reported as a finding."""
    stream = gml.open_citygml(path)
    try:
        yield CityGmlRead(path, stream, crs)
    finally:
        stream.file.close()


@dataclass
class _Shape:
    """One object's triangles over its own lon/lat/height points, with each triangle's surface class."""

    points: npt.NDArray[np.float64]
    triangles: npt.NDArray[np.int64]
    classes: list[tuple[str, int]]  # (class, triangles) in order
    members: dict[str, int]  # class → how many of its surfaces (geometry properties) the shape has
    lod: int
    frame: gml.SrsFrame


class CityGmlRead:
    """One CityGML file as asset and mesh batches (a :class:`~cim.model.source.SourceRead`)."""

    derive_meshes = None  # its meshes come with its assets

    def __init__(self, path: Path, stream: gml.XmlStream, crs: CRS | None) -> None:
        self.path = path
        self.source = source_name(path)
        self._stream = stream
        self._prefix = file_stem(path)
        self._given = gml.srs_frame(crs.to_string(), what="--crs") if crs is not None else None
        self._findings = Findings()
        self._counts: dict[str, int] = {}
        self._lods: dict[str, int] = {}
        self._datum: str | None = None
        self._missing_srs = 0
        self._read = 0
        self._unnamed = 0
        self._summary = CityGmlSummary(path=str(path), layer="CityModel", crs="", version=stream.version)

    def items(self, progress: Progress | None) -> Generator[AssetBatch | MeshBatch, None, None]:
        stream = self._stream
        ids = gml.IdIndex()
        assets: list[Asset] = []
        shapes: list[tuple[str, _Shape]] = []
        try:
            for member in stream.members():
                ids.start(member)
                self._member(member, ids, stream.envelope or (None, None), assets, shapes)
                if progress is not None:
                    progress(1)
                if len(assets) >= BATCH_OBJECTS:
                    yield _meshes(shapes)
                    yield AssetBatch.from_assets(assets)
                    assets, shapes = [], []
        except (etree.XMLSyntaxError, EOFError, zlib.error, OSError) as exc:
            line = getattr(exc, "lineno", None)
            where = f"line {line}: " if line else ""
            message = str(getattr(exc, "msg", None) or exc).split(" (", 1)[0]
            self._findings.add(
                "xml_broken", np.array([self._id(stream.open_object_id() or "?")], dtype=object), where + message
            )
        if assets:
            yield _meshes(shapes)
            yield AssetBatch.from_assets(assets)

    def refuse_empty(self, stored: int) -> None:
        kept = sum(self._counts.values())
        if not kept and self._missing_srs:
            raise InvalidInput(
                f"file {self.path}", "has no srsName on its CityModel, members or geometries; give its CRS with --crs"
            )
        check_not_empty(f"file {self.path}", kept, self._read, stored, self._findings)

    def summary(self, written: int, meshes: int) -> CityGmlSummary:
        summary = self._summary
        summary.features_read = self._read
        summary.meshes = meshes
        summary.assets = {str(k): n for k, n in sorted(self._counts.items())}
        summary.lods = dict(sorted(self._lods.items()))
        summary.rejected = self._findings.count(*REJECTING)
        summary.findings = self._findings.as_list()
        summary.height_datum = self._datum or ""
        return summary

    # --- one member ---
    def _id(self, gml_id: str) -> str:
        return f"{self._prefix}:{gml_id}"

    def _member(
        self,
        element: etree._Element,
        ids: gml.IdIndex,
        default: tuple[str | None, int | None],
        assets: list[Asset],
        shapes: list[tuple[str, _Shape]],
    ) -> None:
        srs, dimension = default
        for child in element:  # a member's own envelope names its CRS where the CityModel has none
            if isinstance(child.tag, str) and child.tag.endswith("boundedBy") and len(child):
                srs = child[0].get("srsName") or srs
        self._object(element, None, ids, (srs, dimension), assets, shapes)

    def _object(
        self,
        element: etree._Element,
        parent_id: str | None,
        ids: gml.IdIndex,
        default: tuple[str | None, int | None],
        assets: list[Asset],
        shapes: list[tuple[str, _Shape]],
    ) -> None:
        self._read += 1
        class_name = gml.local_name(element)
        object_id = gml.gml_id(element)
        if object_id is None:
            self._unnamed += 1
            object_id = f"{class_name}_{self._unnamed}"
        asset_id = self._id(object_id)
        one = np.array([asset_id], dtype=object)
        if class_name in SKIPPED:
            self._findings.add(SKIPPED[class_name], one)
            return
        parts: list[etree._Element] = []
        props_lists = _geometry_properties(element, parts)
        for part in parts:
            self._object(part, asset_id, ids, default, assets, shapes)
        dropped: list[str] = []
        try:
            shape = self._shape(element, props_lists, ids, default, dropped)
        except gml.GeometryProblem as problem:
            self._findings.add(problem.rule, one, problem.detail)
            return
        finally:
            for polygon in dropped:
                self._findings.add("too_few_points", one, f"polygon {polygon}")
        if isinstance(shape, str):
            self._findings.add(shape, one)
            return
        footprint = surface_geometry.footprint(_ground(shape), shape.points) if len(shape.triangles) else None
        if footprint is None:
            self._findings.add("empty_geometry", one)
            return
        attributes = read_attributes(element)
        for rule, field_name in attributes.problems:
            self._findings.add(rule, one, field_name)
        kind = Kind.ELEMENT if class_name in PARTS else KINDS.get(class_name, Kind.ELEMENT)
        z = shape.points[np.unique(shape.triangles), 2]
        props = {"citygml.class": class_name, "citygml.lod": shape.lod, **attributes.props}
        if class_name.startswith("Tunnel"):
            props["tunnel"] = True
        props.update(_surface_stats(shape))
        props.update(_sub_objects(element))
        height = attributes.measured_height if attributes.measured_height is not None else float(z.max() - z.min())
        assets.append(
            Asset(
                id=asset_id,
                kind=kind,
                geom=footprint,
                name=attributes.name,
                parent_id=parent_id,
                source=self.source,
                z_min=float(z.min()),
                z_max=float(z.max()),
                install_date=attributes.install_date,
                height_m=height if kind in (Kind.BUILDING, Kind.BRIDGE, Kind.ELEMENT) else None,
                storeys=attributes.storeys if kind is Kind.BUILDING else None,
                network=PIPE_NETWORKS.get(class_name) if kind is Kind.PIPE else None,
                diameter_mm=attributes.diameter_mm if kind in (Kind.PIPE, Kind.NODE) else None,
                depth_m=attributes.depth_m if kind in (Kind.PIPE, Kind.NODE) else None,
                props=props,
            )
        )
        shapes.append((asset_id, shape))
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self._lods[f"lod{shape.lod}"] = self._lods.get(f"lod{shape.lod}", 0) + 1

    def _shape(
        self,
        scope: etree._Element,
        found: dict[int, list[tuple[str, etree._Element]]],
        ids: gml.IdIndex,
        default: tuple[str | None, int | None],
        dropped: list[str],
    ) -> _Shape | str:
        """The object's triangles at its best LoD, or the rule that rejects it."""
        if not found:
            return "empty_geometry"
        lod = max((n for n in found if n <= 3), default=max(found))
        chosen = found[lod]
        thematic = [(c, p) for c, p in chosen if _THEMATIC.search(c)]
        chosen = thematic or chosen
        by_class: dict[str, list[gml.Surface]] = {}
        read = gml.surfaces([prop for _, prop in chosen], ids, default[0], default[1], dropped, scope)
        for (class_name, _), found_surfaces in zip(chosen, read, strict=True):
            by_class.setdefault(class_name, []).extend(found_surfaces)
        every = [s for group in by_class.values() for s in group]
        if not every:
            return "empty_geometry"
        names = {s.srs for s in every}
        frame = self._frame(names)
        if isinstance(frame, str):
            return frame
        raw = np.concatenate([ring for s in every for ring in s.rings])
        points = frame.lonlat(raw)
        if np.isnan(points[:, 0]).any():
            return "outside_lonlat"
        ring_sizes = np.array([len(ring) for s in every for ring in s.rings], dtype=np.int64)
        rings_per_surface = np.array([len(s.rings) for s in every], dtype=np.int64)
        found_triangles, surface_of = triangulate_rings(points, ring_sizes, rings_per_surface)
        class_of_surface = np.repeat(np.arange(len(by_class)), [len(group) for group in by_class.values()])
        class_of = class_of_surface[surface_of]
        order = np.argsort(class_of, kind="stable")  # the triangles grouped by class, in the classes' order
        counts = np.bincount(class_of, minlength=len(by_class))
        triangles = [found_triangles[order]]
        classes = list(zip(by_class, counts.tolist(), strict=True))
        members: dict[str, int] = {}
        for class_name, _ in chosen:
            members[class_name] = members.get(class_name, 0) + 1
        return _Shape(
            points=points,
            triangles=np.concatenate(triangles),
            classes=classes,
            members=members,
            lod=lod,
            frame=frame,
        )

    def _frame(self, names: set[str | None]) -> gml.SrsFrame | str:
        """The one frame of an object's geometries (``--crs`` first), or the rule that rejects it."""
        if self._given is not None:
            frame = self._given
        elif None in names:
            self._missing_srs += 1
            return "missing_srs"
        else:
            frames = {gml.srs_frame(str(n), what=f"file {self.path}") for n in names}
            if len({f.height_datum for f in frames}) > 1 or len({f.name for f in frames}) > 1:
                return "mixed_crs"
            frame = frames.pop()
        if self._datum is None:
            self._datum = frame.height_datum
            self._summary.crs = frame.name
        elif frame.height_datum != self._datum:
            return "other_height_datum"
        return frame


def _geometry_properties(
    element: etree._Element, parts: list[etree._Element]
) -> dict[int, list[tuple[str, etree._Element]]]:
    """The object's geometry properties by LoD, each with the class of the (sub-)object holding it; nested parts
    that are assets of their own are put in ``parts`` instead."""
    found: dict[int, list[tuple[str, etree._Element]]] = {}
    stack: list[tuple[etree._Element, str]] = [(element, gml.local_name(element))]
    while stack:
        node, owner = stack.pop()
        for child in node:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            role, value = _role(tag)
            if role == _GEOMETRY:
                found.setdefault(int(value), []).append((owner, child))
            elif role == _PART:
                parts.append(child)
            elif role == _OBJECT:
                stack.append((child, value))
            elif role == _PROPERTY and len(child):
                stack.append((child, owner))
    for lists in found.values():
        lists.reverse()  # document order
    return found


_SKIP, _GEOMETRY, _PART, _OBJECT, _PROPERTY = range(5)


@lru_cache(maxsize=4096)
def _role(tag: str) -> tuple[int, str]:
    """What an element is to the geometry walk, by its tag (few distinct tags: cached): attributes, appearance and
    ADE data are skipped; ``lodN…`` surfaces and solids are geometry (points, curves and implicit ones not)."""
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    if any(ns in namespace for ns in _NOT_SHAPE_NAMESPACES):
        return _SKIP, ""
    lod = _LOD.match(name)
    if lod is not None:
        if "Point" in name or "Curve" in name or "ImplicitRepresentation" in name:
            return _SKIP, ""
        return _GEOMETRY, lod.group(1)
    if name in PARTS:
        return _PART, name
    return (_OBJECT, name) if name[:1].isupper() else (_PROPERTY, name)


def _ground(shape: _Shape) -> npt.NDArray[np.int64]:
    """The triangles a footprint is made of: the ground surfaces' where the object has them (what a building stands
    on, and one union of few triangles), else all of them."""
    at = 0
    for class_name, count in shape.classes:
        if class_name == "GroundSurface" and count:
            return shape.triangles[at : at + count]
        at += count
    return shape.triangles


def _surface_stats(shape: _Shape) -> dict[str, float | int]:
    """Surfaces, triangles and area (m²) by thematic surface class, e.g. ``citygml.WallSurface.count`` and
    ``citygml.WallSurface.area_m2``."""
    if not any(_THEMATIC.search(class_name) for class_name, _ in shape.classes):
        return {}
    origin = (float(shape.points[0, 0]), float(shape.points[0, 1]), float(shape.points[0, 2]))
    enu = lonlat_to_enu(shape.points[:, 0], shape.points[:, 1], shape.points[:, 2], origin)
    corners = enu[shape.triangles]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    stats: dict[str, float | int] = {}
    at = 0
    for class_name, count in shape.classes:
        key = f"citygml.{class_name}"
        stats[f"{key}.count"] = shape.members.get(class_name, 0)
        stats[f"{key}.triangles"] = int(stats.get(f"{key}.triangles", 0)) + count
        stats[f"{key}.area_m2"] = round(
            float(stats.get(f"{key}.area_m2", 0.0)) + float(areas[at : at + count].sum()), 2
        )
        at += count
    return stats


def _sub_objects(element: etree._Element) -> dict[str, int]:
    """How many nested city objects of each class (a road's sections, traffic spaces …) make its shape."""
    counts: dict[str, int] = {}
    for node in element.iter(*(f"{{*}}{name}" for name in _SUB_OBJECTS)):
        key = f"citygml.{gml.local_name(node)}.count"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _meshes(shapes: list[tuple[str, _Shape]]) -> MeshBatch:
    if not shapes:
        return MeshBatch.empty()
    ids, origins, vertices, triangles = [], [], [], []
    for asset_id, shape in shapes:
        used, local = np.unique(shape.triangles, return_inverse=True)
        own = shape.points[used]
        origin = (float(own[:, 0].mean()), float(own[:, 1].mean()), float(own[:, 2].min()))
        ids.append(asset_id)
        origins.append(origin)
        vertices.append(lonlat_to_enu(own[:, 0], own[:, 1], own[:, 2], origin).astype(np.float32))
        triangles.append(local.reshape(-1, 3).astype(np.uint32))
    return MeshBatch.build(ids, origins, vertices, triangles)
