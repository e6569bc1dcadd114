"""Ingest files named one by one (``cim ingest FILE…``, and the same files sent to a running server): GIS layers,
CityGML, CityJSON and IFC, each reported as one entry of the ``--json`` summary; a file that fails is reported and the
others still go in.

The CLI runs it on the store it opened; a running server runs it in a write job on its own store
(:mod:`cim.api.jobs`), so both print the same result.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cim.errors import CimError
from cim.pipeline.ingest import FileType, file_type, is_ifc, write_source
from cim.progress import write_error_line
from cim.store import Store
from cim.store.meshes import MeshStore

if TYPE_CHECKING:  # types only: pyproj and the GIS mappings (pydantic models) load only for a GIS file
    from pyproj import CRS
    from rich.progress import Progress

    from cim.bim.asset_rows import IfcSummary
    from cim.bim.georef import Placement
    from cim.gis.mapping import LayerMapping

#: An ingest writing at least this many assets reorders the store for spatial locality afterwards.
OPTIMIZE_AFTER = 50_000


def ingest_files(
    store: Store,
    meshes: MeshStore,
    specs: list[str],
    *,
    mapping: LayerMapping | None,
    crs: CRS | None,
    placement: Placement | None,
    progress: Progress,
    allow_empty: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Ingest each of ``specs`` (``FILE`` or ``FILE:LAYER``): ``{"files": [entry…], "assets": {kind: count}}``,
    one bar per file on ``progress``. A GIS layer or CityJSON file that yields no valid asset is an error that
    keeps what the store holds from it, unless ``allow_empty`` (:func:`cim.gis.layer.check_not_empty`). What
    changed is recorded in the history at ``at`` (default now)."""
    results: list[dict[str, Any]] = []
    for spec in specs:
        if is_ifc(Path(spec)):  # the suffix only: a GIS or CityJSON file is sniffed once, by _ingest_one
            results.append(_ingest_ifc_one(store, meshes, Path(spec), placement, progress, at))
            continue
        results.append(_ingest_one(store, meshes, spec, mapping, crs, progress, allow_empty, at))
    if sum(sum(r["assets"].values()) for r in results) >= OPTIMIZE_AFTER:
        store.optimize()  # large loads arrive in batches; reorder once so window queries stay fast
    totals: dict[str, int] = {}
    for result in results:
        for asset_kind, count in result.get("assets", {}).items():
            totals[asset_kind] = totals.get(asset_kind, 0) + count
    return {"files": results, "assets": totals}


def _ingest_one(
    store: Store,
    meshes: MeshStore,
    spec: str,
    mapping: LayerMapping | None,
    crs: CRS | None,
    progress: Progress,
    allow_empty: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    path_text, _, layer = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_text)
    entry: dict[str, Any] = {
        "path": str(path),
        "layer": layer or None,
        "ok": False,
        "error": None,
        "features_read": 0,
        "assets": {},
        "repaired": 0,
        "rejected": 0,
        "findings": [],
    }
    task = progress.add_task(path.name, total=None)
    read_as: FileType = "gis"
    try:
        if (found := file_type(path)) in ("cityjson", "citygml"):
            read_as = found
        result = write_source(
            store,
            path,
            read_as=read_as,
            mapping=mapping,
            layer=layer or None,
            crs=crs,
            meshes=meshes,
            progress=lambda n: progress.advance(task, n),
            allow_empty=allow_empty,
            at=at,
        )
    except CimError as exc:
        entry["error"] = str(exc)
        write_error_line(progress.console, str(exc))
        return entry
    finally:
        progress.update(task, total=progress.tasks[task].completed)
    entry.update(ok=True, **asdict(result))
    return entry


def _ingest_ifc_one(
    store: Store, meshes: MeshStore, path: Path, placement: Placement | None, progress: Progress, at: datetime | None
) -> dict[str, Any]:
    """One IFC file, as the entry of the ``--json`` summary that the BIM issue defines."""
    entry: dict[str, Any] = {
        "path": str(path), "layer": None, "ok": False, "error": None, "georeference": None, "assets": {},
        "failed_elements": 0, "features_read": 0, "repaired": 0, "rejected": 0, "findings": [],
    }  # fmt: skip
    task = progress.add_task(path.name, total=None)
    try:
        result = cast(
            "IfcSummary",
            write_source(
                store,
                path,
                read_as="ifc",
                meshes=meshes,
                placement=placement,
                progress=lambda n: progress.advance(task, n),
                at=at,
            ),
        )
    except CimError as exc:
        entry["error"] = f"file {path}: {exc}" if str(path) not in str(exc) else str(exc)
        write_error_line(progress.console, entry["error"])
        return entry
    finally:
        progress.update(task, total=progress.tasks[task].completed)
    entry.update(
        ok=True, georeference=result.georeference, assets=result.assets, failed_elements=result.failed_elements,
        failed=result.failed, meshes=result.meshes, schema=result.schema, features_read=sum(result.assets.values()),
        rejected=result.failed_elements,
    )  # fmt: skip
    for failure in result.failed[:5]:
        entry["findings"].append({"rule": "geometry_failed", "count": 1, "examples": [failure["id"]]})
    return entry
