"""Property and quantity sets flattened to ``{"Pset_Name.Property": JSON value}``, and the promoted fields.

Everything is read in one pass over the relations (``IfcRelDefinesByProperties``, ``IfcRelDefinesByType``,
``IfcRelAssociatesMaterial``, ``IfcRelAssignsToGroup``); each property set is flattened once however many elements
share it. Type properties come first and the occurrence's own override them.

Promoted fields (typed asset columns): ``install_date`` from :data:`INSTALL_DATE_PROPERTIES` — the one place that
says which properties carry it; ``status`` from any ``*.Status``; ``material`` from the associated IfcMaterial
(its Category when given, else its Name); ``diameter_mm`` from :data:`DIAMETER_PROPERTIES`; ``depth_m`` of a
chamber = RimElevation − InvertElevation; ``network`` from the distribution system's predefined type
(:data:`NETWORKS`); the length (``*.Length`` of a quantity set) goes to ``props["length_m"]`` (the model has no
length column).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import ifcopenshell

from cim.bim.structure import argument, class_info
from cim.model import JsonValue

#: Where an install date is found, in order of trust; then any property whose name is in INSTALL_DATE_NAMES.
INSTALL_DATE_PROPERTIES = (
    "Pset_ConstructionOccurence.InstallationDate",  # IFC4.3 spelling (sic)
    "Pset_Asset.InstallationDate",
    "Pset_ManufacturerOccurrence.InstallationDate",
    "Pset_ServiceLife.InstallationDate",
    "COBie_Component.InstallationDate",
    "Pset_ManufacturerOccurrence.AcquisitionDate",
    "Pset_Warranty.WarrantyStartDate",
)
INSTALL_DATE_NAMES = frozenset({"installationdate", "installdate", "dateofinstallation", "commissioningdate"})
DIAMETER_PROPERTIES = ("NominalDiameter", "InnerDiameter", "OuterDiameter", "Diameter")
#: IfcDistributionSystemEnum (and IFC2X3 system names) → the model's ``network`` values.
NETWORKS = {
    "STORMWATER": "storm_water",
    "DRAINAGE": "drainage",
    "SEWAGE": "sewer",
    "WASTEWATER": "sewer",
    "GAS": "gas",
    "DOMESTICCOLDWATER": "water",
    "DOMESTICHOTWATER": "water",
    "WATERSUPPLY": "water",
    "FIREPROTECTION": "fire_water",
    "HEATING": "heating",
    "CHILLEDWATER": "cooling",
    "ELECTRICAL": "power",
    "POWERGENERATION": "power",
    "COMMUNICATION": "telecom",
    "DATA": "telecom",
}
Props = dict[str, JsonValue]


def json_value(value: Any) -> JsonValue:
    """An IFC attribute value as JSON: wrapped measures unwrapped, tuples as lists, entities by their text."""
    if isinstance(value, ifcopenshell.entity_instance):
        if not value.is_entity():  # a defined type (IfcLabel, IfcLengthMeasure …): its one value
            return json_value(value.get_argument(0))
        return str(value)
    if isinstance(value, (tuple, list)):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flatten(definition: ifcopenshell.entity_instance, schema: str | None = None) -> Props:
    """One property or quantity set as ``{"Name.Property": value}``. Attributes are read by index (a third of the
    cost of reading them by name, see :mod:`cim.bim.structure`); ``schema``: the model's schema identifier."""
    schema = schema or definition.is_a(True).split(".")[0]
    info = class_info(schema, definition.is_a())
    name = argument(definition, info, "Name") or info.name
    out: Props = {}
    if info.is_a("IfcElementQuantity"):
        for q in argument(definition, info, "Quantities") or ():
            q_info = class_info(schema, q.is_a())
            if q_info.is_a("IfcPhysicalSimpleQuantity"):
                out[f"{name}.{argument(q, q_info, 'Name')}"] = json_value(q.get_argument(3))  # 3: its value
    elif info.is_a("IfcPropertySet"):
        for prop in argument(definition, info, "HasProperties") or ():
            _property(name, prop, out, schema)
    return out


def _property(prefix: str, prop: ifcopenshell.entity_instance, out: Props, schema: str) -> None:
    info = class_info(schema, prop.is_a())
    key = f"{prefix}.{argument(prop, info, 'Name')}"
    if info.is_a("IfcPropertySingleValue"):
        out[key] = json_value(argument(prop, info, "NominalValue"))
    elif info.is_a("IfcPropertyEnumeratedValue"):
        out[key] = json_value(argument(prop, info, "EnumerationValues") or ())
    elif info.is_a("IfcPropertyListValue"):
        out[key] = json_value(argument(prop, info, "ListValues") or ())
    elif info.is_a("IfcPropertyBoundedValue"):
        lower, upper = argument(prop, info, "LowerBoundValue"), argument(prop, info, "UpperBoundValue")
        out[key] = {"lower": json_value(lower), "upper": json_value(upper)}
    elif info.is_a("IfcComplexProperty"):
        for part in argument(prop, info, "HasProperties") or ():
            _property(key, part, out, schema)


class PropertyIndex:
    """Properties, materials and systems of every product of a model, read once."""

    def __init__(self, model: ifcopenshell.file) -> None:
        schema = model.schema_identifier
        self.flat: dict[int, Props] = {}  # step id of a property or quantity set → its properties
        self.by_product: dict[int, list[int]] = {}  # step id of a product → its sets' step ids
        self.by_type: dict[int, list[Props]] = {}
        self.type_of: dict[int, ifcopenshell.entity_instance] = {}
        for rel in model.by_type("IfcRelDefinesByProperties"):
            definition = rel.RelatingPropertyDefinition
            if not isinstance(definition, ifcopenshell.entity_instance):
                continue  # IFC4 set of definitions: rare; skipped
            if definition.id() not in self.flat:
                self.flat[definition.id()] = flatten(definition, schema)
            for obj in rel.RelatedObjects:
                self.by_product.setdefault(obj.id(), []).append(definition.id())
        for rel in model.by_type("IfcRelDefinesByType"):
            for obj in rel.RelatedObjects:
                self.type_of[obj.id()] = rel.RelatingType
        for element_type in model.by_type("IfcTypeObject"):
            self.by_type[element_type.id()] = [flatten(p, schema) for p in element_type.HasPropertySets or ()]
        self.material: dict[int, str] = {}
        for rel in model.by_type("IfcRelAssociatesMaterial"):
            name = material_name(rel.RelatingMaterial)
            if name:
                for obj in rel.RelatedObjects:
                    self.material[obj.id()] = name
        self.network: dict[int, str] = {}
        for rel in model.by_type("IfcRelAssignsToGroup"):
            group = rel.RelatingGroup
            if group is None or not group.is_a("IfcSystem"):
                continue
            raw = str(getattr(group, "PredefinedType", None) or group.ObjectType or group.Name or "").upper()
            network = NETWORKS.get(raw.replace(" ", "").replace("_", ""), raw.lower() or None)
            if network:
                for obj in rel.RelatedObjects:
                    self.network[obj.id()] = network

    def props_of(self, step_id: int) -> Props:
        """The flattened properties of the product with step id ``step_id``: its type's, then its own."""
        out: Props = {}
        element_type = self.type_of.get(step_id)
        if element_type is not None:
            for props in self.by_type.get(element_type.id(), ()):
                out.update(props)
        for definition in self.by_product.get(step_id, ()):
            out.update(self.flat[definition])
        return out

    def sources_of(self, step_id: int) -> tuple[int | None, tuple[int, ...]]:
        """Where :meth:`props_of` reads from: the type object's step id and the product's own sets' (equal
        sources, equal properties)."""
        element_type = self.type_of.get(step_id)
        return (element_type.id() if element_type is not None else None, tuple(self.by_product.get(step_id, ())))

    def material_of(self, step_id: int) -> str | None:
        """The material name of the product with step id ``step_id``, else of its type."""
        found = self.material.get(step_id)
        element_type = self.type_of.get(step_id)
        if found is None and element_type is not None:
            found = self.material.get(element_type.id())
        return found


def material_name(select: ifcopenshell.entity_instance | None) -> str | None:
    """The name of the (first) material of an IfcMaterialSelect: Category when given, else Name."""
    if select is None:
        return None
    # attributes a class lacks are skipped by its ClassInfo: getattr of one makes ifcopenshell import its rules
    info = class_info(select.is_a(True).split(".")[0], select.is_a())
    if info.is_a("IfcMaterial"):
        return str(argument(select, info, "Category") or argument(select, info, "Name") or "") or None
    for attribute, inner in (
        ("ForLayerSet", None),
        ("ForProfileSet", None),
        ("MaterialLayers", "Material"),
        ("MaterialProfiles", "Material"),
        ("MaterialConstituents", "Material"),
        ("Materials", None),
    ):
        value = argument(select, info, attribute)
        if value is None:
            continue
        first = value[0] if isinstance(value, tuple) and value else value
        if isinstance(first, tuple) or first is None:
            continue
        return material_name(getattr(first, inner) if inner else first)
    return None


def install_date(props: Props) -> date | None:
    """The install date from :data:`INSTALL_DATE_PROPERTIES`, else from any property named like one."""
    for key in INSTALL_DATE_PROPERTIES:
        value = props.get(key)
        found = parse_date(value) if value is not None else None
        if found is not None:
            return found
    for key, value in props.items():
        if value is not None and key[key.rfind(".") + 1 :].lower() in INSTALL_DATE_NAMES:
            found = parse_date(value)
            if found is not None:
                return found
    return None


def parse_date(value: JsonValue) -> date | None:
    """An IfcDate / IfcDateTime / ISO text / year as a date (a year alone → 1 January).

    >>> parse_date("2004-05-06T10:00:00"), parse_date(1998)
    (datetime.date(2004, 5, 6), datetime.date(1998, 1, 1))
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and 1800 <= value <= 2200:
        return date(int(value), 1, 1)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}", text):
            return date(int(text), 1, 1)
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def first_values(props: Props, names: Iterable[str]) -> dict[str, JsonValue]:
    """For each of ``names``, the first non-null value of a property with that own name (after the last dot), in
    one pass over ``props``; a list value gives its first item. Names with no value are left out.

    >>> first_values({"A.Length": None, "B.Length": [2.5, 3.0], "B.Status": "NEW"}, ("Length", "Diameter"))
    {'Length': 2.5}
    """
    wanted = frozenset(names)
    found: dict[str, JsonValue] = {}
    for key, value in props.items():
        name = key[key.rfind(".") + 1 :]
        if name in wanted and value is not None and name not in found:
            found[name] = value[0] if isinstance(value, list) and value else value
    return found
