"""The city model: what every layer above speaks. Plain typed values and their columnar batches, no I/O.

- :mod:`cim.model.values`: :class:`Asset`, :class:`Kind`, :class:`Mesh`, :class:`Reading`, :class:`Alert`
- :mod:`cim.model.schema`: the asset table's columns (Arrow and SQL types), declared once
- :mod:`cim.model.batch`: :class:`AssetBatch`, assets as checked Arrow columns
- :mod:`cim.model.meshes`: :class:`MeshBatch`, meshes of many assets as flat arrays
"""

from cim.model.batch import AssetBatch
from cim.model.meshes import MeshBatch
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
