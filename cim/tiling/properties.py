"""Per-feature metadata: one ``EXT_structural_metadata`` class per asset kind, and its property table as bytes.

Every class has ``id``, ``kind`` (an enum), ``name``, ``parent_id``, ``install_date`` (ISO text), ``status``,
``material`` and ``height_m``; then the typed columns that belong to the kind (:data:`cim.model.KIND_FIELDS`:
``network``, ``diameter_mm``, ``depth_m``, ``storeys``) and derived ones: buildings get ``year_built`` and
``lift_count`` (lifts whose parent chain reaches the building), every other kind ``install_year``. Missing values
use ``noData`` sentinels: ``""`` for text, ``-1`` for lengths (which are never negative), ``0`` for years and
``65535`` for storeys.

An optional property whose values are all missing in a tile is left out of that tile's property table (an all-empty
string column cannot be written at all: its values buffer view would hold 0 bytes, and glTF forbids empty views).
The 3D Metadata Specification leaves what a client reads for an omitted property or a ``noData`` value to the
implementation unless the property gives a ``default``, so every optional property gives its ``noData`` value as
``default``: an omitted column and a ``noData`` value both read back as the sentinel, as a full column did before.

The input is the asset table prepared by :mod:`cim.tiling.assets` (Arrow, one row per feature, ordered as the
feature ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cim.model import KIND_FIELDS, Kind

SCHEMA_ID = "cim"
KIND_ENUM = "Kind"
KIND_VALUES: tuple[str, ...] = tuple(k.value for k in Kind)


@dataclass(frozen=True, slots=True)
class Prop:
    """One class property: its id (= the prepared table's column), type and ``noData`` sentinel."""

    id: str
    type: str  # STRING, SCALAR or ENUM
    component: str | None = None
    no_data: Any = None
    description: str = ""

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.description:  # the schema asks a non-empty description, or none
            out["description"] = self.description
        if self.type == "SCALAR":
            out["componentType"] = self.component
        if self.type == "ENUM":
            out["enumType"] = KIND_ENUM
        if self.no_data is None:
            out["required"] = True
        else:
            out["noData"] = out["default"] = self.no_data
        return out


COMMON: tuple[Prop, ...] = (
    Prop("id", "STRING", description="asset id"),
    Prop("kind", "ENUM", description="asset kind"),
    Prop("name", "STRING", no_data="", description="name"),
    Prop("parent_id", "STRING", no_data="", description="the asset this one belongs to"),
    Prop("install_date", "STRING", no_data="", description="ISO date"),
    Prop("status", "STRING", no_data="", description="status (in service, planned, abandoned …)"),
    Prop("material", "STRING", no_data="", description="material"),
    Prop("height_m", "SCALAR", "FLOAT32", -1.0, "height in metres"),
)
KIND_PROPS: dict[str, Prop] = {
    "network": Prop("network", "STRING", no_data="", description="network (water, gas, drainage …)"),
    "diameter_mm": Prop("diameter_mm", "SCALAR", "FLOAT32", -1.0, "nominal diameter in millimetres"),
    "depth_m": Prop("depth_m", "SCALAR", "FLOAT32", -1.0, "depth of cover in metres"),
    "storeys": Prop("storeys", "SCALAR", "UINT16", 65535, "storeys above ground"),
}
BUILDING_PROPS = (
    Prop("year_built", "SCALAR", "UINT16", 0, "year of the install date"),
    Prop("lift_count", "SCALAR", "UINT16", description="lifts whose parent chain reaches this building"),
)
OTHER_PROPS = (Prop("install_year", "SCALAR", "UINT16", 0, "year of the install date"),)

_NUMPY: dict[str, type[np.generic]] = {"FLOAT32": np.float32, "UINT16": np.uint16, "UINT8": np.uint8}
_MAX = {"UINT16": 65535, "UINT8": 255}


def props_of(kind: str) -> tuple[Prop, ...]:
    """The properties of ``kind``'s class.

    >>> [p.id for p in props_of("pipe")][-4:]
    ['network', 'diameter_mm', 'depth_m', 'install_year']
    """
    k = Kind(kind)
    own = tuple(KIND_PROPS[name] for name, kinds in KIND_FIELDS.items() if k in kinds)
    return COMMON + own + (BUILDING_PROPS if k is Kind.BUILDING else OTHER_PROPS)


#: ``noData`` of a property that is required in one kind's class and missing from another kind's rows, in the class
#: of a tile holding both (see :func:`props_of_kinds`).
_MISSING = {"STRING": "", "FLOAT32": -1.0, "UINT16": 65535, "UINT8": 255}


def class_of(kinds: list[str] | tuple[str, ...]) -> str:
    """The class of a tile's property table holding the features of ``kinds``: the kind itself, or the kinds joined.

    >>> class_of(["pipe"]), class_of(["pipe", "node"])
    ('pipe', 'node_pipe')
    """
    return "_".join(sorted(kinds))


def props_of_kinds(kinds: list[str] | tuple[str, ...]) -> tuple[Prop, ...]:
    """The properties of the class of a tile holding ``kinds``: every kind's properties once, in order; required
    only where every kind requires it, else with a ``noData`` for the rows of the kinds without it.

    A tile has one property table whatever kinds it holds: CesiumJS reads one table per model (the first primitive's,
    ``Model.featureTableId``), so a second kind's features would be picked and styled with the first's rows.

    >>> [p.id for p in props_of_kinds(["building", "lift"])][-3:]
    ['year_built', 'lift_count', 'install_year']
    >>> [p.no_data for p in props_of_kinds(["building", "lift"]) if p.id == "lift_count"]
    [65535]
    """
    if len(kinds) == 1:
        return props_of(kinds[0])
    per_kind = [props_of(k) for k in sorted(kinds)]
    out: dict[str, Prop] = {}
    for props in per_kind:
        for prop in props:
            out.setdefault(prop.id, prop)
    everywhere = set.intersection(*({p.id for p in props} for props in per_kind))
    return tuple(
        p
        if p.no_data is not None or p.id in everywhere
        else Prop(p.id, p.type, p.component, _MISSING[p.component or p.type], p.description)
        for p in out.values()
    )


def schema_for(kinds: list[str]) -> dict[str, Any]:
    """The metadata schema of a tile holding ``kinds``: the kind enum and one class per kind (no ``classes`` in an
    empty tile: the schema asks at least one when the key is there)."""
    schema: dict[str, Any] = {
        "id": SCHEMA_ID,
        "enums": {
            KIND_ENUM: {"valueType": "UINT8", "values": [{"name": v, "value": i} for i, v in enumerate(KIND_VALUES)]}
        },
    }
    if kinds:
        schema["classes"] = {
            kind: {"name": kind, "properties": {p.id: p.definition() for p in props_of(kind)}} for kind in kinds
        }
    return schema


def schema_of_tables(tables: list[tuple[str, ...]]) -> dict[str, Any]:
    """The metadata schema of a tile whose property tables hold the features of these kinds (one tuple per table):
    the kind enum and a class per table (:func:`class_of`, :func:`props_of_kinds`)."""
    schema = schema_for([])
    if tables:
        schema["classes"] = {
            class_of(kinds): {
                "name": " + ".join(sorted(kinds)),
                "properties": {p.id: p.definition() for p in props_of_kinds(kinds)},
            }
            for kinds in tables
        }
    return schema


@dataclass(frozen=True, slots=True)
class PropertyBytes:
    """One property's bytes: ``values`` and, for text, ``offsets`` (UINT32, count + 1)."""

    prop: Prop
    values: bytes
    offsets: bytes | None = None


def encode(kind: str | list[str] | tuple[str, ...], table: pa.Table) -> list[PropertyBytes]:
    """The property table of ``kind`` (or of a tile holding several kinds, :func:`props_of_kinds`) for the rows of
    ``table`` (one row per feature, in feature-id order), without the optional properties missing in every row."""
    kinds = [kind] if isinstance(kind, str) else list(kind)
    columns = (_encode(p, table) for p in props_of_kinds(kinds))
    return [c for c in columns if c.prop.no_data is None or not _all_missing(c)]


def _all_missing(column: PropertyBytes) -> bool:
    """Whether every value of ``column`` is its ``noData`` value."""
    prop = column.prop
    if prop.type == "STRING":
        return not column.values  # every string empty
    values = np.frombuffer(column.values, _NUMPY[prop.component or "FLOAT32"])
    return bool(np.all(values == prop.no_data))


def _encode(prop: Prop, table: pa.Table) -> PropertyBytes:
    column = table.column(prop.id) if prop.id in table.column_names else pa.nulls(table.num_rows)
    if prop.type == "STRING":
        return PropertyBytes(prop, *_strings(column))
    if prop.type == "ENUM":
        index = pc.index_in(column, value_set=pa.array(KIND_VALUES))
        return PropertyBytes(prop, np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes())
    values: npt.NDArray[Any] = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    fill = 0 if prop.no_data is None else prop.no_data
    values = np.where(np.isfinite(values), values, fill)
    if prop.component != "FLOAT32":
        values = np.clip(np.round(values), 0, _MAX[prop.component or "UINT16"])
    return PropertyBytes(prop, values.astype(_NUMPY[prop.component or "FLOAT32"]).tobytes())


def _strings(column: pa.ChunkedArray | pa.Array) -> tuple[bytes, bytes]:
    array = pc.fill_null(column.cast(pa.string()), "")
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + n + 1].astype(np.int64)
    data = array.buffers()[2]
    start, end = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    blob = data.slice(start, end - start).to_pybytes() if data is not None and end > start else b""
    return blob, (offsets - start).astype(np.uint32).tobytes()
