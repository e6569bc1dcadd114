"""One GIS layer read as asset batches: read in batches, mapped to assets (:mod:`cim.gis.feature_mapper`), checked.

Writing them is :func:`cim.pipeline.ingest.write_source`'s: one transaction per layer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyproj import CRS

from cim.gis.feature_mapper import FeatureMapper, check_fields
from cim.gis.mapping import LayerMapping
from cim.gis.quality import REJECTING
from cim.gis.readers import FeatureBatch, LayerInfo, open_layer
from cim.gis.summary import LayerSummary, check_not_empty
from cim.model import AssetBatch
from cim.model.shapes import shapes_of_batch
from cim.model.source import Progress


def source_name(path: Path, layer: str, mapping: LayerMapping) -> str:
    """The ``source`` of the assets from one layer read by one mapping; re-ingesting it replaces them."""
    return f"{path.name}:{layer}:{mapping.kind}"


@contextmanager
def read_layer(
    path: Path, mapping: LayerMapping, *, layer: str | None = None, crs: CRS | None = None
) -> Iterator[LayerRead]:
    """``path`` (one layer) opened for reading through ``mapping``: a file or mapping problem raises here, before
    anything is written. Feature problems become findings. Its assets' 3D shapes are :mod:`cim.model.shapes`."""
    with open_layer(path, layer=layer or mapping.layer, where=mapping.where, crs=crs) as (info, batches):
        check_fields(mapping, info.fields, f"layer {info.layer!r} of {path}")
        prefix = mapping.id_prefix or (
            path.name.split(".")[0]
            if layer is None and mapping.layer is None
            else f"{path.name.split('.')[0]}:{info.layer}"
        )
        mapper = FeatureMapper(mapping, id_prefix=prefix, source=source_name(path, info.layer, mapping))
        yield LayerRead(path, info, batches, mapper)


class LayerRead:
    """One GIS layer as asset batches (a :class:`~cim.model.source.SourceRead`)."""

    derive_meshes = staticmethod(shapes_of_batch)

    def __init__(self, path: Path, info: LayerInfo, batches: Iterator[FeatureBatch], mapper: FeatureMapper) -> None:
        self.path = path
        self.info = info
        self.source = mapper.source
        self._batches = batches
        self._mapper = mapper
        self._kept = 0
        self._kinds: Counter[str] = Counter()

    def items(self, progress: Progress | None) -> Generator[AssetBatch, None, None]:
        for batch in self._batches:
            assets = self._mapper.map(batch)
            self._kept += len(assets)
            self._kinds.update(assets.table.column("kind").to_pylist())
            if progress is not None:
                progress(len(batch.attributes))
            yield assets

    def refuse_empty(self, stored: int) -> None:
        mapper = self._mapper
        what = f"layer {self.info.layer!r} of {self.path}"
        check_not_empty(what, self._kept, mapper.features_read, stored, mapper.findings)

    def summary(self, written: int, meshes: int) -> LayerSummary:
        findings = self._mapper.findings
        return LayerSummary(
            path=str(self.path),
            layer=self.info.layer,
            crs=self.info.crs.to_string(),
            features_read=self._mapper.features_read,
            assets=self._assets(written),
            meshes=meshes,
            repaired=findings.count("invalid_geometry_repaired"),
            rejected=findings.count(*REJECTING),
            findings=findings.as_list(),
        )

    def _assets(self, written: int) -> dict[str, int]:
        """Assets written per kind (one kind unless the mapping takes kinds from an attribute)."""
        if not written:
            return {}
        if "kind" not in self._mapper.mapping.fields or written != self._kept:
            return {str(self._mapper.mapping.kind): written}
        return dict(sorted(self._kinds.items()))
