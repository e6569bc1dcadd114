"""Where an IFC model is on Earth: world coordinates (metres) → WGS84 lon/lat and heights.

Tried in this order, the first usable one wins (the summary reports which, as ``method``):

1. ``map_conversion`` — ``IfcMapConversion`` + ``IfcProjectedCRS`` (IFC4+), projected with pyproj from the CRS name.
2. ``epset_map_conversion`` — the same numbers from ``ePset_MapConversion`` / ``ePset_ProjectedCRS`` (IFC2X3).
3. ``site_reference`` — ``IfcSite`` RefLatitude / RefLongitude / RefElevation at the site's placement origin, the
   model turned by the context's TrueNorth, on the local tangent plane (fine for a site; not for a 50 km corridor).
4. ``placement`` — the caller's (lon, lat, height, rotation): the model origin goes there (or, for a model whose
   elements lie more than 10 km from its origin — absolute coordinates without a map conversion — the median of
   its element placements, reported as ``anchor``), its +X axis turned ``rotation`` degrees counter-clockwise
   from east.

A map conversion is unusable when its CRS name is empty or unknown to pyproj, or when it places the model outside
the CRS's area of use (e.g. zero offsets on local coordinates: "georeferenced in name only").

Heights: IFC heights (``OrthogonalHeight``, ``RefElevation``, the vertical datum of the projected CRS) are
orthometric in practice. No geoid model is available offline here, so heights are stored as given, in metres;
``z_min``/``z_max`` are therefore orthometric values in the ellipsoidal columns, off by the local geoid
undulation (about +50 m in central Europe, −30 m in the Chicago area, +10 m in Shanghai). The summary says so
in ``height_datum``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ifcopenshell
import ifcopenshell.util.placement
import ifcopenshell.util.unit
import numpy as np
import numpy.typing as npt

from cim import geodesy
from cim.bim.placement import Placement
from cim.bim.properties import flatten
from cim.errors import InvalidInput

F64 = npt.NDArray[np.float64]
HEIGHT_DATUM = "as in the file (orthometric in practice); no geoid model applied"
FAR_FROM_ORIGIN_M = 10_000.0


@dataclass(frozen=True)
class Georeference:
    """How world coordinates (metres, as the geometry iterator gives them) become lon/lat/height."""

    method: str
    lon: float
    lat: float
    height: float
    crs: str | None = None
    anchor: tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: list[str] = field(default_factory=list)
    transform: Callable[[F64], F64] | None = field(default=None, repr=False)

    def to_lonlat(self, xyz: npt.ArrayLike) -> F64:
        """lon, lat, height (…, 3) of world points (…, 3) in metres."""
        points = np.asarray(xyz, dtype=np.float64)
        assert self.transform is not None
        return self.transform(points.reshape(-1, 3)).reshape(points.shape)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "lon": round(self.lon, 9),
            "lat": round(self.lat, 9),
            "height": round(self.height, 3),
            "crs": self.crs,
            "anchor": list(self.anchor),
            "height_datum": HEIGHT_DATUM,
        }


def length_unit(model: ifcopenshell.file) -> float:
    """Metres per project length unit. Falls back to the SI length unit of the assignment when ifcopenshell's
    reader fails on a malformed conversion-based unit (seen in a Bentley OpenRoads export)."""
    try:
        # ifcopenshell.util.unit.calculate_unit_scale, less its getattr(unit, "UnitType") on units that have none
        # (IfcMonetaryUnit), which makes ifcopenshell import its schema rules: 14 ms and 5 MB
        scale = 1.0
        for project in model.by_type("IfcProject")[:1]:
            for unit in getattr(project.UnitsInContext, "Units", None) or ():
                if unit.is_a("IfcNamedUnit") and unit.UnitType == "LENGTHUNIT":
                    scale *= ifcopenshell.util.unit.get_unit_scale(unit)
        return float(scale)
    except (AttributeError, TypeError, ValueError):
        prefixes = {None: 1.0, "MILLI": 1e-3, "CENTI": 1e-2, "DECI": 1e-1, "KILO": 1e3}
        for unit in model.by_type("IfcSIUnit"):
            if unit.UnitType == "LENGTHUNIT" and unit.Prefix in prefixes:
                return prefixes[unit.Prefix]
        raise InvalidInput("length unit", "the project's length unit cannot be read") from None


def georeference(model: ifcopenshell.file, *, placement: Placement | None = None) -> Georeference:
    """The first usable georeference of ``model`` (see the module docstring), else :class:`InvalidInput`."""
    unit = length_unit(model)
    notes: list[str] = []
    for method, read in (("map_conversion", _map_conversion), ("epset_map_conversion", _epset)):
        numbers = read(model)  # in turn: reading ePset_MapConversion costs ~15 ms, needless when the first works
        if numbers is None:
            continue
        found = _projected(method, numbers, unit, notes)
        if found is not None:
            return found
    site = _site_reference(model, unit)
    if site is not None:
        return site
    notes.append("no IfcSite RefLatitude/RefLongitude")
    if placement is not None:
        return _placed(model, placement, unit)
    raise InvalidInput(
        "georeference", f"none usable ({'; '.join(notes)}); give a placement: --place LON,LAT,HEIGHT[,ROT]"
    )


def _map_conversion(model: ifcopenshell.file) -> dict[str, Any] | None:
    if model.schema == "IFC2X3":
        return None
    for conversion in model.by_type("IfcMapConversion"):
        target = conversion.TargetCRS
        map_unit = getattr(target, "MapUnit", None)
        return {
            "crs": (target.Name or "").strip() if target else "",
            "e": conversion.Eastings or 0.0,
            "n": conversion.Northings or 0.0,
            "h": conversion.OrthogonalHeight or 0.0,
            "a": conversion.XAxisAbscissa,
            "b": conversion.XAxisOrdinate,
            "scale": conversion.Scale,
            "map_unit_m": ifcopenshell.util.unit.get_unit_scale(map_unit) if map_unit else None,
        }
    return None


def _epset(model: ifcopenshell.file) -> dict[str, Any] | None:
    for holder in (*model.by_type("IfcProject"), *model.by_type("IfcSite")):
        psets = _psets(holder)
        conversion = psets.get("ePset_MapConversion")
        if conversion:
            return {
                "crs": str(psets.get("ePset_ProjectedCRS", {}).get("Name") or "").strip(),
                "e": conversion.get("Eastings") or 0.0,
                "n": conversion.get("Northings") or 0.0,
                "h": conversion.get("OrthogonalHeight") or 0.0,
                "a": conversion.get("XAxisAbscissa"),
                "b": conversion.get("XAxisOrdinate"),
                "scale": conversion.get("Scale"),
                "map_unit_m": None,
            }
    return None


def _psets(holder: ifcopenshell.entity_instance) -> dict[str, dict[str, Any]]:
    """The property sets of a project or site as ``{set: {property: value}}`` (ifcopenshell.util.element.get_psets
    asks a project for IsTypedBy, which it lacks, and ifcopenshell then imports its schema rules: 15 ms)."""
    psets: dict[str, dict[str, Any]] = {}
    for rel in getattr(holder, "IsDefinedBy", None) or ():
        definition = rel.RelatingPropertyDefinition if rel.is_a("IfcRelDefinesByProperties") else None
        if isinstance(definition, ifcopenshell.entity_instance):
            for key, value in flatten(definition).items():
                name, _, prop = key.partition(".")
                psets.setdefault(name, {})[prop] = value
    return psets


def _projected(method: str, c: dict[str, Any], unit: float, notes: list[str]) -> Georeference | None:
    from pyproj import CRS, Transformer  # only a file with a map conversion needs it (~25 ms to import)
    from pyproj.exceptions import CRSError

    label = "IfcMapConversion" if method == "map_conversion" else "ePset_MapConversion"
    try:
        crs = CRS.from_user_input(c["crs"])
    except CRSError:
        notes.append(f"{label} names no usable CRS ({c['crs']!r})")
        return None
    map_unit_m = c["map_unit_m"] or 1.0
    a, b = (c["a"] if c["a"] is not None else 1.0), (c["b"] if c["b"] is not None else 0.0)
    norm = math.hypot(a, b) or 1.0
    a, b = a / norm, b / norm
    scale = float(c["scale"]) if c["scale"] is not None else 1.0
    if math.isclose(scale, unit / map_unit_m, rel_tol=1e-6) and not math.isclose(scale, 1.0):
        scale = 1.0  # Scale used as the unit conversion, which world metres already include
    transformer = Transformer.from_crs(crs, CRS.from_epsg(4979), always_xy=True)
    e0, n0, h0 = float(c["e"]), float(c["n"]), float(c["h"])

    def transform(xyz: F64) -> F64:
        x, y = xyz[:, 0] / map_unit_m, xyz[:, 1] / map_unit_m
        east = e0 + scale * (a * x - b * y)
        north = n0 + scale * (b * x + a * y)
        lon, lat, h = transformer.transform(east, north, h0 + xyz[:, 2])
        return np.stack([np.asarray(lon), np.asarray(lat), np.asarray(h)], axis=-1)

    lon, lat, height = transform(np.zeros((1, 3)))[0]
    area = crs.area_of_use
    if not np.isfinite([lon, lat, height]).all() or (
        area is not None and not (area.west - 1 <= lon <= area.east + 1 and area.south - 1 <= lat <= area.north + 1)
    ):
        notes.append(f"{label} places the model outside the area of use of {c['crs']} (offsets {e0:g}, {n0:g})")
        return None
    return Georeference(method, float(lon), float(lat), float(height), crs=c["crs"], notes=notes, transform=transform)


def _site_reference(model: ifcopenshell.file, unit: float) -> Georeference | None:
    for site in model.by_type("IfcSite"):
        if not site.RefLatitude or not site.RefLongitude:
            continue
        lat, lon = dms_to_degrees(site.RefLatitude), dms_to_degrees(site.RefLongitude)
        height = float(site.RefElevation or 0.0) * unit
        anchor = world_origin(site, unit)
        north = _true_north(model)
        rotation = math.degrees(math.atan2(north[0], north[1]))  # +X from east, counter-clockwise
        return _tangent("site_reference", lon, lat, height, rotation, anchor)
    return None


def _placed(model: ifcopenshell.file, placement: Placement, unit: float) -> Georeference:
    origins = [
        world_origin(p, unit) for p in model.by_type("IfcElement") if getattr(p, "ObjectPlacement", None) is not None
    ]
    anchor = (0.0, 0.0, 0.0)
    if origins:
        middle = np.median(np.array(origins), axis=0)
        if math.hypot(middle[0], middle[1]) > FAR_FROM_ORIGIN_M:
            anchor = (round(float(middle[0])), round(float(middle[1])), round(float(middle[2])))
    return _tangent("placement", placement.lon, placement.lat, placement.height, placement.rotation, anchor)


def _tangent(
    method: str, lon: float, lat: float, height: float, rotation: float, anchor: tuple[float, float, float]
) -> Georeference:
    """A local tangent-plane georeference: ``anchor`` (world metres) at lon/lat/height, +X at ``rotation``°."""
    r = math.radians(rotation)
    cos_r, sin_r = math.cos(r), math.sin(r)
    origin_ecef = geodesy.lonlat_to_ecef(lon, lat, height)
    enu_to_ecef = geodesy.enu_rotation(lon, lat).T
    shift = np.asarray(anchor, dtype=np.float64)

    def transform(xyz: F64) -> F64:
        d = xyz - shift
        enu = np.stack([cos_r * d[:, 0] - sin_r * d[:, 1], sin_r * d[:, 0] + cos_r * d[:, 1], d[:, 2]], axis=-1)
        return geodesy.ecef_to_lonlat(origin_ecef + enu @ enu_to_ecef.T)

    return Georeference(method, lon, lat, height, anchor=anchor, transform=transform)


def dms_to_degrees(parts: tuple[int, ...] | list[int]) -> float:
    """An IfcCompoundPlaneAngleMeasure (degrees, minutes, seconds, millionths of a second) in degrees.

    >>> round(dms_to_degrees((-87, -38, -21, -839999)), 6)
    -87.6394
    """
    scales = (1.0, 60.0, 3600.0, 3600.0e6)
    return sum(float(v) / s for v, s in zip(parts, scales, strict=False))


def world_origin(product: ifcopenshell.entity_instance, unit: float) -> tuple[float, float, float]:
    try:
        matrix = ifcopenshell.util.placement.get_local_placement(product.ObjectPlacement)
    except Exception:
        return (0.0, 0.0, 0.0)
    return (float(matrix[0, 3] * unit), float(matrix[1, 3] * unit), float(matrix[2, 3] * unit))


def _true_north(model: ifcopenshell.file) -> tuple[float, float]:
    for context in model.by_type("IfcGeometricRepresentationContext"):
        if context.is_a("IfcGeometricRepresentationSubContext"):
            continue
        north = getattr(context, "TrueNorth", None)
        if north is not None and north.DirectionRatios:
            x, y = float(north.DirectionRatios[0]), float(north.DirectionRatios[1])
            if math.hypot(x, y) > 0:
                return (x / math.hypot(x, y), y / math.hypot(x, y))
    return (0.0, 1.0)
