"""Exports: the model handed on in the formats other tools read (``cim export --format … --out …``, and ``f=``).

Exports read the store (and its meshes) and write files; they sit beside :mod:`cim.tiling` in the one-way flow
(sources → model → store → tiling / export → api) and never write to the store.

Every format is one function with the same signature, :class:`Writer`, named in :data:`FORMATS` and imported only
when that format is asked for (GDAL, lxml and ifcopenshell load only for their own format):

- ``gpkg``: GeoPackage, every kind a layer (:mod:`cim.export.gpkg`).
- ``cityjson``: CityJSON 2.0, buildings with their geometry and attributes (:mod:`cim.export.cityjson`).
- ``citygml``: CityGML 3.0, buildings (:mod:`cim.export.citygml`).
- ``ifc``: the original IFC files the selected BIM buildings came from (:mod:`cim.export.ifc`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cim.errors import InvalidInput

if TYPE_CHECKING:
    from cim.model import Kind
    from cim.model.source import Progress
    from cim.store import BBox, Store
    from cim.store.meshes import MeshStore


@dataclass
class ExportSummary:
    """What an export wrote: its format, where, how many objects of each kind, the files written (one for most
    formats; one per original for ``ifc``) and what it left out and why (``{"rule", "count", "examples"}``)."""

    format: str
    out: str
    objects: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)


class Writer(Protocol):
    """One format's export: the assets of ``kinds`` (None: what the format holds) inside ``bbox`` (west, south,
    east, north in lon/lat; None: everywhere) written to ``out``; ``progress(n)`` hears of each n objects written."""

    def __call__(
        self,
        store: Store,
        meshes: MeshStore | None,
        out: Path,
        *,
        kinds: Sequence[Kind] | None = None,
        bbox: BBox | None = None,
        progress: Progress | None = None,
    ) -> ExportSummary: ...


#: Format name → "module:function" of its :class:`Writer`.
FORMATS: dict[str, str] = {
    "gpkg": "cim.export.gpkg:write_gpkg",
    "cityjson": "cim.export.cityjson:write_cityjson",
    "citygml": "cim.export.citygml:write_citygml",
    "ifc": "cim.export.ifc:write_ifc",
}


def writer(format_name: str) -> Writer:
    """The writer of ``format_name``, or an error naming the formats there are."""
    target = FORMATS.get(format_name.lower())
    if target is None:
        raise InvalidInput(f"export format {format_name!r}", f"use one of {', '.join(FORMATS)}")
    module, _, function = target.partition(":")
    found: Writer = getattr(importlib.import_module(module), function)
    return found
