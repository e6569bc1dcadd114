"""The IFC spatial structure and elements as assets: which products, their kind and their parent.

Assets are every ``IfcSpatialElement`` (``IfcSpatialStructureElement`` in IFC2X3) and every ``IfcElement`` except
openings and other subtraction features and ``IfcVirtualElement``. The parent follows ``IfcRelAggregates`` (part →
whole) first, then ``IfcRelContainedInSpatialStructure`` (element → storey), read in one pass over the relations.

Kinds: site, building, storey, space by class; ``IfcRoad``/``IfcRailway``/``IfcBridge`` as road/railway/bridge;
``IfcPipeSegment`` (and IFC2X3 ``IfcFlowSegment`` typed by ``IfcPipeSegmentType``) → pipe;
``IfcDistributionChamberElement`` → node; ``IfcTransportElement`` with predefined type ELEVATOR (IFC4+ on the
occurrence or its type; IFC2X3 ``OperationType`` or the type object's ``PredefinedType``) → lift; the rest → element.

Everything a class decides (its kind, its supertypes, where its attributes are) is looked up once per class
(:class:`ClassInfo`), and attributes are read by index: ``element.Name`` costs ten times more than
``element.get_argument(i)`` in ifcopenshell 0.9, and ``getattr`` of an attribute a class lacks is slower still.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import ifcopenshell
import ifcopenshell.ifcopenshell_wrapper as wrapper

from cim.model import Kind

EXCLUDED = ("IfcFeatureElementSubtraction", "IfcVirtualElement")
#: Products that are not meshed: the spatial structure (its own geometry, if any, is a volume, not a building part).
NO_MESH = ("IfcSpatialElement", "IfcSpatialStructureElement")
_BY_CLASS = (
    ("IfcSite", Kind.SITE),
    ("IfcBuildingStorey", Kind.STOREY),
    ("IfcBuilding", Kind.BUILDING),
    ("IfcSpace", Kind.SPACE),
    ("IfcDistributionChamberElement", Kind.NODE),
    ("IfcPipeSegment", Kind.PIPE),
)
_BY_NAME = {"IfcRoad": Kind.ROAD, "IfcRailway": Kind.RAILWAY, "IfcBridge": Kind.BRIDGE}


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """What one IFC class decides: its supertypes (itself included) and the indices of the attributes read."""

    name: str
    supertypes: frozenset[str]
    attributes: dict[str, int]

    def is_a(self, name: str) -> bool:
        return name in self.supertypes

    def index(self, attribute: str) -> int | None:
        return self.attributes.get(attribute)


@cache
def class_info(schema: str, name: str) -> ClassInfo:
    """The :class:`ClassInfo` of class ``name`` in ``schema`` (an ifcopenshell schema identifier)."""
    declaration = wrapper.schema_by_name(schema).declaration_by_name(name).as_entity()
    if declaration is None:
        raise ValueError(f"{name} is no entity of {schema}")
    supertypes = []
    current: wrapper.entity | None = declaration
    while current is not None:
        supertypes.append(current.name())
        current = current.supertype()
    attributes = {a.name(): i for i, a in enumerate(declaration.all_attributes())}
    return ClassInfo(name, frozenset(supertypes), attributes)


@dataclass
class Products:
    """The products of a model that become assets, spatial structure first, as parallel lists."""

    step_ids: list[int] = field(default_factory=list)
    global_ids: list[str] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    predefined_types: list[str | None] = field(default_factory=list)
    kinds: list[Kind] = field(default_factory=list)
    #: row of the parent product, -1 when the parent is no asset of this file (or there is none)
    parent_rows: list[int] = field(default_factory=list)
    #: GlobalId of the parent product (it may be a product that is no asset, e.g. an aggregating element type)
    parent_ids: list[str | None] = field(default_factory=list)
    meshable: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step_ids)


def describe(model: ifcopenshell.file, type_of: dict[int, ifcopenshell.entity_instance]) -> Products:
    """The asset products of ``model`` with kind, predefined type and parent; ``type_of`` maps step id → type
    object (``IfcRelDefinesByType``)."""
    schema = model.schema_identifier
    spatial_class = "IfcSpatialStructureElement" if model.schema == "IFC2X3" else "IfcSpatialElement"
    out = Products()
    parent = parents(model)
    plans: dict[str, tuple[ClassInfo, Kind | None, bool] | None] = {}
    for instance in (*model.by_type(spatial_class), *model.by_type("IfcElement")):
        name = instance.is_a()
        plan = plans[name] if name in plans else plans.setdefault(name, _plan(schema, name))
        if plan is None:
            continue
        info, kind, meshable = plan
        step_id = instance.id()
        element_type = type_of.get(step_id)
        out.step_ids.append(step_id)
        out.global_ids.append(instance.get_argument(0))
        out.names.append(argument(instance, info, "Name") or None)
        out.classes.append(info.name)  # one string per class, not per product
        ptype = _predefined_type(instance, info, element_type, schema)
        out.predefined_types.append(ptype)
        out.kinds.append(kind or _kind(info, ptype, element_type))
        out.meshable.append(meshable and argument(instance, info, "Representation") is not None)
    row_of = {step_id: row for row, step_id in enumerate(out.step_ids)}
    parent_ids: dict[int, str | None] = {}  # one string per parent, not per product (40,000 walls: 2.7 MB)
    for step_id in out.step_ids:
        whole = parent.get(step_id)
        if whole is None:
            out.parent_rows.append(-1)
            out.parent_ids.append(None)
        else:
            whole_id = whole.id()
            out.parent_rows.append(row_of.get(whole_id, -1))
            if whole_id not in parent_ids:
                parent_ids[whole_id] = _global_id(whole)
            out.parent_ids.append(parent_ids[whole_id])
    return out


def mesh_classes(model: ifcopenshell.file) -> list[str]:
    """The element classes of ``model`` whose instances become meshed assets: what the geometry iterator is asked
    for. Picked per class from the classes present (no pass over the instances), so the geometry child can start
    right after the parse; an instance of these classes without a representation is simply not delivered."""
    schema = model.schema_identifier
    out = []
    for name in model.types():
        info = class_info(schema, name)
        if info.is_a("IfcElement") and not any(info.is_a(c) for c in EXCLUDED):
            out.append(name)
    return sorted(out)


def parents(model: ifcopenshell.file) -> dict[int, ifcopenshell.entity_instance]:
    """Step id of each product → its parent product (aggregation wins over containment)."""
    parent: dict[int, ifcopenshell.entity_instance] = {}
    for rel in model.by_type("IfcRelContainedInSpatialStructure"):
        structure = rel.RelatingStructure
        for element in rel.RelatedElements:
            parent[element.id()] = structure
    for rel in model.by_type("IfcRelAggregates"):
        whole = rel.RelatingObject
        if whole.is_a("IfcProduct"):
            for part in rel.RelatedObjects:
                parent[part.id()] = whole
    return parent


def _plan(schema: str, name: str) -> tuple[ClassInfo, Kind | None, bool] | None:
    """What class ``name`` decides for all its instances: its info, its kind (None when the predefined type or the
    type object decides), whether it is meshed; None for an excluded class."""
    info = class_info(schema, name)
    if any(info.is_a(c) for c in EXCLUDED):
        return None
    by_instance = info.is_a("IfcTransportElement") or info.is_a("IfcFlowSegment")
    return info, None if by_instance else _kind(info, None, None), not any(info.is_a(c) for c in NO_MESH)


def argument(instance: ifcopenshell.entity_instance, info: ClassInfo, attribute: str) -> Any:
    """The attribute ``attribute`` of ``instance`` (of class ``info``) read by index, None if the class lacks it."""
    index = info.index(attribute)
    return instance.get_argument(index) if index is not None else None


def _global_id(instance: ifcopenshell.entity_instance | None) -> str | None:
    """The GlobalId of a parent: every parent is an IfcProduct (see :func:`parents`), whose first attribute it is."""
    return None if instance is None else str(instance.get_argument(0))


def _predefined_type(
    instance: ifcopenshell.entity_instance,
    info: ClassInfo,
    element_type: ifcopenshell.entity_instance | None,
    schema: str,
) -> str | None:
    """The predefined type of the occurrence, else of its type object (USERDEFINED → the ObjectType text)."""
    value = argument(instance, info, "PredefinedType") or argument(instance, info, "OperationType")
    if value in (None, "NOTDEFINED") and element_type is not None:
        value = argument(element_type, class_info(schema, element_type.is_a()), "PredefinedType")
    if value == "USERDEFINED":
        return str(argument(instance, info, "ObjectType") or value)
    return str(value) if value not in (None, "NOTDEFINED") else None


def _kind(info: ClassInfo, ptype: str | None, element_type: ifcopenshell.entity_instance | None) -> Kind:
    if info.is_a("IfcTransportElement"):
        return Kind.LIFT if ptype == "ELEVATOR" else Kind.ELEMENT
    if info.is_a("IfcFlowSegment") and not info.is_a("IfcPipeSegment"):
        return Kind.PIPE if element_type is not None and element_type.is_a("IfcPipeSegmentType") else Kind.ELEMENT
    for cls, kind in _BY_CLASS:
        if info.is_a(cls):
            return kind
    return _BY_NAME.get(info.name, Kind.ELEMENT)
