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
first is rejected and reported, never mixed in. Asset ids are ``<file stem>:<gml:id>``, except where an object
carries its asset id in a ``gml:identifier`` of codeSpace :data:`ASSET_ID_CODESPACE` (our own CityGML export writes
it): then that id, so an exported city imported again updates the same assets.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree  # type: ignore[import-untyped]
from pyproj import CRS

from cim.errors import InvalidInput
from cim.gis import gml, gml_geometry
from cim.gis.citygml_attributes import PIPE_NETWORKS, Attributes, read_attributes
from cim.gis.citygml_shapes import Pending, Shaped, shape_batch
from cim.gis.quality import REJECTING, Findings
from cim.gis.summary import LayerSummary, check_not_empty
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
#: … or fewer, when their points reach this many (dense LoD3 objects: memory stays bounded whatever they hold).
BATCH_POINTS = 500_000
#: The ``codeSpace`` of a ``gml:identifier`` that holds the object's asset id (written by :mod:`cim.export.citygml`).
ASSET_ID_CODESPACE = "urn:cim:asset-id"
_IDENTIFIERS = tuple(f"{{{ns}}}identifier" for ns in gml.GML_NAMESPACES)
_ASSET_ID = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
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
class _Details:
    """What an object's asset takes from its element, kept while its shape waits for the rest of its batch."""

    class_name: str
    kind: Kind
    parent_id: str | None
    lod: int
    attributes: Attributes
    props: dict[str, Any]


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
        self._missing_srs: list[str] = []  # the objects without one (the first few)
        self._read = 0
        self._unnamed = 0
        self._seen: set[str] = set()  # gml:ids are unique in valid GML; a file that repeats one keeps the first
        self._summary = CityGmlSummary(path=str(path), layer="CityModel", crs="", version=stream.version)

    def items(self, progress: Progress | None) -> Generator[AssetBatch | MeshBatch, None, None]:
        stream = self._stream
        ids = gml_geometry.IdIndex()
        pending: list[Pending] = []
        points = 0
        try:
            for member in stream.members():
                ids.start(member)
                before = len(pending)
                self._member(member, ids, stream.envelope or (None, None), pending)
                points += sum(len(p.raw) for p in pending[before:])
                if progress is not None:
                    progress(1)
                if len(pending) >= BATCH_OBJECTS or points >= BATCH_POINTS:
                    yield from self._flush(pending)
                    pending, points = [], 0
        except (etree.XMLSyntaxError, EOFError, zlib.error, OSError) as exc:
            line = getattr(exc, "lineno", None)
            where = f"line {line}: " if line else ""
            message = str(getattr(exc, "msg", None) or exc).split(" (", 1)[0]
            self._findings.add(
                "xml_broken", np.array([self._id(stream.open_object_id() or "?")], dtype=object), where + message
            )
        yield from self._flush(pending)

    def _flush(self, pending: list[Pending]) -> Iterator[AssetBatch | MeshBatch]:
        """The assets and meshes of a batch of objects read."""
        if not pending:
            return
        shaped, meshes = shape_batch(pending)
        assets: list[Asset] = []
        for item, result in zip(pending, shaped, strict=True):
            one = np.array([item.asset_id], dtype=object)
            if isinstance(result, str):
                self._findings.add(result, one)
                continue
            details: _Details = item.details
            for rule, field_name in details.attributes.problems:
                self._findings.add(rule, one, field_name)
            assets.append(self._asset(item.asset_id, details, result))
        yield meshes
        if assets:
            yield AssetBatch.from_assets(assets)

    def refuse_empty(self, stored: int) -> None:
        kept = sum(self._counts.values())
        if not kept and self._missing_srs:
            objects = ", ".join(self._missing_srs)
            raise InvalidInput(
                f"file {self.path}",
                f"has no srsName on its CityModel, members or geometries (objects {objects} …); give its CRS with"
                " --crs",
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
        ids: gml_geometry.IdIndex,
        default: tuple[str | None, int | None],
        pending: list[Pending],
    ) -> None:
        srs, dimension = default
        for child in element:  # a member's own envelope names its CRS where the CityModel has none
            if isinstance(child.tag, str) and child.tag.endswith("boundedBy") and len(child):
                srs = child[0].get("srsName") or srs
        self._object(element, None, ids, (srs, dimension), pending)

    def _object(
        self,
        element: etree._Element,
        parent_id: str | None,
        ids: gml_geometry.IdIndex,
        default: tuple[str | None, int | None],
        pending: list[Pending],
    ) -> None:
        self._read += 1
        class_name = gml.local_name(element)
        object_id = gml.gml_id(element)
        if object_id is None:
            self._unnamed += 1
            object_id = f"{class_name}_{self._unnamed}"
        asset_id = own_asset_id(element) or self._id(object_id)
        one = np.array([asset_id], dtype=object)
        if asset_id in self._seen:
            self._findings.add("duplicate_id", one)
            return
        self._seen.add(asset_id)
        if class_name in SKIPPED:
            self._findings.add(SKIPPED[class_name], one)
            return
        parts: list[etree._Element] = []
        properties = _geometry_properties(element, parts)
        for part in parts:
            self._object(part, asset_id, ids, default, pending)
        dropped: list[str] = []
        try:
            read = self._polygons(asset_id, properties, ids, default, dropped)
        except gml_geometry.GeometryProblem as problem:
            self._findings.add(problem.rule, one, problem.detail)
            return
        finally:
            for polygon in dropped:
                self._findings.add("too_few_points", one, f"polygon {polygon}")
        if isinstance(read, str):
            self._findings.add(read, one)
            return
        props: dict[str, Any] = _sub_objects(element)
        if class_name.startswith("Tunnel"):
            props["tunnel"] = True
        kind = Kind.ELEMENT if class_name in PARTS else KINDS.get(class_name, Kind.ELEMENT)
        read.details = _Details(class_name, kind, parent_id, read.details, read_attributes(element), props)
        pending.append(read)

    def _asset(self, asset_id: str, details: _Details, shaped: Shaped) -> Asset:
        attributes, kind = details.attributes, details.kind
        props = {"citygml.class": details.class_name, "citygml.lod": details.lod, **attributes.props}
        props.update(shaped.stats)
        props.update(details.props)
        measured = attributes.measured_height
        height = measured if measured is not None else shaped.z_max - shaped.z_min
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self._lods[f"lod{details.lod}"] = self._lods.get(f"lod{details.lod}", 0) + 1
        return Asset(
            id=asset_id,
            kind=kind,
            geom=shaped.footprint,
            name=attributes.name,
            parent_id=details.parent_id,
            source=self.source,
            z_min=shaped.z_min,
            z_max=shaped.z_max,
            install_date=attributes.install_date,
            height_m=height if kind in (Kind.BUILDING, Kind.BRIDGE, Kind.ELEMENT) else None,
            storeys=attributes.storeys if kind is Kind.BUILDING else None,
            network=PIPE_NETWORKS.get(details.class_name) if kind is Kind.PIPE else None,
            diameter_mm=attributes.diameter_mm if kind in (Kind.PIPE, Kind.NODE) else None,
            depth_m=attributes.depth_m if kind in (Kind.PIPE, Kind.NODE) else None,
            props=props,
        )

    def _polygons(
        self,
        asset_id: str,
        found: dict[int, list[tuple[str, etree._Element]]],
        ids: gml_geometry.IdIndex,
        default: tuple[str | None, int | None],
        dropped: list[str],
    ) -> Pending | str:
        """The object's polygons at its best LoD (its LoD in ``details``), or the rule that rejects it."""
        if not found:
            return "empty_geometry"
        lod = max((n for n in found if n <= 3), default=max(found))
        chosen = found[lod]
        thematic = [(c, p) for c, p in chosen if _THEMATIC.search(c)]
        chosen = thematic or chosen
        polygons = gml_geometry.surfaces([prop for _, prop in chosen], ids, default[0], default[1], dropped)
        if polygons is None:
            return "empty_geometry"
        frame = self._frame(polygons.srs_names, asset_id)
        if isinstance(frame, str):
            return frame
        classes: dict[str, int] = {}
        class_of_prop = np.array([classes.setdefault(c, len(classes)) for c, _ in chosen], dtype=np.int64)
        members: dict[str, int] = {}
        for class_name, _ in chosen:
            members[class_name] = members.get(class_name, 0) + 1
        return Pending(
            asset_id=asset_id,
            frame=frame,
            raw=polygons.xyz,
            ring_sizes=polygons.ring_sizes,
            rings_per_surface=polygons.rings_per_polygon,
            surface_class=class_of_prop[polygons.prop_of],
            classes=list(classes),
            members=members,
            thematic=bool(thematic),
            details=lod,
        )

    def _frame(self, names: set[str | None], asset_id: str) -> gml.SrsFrame | str:
        """The one frame of an object's geometries (their srsName; ``--crs`` where they have none), or the rule
        that rejects it."""
        if None in names and self._given is None:
            if len(self._missing_srs) < 3:
                self._missing_srs.append(asset_id.split(":", 1)[-1])
            return "missing_srs"
        what = f"file {self.path} object {asset_id.split(':', 1)[1]}"
        frames = {self._given if n is None else gml.srs_frame(n, what=what) for n in names}
        if len({f.height_datum for f in frames if f is not None}) > 1 or len({f.name for f in frames if f}) > 1:
            return "mixed_crs"
        frame = frames.pop()
        assert frame is not None
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


def _sub_objects(element: etree._Element) -> dict[str, int]:
    """How many nested city objects of each class (a road's sections, traffic spaces …) make its shape."""
    counts: dict[str, int] = {}
    for node in element.iter(*(f"{{*}}{name}" for name in _SUB_OBJECTS)):
        key = f"citygml.{gml.local_name(node)}.count"
        counts[key] = counts.get(key, 0) + 1
    return counts


def own_asset_id(element: etree._Element) -> str | None:
    """The asset id an object carries in a ``gml:identifier`` of codeSpace :data:`ASSET_ID_CODESPACE`, if it does
    (and it is a plain line of text up to 200 characters: anything else is ignored, the gml:id is used).

    >>> own_asset_id(etree.fromstring('<B xmlns:gml="http://www.opengis.net/gml/3.2"><gml:identifier '
    ...     'codeSpace="urn:cim:asset-id">shanghai:bldg-7</gml:identifier></B>'))
    'shanghai:bldg-7'
    >>> own_asset_id(etree.fromstring('<B xmlns:gml="http://www.opengis.net/gml"><gml:identifier '
    ...     'codeSpace="http://example.org">x</gml:identifier></B>')) is None
    True
    """
    for child in element:
        if child.tag in _IDENTIFIERS and child.get("codeSpace") == ASSET_ID_CODESPACE:
            text = (child.text or "").strip()
            return text if _ASSET_ID.fullmatch(text) else None
    return None
