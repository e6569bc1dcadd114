"""The original IFC files the selected BIM buildings came from (``cim export --format ifc --out FOLDER``).

A BIM building is an asset of an IFC source (``"<file name>:ifc"``, :func:`cim.bim.asset_rows.source_name`); the
store keeps each IFC file it ingested byte for byte (:mod:`cim.store.originals`). The export writes the originals of
the sources the selected assets (buildings by default, inside ``bbox``) came from, one file each under its own name,
SHA-256 checked as it is written. Handing on the file as it was, rather than one written again from the model, keeps
everything the model does not hold (geometry as authored, every property set, the owner history).

Reported in ``skipped``: selected buildings of an IFC source ingested before the store kept originals (schema step
9: "ingest it again to keep its original"), and selected buildings that came from no IFC file (GIS, CityJSON: the
other formats hand those on).

The files are written in a folder beside ``out`` first and moved into ``out`` when all are written: an export killed
mid-write leaves nothing at ``out``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cim.errors import InvalidInput, StoreError
from cim.export import ExportSummary
from cim.model import Kind
from cim.model.source import Progress
from cim.store import AssetQuery, BBox, Store
from cim.store.meshes import MeshStore
from cim.store.sqlstore import sql_store

#: The ``source`` of every asset of an IFC file ends so (``"<file name>:ifc"``).
IFC_SOURCE_SUFFIX = ":ifc"
NO_ORIGINAL = "ingested before the store kept original files; ingest it again to keep its original"
NOT_BIM = "did not come from an IFC file: no original to hand on (export it as citygml, cityjson or gpkg)"


def write_ifc(
    store: Store,
    meshes: MeshStore | None,
    out: Path,
    *,
    kinds: Sequence[Kind] | None = None,
    bbox: BBox | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write into the folder ``out`` (created) the original IFC file of every source the selected assets (of
    ``kinds``, default buildings, inside ``bbox``) came from. ``meshes`` is not read."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out}", "is a file; the IFC export writes a folder of files")
    selected = selection_by_source(store, kinds=kinds or (Kind.BUILDING,), bbox=bbox)
    bim = {source: rows for source, rows in selected.items() if source.endswith(IFC_SOURCE_SUFFIX)}
    kept = store.originals(sorted(bim))
    summary = ExportSummary(format="ifc", out=str(out))
    _report(summary, "no_original", NO_ORIGINAL, [rows for source, rows in bim.items() if source not in kept])
    _report(summary, "not_from_ifc", NOT_BIM, [rows for source, rows in selected.items() if source not in bim])
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        names = []
        for source in sorted(kept):
            name = _file_name(kept[source].name)
            with (staging / name).open("wb") as handle:
                copied = store.copy_original(source, handle)
                os.fsync(handle.fileno())
            if copied is None:  # the source was removed meanwhile
                (staging / name).unlink()
                _report(summary, "no_original", "its source was removed during the export", [bim[source]])
                continue
            names.append(name)
            for kind, count in bim[source]["kinds"].items():
                summary.objects[kind] = summary.objects.get(kind, 0) + count
            if progress is not None:
                progress(1)
        _move_into(staging, out, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary.files = [str(out / name) for name in names]
    return summary


def selection_by_source(store: Store, *, kinds: Sequence[Kind], bbox: BBox | None) -> dict[str, dict[str, Any]]:
    """The selected assets grouped by source (None as ``""``): per source, the count of each kind and one example
    id."""
    db = sql_store(store)
    where = db.dialect.where(AssetQuery(kinds=tuple(kinds), bbox=bbox))
    rows = db.select_rows(
        f"SELECT coalesce(source, '') AS source, kind, count(*) AS n, min(id) AS example "
        f"FROM {db.assets_table} AS assets WHERE {where.sql} GROUP BY 1, 2 ORDER BY 1, 2",
        where.params,
    )
    grouped: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = grouped.setdefault(row["source"], {"kinds": {}, "examples": []})
        entry["kinds"][row["kind"]] = int(row["n"])
        entry["examples"].append(row["example"])
    return grouped


def _report(summary: ExportSummary, rule: str, why: str, groups: list[dict[str, Any]]) -> None:
    count = sum(sum(g["kinds"].values()) for g in groups)
    if count:
        examples = [e for g in groups for e in g["examples"]][:5]
        summary.skipped.append({"rule": rule, "count": count, "examples": examples, "why": why})


def _file_name(name: str) -> str:
    """The stored name as a plain file name (it is one: the ingested file's own name)."""
    plain = Path(name).name
    if plain in ("", ".", ".."):
        raise StoreError(f"original {name!r}", "has no usable file name")
    return plain


def _move_into(staging: Path, out: Path, names: list[str]) -> None:
    """The written files into ``out``: the staging folder renamed when ``out`` does not exist yet, else each file
    moved in (a rename within one file system, so each appears whole)."""
    if not out.exists():
        staging.rename(out)
        return
    for name in names:
        os.replace(staging / name, out / name)
