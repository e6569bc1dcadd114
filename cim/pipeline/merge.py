"""Merge BIM buildings into the GIS buildings they stand on: one real building, one asset, one shape on the map.

A BIM building (an ``IfcBuilding`` asset) is matched to a GIS building by an explicit link (GIS id ↔ GlobalId or IFC
file name) or else by footprint: the union of its elements' footprints must overlap one GIS footprint by at least
:data:`MIN_OVERLAP` of the smaller area. Two or more such footprints, or none, are reported, never guessed.

A match makes one asset: the GIS record keeps its id and attributes; the BIM building's attributes are added as
``bim.<name>`` properties, typed columns the GIS record lacks are filled from BIM (listed in ``bim.filled``), and
differing ones are reported as conflicts (GIS wins unless ``prefer = "bim"``); the BIM storeys and elements become the
GIS building's children. The BIM building's own record stays (so re-ingests find it) but becomes a plain ``element``
under the GIS building, so every query counts the building once. The GIS building's LOD1 block leaves the mesh file:
the BIM model is its shape. When the BIM building is gone (its file left the pipeline), the GIS building gets its
attributes and its LOD1 block back. The merge is idempotent: ``cim run`` does it after every ingest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import shapely

from cim.model import Asset, AssetBatch, Kind
from cim.model.shapes import shapes_of_batch
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore

MIN_OVERLAP = 0.5
TYPED = ("name", "install_date", "status", "material", "height_m", "storeys")
_SPATIAL = frozenset({Kind.SITE, Kind.BUILDING, Kind.STOREY, Kind.SPACE})


@dataclass(frozen=True, slots=True)
class Link:
    gis: str
    ifc: str
    prefer: str = "gis"


@dataclass
class MergeReport:
    matched: list[dict[str, Any]] = field(default_factory=list)
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_buildings(
    store: Store, meshes: MeshStore, *, links: Sequence[Link] = (), prefer: str = "gis", state: Path | None = None
) -> MergeReport:
    """Match and merge every BIM building of ``store`` (see the module docstring). ``state`` remembers which GIS
    building each BIM building went into, so a BIM building that disappears gives its GIS building back."""
    report = MergeReport()
    remembered: dict[str, str] = _read(state)
    bim_buildings = store.find_assets(AssetQuery(where={"props.ifc_class": "IfcBuilding"}))
    present = {b.id for b in bim_buildings}
    for bim_id, gis_id in sorted(remembered.items()):
        if bim_id not in present:
            _restore(store, meshes, gis_id)
            report.restored.append(gis_id)
            del remembered[bim_id]
    for bim in bim_buildings:
        parts = store.find_assets(AssetQuery(where={"source": bim.source})) if bim.source else [bim]
        footprint = _footprint(bim, parts)
        link = next((k for k in links if k.ifc == bim.id or (bim.source or "").startswith(f"{k.ifc}:")), None)
        gis, why, candidates = _match(store, footprint, link)
        if gis is None:
            entry = {"bim_id": bim.id, "source": bim.source, "why": why, "candidates": candidates}
            (report.ambiguous if len(candidates) > 1 else report.unmatched).append(entry)
            continue
        previous = remembered.get(bim.id)
        if previous is not None and previous != gis.id:
            _restore(store, meshes, previous)
        conflicts = _apply(store, meshes, gis, bim, parts, link.prefer if link else prefer)
        remembered[bim.id] = gis.id
        report.matched.append(
            {"bim_id": bim.id, "gis_id": gis.id, "method": why, "overlap": _overlap_of(candidates, gis.id),
             "conflicts": conflicts}
        )  # fmt: skip
    if state is not None:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(remembered, indent=1, sort_keys=True), encoding="utf-8")
    return report


def _footprint(bim: Asset, parts: list[Asset]) -> shapely.Geometry | None:
    """The area the BIM building's elements cover seen from above (their meshes' footprints); after a merge its
    storeys hang under the GIS building, so the walk starts there too (within the BIM file's own assets)."""
    roots = [bim.id] + ([str(bim.props["merged_into"])] if "merged_into" in bim.props else [])
    below = [a for root in roots for a in _descendants(root, parts)]
    polygons = [a.geom for a in below if a.kind not in _SPATIAL and a.geom is not None and a.geom.area > 0]
    return shapely.union_all(polygons) if polygons else None


def _descendants(root: str, parts: list[Asset]) -> list[Asset]:
    children: dict[str, list[Asset]] = {}
    for a in parts:
        if a.parent_id is not None:
            children.setdefault(a.parent_id, []).append(a)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.id)
    return out


def _match(
    store: Store, footprint: shapely.Geometry | None, link: Link | None
) -> tuple[Asset | None, str, list[dict[str, Any]]]:
    if link is not None:
        found = store.find_assets(AssetQuery(ids=[link.gis], kinds=[Kind.BUILDING]))
        if not found:
            return None, f"linked GIS building {link.gis!r} is not in the store", []
        return found[0], "link", []
    if footprint is None:
        return None, "the BIM building has no element footprints to match with", []
    nearby = store.find_assets(AssetQuery(kinds=[Kind.BUILDING], polygon=footprint))
    scored = []
    for candidate in nearby:
        if candidate.geom is None or "ifc_class" in candidate.props or candidate.geom.area <= 0:
            continue
        shared = candidate.geom.intersection(footprint).area
        scored.append({"id": candidate.id, "overlap": round(shared / min(candidate.geom.area, footprint.area), 3)})
    good = [c for c in scored if c["overlap"] >= MIN_OVERLAP]
    if len(good) == 1:
        return next(c for c in nearby if c.id == good[0]["id"]), "footprint", good
    if len(good) > 1:
        return None, f"{len(good)} GIS footprints overlap it by ≥ {MIN_OVERLAP:.0%} of the smaller area", good
    best = max((c["overlap"] for c in scored), default=0.0)
    return None, f"no GIS footprint overlaps it by ≥ {MIN_OVERLAP:.0%} (best {best:.0%})", scored


def _overlap_of(candidates: list[dict[str, Any]], gis_id: str) -> float | None:
    return next((c["overlap"] for c in candidates if c["id"] == gis_id), None)


def _apply(
    store: Store, meshes: MeshStore, gis: Asset, bim: Asset, parts: list[Asset], prefer: str
) -> list[dict[str, str]]:
    base = _without_bim(gis)
    props = dict(base.props)
    props.update({f"bim.{k}": v for k, v in bim.props.items() if not k.startswith("bim.")})
    props["bim.building_id"], props["bim.source"] = bim.id, bim.source
    changes: dict[str, Any] = {}
    conflicts, filled = [], []
    for name in TYPED:
        mine, theirs = getattr(base, name), getattr(bim, name)
        if theirs is None or mine == theirs:
            continue
        if mine is None:
            changes[name] = theirs
            filled.append(name)
        else:
            conflicts.append({"field": name, "gis": str(mine), "bim": str(theirs), "kept": prefer})
            if prefer == "bim":
                changes[name] = theirs
                props[f"gis.{name}"] = mine.isoformat() if isinstance(mine, date) else mine
    props["bim.filled"] = filled + [c["field"] for c in conflicts if prefer == "bim"]
    merged = replace(base, props=props, **changes)
    children = [replace(a, parent_id=gis.id) for a in parts if a.parent_id == bim.id and a.id != bim.id]
    demoted = replace(
        bim, kind=Kind.ELEMENT, parent_id=gis.id, storeys=None, props={**bim.props, "merged_into": gis.id}
    )
    store.upsert_assets(AssetBatch.from_assets([merged, demoted, *children]), change="merge", by="merge")
    meshes.delete(ids=[gis.id])
    return conflicts


def _without_bim(asset: Asset) -> Asset:
    """The GIS record as it was before any merge: ``bim.*`` properties gone, filled columns emptied."""
    filled = asset.props.get("bim.filled")
    changes: dict[str, Any] = {}
    props = {k: v for k, v in asset.props.items() if not k.startswith("bim.")}
    for name in filled if isinstance(filled, list) else []:
        original = props.pop(f"gis.{name}", None)
        is_date = name == "install_date" and isinstance(original, str)
        changes[str(name)] = date.fromisoformat(str(original)) if is_date else original
    return replace(asset, props=props, **changes)


def _restore(store: Store, meshes: MeshStore, gis_id: str) -> None:
    found = store.find_assets(AssetQuery(ids=[gis_id]))
    if not found:
        return
    restored = _without_bim(found[0])
    batch = AssetBatch.from_assets([restored])
    store.upsert_assets(batch, change="merge", by="merge")
    meshes.add(restored.source or "restored", shapes_of_batch(batch))


def _read(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
