"""Ingest one GIS layer into a store: read in batches, map to assets, write as one transaction per layer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyproj import CRS

from cim.errors import InvalidInput
from cim.gis.features import FeatureMapper, check_fields
from cim.gis.mapping import LayerMapping
from cim.gis.quality import REJECTING, Findings
from cim.gis.readers import open_layer
from cim.gis.shapes import shapes_of_batch
from cim.model import AssetBatch
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore, MeshWriter

Progress = Callable[[int], None]


@dataclass
class LayerSummary:
    path: str
    layer: str
    crs: str
    features_read: int = 0
    assets: dict[str, int] = field(default_factory=dict)
    meshes: int = 0
    repaired: int = 0
    rejected: int = 0
    findings: list[dict[str, object]] = field(default_factory=list)


def source_name(path: Path, layer: str, mapping: LayerMapping) -> str:
    """The ``source`` of the assets from one layer read by one mapping; re-ingesting it replaces them."""
    return f"{path.name}:{layer}:{mapping.kind}"


def ingest_layer(
    store: Store,
    path: Path,
    mapping: LayerMapping,
    *,
    layer: str | None = None,
    crs: CRS | None = None,
    meshes: MeshStore | None = None,
    progress: Progress | None = None,
    allow_empty: bool = False,
) -> LayerSummary:
    """Read ``path`` (one layer) through ``mapping`` into ``store``, replacing what an earlier ingest of the same
    layer and kind wrote. Feature problems become findings; a file or mapping problem raises before anything is
    written. With ``meshes``, each asset's 3D shape (:mod:`cim.gis.shapes`) is written there too, in a transaction
    that commits only after the assets did.

    A layer that yields no valid asset is refused (see :func:`check_not_empty`) unless ``allow_empty``: then it
    empties the source.
    """
    with open_layer(path, layer=layer or mapping.layer, where=mapping.where, crs=crs) as (info, batches):
        check_fields(mapping, info.fields, f"layer {info.layer!r} of {path}")
        prefix = (
            path.name.split(".")[0]
            if layer is None and mapping.layer is None
            else f"{path.name.split('.')[0]}:{info.layer}"
        )
        mapper = FeatureMapper(mapping, id_prefix=prefix, source=source_name(path, info.layer, mapping))
        stored = 0 if allow_empty else store.count_assets(AssetQuery(where={"source": mapper.source}))

        with _mesh_writer(meshes, mapper.source) as mesh_writer, ThreadPoolExecutor(1) as shaper:
            # Shapes are made and staged on a second thread while the store writes the assets: numpy, GEOS and
            # DuckDB release the GIL, so the two overlap on two cores. One batch in flight keeps memory bounded.
            pending: Future[None] | None = None

            def mapped() -> Iterator[AssetBatch]:
                nonlocal pending
                kept = 0
                for batch in batches:
                    assets = mapper.map(batch)
                    kept += len(assets)
                    if mesh_writer is not None:
                        if pending is not None:
                            pending.result()
                        pending = shaper.submit(_stage_shapes, mesh_writer, assets)
                    if progress is not None:
                        progress(len(batch.attributes))
                    yield assets
                if not allow_empty:  # raised inside the store's transaction, so its DELETE is rolled back too
                    check_not_empty(
                        f"layer {info.layer!r} of {path}", kept, mapper.features_read, stored, mapper.findings
                    )

            written = store.replace_source(mapper.source, mapped())
            if pending is not None:
                pending.result()
    findings = mapper.findings
    return LayerSummary(
        path=str(path),
        layer=info.layer,
        crs=info.crs.to_string(),
        features_read=mapper.features_read,
        assets={str(mapping.kind): written} if written else {},
        meshes=mesh_writer.written if mesh_writer is not None else 0,
        repaired=findings.count("invalid_geometry_repaired"),
        rejected=findings.count(*REJECTING),
        findings=findings.as_list(),
    )


def check_not_empty(what: str, kept: int, read: int, stored: int, findings: Findings) -> None:
    """Refuse an ingest that would write no asset where that cannot be what the user meant: features were read and
    every one was rejected, or the store holds assets of this source that it would silently delete. (An empty file
    for a source the store does not hold is a harmless no-op.)"""
    if kept or (not read and not stored):
        return
    if read:
        rejected = "its only feature was" if read == 1 else f"all {read:,} features were"
        why = f"yields no valid asset: {rejected} rejected ({findings.describe()})"
    else:
        why = "holds no feature"
    if stored:
        why += f"; the {stored:,} assets stored from it are kept (cim ingest --allow-empty removes them)"
    raise InvalidInput(what, why)


def _stage_shapes(writer: MeshWriter, assets: AssetBatch) -> None:
    writer.add(shapes_of_batch(assets))


@contextmanager
def _mesh_writer(meshes: MeshStore | None, source: str) -> Iterator[MeshWriter | None]:
    if meshes is None:
        yield None
        return
    with meshes.replacing(source) as writer:
        yield writer
