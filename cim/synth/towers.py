"""Detailed BIM towers for the demo, generated with ``ifcopenshell.api``: site, building, storeys, exterior walls,
floor slabs, a core (walls) and its lifts (``IfcTransportElement`` ELEVATOR) carrying install dates in property
sets, georeferenced by ``IfcMapConversion`` to UTM 51N (and ``IfcSite`` RefLatitude / RefLongitude as well).

Tower ``k`` is written as ``tower-<k>.ifc`` (IFC4); the first is also written as ``tower-0-ifc2x3.ifc``, where the
lifts are ELEVATOR through their ``IfcTransportElementType`` and only the site's reference point georeferences it.

Lift dates: ``CIM_Asset.InstallationDate`` and, in IFC4, ``Pset_ManufacturerOccurrence.AcquisitionDate`` (ISO
dates); one lift per tower has neither (its date is unknown).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.georeference
import ifcopenshell.api.owner
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.type
import ifcopenshell.api.unit
import ifcopenshell.guid
import numpy as np

from cim.synth.places import METRIC_CRS, to_metres

if TYPE_CHECKING:
    from cim.synth.generate import TowerSite

STOREY_M = 4.2
WALL_M = 0.3
GROUND_M = 4.0  # ground height in Lujiazui, metres above mean sea level (orthometric)
CORE = (14.0, 10.0)
FIXED_TIME = 1735689600  # 2025-01-01T00:00:00Z
SHAFT = (2.4, 2.6)


@dataclass(frozen=True, slots=True)
class TowerPlan:
    name: str
    storeys: int
    side: float
    lift_years: tuple[int | None, ...]


def plan_tower(k: int, seed: int) -> TowerPlan:
    rng = np.random.default_rng([seed, 900, k])
    storeys = int(rng.integers(30, 46))
    built = int(rng.integers(1998, 2016))
    years: list[int | None] = []
    for _ in range(int(rng.integers(6, 11))):
        replaced = rng.random() < 0.3
        years.append(int(rng.integers(built + 10, 2025)) if replaced and built < 2012 else built)
    years[int(rng.integers(0, len(years)))] = None
    return TowerPlan(f"Lujiazui BIM Tower {k + 1}", storeys, float(rng.integers(38, 49)), tuple(years))


def write_towers(out: Path, sites: Sequence[TowerSite], *, seed: int) -> list[Path]:
    """One IFC4 file per site, and an IFC2X3 copy of the first tower."""
    written = []
    for k, site in enumerate(sites):
        plan = plan_tower(k, seed)
        path = out / f"tower-{k}.ifc"
        build_tower(plan, site, schema="IFC4").write(str(path))
        written.append(path)
        if k == 0:
            path = out / "tower-0-ifc2x3.ifc"
            build_tower(plan, site, schema="IFC2X3").write(str(path))
            written.append(path)
    return written


def build_tower(plan: TowerPlan, site_at: TowerSite, *, schema: str) -> ifcopenshell.file:
    model = ifcopenshell.api.project.create_file(version=schema)  # type: ignore[arg-type]
    api = ifcopenshell.api
    if schema == "IFC2X3":  # IFC2X3 needs an owner history on every rooted entity
        person = api.owner.add_person(model, identification="cim", family_name="Synth", given_name="CIM")
        org = api.owner.add_organisation(model, identification="CIM", name="CIM demo city generator")
        api.owner.add_person_and_organisation(model, person=person, organisation=org)
        api.owner.add_application(
            model,
            application_developer=org,
            version="1",
            application_full_name="cim synth",
            application_identifier="cim-synth",
        )
    project = api.root.create_entity(model, ifc_class="IfcProject", name="Shanghai CIM demo")
    api.unit.assign_unit(model)
    model_ctx = api.context.add_context(model, context_type="Model")
    body = api.context.add_context(
        model, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=model_ctx
    )
    site = api.root.create_entity(model, ifc_class="IfcSite", name="Lujiazui")
    site.RefLatitude, site.RefLongitude = _dms(site_at.lat), _dms(site_at.lon)
    site.RefElevation = GROUND_M
    building = api.root.create_entity(model, ifc_class="IfcBuilding", name=plan.name)
    api.aggregate.assign_object(model, relating_object=project, products=[site])
    api.aggregate.assign_object(model, relating_object=site, products=[building])
    for product in (site, building):
        api.geometry.edit_object_placement(model, product=product)
    if schema != "IFC2X3":
        _georeference(model, site_at)
    half = plan.side / 2
    storeys = []
    for level in range(plan.storeys):
        z = level * STOREY_M
        storey = api.root.create_entity(model, ifc_class="IfcBuildingStorey", name=f"F{level + 1:02d}")
        storey.Elevation = z
        api.geometry.edit_object_placement(model, product=storey, matrix=_at(0, 0, z))
        api.aggregate.assign_object(model, relating_object=building, products=[storey])
        elements = [
            *_walls(model, body, half, half, z, "Facade"),
            *_walls(model, body, CORE[0] / 2, CORE[1] / 2, z, "Core"),
        ]
        slab = api.root.create_entity(
            model, ifc_class="IfcSlab", predefined_type="FLOOR", name=f"Slab F{level + 1:02d}"
        )
        square = [(-half, -half), (half, -half), (half, half), (-half, half)]
        _shape(
            model,
            body,
            slab,
            api.geometry.add_slab_representation(model, context=body, depth=0.3, polyline=square),
            _at(0, 0, z),
        )
        elements.append(slab)
        api.spatial.assign_container(model, relating_structure=storey, products=elements)
        storeys.append(storey)
    lifts = _lifts(model, body, plan, schema)
    api.spatial.assign_container(model, relating_structure=storeys[0], products=lifts)
    _make_reproducible(model, f"{plan.name}:{plan.storeys}")
    return model


def _make_reproducible(model: ifcopenshell.file, key: str) -> None:
    """Seeded GlobalIds (from ``key`` and the schema) and fixed times, so the same seed writes the same file."""
    rng = random.Random(f"{key}:{model.schema}")
    for entity in model.by_type("IfcRoot"):
        entity.GlobalId = ifcopenshell.guid.compress(uuid.UUID(int=rng.getrandbits(128)).hex)
    for rel, attribute in (
        ("IfcRelAggregates", "RelatedObjects"),
        ("IfcRelContainedInSpatialStructure", "RelatedElements"),
        ("IfcRelDefinesByType", "RelatedObjects"),
        ("IfcRelDefinesByProperties", "RelatedObjects"),
    ):
        for entity in model.by_type(rel):  # the api keeps these as sets: put them in creation order
            setattr(entity, attribute, sorted(getattr(entity, attribute), key=lambda e: e.id()))
    for history in model.by_type("IfcOwnerHistory"):
        history.CreationDate = FIXED_TIME
        history.LastModifiedDate = None
    model.header.file_name.time_stamp = "2025-01-01T00:00:00"


def _walls(model: ifcopenshell.file, body: Any, hx: float, hy: float, z: float, role: str) -> list[Any]:
    """Four walls round a rectangle of half sizes ``hx``, ``hy``, thickness inwards, one storey high."""
    corners = [(-hx, -hy, 0.0, 2 * hx), (hx, -hy, 90.0, 2 * hy), (hx, hy, 180.0, 2 * hx), (-hx, hy, 270.0, 2 * hy)]
    walls = []
    for side, (x, y, angle, length) in enumerate(corners):
        wall = ifcopenshell.api.root.create_entity(model, ifc_class="IfcWall", name=f"{role} wall {side + 1}")
        rep = ifcopenshell.api.geometry.add_wall_representation(
            model, context=body, length=length, height=STOREY_M, thickness=WALL_M
        )
        _shape(model, body, wall, rep, _at(x, y, z, angle))
        walls.append(wall)
    return walls


def _lifts(model: ifcopenshell.file, body: Any, plan: TowerPlan, schema: str) -> list[Any]:
    api = ifcopenshell.api
    lift_type = None
    if schema == "IFC2X3":
        lift_type = api.root.create_entity(
            model, ifc_class="IfcTransportElementType", predefined_type="ELEVATOR", name="Passenger lift"
        )
    height = plan.storeys * STOREY_M
    per_row = math.ceil(len(plan.lift_years) / 2)
    lifts = []
    for n, year in enumerate(plan.lift_years):
        row, col = divmod(n, per_row)
        x = -CORE[0] / 2 + WALL_M + 0.2 + col * (SHAFT[0] + 0.15)
        y = (-CORE[1] / 2 + WALL_M + 0.2) if row == 0 else (CORE[1] / 2 - WALL_M - 0.2 - SHAFT[1])
        if schema == "IFC2X3":
            lift = api.root.create_entity(model, ifc_class="IfcTransportElement", name=f"Lift {n + 1}")
        else:
            lift = api.root.create_entity(
                model, ifc_class="IfcTransportElement", predefined_type="ELEVATOR", name=f"Lift {n + 1}"
            )
        rep = api.geometry.add_wall_representation(
            model, context=body, length=SHAFT[0], height=height, thickness=SHAFT[1]
        )
        _shape(model, body, lift, rep, _at(x, y, 0.0))
        if lift_type is not None:
            api.type.assign_type(
                model, related_objects=[lift], relating_type=lift_type, should_map_representations=False
            )
        serial = f"SH-{plan.name[-1]}-{n + 1:03d}"
        occurrence = {"SerialNumber": serial}
        if year is not None:
            if schema != "IFC2X3":  # IFC2X3 types AcquisitionDate as IfcDateTimeSelect, not an ISO date
                occurrence["AcquisitionDate"] = f"{year}-06-01"
            asset = api.pset.add_pset(model, product=lift, name="CIM_Asset")
            api.pset.edit_pset(model, pset=asset, properties={"InstallationDate": f"{year}-06-01"})
        pset = api.pset.add_pset(model, product=lift, name="Pset_ManufacturerOccurrence")
        api.pset.edit_pset(model, pset=pset, properties=occurrence)
        clear = api.pset.add_pset(model, product=lift, name="Pset_TransportElementElevator")
        api.pset.edit_pset(model, pset=clear, properties={"ClearWidth": 2.0, "ClearDepth": 2.2, "ClearHeight": 2.6})
        lifts.append(lift)
    return lifts


def _shape(model: ifcopenshell.file, body: Any, product: Any, representation: Any, matrix: np.ndarray) -> None:
    ifcopenshell.api.geometry.assign_representation(model, product=product, representation=representation)
    ifcopenshell.api.geometry.edit_object_placement(model, product=product, matrix=matrix)


def _at(x: float, y: float, z: float, angle_deg: float = 0.0) -> np.ndarray:
    a = math.radians(angle_deg)
    matrix = np.eye(4)
    matrix[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    matrix[:3, 3] = (x, y, z)
    return matrix


def _georeference(model: ifcopenshell.file, site: TowerSite) -> None:
    east, north = to_metres(site.lon, site.lat)
    a = math.radians(site.rotation_deg)
    ifcopenshell.api.georeference.add_georeferencing(model, ifc_class="IfcMapConversion", name=METRIC_CRS)
    ifcopenshell.api.georeference.edit_georeferencing(
        model,
        projected_crs={"Name": METRIC_CRS, "Description": "WGS 84 / UTM zone 51N", "GeodeticDatum": "WGS84"},
        coordinate_operation={
            "Eastings": float(east),
            "Northings": float(north),
            "OrthogonalHeight": GROUND_M,
            "XAxisAbscissa": math.cos(a),
            "XAxisOrdinate": math.sin(a),
            "Scale": 1.0,
        },
    )


def _dms(value: float) -> tuple[int, int, int, int]:
    """Decimal degrees → IfcCompoundPlaneAngleMeasure (degrees, minutes, seconds, millionths), signs alike."""
    sign = -1 if value < 0 else 1
    micro = round(abs(value) * 3600 * 1_000_000)
    seconds, millionths = divmod(micro, 1_000_000)
    minutes, secs = divmod(seconds, 60)
    degrees, mins = divmod(minutes, 60)
    return (sign * degrees, sign * mins, sign * secs, sign * millionths)


def write_tower_plots(out: Path, sites: Sequence[TowerSite], *, seed: int) -> Path:
    """The GIS record of each tower's plot (``tower_plots.parquet``): the footprint the city's cadastre holds for the
    building the BIM model details — a little larger than the model, as surveyed footprints are — with the columns
    of the buildings layer, so the demo's BIM towers merge into GIS buildings (:mod:`cim.pipeline.merge`)."""
    import geopandas as gpd
    import shapely

    rows = []
    for k, site in enumerate(sites):
        plan = plan_tower(k, seed)
        half = plan.side / 2 + 2.0
        x, y = to_metres(site.lon, site.lat)
        turn = math.radians(site.rotation_deg)
        corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
        ring = [
            (float(x) + cx * math.cos(turn) - cy * math.sin(turn), float(y) + cx * math.sin(turn) + cy * math.cos(turn))
            for cx, cy in corners
        ]
        years = [year for year in plan.lift_years if year is not None]
        rows.append(
            {
                "bid": f"TP-LJZ-{k:04d}",
                "name": f"{plan.name} (cadastre)",
                "district": "Lujiazui",
                "use": "office",
                "storeys": plan.storeys,
                "height_m": round(plan.storeys * STOREY_M, 1),
                "year_built": min(years) if years else None,
                "geometry": shapely.Polygon(ring),
            }
        )
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_CRS).to_crs("EPSG:4326")
    path = out / "tower_plots.parquet"
    frame.to_parquet(path)
    return path
