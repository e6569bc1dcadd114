"""Run a pipeline: generate (when asked), ingest every source, build the tiles. One failing source is reported and
the others still run; a source whose content has not changed since its last good ingest is not ingested again.

"Content" is a SHA-256 over the source file, its mapping and its options; the digests live in a small JSON file
beside the store's mesh file (``city.sources.json``), with the number of assets each source wrote, so a store that
lost a source (deleted, rebuilt) is noticed and the source ingested again.

A generated city with a past is ingested in date order, and a source with ``valid_from`` at that date
(:mod:`cim.pipeline.dated`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely

from cim.errors import CimError, InvalidInput
from cim.model import AssetBatch, Kind
from cim.pipeline.dated import PastState, ingest_time, past_done, past_states
from cim.pipeline.model import CityGmlSource, CityJsonSource, GisSource, IfcSource, Pipeline, SynthSource
from cim.pipeline.source_state import SourceState, source_digest
from cim.store import AssetQuery, Store, open_store
from cim.store.meshes import MeshStore, open_meshes

if TYPE_CHECKING:
    from cim.gis.mapping import LayerMapping

#: ``stage(name, total)`` → a function advancing that stage's progress by n.
StageProgress = Callable[[str, int | None], Callable[[int], None]]
#: How each kind of source is named in results and in the state file.
SOURCE_TYPES: dict[type, str] = {
    GisSource: "gis",
    CityJsonSource: "cityjson",
    CityGmlSource: "citygml",
    IfcSource: "ifc",
}
#: A run writing at least this many assets reorders the store afterwards (see ``Store.optimize``).
OPTIMIZE_AFTER = 50_000


@dataclass
class SourceResult:
    type: str
    path: str
    ok: bool = True
    skipped: bool = False
    error: str | None = None
    source: str | None = None
    assets: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    pipeline: str
    store: str
    sources: list[SourceResult] = field(default_factory=list)
    synth: dict[str, Any] | None = None
    removed: list[str] = field(default_factory=list)
    sensors: dict[str, Any] = field(default_factory=lambda: {"declared": 0, "ruled": 0, "changed": False, "errors": []})
    merge: dict[str, Any] | None = None
    tiles: dict[str, Any] | None = None
    cases: dict[str, Any] | None = None
    tilesets: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            all(s.ok for s in self.sources)
            and not self.sensors["errors"]
            and not (self.cases or {}).get("errors")
            and not (self.tilesets or {}).get("errors")
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def run_pipeline(
    pipeline: Pipeline,
    *,
    store_url: str | None = None,
    tiles_dir: str | None = None,
    force: bool = False,
    progress: StageProgress | None = None,
) -> RunSummary:
    """Generate, ingest and tile what ``pipeline`` names; see the module docstring."""
    started = time.perf_counter()
    stage = progress or (lambda name, total: lambda n: None)
    summary = RunSummary(pipeline=pipeline.name, store=store_url or pipeline.store)
    sources: list[GisSource | CityJsonSource | IfcSource] = [
        *pipeline.gis,
        *pipeline.cityjson,
        *pipeline.citygml,
        *pipeline.ifc,
    ]
    generated: list[GisSource | CityJsonSource | IfcSource] = []
    past: list[PastState] = []
    if pipeline.synth is not None:
        generated, summary.synth, past = _synthesise(pipeline, stage)
        sources = [*generated, *sources]
    baseline = past[0].day if past else None
    written = 0
    with open_store(summary.store) as store, open_meshes(summary.store) as meshes:
        state = SourceState(beside_meshes(meshes, ".sources.json"))
        # the past states oldest first, then the current files; a generated source the first time at the baseline
        plan: list[tuple[Any, PastState | None, date | None]] = [(d.source, d, None) for d in past]
        plan += [(s, None, baseline if i < len(generated) else None) for i, s in enumerate(sources)]
        for source, dated, first in plan:
            result = _ingest(pipeline, source, store, meshes, state, force, stage, past=dated, baseline=first)
            summary.sources.append(result)
            if not result.skipped:
                written += sum(result.assets.values())
        summary.removed = _prune(pipeline, sources, store, meshes, state, past=[d.key for d in past])
        ingested = any(s.ok and not s.skipped for s in summary.sources)
        summary.sensors = _declare_sensors(pipeline, store, state, force=force or ingested)
        summary.cases = _declare_units(pipeline, store)
        if written >= OPTIMIZE_AFTER:
            store.optimize()
        changed = ingested or bool(summary.removed) or summary.sensors["changed"]
        if pipeline.merge.enabled and (changed or force):
            summary.merge = _merge(pipeline, store, meshes)
        out = tiles_dir or pipeline.tiles
        if out is not None and (changed or force or not (Path(out) / "tileset.json").exists()):
            summary.tiles = _build(store, meshes, Path(out), stage)
    summary.tilesets = _mount(pipeline, Path(out) if out is not None else None)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _synthesise(
    pipeline: Pipeline, stage: StageProgress
) -> tuple[list[GisSource | CityJsonSource | IfcSource], dict[str, Any], list[PastState]]:
    from cim.synth.generate import generate_city

    synth = pipeline.synth
    assert synth is not None
    out = Path(synth.out)
    manifest_path = out / "manifest.json"
    wanted = {"seed": synth.seed, "buildings": synth.buildings, "towers": synth.towers, "landmarks": synth.landmarks}
    manifest = _read_json(manifest_path)
    reused = manifest is not None and written_as_asked(manifest, synth)
    if not reused:
        advance = stage("generate demo city", synth.buildings)
        generate_city(
            out=out,
            buildings=synth.buildings,
            seed=synth.seed,
            towers=synth.towers,
            landmarks=synth.landmarks,
            progress=advance,
        )
        manifest = _read_json(manifest_path)
    if manifest is None:
        raise InvalidInput(f"generated city {out}", "has no manifest.json after generating")
    info = {
        "out": str(out),
        "reused": reused,
        **wanted,
        "layers": {k: v["rows"] for k, v in manifest["layers"].items()},
        "history": [str(entry.get("date")) for entry in manifest.get("history", [])],
    }
    if not synth.include:
        return [], info, []
    layers: list[GisSource | CityJsonSource | IfcSource] = [
        GisSource(path=str((out / layer["file"]).resolve()), map=str(Path(layer["mapping"]).resolve()))
        for layer in manifest["layers"].values()
    ]
    models = [*_models(manifest), *manifest.get("landmarks", [])]
    towers = [IfcSource(path=str((out / name).resolve())) for name in models]
    return [*layers, *towers], info, past_states(manifest, out)


def written_as_asked(manifest: dict[str, Any], synth: SynthSource) -> bool:
    """Whether a generated city's manifest says it was written by this generator version with ``synth``'s seed
    and sizes, so it can be reused as it is."""
    from cim.synth.generate import GENERATOR_VERSION

    return (
        manifest.get("generator") == GENERATOR_VERSION
        and manifest.get("seed") == synth.seed
        and manifest.get("buildings") == synth.buildings
        and len(_models(manifest)) == synth.towers
        and bool(manifest.get("landmarks")) == synth.landmarks
    )


def _models(manifest: dict[str, Any]) -> list[str]:
    """The generated towers to ingest. tower-0-ifc2x3.ifc is tower-0 again (same GlobalIds) in the older schema, for
    testing lift detection: ingesting both would make two sources fight over one building."""
    return [str(name) for name in manifest.get("towers", []) if not str(name).endswith("-ifc2x3.ifc")]


def _ingest(
    pipeline: Pipeline,
    source: GisSource | CityJsonSource | IfcSource,
    store: Store,
    meshes: MeshStore,
    state: SourceState,
    force: bool,
    stage: StageProgress,
    *,
    past: PastState | None = None,
    baseline: date | None = None,
) -> SourceResult:
    """Ingest one source unless unchanged. A ``past`` state is ingested at its date; a generated source at the
    ``baseline`` the first time; a source with ``valid_from`` at that date; any other now."""
    kind = SOURCE_TYPES[type(source)]
    path = pipeline.resolve(source.path)
    result = SourceResult(type=kind, path=str(path))
    started = time.perf_counter()
    if source.optional and not path.exists():
        result.skipped, result.details = True, {"missing": "optional source not present"}
        return result
    try:
        key = _key(pipeline, source) if past is None else past.key
        digest = source_digest(pipeline, source, path)
        if past is not None:
            skip = past_done(past, digest, state.entries.get(past.key), store, force=force)
            if skip is not None:
                result.skipped, result.details = True, skip
                return result
        previous = None if force or past is not None else state.unchanged(key, digest, store)
        if previous is not None:
            result.skipped, result.source, result.assets = True, previous["source"], previous.get("assets", {})
            return result
        at = ingest_time(store, source, past, baseline)
        advance = stage(f"{kind} {path.name}" + (f" as of {at:%Y-%m-%d}" if at else ""), None)
        result.source, result.assets, result.details = _write(pipeline, source, path, store, meshes, advance, at)
        if at is not None:
            result.details["valid_from"] = at.isoformat()
        state.remember(key, digest, result.source, sum(result.assets.values()), result.assets, pipeline=pipeline.name)
    except CimError as exc:
        result.ok, result.error = False, str(exc)
    finally:
        result.seconds = round(time.perf_counter() - started, 3)
    return result


def _key(pipeline: Pipeline, source: GisSource | CityJsonSource | IfcSource) -> str:
    kind = SOURCE_TYPES[type(source)]
    return f"{kind}:{pipeline.resolve(source.path).resolve()}:{getattr(source, 'layer', None) or ''}"


def _prune(
    pipeline: Pipeline,
    sources: list[GisSource | CityJsonSource | IfcSource],
    store: Store,
    meshes: MeshStore,
    state: SourceState,
    *,
    past: list[str],
) -> list[str]:
    """Delete what sources that left this pipeline wrote (assets and meshes); returns their source names. A past
    state that left (its source is the current layer's) is only forgotten."""
    current = {_key(pipeline, s) for s in sources if not (s.optional and not pipeline.resolve(s.path).exists())}
    current.add(f"sensors:{pipeline.name}")  # the pipeline's own sensors, kept by _declare_sensors
    current.update(past)
    removed = []
    for key, entry in list(state.entries.items()):
        if key.startswith("history:") and key not in current:
            state.forget(key)
        elif entry.get("pipeline") == pipeline.name and key not in current:
            store.delete_assets(source=entry["source"])
            meshes.delete(source=entry["source"])
            state.forget(key)
            removed.append(str(entry["source"]))
    return removed


def _declare_sensors(pipeline: Pipeline, store: Store, state: SourceState, *, force: bool) -> dict[str, Any]:
    """Write the pipeline's ``[[sensors]]`` and apply its ``[[rules]]`` to the sensors of each quantity, when they
    changed or a source was ingested again (which may have brought sensors back without the rules' thresholds)."""
    from cim.iot.sensors import sensor_asset

    key = f"sensors:{pipeline.name}"
    digest = hashlib.sha256(
        json.dumps([s.model_dump() for s in pipeline.sensors] + [r.model_dump() for r in pipeline.rules]).encode()
    ).hexdigest()
    source = f"pipeline:{pipeline.name}:sensors"
    if not force and state.entries.get(key, {}).get("digest") == digest:
        return {"declared": len(pipeline.sensors), "ruled": 0, "changed": False, "errors": []}
    parents = {a.id: a for a in store.find_assets(AssetQuery(ids=sorted({s.parent for s in pipeline.sensors})))}
    declared, errors = [], []
    for s in pipeline.sensors:
        parent = parents.get(s.parent)
        if parent is None:
            errors.append(f"sensor {s.id!r} — watches {s.parent!r}, which is not in the store")
            continue
        if s.lon is not None and s.lat is not None:
            geom = shapely.Point(s.lon, s.lat)
        else:
            geom = parent.geom.representative_point() if parent.geom is not None else None
        thresholds = s.thresholds.as_props() if s.thresholds else None
        declared.append(
            sensor_asset(id=s.id, parent_id=s.parent, quantity=s.quantity, unit=s.unit, thresholds=thresholds,
                         geom=geom, name=s.name, source=source)
        )  # fmt: skip
    store.replace_source(source, [AssetBatch.from_assets(declared)] if declared else [])
    ruled = 0
    for rule in pipeline.rules:
        common = {k: v for k, v in rule.as_props().items() if k != "quantity"}
        sensors = store.find_assets(AssetQuery(kinds=(Kind.SENSOR,), where={"props.quantity": rule.quantity}))
        updated = [
            replace(a, props={**a.props, "thresholds": {**common, **(a.props.get("thresholds") or {})}})  # type: ignore[dict-item]
            for a in sensors
        ]
        for start in range(0, len(updated), 20_000):
            store.upsert_assets(AssetBatch.from_assets(updated[start : start + 20_000]))
        ruled += len(updated)
    if not errors:  # with errors, try again next run
        state.remember(key, digest, source, len(declared), {"sensor": len(declared)}, pipeline=pipeline.name)
    return {"declared": len(declared), "ruled": ruled, "changed": True, "errors": errors}


def _declare_units(pipeline: Pipeline, store: Store) -> dict[str, Any] | None:
    """Check the pipeline's ``[[units]]`` against the store's areas (after the sources, which bring the areas) and
    its ``[[case_rules]]``, then write both to the store in one transaction. Nothing is written when either is
    invalid (the error names the unit, key or rule)."""
    if not pipeline.units and not pipeline.case_rules:
        return None
    from cim.cases.config import area_tree, build_units, config_json, save_table
    from cim.cases.rules import case_rules

    declared_rules = [r.model_dump(exclude_none=True) for r in pipeline.case_rules]
    try:
        rules = case_rules(declared_rules)
        table = None
        if pipeline.units:
            units = [u.model_dump(exclude_none=True) for u in pipeline.units]
            table = build_units(units, area_tree(store), require_all_categories=pipeline.cases.require_all_categories)
            uncovered = sorted({r.category for r in rules} - table.categories())
            if uncovered:
                raise InvalidInput(
                    "case_rules", f"no unit answers for {', '.join(uncovered)}: declare one in [[units]]"
                )
    except CimError as exc:
        return {"units": 0, "case_rules": 0, "errors": [str(exc)]}
    config = config_json(declared_rules, deadline_scale=pipeline.cases.deadline_scale)
    saved = save_table(store, table, config=config)  # units and rules in one transaction
    return {"units": saved, "case_rules": len(rules), "errors": []}


def beside_meshes(meshes: MeshStore, suffix: str) -> Path:
    """A file the pipeline keeps beside the store's mesh file: ``city.meshes.duckdb`` → ``city<suffix>``."""
    stem = meshes.path.name.removesuffix(".duckdb").removesuffix(".meshes")
    return meshes.path.with_name(stem + suffix)


def _merge(pipeline: Pipeline, store: Store, meshes: MeshStore) -> dict[str, Any]:
    from cim.pipeline.merge import Link, merge_buildings

    links = [Link(gis=k.gis, ifc=k.ifc, prefer=k.prefer) for k in pipeline.links]
    merges = beside_meshes(meshes, ".merges.json")
    return merge_buildings(store, meshes, links=links, prefer=pipeline.merge.prefer, state=merges).to_dict()


def _write(
    pipeline: Pipeline,
    source: GisSource | CityJsonSource | IfcSource,
    path: Path,
    store: Store,
    meshes: MeshStore,
    advance: Callable[[int], None],
    at: datetime | None = None,
) -> tuple[str, dict[str, int], dict[str, Any]]:
    """One source through the one write path: its source name, its assets by kind, and its details."""
    from cim.gis.cityjson import CityJsonSummary
    from cim.gis.cityjson import source_name as cityjson_source_name
    from cim.gis.layer import LayerSummary, source_name
    from cim.gis.readers import parse_crs
    from cim.pipeline.ingest import write_source

    if isinstance(source, IfcSource):
        from cim.bim.asset_rows import IfcSummary
        from cim.bim.asset_rows import source_name as ifc_source_name
        from cim.bim.georef import Placement

        placement = Placement(*source.place) if source.place is not None else None
        ifc = write_source(store, path, read_as="ifc", meshes=meshes, placement=placement, progress=advance, at=at)
        assert isinstance(ifc, IfcSummary)
        return (
            ifc_source_name(path),
            ifc.assets,
            {"georeference": ifc.georeference, "failed_elements": ifc.failed_elements},
        )
    crs = parse_crs(source.crs) if source.crs else None
    if isinstance(source, CityGmlSource):  # before CityJsonSource, whose options it shares
        from cim.gis.citygml import CityGmlSummary
        from cim.gis.citygml import source_name as citygml_source_name

        model = write_source(store, path, read_as="citygml", crs=crs, meshes=meshes, progress=advance, at=at)
        assert isinstance(model, CityGmlSummary)
        return citygml_source_name(path), model.assets, {"height_datum": model.height_datum, "version": model.version}
    if isinstance(source, CityJsonSource):
        city = write_source(store, path, read_as="cityjson", crs=crs, meshes=meshes, progress=advance, at=at)
        assert isinstance(city, CityJsonSummary)
        return cityjson_source_name(path), city.assets, {"height_datum": city.height_datum}
    mapping = _mapping(pipeline, source, path)
    summary = write_source(
        store,
        path,
        read_as="gis",
        mapping=mapping,
        layer=source.layer,
        crs=crs,
        meshes=meshes,
        progress=advance,
        at=at,
    )
    assert isinstance(summary, LayerSummary)
    details = {
        "features_read": summary.features_read,
        "repaired": summary.repaired,
        "rejected": summary.rejected,
        "findings": summary.findings,
    }
    return source_name(path, summary.layer, mapping), summary.assets, details


def _mapping(pipeline: Pipeline, source: GisSource, path: Path) -> LayerMapping:
    from cim.gis.mapping import LayerMapping, load_mapping, mapping_from_dict, preset
    from cim.model import parse_kind

    if source.map is not None:
        return load_mapping(pipeline.resolve(source.map))
    if source.preset is not None:
        return preset(source.preset)
    if source.kind is not None:
        return LayerMapping(kind=parse_kind(source.kind))
    return mapping_from_dict(dict(source.mapping or {}), origin=f"mapping of {path}")


def _build(store: Store, meshes: MeshStore, out: Path, stage: StageProgress) -> dict[str, Any]:
    from cim.tiling.build import build_tiles

    advance = stage("build tiles", None)
    done_before = [0]

    def tile_progress(done: int, total: int) -> None:
        advance(done - done_before[0])
        done_before[0] = done

    built = build_tiles(store, meshes, out, progress=tile_progress)
    return {"out": str(out), **built.to_json()}


def _mount(pipeline: Pipeline, out: Path | None) -> dict[str, Any] | None:
    """Check and mount the pipeline's ``[[tilesets]]`` beside its built tiles (and unmount those it no longer
    names); None when there is nothing to do."""
    from cim.tiling.external import MountSpec, mount_tilesets, place_matrix, read_mounts

    if out is None:
        if pipeline.tilesets:
            return {"mounted": [], "errors": ["tilesets — need the pipeline's tiles folder (tiles = …) to mount into"]}
        return None
    if not pipeline.tilesets and not read_mounts(out.resolve()).get("mounts"):
        return None
    specs = []
    for t in pipeline.tilesets:
        matrix = tuple(place_matrix(*t.place)) if t.place is not None else t.matrix
        path = pipeline.resolve(t.path) if t.path is not None else None
        specs.append(MountSpec(t.name, path=path, url=t.url, matrix=matrix, title=t.title, title_zh=t.title_zh))
    try:
        return mount_tilesets(out, specs).to_dict()
    except CimError as exc:
        return {"mounted": [], "errors": [str(exc)]}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
