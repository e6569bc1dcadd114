"""Questions asked of the city model, answered in SQL inside the store: shared by the CLI and the web API.

- :mod:`cim.queries.cql` — CQL2 (text and JSON) filters, parsed by pygeofilter, as parameterised SQL
- :mod:`cim.queries.items` — pages of one collection (asset kind) for OGC API – Features
- :mod:`cim.queries.domain` — old lifts, buried pipes in an area, assets within a distance, asset detail
"""

from __future__ import annotations

from cim.queries.domain import AssetDetail, asset_detail, buried_pipes, old_lifts, within_distance
from cim.queries.items import FeaturePage, ItemsQuery, find_features

__all__ = [
    "AssetDetail",
    "FeaturePage",
    "ItemsQuery",
    "asset_detail",
    "buried_pipes",
    "find_features",
    "old_lifts",
    "within_distance",
]
