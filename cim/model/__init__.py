"""The city model: what every layer above speaks. Plain typed values and their columnar batches, no I/O.

- :mod:`cim.model.values`: :class:`Asset`, :class:`Kind`, :class:`Mesh`, :class:`Reading`, :class:`Alert`
- :mod:`cim.model.schema`: the asset table's columns (Arrow and SQL types), declared once
- :mod:`cim.model.batch`: :class:`AssetBatch`, assets as checked Arrow columns
- :mod:`cim.model.meshes`: :class:`MeshBatch`, meshes of many assets as flat arrays

The two batches load pyarrow (80 MB of a process's memory), so they are imported when first asked for: an IFC
geometry worker, which needs only the values, stays at the size it had before the batches moved here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cim.model.values import (
    COMMON_FIELDS,
    KIND_FIELDS,
    Alert,
    Asset,
    JsonValue,
    Kind,
    Mesh,
    Reading,
    fields_of,
    parse_kind,
)

__all__ = [
    "COMMON_FIELDS",
    "KIND_FIELDS",
    "Alert",
    "Asset",
    "AssetBatch",
    "JsonValue",
    "Kind",
    "Mesh",
    "MeshBatch",
    "Reading",
    "fields_of",
    "parse_kind",
]

if TYPE_CHECKING:
    from cim.model.batch import AssetBatch
    from cim.model.meshes import MeshBatch


def __getattr__(name: str) -> Any:
    if name == "AssetBatch":
        from cim.model.batch import AssetBatch

        return AssetBatch
    if name == "MeshBatch":
        from cim.model.meshes import MeshBatch

        return MeshBatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
