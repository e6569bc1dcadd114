"""Models built with ifcopenshell.api: a small building with a lift, in IFC2X3 and IFC4, in millimetres (the
api's default unit; its geometry calls take metres), so RefElevation's unit handling is tested too."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.owner.settings
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.type
import ifcopenshell.api.unit
import numpy as np
import numpy.typing as npt

Schema = Literal["IFC2X3", "IFC4", "IFC4X3"]


def build_model(
    schema: str, *, lifts: int = 1, walls: int = 3, ref: tuple[float, float] = (31.2, 121.5)
) -> ifcopenshell.file:
    model = ifcopenshell.api.project.create_file(version=cast(Schema, schema))
    if schema == "IFC2X3":  # IFC2X3 requires an owner history on every rooted entity
        user = model.createIfcPersonAndOrganization(
            model.createIfcPerson(FamilyName="Tester"), model.createIfcOrganization(Name="CIM")
        )
        application = model.createIfcApplication(user.TheOrganization, "1", "cim tests", "cim")

        def get_user(ifc: ifcopenshell.file) -> ifcopenshell.entity_instance | None:
            return user

        def get_application(ifc: ifcopenshell.file) -> ifcopenshell.entity_instance | None:
            return application

        ifcopenshell.api.owner.settings.get_user = get_user
        ifcopenshell.api.owner.settings.get_application = get_application
    project = ifcopenshell.api.root.create_entity(model, ifc_class="IfcProject", name="Test")
    ifcopenshell.api.unit.assign_unit(model)
    context = ifcopenshell.api.context.add_context(model, context_type="Model")
    body = ifcopenshell.api.context.add_context(
        model, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=context
    )
    site = ifcopenshell.api.root.create_entity(model, ifc_class="IfcSite", name="Site")
    site.RefLatitude, site.RefLongitude = _dms(ref[0]), _dms(ref[1])
    site.RefElevation = 4000.0  # mm
    building = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuilding", name="Tower")
    storey = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingStorey", name="Ground")
    ifcopenshell.api.aggregate.assign_object(model, relating_object=project, products=[site])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=site, products=[building])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=building, products=[storey])
    elements = []
    for i in range(walls):
        wall = ifcopenshell.api.root.create_entity(model, ifc_class="IfcWall", name=f"W{i}")
        rep = ifcopenshell.api.geometry.add_wall_representation(model, context=body, length=5, height=3, thickness=0.2)
        ifcopenshell.api.geometry.assign_representation(model, product=wall, representation=rep)
        ifcopenshell.api.geometry.edit_object_placement(model, product=wall, matrix=_at(i * 6.0, 0.0))
        elements.append(wall)
    for i in range(lifts):
        if schema == "IFC2X3":
            lift = ifcopenshell.api.root.create_entity(model, ifc_class="IfcTransportElement", name=f"Lift {i}")
            lift_type = ifcopenshell.api.root.create_entity(
                model, ifc_class="IfcTransportElementType", predefined_type="ELEVATOR", name="Elevator type"
            )
            ifcopenshell.api.type.assign_type(model, related_objects=[lift], relating_type=lift_type)
            pset = ifcopenshell.api.pset.add_pset(model, product=lift, name="Pset_ManufacturerOccurrence")
            ifcopenshell.api.pset.edit_pset(model, pset=pset, properties={"SerialNumber": f"S{i}"})
            custom = ifcopenshell.api.pset.add_pset(model, product=lift, name="Shanghai_LiftRegister")
            ifcopenshell.api.pset.edit_pset(model, pset=custom, properties={"InstallationDate": "2003-06-01"})
        else:
            lift = ifcopenshell.api.root.create_entity(
                model, ifc_class="IfcTransportElement", predefined_type="ELEVATOR", name=f"Lift {i}"
            )
            pset = ifcopenshell.api.pset.add_pset(model, product=lift, name="Pset_Asset")
            ifcopenshell.api.pset.edit_pset(model, pset=pset, properties={"InstallationDate": "2009-03-15"})
        rep = ifcopenshell.api.geometry.add_wall_representation(model, context=body, length=2, height=3, thickness=2)
        ifcopenshell.api.geometry.assign_representation(model, product=lift, representation=rep)
        ifcopenshell.api.geometry.edit_object_placement(model, product=lift, matrix=_at(i * 3.0, 10.0))
        elements.append(lift)
    ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=elements)
    return model


def write_model(tmp_path: Path, schema: str, **kwargs: object) -> Path:
    path = tmp_path / f"generated-{schema}.ifc"
    build_model(schema, **kwargs).write(str(path))  # type: ignore[arg-type]
    return path


def _dms(value: float) -> tuple[int, int, int, int]:
    sign = -1 if value < 0 else 1
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return (sign * d, sign * m, sign * int(s), sign * round((s - int(s)) * 1e6))


def _at(x: float, y: float) -> npt.NDArray[np.float64]:
    m = np.eye(4)
    m[0, 3], m[1, 3] = x, y
    return m
