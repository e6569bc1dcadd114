"""The areas the case service needs: the area tree, the areas of points and of assets.

They are :mod:`cim.store.areas` (the areas branch); until that module is in this branch, a small stand-in reads the
same shape of area assets (kinds ``city``/``district``/``street``/``grid_cell``, ``props.code``, ``props.name_en``,
ids ``area:<code>``, ``parent_id`` the parent's id) with plain asset queries. Remove the stand-in once it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import shapely

from cim.model import Kind
from cim.store import AssetQuery, Store

AREA_KINDS = (Kind.CITY, Kind.DISTRICT, Kind.STREET, Kind.GRID_CELL)

try:
    from cim.store.areas import area_tree, areas_of_assets, locate  # type: ignore[import-not-found,unused-ignore]
except ImportError:

    @dataclass(frozen=True, slots=True)
    class AreaNode:
        code: str
        name: str
        name_en: str | None
        level: str
        parent: str | None

    @dataclass(frozen=True, slots=True)
    class AreaCodes:
        grid_cell: str | None = None
        street: str | None = None
        district: str | None = None

    def area_tree(store: Store) -> dict[str, Any]:  # type: ignore[misc,unused-ignore]
        assets = store.find_assets(AssetQuery(kinds=AREA_KINDS))
        code_of = {a.id: str(a.props.get("code") or a.id.removeprefix("area:")) for a in assets}
        return {
            code_of[a.id]: AreaNode(
                code=code_of[a.id],
                name=a.name or code_of[a.id],
                name_en=str(a.props["name_en"]) if a.props.get("name_en") else None,
                level=str(a.kind),
                parent=code_of.get(a.parent_id or ""),
            )
            for a in assets
        }

    def locate(store: Store, points: Sequence[tuple[float, float]]) -> list[Any]:  # type: ignore[misc,unused-ignore]
        found = []
        for lon, lat in points:
            hits = store.find_assets(AssetQuery(kinds=AREA_KINDS[1:], polygon=shapely.Point(lon, lat)))
            codes = {str(a.kind): str(a.props.get("code") or a.id.removeprefix("area:")) for a in hits}
            found.append(AreaCodes(codes.get("grid_cell"), codes.get("street"), codes.get("district")))
        return found

    def areas_of_assets(store: Store, ids: Sequence[str]) -> Mapping[str, Any]:  # type: ignore[misc,unused-ignore]
        assets = store.find_assets(AssetQuery(ids=list(ids))) if ids else []
        placed = [(a.id, a.geom.representative_point()) for a in assets if a.geom is not None and not a.geom.is_empty]
        codes = locate(store, [(p.x, p.y) for _, p in placed])
        return {asset_id: c for (asset_id, _), c in zip(placed, codes, strict=True)}


__all__ = ["area_tree", "areas_of_assets", "locate"]
