"""The generated IFC towers: storeys, lifts with dates, georeferencing and real geometry."""

from __future__ import annotations

from pathlib import Path

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.element
import pytest

from cim.synth.generate import SynthSummary
from cim.synth.towers import plan_tower
from tests.synth.conftest import SEED


@pytest.mark.parametrize("name", ["tower-0.ifc", "tower-0-ifc2x3.ifc"])
def test_tower_has_its_storeys_lifts_and_dates(city: tuple[Path, SynthSummary], name: str) -> None:
    out, summary = city
    assert name in summary.towers
    plan = plan_tower(0, SEED)
    model = ifcopenshell.open(str(out / name))
    assert len(model.by_type("IfcBuildingStorey")) == plan.storeys
    assert len(model.by_type("IfcSlab")) == plan.storeys and len(model.by_type("IfcWall")) == 8 * plan.storeys
    lifts = model.by_type("IfcTransportElement")
    assert len(lifts) == len(plan.lift_years)
    dates = []
    for lift in lifts:
        if model.schema == "IFC2X3":
            assert ifcopenshell.util.element.get_type(lift).PredefinedType == "ELEVATOR"
        else:
            assert lift.PredefinedType == "ELEVATOR"
        psets = ifcopenshell.util.element.get_psets(lift)
        assert psets["Pset_ManufacturerOccurrence"]["SerialNumber"]
        dates.append(psets.get("CIM_Asset", {}).get("InstallationDate"))
    expected = [None if y is None else f"{y}-06-01" for y in plan.lift_years]
    assert sorted(dates, key=str) == sorted(expected, key=str) and None in dates
    site = model.by_type("IfcSite")[0]
    assert site.RefLatitude[0] == 31 and site.RefLongitude[0] == 121
    if model.schema != "IFC2X3":
        conversion = model.by_type("IfcMapConversion")[0]
        assert conversion.TargetCRS.Name == "EPSG:32651" and 300_000 < conversion.Eastings < 400_000


def test_walls_and_lifts_have_meshable_bodies(city: tuple[Path, SynthSummary]) -> None:
    model = ifcopenshell.open(str(city[0] / "tower-0.ifc"))
    settings = ifcopenshell.geom.settings()
    for element in (model.by_type("IfcWall")[0], model.by_type("IfcSlab")[0], model.by_type("IfcTransportElement")[0]):
        shape = ifcopenshell.geom.create_shape(settings, element)
        assert len(shape.geometry.verts) >= 24 and len(shape.geometry.faces) >= 36
