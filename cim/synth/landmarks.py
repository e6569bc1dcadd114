"""Lujiazui's four landmark towers as generated BIM at their real places, so the demo city reads as Shanghai.

Each is an IFC4 model written with ``ifcopenshell.api`` in the style of :mod:`cim.synth.towers` (site, building,
storeys, facade shells and floor slabs, lifts with install dates, ``IfcMapConversion`` to UTM 51N and the site's
reference point), a few dozen to ~150 elements each, so ingest stays fast. The silhouettes are simplified:

- **上海中心大厦 Shanghai Tower** (632 m, 2015): a rounded-triangle floor plate turning 120° and tapering to ~55 %
  over 128 floors, an open crown on top.
- **上海环球金融中心 Shanghai World Financial Center** (492 m, 2008): a square prism cut by two curved faces, so the
  plan narrows to a line along one diagonal at the top, with the trapezoidal opening near the top (440–485 m).
- **金茂大厦 Jin Mao Tower** (420.5 m, 1999): an octagonal tower stepping in at ten setbacks like a pagoda, a
  crown and a spire.
- **东方明珠广播电视塔 Oriental Pearl Tower** (468 m, 1994): three columns, three inclined legs, the lower and
  upper spheres and the space module (polygonal slices), a spire.

**Positions** (WGS84, :data:`LANDMARKS`) are the towers' centres as given with the issue (read from public web
maps), to some tens of metres — not surveyed, and not checked here against a second source — and checked for
their arrangement: Jin Mao is north of the Shanghai Tower and the SWFC
east of both, each 200–450 m from the others, and the Pearl 700–900 m to the north-west on Lujiazui's point by the
Huangpu's bend (and on land: :mod:`cim.synth.water`). Heights are the published architectural heights. Lift counts
are a handful each (the real towers have 60–150) and their dates — the opening year, some replaced later — are
illustrative, not records.

A landmark's plot (:func:`landmark_plots`, a circle of :attr:`Landmark.plot_m`) is kept free of generated blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.unit
import ifcopenshell.util.unit
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from cim.synth.places import to_metres
from cim.synth.towers import GROUND_M, SHAFT, _at, _dms, _georeference, _make_reproducible


@dataclass(frozen=True, slots=True)
class Landmark:
    key: str
    name: str  # Chinese
    name_en: str
    lon: float
    lat: float
    height_m: float
    completed: int
    plot_m: float  # radius kept free of generated blocks
    lift_years: tuple[int, ...]


LANDMARKS: tuple[Landmark, ...] = (
    Landmark("shanghai-tower", "上海中心大厦", "Shanghai Tower", 121.5055, 31.2335, 632.0, 2015, 75.0, (2015,) * 6),
    Landmark(
        "swfc",
        "上海环球金融中心",
        "Shanghai World Financial Center",
        121.5075,
        31.2350,
        492.0,
        2008,
        65.0,
        (2008, 2008, 2008, 2008, 2021, 2021),
    ),
    Landmark(
        "jin-mao", "金茂大厦", "Jin Mao Tower", 121.5050, 31.2375, 420.5, 1999, 65.0, (1998, 1998, 1998, 2012, 2012)
    ),
    Landmark(
        "oriental-pearl",
        "东方明珠广播电视塔",
        "Oriental Pearl Tower",
        121.4997,
        31.2397,
        468.0,
        1994,
        70.0,
        (1994, 2009, 2009),
    ),
)


@dataclass(frozen=True, slots=True)
class _Site:
    """What :func:`cim.synth.towers._georeference` needs of a site."""

    lon: float
    lat: float
    rotation_deg: float = 0.0


@dataclass(frozen=True, slots=True)
class Part:
    """One element: ``shape`` (local metres, holes allowed) extruded ``depth`` metres from ``z`` along ``lean``."""

    name: str
    ifc_class: str
    shape: BaseGeometry
    z: float
    depth: float
    storey: int
    lean: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass
class Design:
    storeys: list[tuple[str, float]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    lift_height: float = 0.0
    lift_at: list[tuple[float, float]] = field(default_factory=list)


def landmark_plots() -> list[BaseGeometry]:
    """Each landmark's plot in metres (EPSG:32651), in :data:`LANDMARKS` order."""
    x, y = to_metres([m.lon for m in LANDMARKS], [m.lat for m in LANDMARKS])
    return [shapely.Point(float(a), float(b)).buffer(m.plot_m) for a, b, m in zip(x, y, LANDMARKS, strict=True)]


def write_landmarks(out: Path) -> list[Path]:
    """``landmark-<key>.ifc`` for each of :data:`LANDMARKS` (IFC4)."""
    written = []
    for landmark in LANDMARKS:
        path = out / f"landmark-{landmark.key}.ifc"
        build_landmark(landmark).write(str(path))
        written.append(path)
    return written


def build_landmark(landmark: Landmark) -> ifcopenshell.file:
    design = DESIGNS[landmark.key](landmark)
    api = ifcopenshell.api
    model = api.project.create_file(version="IFC4")
    project = api.root.create_entity(model, ifc_class="IfcProject", name="Shanghai CIM demo")
    api.unit.assign_unit(model)
    body = api.context.add_context(
        model,
        context_type="Model",
        context_identifier="Body",
        target_view="MODEL_VIEW",
        parent=api.context.add_context(model, context_type="Model"),
    )
    site = api.root.create_entity(model, ifc_class="IfcSite", name="Lujiazui")
    site.RefLatitude, site.RefLongitude, site.RefElevation = _dms(landmark.lat), _dms(landmark.lon), GROUND_M
    building = api.root.create_entity(model, ifc_class="IfcBuilding", name=f"{landmark.name} {landmark.name_en}")
    api.aggregate.assign_object(model, relating_object=project, products=[site])
    api.aggregate.assign_object(model, relating_object=site, products=[building])
    for product in (site, building):
        api.geometry.edit_object_placement(model, product=product)
    _georeference(model, _Site(landmark.lon, landmark.lat))  # type: ignore[arg-type]
    names = api.pset.add_pset(model, product=building, name="CIM_Landmark")
    api.pset.edit_pset(
        model,
        pset=names,
        properties={
            "NameZh": landmark.name,
            "NameEn": landmark.name_en,
            "Height": landmark.height_m,
            "YearCompleted": landmark.completed,
        },
    )
    storeys = []
    for name, elevation in design.storeys:
        storey = api.root.create_entity(model, ifc_class="IfcBuildingStorey", name=name)
        storey.Elevation = elevation
        api.geometry.edit_object_placement(model, product=storey, matrix=_at(0, 0, elevation))
        api.aggregate.assign_object(model, relating_object=building, products=[storey])
        storeys.append(storey)
    contained: dict[int, list[Any]] = {}
    for part in design.parts:
        element = api.root.create_entity(model, ifc_class=part.ifc_class, name=part.name)
        api.geometry.assign_representation(model, product=element, representation=_extrusion(model, body, part))
        api.geometry.edit_object_placement(model, product=element, matrix=_at(0, 0, part.z))
        contained.setdefault(part.storey, []).append(element)
    contained.setdefault(0, []).extend(_lifts(model, body, landmark, design))
    for index, elements in contained.items():
        api.spatial.assign_container(model, relating_structure=storeys[index], products=elements)
    _make_reproducible(model, f"landmark:{landmark.key}")
    return model


def _extrusion(model: ifcopenshell.file, body: Any, part: Part) -> Any:
    """The part's body as swept solids, written in the project's length unit (the api's default, millimetres)."""
    unit = 1.0 / ifcopenshell.util.unit.calculate_unit_scale(model)
    solids = []
    direction = model.createIfcDirection(part.lean)
    length = unit * part.depth / part.lean[2]  # the depth is vertical; a leaning solid is longer
    origin = model.createIfcAxis2Placement3D(model.createIfcCartesianPoint((0.0, 0.0, 0.0)))
    for polygon in shapely.get_parts(part.shape):
        outer = _polyline(model, polygon.exterior.coords, unit)
        holes = [_polyline(model, ring.coords, unit) for ring in polygon.interiors]
        profile = (
            model.createIfcArbitraryProfileDefWithVoids("AREA", None, outer, holes)
            if holes
            else model.createIfcArbitraryClosedProfileDef("AREA", None, outer)
        )
        solids.append(model.createIfcExtrudedAreaSolid(profile, origin, direction, length))
    return model.createIfcShapeRepresentation(body, "Body", "SweptSolid", solids)


def _polyline(model: ifcopenshell.file, coords: Any, unit: float) -> Any:
    points = [model.createIfcCartesianPoint((round(unit * x, 1), round(unit * y, 1))) for x, y in coords]
    return model.createIfcPolyline(points)


def _lifts(model: ifcopenshell.file, body: Any, landmark: Landmark, design: Design) -> list[Any]:
    api = ifcopenshell.api
    lifts = []
    for n, (year, (x, y)) in enumerate(zip(landmark.lift_years, design.lift_at, strict=False)):
        lift = api.root.create_entity(
            model, ifc_class="IfcTransportElement", predefined_type="ELEVATOR", name=f"Lift {n + 1}"
        )
        shaft = shapely.box(x, y, x + SHAFT[0], y + SHAFT[1])
        api.geometry.assign_representation(
            model,
            product=lift,
            representation=_extrusion(model, body, Part("", "", shaft, 0.0, design.lift_height, 0)),
        )
        api.geometry.edit_object_placement(model, product=lift, matrix=_at(0, 0, 0))
        date = f"{year}-06-01"
        for pset, values in (
            ("CIM_Asset", {"InstallationDate": date}),
            (
                "Pset_ManufacturerOccurrence",
                {"SerialNumber": f"SH-{landmark.key}-{n + 1:03d}", "AcquisitionDate": date},
            ),
        ):
            api.pset.edit_pset(model, pset=api.pset.add_pset(model, product=lift, name=pset), properties=values)
        lifts.append(lift)
    return lifts


# --- the designs, in local metres (x east, y north, z up from the ground) ---
def _circle(n: int, radius: float) -> BaseGeometry:
    return _ring(n, lambda a: np.full_like(a, radius))


def _ring(n: int, radius: Callable[[np.ndarray], np.ndarray], turn: float = 0.0) -> BaseGeometry:
    theta = np.linspace(0.0, 2 * math.pi, n, endpoint=False) + turn
    r = radius(theta)
    return shapely.Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))


def _shell(outline: BaseGeometry, wall: float = 0.8) -> BaseGeometry:
    """The facade of a floor: the outline less its inside, or the whole outline when too thin for a hollow."""
    inside = outline.buffer(-wall, join_style="mitre")
    return outline if inside.is_empty or inside.area < 4.0 else outline.difference(inside)


def _core_lifts(count: int) -> list[tuple[float, float]]:
    return [(-7.0 + 2.6 * (n % 3), -3.0 if n < 3 else 1.0) for n in range(count)]  # two rows of three in the core


def _floors(design: Design, floors: int, top: float, outline: Callable[[float], BaseGeometry], every: int = 12) -> None:
    """``floors`` storeys up to ``top`` metres: a facade shell each, a floor slab every ``every`` floors."""
    h = top / floors
    for k in range(floors):
        z = k * h
        design.storeys.append((f"F{k + 1:03d}", z))
        plan = outline(z)
        design.parts.append(Part(f"Facade F{k + 1:03d}", "IfcCurtainWall", _shell(plan), z, h, k))
        if k % every == 0 or k == floors - 1:
            design.parts.append(
                Part(f"Slab F{k + 1:03d}", "IfcSlab", plan, z if k < floors - 1 else z + h - 0.5, 0.5, k)
            )


def _shanghai_tower(m: Landmark) -> Design:
    design, top, floors = Design(), 580.0, 128

    def outline(z: float) -> BaseGeometry:
        t = z / m.height_m
        return _ring(24, lambda a: 42.0 * (1 - 0.45 * t) * (1 + 0.12 * np.cos(3 * a)), math.radians(120 * t))

    _floors(design, floors, top, outline, every=15)
    crown = outline(top)
    design.parts.append(Part("Crown", "IfcCurtainWall", _shell(crown, 1.2), top, m.height_m - top, floors - 1))
    design.lift_height, design.lift_at = top, _core_lifts(len(m.lift_years))
    return design


def _swfc(m: Landmark) -> Design:
    design, floors, side = Design(), 101, 58.0
    square = shapely.box(-side / 2, -side / 2, side / 2, side / 2)
    opening = (440.0, 485.0)

    def outline(z: float) -> BaseGeometry:
        half = 41.0 - 37.0 * (z / m.height_m) ** 1.2  # half-width across the top edge's diagonal
        band = shapely.Polygon(
            [(-60, 60 - half * 1.414), (60, -60 - half * 1.414), (60, -60 + half * 1.414), (-60, 60 + half * 1.414)]
        )
        plan = square.intersection(band)
        if opening[0] <= z < opening[1]:  # the opening, 50 m wide along the top edge, through the building
            hole = shapely.Polygon(
                [(-60, -60 + 25 * 1.414), (60, 60 + 25 * 1.414), (60, 60 - 25 * 1.414), (-60, -60 - 25 * 1.414)]
            )
            plan = plan.difference(hole)
        return plan

    _floors(design, floors, m.height_m, outline)
    design.lift_height, design.lift_at = 430.0, _core_lifts(len(m.lift_years))
    return design


def _jin_mao(m: Landmark) -> Design:
    design = Design()
    segments = (16, 14, 12, 10, 9, 8, 7, 5, 4, 3)  # floors per setback, each shorter than the last (88)
    storey_h, top = 4.0, 352.0

    def octagon(side: float) -> BaseGeometry:
        return (
            shapely.box(-side / 2, -side / 2, side / 2, side / 2)
            .buffer(-side / 8, join_style="mitre")
            .buffer(side / 8, join_style="bevel")
        )

    def outline(z: float) -> BaseGeometry:
        k = int(np.searchsorted(np.cumsum(segments), z / storey_h, side="right"))
        return octagon(53.0 * (1 - 0.055 * min(k, len(segments) - 1)))

    _floors(design, sum(segments), top, outline, every=11)
    z, last = top, len(design.storeys) - 1
    for n, (side, rise) in enumerate(((24.0, 12.0), (18.0, 10.0), (12.0, 9.0), (5.0, 10.0), (3.0, 12.0), (1.6, 15.5))):
        kind = "IfcCurtainWall" if n < 3 else "IfcMember"
        design.parts.append(Part("Crown" if n < 3 else "Spire", kind, octagon(side), z, rise, last))
        z += rise
    design.lift_height, design.lift_at = top, _core_lifts(len(m.lift_years))
    return design


def _oriental_pearl(m: Landmark) -> Design:
    design = Design(
        storeys=[("Ground", 0.0), ("Lower sphere", 90.0), ("Sightseeing floor", 263.0), ("Space module", 350.0)]
    )
    angles = [math.radians(a) for a in (90.0, 210.0, 330.0)]
    for n, a in enumerate(angles):
        at = (9.0 * math.cos(a), 9.0 * math.sin(a))
        design.parts.append(Part(f"Column {n + 1}", "IfcColumn", shapely.Point(at).buffer(4.5, 4), 0.0, 287.0, 0))
        foot, head, rise = 48.0, 12.0, 68.0
        norm = math.hypot(head - foot, rise)
        lean = ((head - foot) * math.cos(a) / norm, (head - foot) * math.sin(a) / norm, rise / norm)
        leg = shapely.Point(foot * math.cos(a), foot * math.sin(a)).buffer(3.5, 4)
        design.parts.append(Part(f"Leg {n + 1}", "IfcColumn", leg, 0.0, rise, 0, lean))
    for name, centre, radius, slices, storey in (
        ("Lower sphere", 93.0, 25.0, 8, 1),
        ("Upper sphere", 272.0, 22.5, 8, 2),
        ("Space module", 342.0, 7.5, 4, 3),
    ):
        step = 2 * radius / slices
        for k in range(slices):
            z = centre - radius + k * step
            middle = z + step / 2 - centre
            r = math.sqrt(max(radius * radius - middle * middle, 1.0))
            shape = _circle(24, r)
            design.parts.append(Part(f"{name} {k + 1}", "IfcBuildingElementProxy", shape, z, step, storey))
    design.parts.append(Part("Shaft", "IfcColumn", _circle(12, 5.0), 287.0, 48.0, 2))
    z = 349.5
    for radius, rise in ((3.0, 40.0), (2.2, 35.0), (1.5, 25.0), (0.8, m.height_m - 349.5 - 100.0)):
        design.parts.append(Part("Spire", "IfcMember", _circle(8, radius), z, rise, 3))
        z += rise
    design.lift_height = 263.0
    design.lift_at = [(9.0 * math.cos(a) - SHAFT[0] / 2, 9.0 * math.sin(a) - SHAFT[1] / 2) for a in angles]
    return design


DESIGNS: dict[str, Callable[[Landmark], Design]] = {
    "shanghai-tower": _shanghai_tower,
    "swfc": _swfc,
    "jin-mao": _jin_mao,
    "oriental-pearl": _oriental_pearl,
}
