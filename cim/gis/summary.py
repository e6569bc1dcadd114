"""What reading one source file did (:class:`LayerSummary`), and the rule that refuses an ingest yielding nothing.

Apart from :mod:`cim.gis.layer` so that readers of files GDAL does not read (CityGML, CityJSON) share them
without loading GDAL and geopandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cim.errors import InvalidInput
from cim.gis.quality import Findings


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
