"""CityJSON 1.0–2.0 (``.city.json``) and CityJSON feature streams (``.city.jsonl``) into assets and meshes.

Each CityObject becomes an asset (kind from its type, :data:`KINDS`), its highest-LoD geometry becomes its mesh as it
is — every surface triangulated, a batch of objects at a time (:mod:`cim.gis.surfaces`), nothing re-extruded — and its
2D footprint (the union of its non-vertical surfaces seen from above) becomes ``geom``. Attributes go to ``props``;
CityGML's ``measuredHeight``, ``storeysAboveGround`` and ``yearOfConstruction`` feed the typed columns.

Heights: CityJSON files carry orthometric heights of a national datum (EPSG:7415 is RD New + NAP). With no geoid model
available offline, the heights are kept as given and the summary says which datum they are in
(:attr:`CityJsonSummary.height_datum`); the horizontal position is reprojected to WGS84 with pyproj.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer

from cim.errors import InvalidInput
from cim.geodesy import lonlat_to_enu
from cim.gis import surfaces as surface_geometry
from cim.gis.gml import epsg_codes
from cim.gis.layer import LayerSummary, check_not_empty
from cim.gis.quality import REJECTING, Findings
from cim.gis.readers import parse_crs
from cim.model import Asset, AssetBatch, Kind, MeshBatch
from cim.model.source import Progress

#: A CityObject as read: its id, its JSON object, and why it cannot be converted (rule, detail) or None.
_Object = tuple[str, Any, tuple[str, str] | None]
#: CityObject type → asset kind. Types not listed become ``element``.
KINDS: dict[str, Kind] = {
    "Building": Kind.BUILDING,
    "BuildingPart": Kind.ELEMENT,
    "BuildingInstallation": Kind.ELEMENT,
    "Bridge": Kind.BRIDGE,
    "BridgePart": Kind.ELEMENT,
    "Road": Kind.ROAD,
    "Railway": Kind.RAILWAY,
    "TransportSquare": Kind.ROAD,
    "WaterBody": Kind.WATER,
    "PlantCover": Kind.VEGETATION,
    "SolitaryVegetationObject": Kind.VEGETATION,
    "LandUse": Kind.LAND_USE,
    "CityFurniture": Kind.ELEMENT,
    "GenericCityObject": Kind.ELEMENT,
}
#: Terrain is a surface for the viewer's ground, not a governed asset.
SKIPPED_TYPES = frozenset({"TINRelief"})
BATCH_OBJECTS = 5_000


@dataclass
class CityJsonSummary(LayerSummary):
    """A :class:`~cim.gis.layer.LayerSummary` that also says the file's version and its heights' datum."""

    height_datum: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class _Frame:
    """How a file's integer vertices become lon/lat/height."""

    scale: npt.NDArray[np.float64]
    translate: npt.NDArray[np.float64]
    to_wgs84: Transformer
    crs: CRS
    path: Path

    def lonlat(self, vertices: list[list[float]]) -> npt.NDArray[np.float64]:
        """lon, lat, height of each vertex; a row of NaN where a vertex is not a finite place on Earth (see
        :func:`_convert`, which rejects the objects that use one)."""
        try:
            xyz = np.asarray(vertices, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(
                f"file {self.path} vertices", "must be a list of [x, y, z] numbers (one is not, or is too large)"
            ) from None
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise InvalidInput(f"file {self.path} vertices", "must be a list of [x, y, z] numbers")
        with np.errstate(all="ignore"):
            xyz = xyz * self.scale + self.translate
            lon, lat = self.to_wgs84.transform(xyz[:, 0], xyz[:, 1], errcheck=False)
        points = np.column_stack([lon, lat, xyz[:, 2]])
        bad = ~np.isfinite(points).all(axis=1) | (np.abs(points[:, 0]) > 180) | (np.abs(points[:, 1]) > 90)
        points[bad] = np.nan
        return points


def is_cityjson(path: Path) -> bool:
    """Whether ``path`` looks like CityJSON by name (``.city.json``, ``.city.jsonl``) or by its first bytes."""
    name = path.name.lower()
    if name.endswith((".city.json", ".city.jsonl", ".cityjson")):
        return True
    if path.suffix.lower() not in (".json", ".jsonl") or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(4096)
    return b'"CityJSON' in head


@contextmanager
def read_cityjson(path: Path, *, crs: CRS | None = None) -> Iterator[CityJsonRead]:
    """A CityJSON file or feature stream opened for reading: a file problem raises here, before anything is
    written. A CityObject that cannot be read is left out and reported as a finding."""
    header, documents = _open(path)
    yield CityJsonRead(path, header, documents, _frame(header, path, crs))


def source_name(path: Path) -> str:
    """The ``source`` of a CityJSON file's assets; re-ingesting the file replaces them."""
    return f"{path.name}:cityjson"


class CityJsonRead:
    """One CityJSON file as asset and mesh batches (a :class:`~cim.model.source.SourceRead`)."""

    derive_meshes = None  # its meshes come with its assets

    def __init__(self, path: Path, header: dict[str, Any], documents: Iterator[dict[str, Any]], frame: _Frame) -> None:
        self.path = path
        self.source = source_name(path)
        self._documents = documents
        self._frame = frame
        self._findings = Findings()
        self._counts: dict[str, int] = {}
        self._summary = CityJsonSummary(
            path=str(path),
            layer="CityObjects",
            crs=frame.crs.to_string(),
            height_datum=_height_datum(frame.crs),
            version=str(header.get("version", "")),
        )

    def items(self, progress: Progress | None) -> Generator[AssetBatch | MeshBatch, None, None]:
        prefix = self.path.name.split(".")[0]
        for objects, vertices in _chunks(self._documents, self.path):
            points = self._frame.lonlat(vertices) if vertices else None
            assets, shapes = _convert(objects, points, prefix, self.source, self._findings)
            self._summary.features_read += len(objects)
            for asset in assets:
                self._counts[asset.kind] = self._counts.get(asset.kind, 0) + 1
            yield shapes
            if progress is not None:
                progress(len(objects))
            if assets:
                yield AssetBatch.from_assets(assets)

    def refuse_empty(self, stored: int) -> None:
        kept = sum(self._counts.values())
        check_not_empty(f"file {self.path}", kept, self._summary.features_read, stored, self._findings)

    def summary(self, written: int, meshes: int) -> CityJsonSummary:
        summary = self._summary
        summary.meshes = meshes
        summary.assets = {str(k): n for k, n in sorted(self._counts.items())}
        summary.rejected = self._findings.count(*REJECTING)
        summary.findings = self._findings.as_list()
        return summary


# --- reading ---
def _open(path: Path) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The file's header object and its documents (the whole file, or each CityJSONFeature line)."""
    if not path.is_file():
        raise InvalidInput(f"file {path}", "does not exist")
    try:
        if path.name.lower().endswith(".jsonl"):
            lines = path.open(encoding="utf-8")
            first = lines.readline()
            header = _parse(first, path, 1)
            return header, (_parse(line, path, n) for n, line in enumerate(lines, start=2) if line.strip())
        document = _parse(path.read_text(encoding="utf-8"), path, None)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"file {path}", f"is not UTF-8 text (byte {exc.start}); CityJSON must be UTF-8") from None
    return document, iter([document])


def _parse(text: str, path: Path, line: int | None) -> dict[str, Any]:
    where = f"file {path}" + (f" line {line}" if line else "")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(where, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInput(where, "is not CityJSON: its JSON is nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity, which JSON does not have
        raise InvalidInput(where, f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or value.get("type") not in ("CityJSON", "CityJSONFeature"):
        raise InvalidInput(where, 'is not CityJSON: no "type": "CityJSON" / "CityJSONFeature" object')
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _frame(header: dict[str, Any], path: Path, given: CRS | None) -> _Frame:
    transform = header.get("transform") or {"scale": [1, 1, 1], "translate": [0, 0, 0]}
    scale, translate = _triple(transform, "scale", path), _triple(transform, "translate", path)
    if not np.all(scale):
        raise InvalidInput(f"file {path} transform.scale", f"{scale.tolist()} has a zero; every vertex would collapse")
    metadata = header.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"file {path} metadata", "must be a JSON object")
    reference = metadata.get("referenceSystem")
    if given is not None:
        crs = given
    elif reference:
        codes = epsg_codes(str(reference))
        if not codes:
            raise InvalidInput(f"file {path} metadata.referenceSystem", f"{reference!r} names no EPSG code")
        # a compound name's second code is its heights' datum: EPSG:28992+5709 says what EPSG:28992 alone does not
        name = "EPSG:" + "+".join(str(code) for code in codes[:2])
        crs = parse_crs(name, what=f"file {path} metadata.referenceSystem")
    else:
        raise InvalidInput(f"file {path}", "has no metadata.referenceSystem; give its CRS with --crs, e.g. EPSG:7415")
    horizontal = crs.sub_crs_list[0] if crs.is_compound else crs
    return _Frame(
        scale=scale,
        translate=translate,
        to_wgs84=Transformer.from_crs(horizontal, "EPSG:4326", always_xy=True),
        crs=crs,
        path=path,
    )


def _triple(transform: Any, name: str, path: Path) -> npt.NDArray[np.float64]:
    """``transform[name]`` as three finite numbers, or an error naming the file and the key."""
    value = transform.get(name) if isinstance(transform, dict) else None
    try:
        numbers = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        numbers = np.zeros(0)
    if numbers.shape != (3,) or not np.isfinite(numbers).all() or any(isinstance(v, bool) for v in value or []):
        raise InvalidInput(f"file {path} transform.{name}", f"must be three finite numbers, got {str(value)[:80]}")
    return numbers


def _height_datum(crs: CRS) -> str:
    if crs.is_compound and len(crs.sub_crs_list) > 1:
        return f"{crs.sub_crs_list[1].name} (orthometric, kept as given)"
    return "as given in the file (no vertical CRS declared)"


#: How deep a geometry's ``boundaries`` may nest lists: a MultiSolid's solids → shells → surfaces → rings → indices.
_MAX_BOUNDARY_DEPTH = 5


def _chunks(documents: Iterator[dict[str, Any]], path: Path) -> Iterator[tuple[list[_Object], list[Any]]]:
    """(objects, vertices) in batches; a feature stream's vertex lists are concatenated with their indices shifted.
    Each object's vertex indices are checked against its own document's vertices first (see :func:`_problem`)."""
    objects: list[_Object] = []
    vertices: list[Any] = []
    for number, document in enumerate(documents, start=1):
        where = f"file {path}" + (f" document {number}" if document.get("type") == "CityJSONFeature" else "")
        own = document.get("vertices", [])
        city_objects = document.get("CityObjects") or {}
        if not isinstance(own, list):
            raise InvalidInput(f"{where} vertices", "must be a list of [x, y, z] numbers")
        if not isinstance(city_objects, dict):
            raise InvalidInput(f"{where} CityObjects", "must be an object of CityObjects by id")
        shift = len(vertices)
        vertices.extend(own)
        for object_id, city_object in city_objects.items():
            problem = _problem(city_object, len(own))
            if problem is None and shift:
                city_object = {**city_object, "geometry": [_shifted(g, shift) for g in city_object.get("geometry", [])]}
            objects.append((object_id, city_object, problem))
        if len(objects) >= BATCH_OBJECTS and document.get("type") == "CityJSONFeature":
            yield objects, vertices
            objects, vertices = [], []
    if objects:
        yield objects, vertices


def _problem(city_object: Any, vertex_count: int) -> tuple[str, str] | None:
    """Why a CityObject cannot be read as it is, as (rule, detail), or None. Every vertex index of every geometry
    must be an integer naming one of the document's vertices: a negative one would silently take a vertex counted
    from the end, a too large one would fail the whole file."""
    if not isinstance(city_object, dict):
        return "malformed_object", "not a JSON object"
    geometries = city_object.get("geometry") or []
    if not isinstance(geometries, list) or not all(isinstance(g, dict) for g in geometries):
        return "malformed_object", "geometry is not a list of geometry objects"
    for geometry in geometries:
        if geometry.get("type") == "GeometryInstance":
            continue  # its boundaries are one reference point; its template is not read
        found = _bad_index(geometry.get("boundaries", []), vertex_count, _MAX_BOUNDARY_DEPTH)
        if found is not None:
            return "bad_vertex_index", found
    return None


def _bad_index(node: Any, vertex_count: int, depth: int) -> str | None:
    if not isinstance(node, list) or depth == 0:
        return "boundaries nest deeper than a MultiSolid" if depth == 0 else "boundaries are not nested lists"
    for item in node:
        if isinstance(item, list):
            found = _bad_index(item, vertex_count, depth - 1)
            if found is not None:
                return found
        elif isinstance(item, bool) or not isinstance(item, int):
            return "not an integer"
        elif item < 0:
            return "negative"
        elif item >= vertex_count:
            return "past the last vertex"
    return None


def _shifted(geometry: dict[str, Any], shift: int) -> dict[str, Any]:
    def move(node: Any) -> Any:
        return [move(n) for n in node] if isinstance(node, list) else node + shift

    return {**geometry, "boundaries": move(geometry.get("boundaries", []))}


# --- converting ---
def _convert(
    objects: list[_Object],
    points: npt.NDArray[np.float64] | None,
    prefix: str,
    source: str,
    findings: Findings,
) -> tuple[list[Asset], MeshBatch]:
    """The batch's objects as assets and meshes: each object's surfaces read, all of them triangulated in one call
    (:func:`cim.gis.surfaces.triangulate_objects`), then each object's footprint and asset."""
    kept: list[tuple[str, dict[str, Any], dict[str, Any], surface_geometry.Rings]] = []
    for object_id, city_object, problem in objects:
        asset_id = f"{prefix}:{object_id}"
        if problem is None:
            try:
                read = _read_one(city_object, points)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                # a shape the checks in _problem let through (e.g. rings nested one level too shallow for the type)
                problem = ("malformed_object", "geometry nested unlike its type")
            else:
                if isinstance(read, str):
                    findings.add(read, np.array([asset_id], dtype=object))
                else:
                    kept.append((asset_id, city_object, *read))
        if problem is not None:
            findings.add(problem[0], np.array([asset_id], dtype=object), problem[1])
    if points is None or not kept:
        return [], MeshBatch.empty()
    assets: list[Asset] = []
    mesh_ids: list[str] = []
    triangles_of: list[npt.NDArray[np.int64]] = []
    triangulated = surface_geometry.triangulate_objects([rings for *_, rings in kept], points)
    for (asset_id, city_object, geometry, _), triangles in zip(kept, triangulated, strict=True):
        try:
            converted = _convert_one(asset_id, city_object, geometry, triangles, points, prefix, source, findings)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError):
            detail = "attributes or parents unlike CityJSON's"
            findings.add("malformed_object", np.array([asset_id], dtype=object), detail)
            continue
        if isinstance(converted, str):
            findings.add(converted, np.array([asset_id], dtype=object))
        else:
            assets.append(converted)
            mesh_ids.append(asset_id)
            triangles_of.append(triangles)
    return assets, _meshes(mesh_ids, triangles_of, points)


def _read_one(
    city_object: dict[str, Any], points: npt.NDArray[np.float64] | None
) -> tuple[dict[str, Any], surface_geometry.Rings] | str:
    """One CityObject's geometry and the rings of its surfaces, or the rule that rejects it."""
    if str(city_object.get("type", "")) in SKIPPED_TYPES:
        return "skipped_terrain"
    geometry = _best_geometry(city_object.get("geometry") or [])
    surfaces = _surfaces(geometry) if geometry is not None else []
    if geometry is None or not surfaces:
        return "empty_geometry"
    rings = surface_geometry.Rings.from_surfaces(surfaces)
    if points is None:
        return "unsupported_geometry"
    if np.isnan(points[rings.vertices, 0]).any():
        return "outside_lonlat"  # a vertex that is no finite place on Earth: huge, or not in the CRS's area
    return geometry, rings


def _convert_one(
    asset_id: str,
    city_object: dict[str, Any],
    geometry: dict[str, Any],
    triangles: npt.NDArray[np.int64],
    points: npt.NDArray[np.float64],
    prefix: str,
    source: str,
    findings: Findings,
) -> Asset | str:
    """One CityObject's asset from its triangles, or the rule that rejects it."""
    footprint = surface_geometry.footprint(triangles, points) if len(triangles) else None
    if footprint is None:
        return "unsupported_geometry"
    z = points[np.unique(triangles), 2]
    kind_name = str(city_object.get("type", ""))
    return _asset(asset_id, city_object, kind_name, geometry, footprint, z, prefix, source, findings)


def _best_geometry(geometries: list[dict[str, Any]]) -> dict[str, Any] | None:
    usable = [g for g in geometries if g.get("type") != "GeometryInstance" and g.get("boundaries")]
    return max(usable, key=lambda g: float(g.get("lod", 0) or 0), default=None)


def _surfaces(geometry: dict[str, Any]) -> list[list[list[int]]]:
    """Every surface of a geometry as a list of rings (outer first), whatever its nesting."""
    depth = {"MultiSurface": 0, "CompositeSurface": 0, "Solid": 1, "MultiSolid": 2, "CompositeSolid": 2}.get(
        str(geometry.get("type")), -1
    )
    if depth < 0:
        return []
    nodes: list[Any] = geometry["boundaries"]
    for _ in range(depth):
        nodes = [surface for group in nodes for surface in group]
    return [s for s in nodes if s and len(s[0]) >= 3]


def _asset(
    asset_id: str,
    city_object: dict[str, Any],
    kind_name: str,
    geometry: dict[str, Any],
    footprint: shapely.Geometry,
    z: npt.NDArray[np.float64],
    prefix: str,
    source: str,
    findings: Findings,
) -> Asset:
    attributes = dict(city_object.get("attributes") or {})
    kind = KINDS.get(kind_name, Kind.ELEMENT)
    parents = city_object.get("parents") or []
    measured = _number(attributes.get("measuredHeight"))
    storeys = _number(attributes.get("storeysAboveGround"))
    built = _number(attributes.get("yearOfConstruction"))
    install_date = None
    if built is not None:
        if 1800 <= built <= date.today().year:
            install_date = date(int(built), 1, 1)
        else:
            findings.add("implausible_install_date", np.array([asset_id], dtype=object))
    props: dict[str, Any] = {"cityjson.type": kind_name, "cityjson.lod": str(geometry.get("lod", ""))}
    props.update(attributes)
    height = measured if measured is not None else float(z.max() - z.min())
    return Asset(
        id=asset_id,
        kind=kind,
        geom=footprint,
        name=attributes.get("name") if isinstance(attributes.get("name"), str) else None,
        parent_id=f"{prefix}:{parents[0]}" if parents else None,
        source=source,
        z_min=float(z.min()),
        z_max=float(z.max()),
        install_date=install_date,
        status=str(attributes["status"]) if attributes.get("status") is not None else None,
        height_m=height if kind in (Kind.BUILDING, Kind.BRIDGE, Kind.ELEMENT) else None,
        storeys=int(storeys) if storeys is not None and kind is Kind.BUILDING else None,
        props=props,
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number >= 0 else None


def _meshes(
    ids: list[str], triangles_of: list[npt.NDArray[np.int64]], points: npt.NDArray[np.float64] | None
) -> MeshBatch:
    if not ids or points is None:
        return MeshBatch.empty()
    origins, vertices, triangles = [], [], []
    for tri in triangles_of:
        index, local = np.unique(tri, return_inverse=True)
        own = points[index]
        origin = (float(own[:, 0].mean()), float(own[:, 1].mean()), float(own[:, 2].min()))
        origins.append(origin)
        vertices.append(lonlat_to_enu(own[:, 0], own[:, 1], own[:, 2], origin).astype(np.float32))
        triangles.append(local.reshape(-1, 3).astype(np.uint32))
    return MeshBatch.build(ids, origins, vertices, triangles)
