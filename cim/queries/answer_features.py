"""The answers of the domain questions (:mod:`cim.queries.domain`) as GeoJSON FeatureCollections, so GIS tools can
open them as layers: one feature per answered asset, its geometry read from the store in one query per
:data:`IDS_PER_QUERY` ids.

- old lifts: one feature per lift of the answer (old ones in a building, old ones under none, and those of unknown
  age, told apart by ``group``), with ``age_years``, ``install_date``, ``building_id`` and ``building_name``, each a
  point: the lift's own, a point on its footprint, or, for a lift with no geometry, its building's point
  (``located_at`` says which).
- buried pipes: one feature per pipe with the answer's properties.
- within distance: one feature per asset with ``name``, ``near_id`` and ``distance_m`` (null when beyond).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import shapely

from cim.queries.domain import BuriedPipesOut, OldLiftsOut, WithinDistanceOut
from cim.store import AssetQuery, Store

#: Ids per look-up of geometries (a statement's parameters stay well under PostgreSQL's 65,535).
IDS_PER_QUERY = 5_000


def geometries_of(store: Store, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """The GeoJSON geometry of each asset of ``ids`` that exists (None when it has none)."""
    wanted = sorted(set(ids))
    found: dict[str, dict[str, Any] | None] = {}
    for start in range(0, len(wanted), IDS_PER_QUERY):
        table = store.find_batch(AssetQuery(ids=wanted[start : start + IDS_PER_QUERY])).table
        shapes = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
        texts = shapely.to_geojson(shapes)
        for asset_id, text in zip(table.column("id").to_pylist(), texts, strict=True):
            found[asset_id] = None if text is None else orjson.loads(text)  # a fifth of json.loads' time
    return found


def feature_collection(features: list[dict[str, Any]], **members: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, "numberReturned": len(features), **members}


def _feature(asset_id: str, geometry: dict[str, Any] | None, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": asset_id, "geometry": geometry, "properties": properties}


def old_lifts_features(store: Store, answer: OldLiftsOut) -> dict[str, Any]:
    """:func:`~cim.queries.domain.old_lifts`'s answer as features, one per lift, in the answer's order."""
    buildings = {b["id"]: b for b in answer["buildings"]}
    lift_ids = [lift["id"] for b in answer["buildings"] for lift in b["lifts"]]
    lift_ids += [lift["id"] for lift in answer["without_building"]] + [u["id"] for u in answer["unknown_age"]]
    unknown_buildings = {u["building_id"] for u in answer["unknown_age"] if u["building_id"] is not None} - set(
        buildings
    )
    geometries = geometries_of(store, [*lift_ids, *unknown_buildings])

    def placed(lift_id: str, building_id: str | None) -> tuple[dict[str, Any] | None, str | None]:
        own = _point(geometries.get(lift_id))
        if own is not None:
            return own, "lift"
        building = buildings.get(building_id) if building_id is not None else None
        if building is not None and building["lon"] is not None and building["lat"] is not None:
            return {"type": "Point", "coordinates": [building["lon"], building["lat"]]}, "building"
        at_building = _point(geometries.get(building_id) if building_id is not None else None)
        return (at_building, "building") if at_building is not None else (None, None)

    features = []
    for b in answer["buildings"]:
        for lift in b["lifts"]:
            geometry, located = placed(lift["id"], b["id"])
            features.append(_lift(lift["id"], geometry, located, "in_building", lift, b["id"], b["name"]))
    for lift in answer["without_building"]:
        geometry, located = placed(lift["id"], None)
        features.append(_lift(lift["id"], geometry, located, "without_building", lift, None, None))
    for unknown in answer["unknown_age"]:
        geometry, located = placed(unknown["id"], unknown["building_id"])
        building = buildings.get(unknown["building_id"] or "")
        name = building["name"] if building is not None else None
        features.append(_lift(unknown["id"], geometry, located, "unknown_age", None, unknown["building_id"], name))
    return feature_collection(features)


def _point(geometry: dict[str, Any] | None) -> dict[str, Any] | None:
    """``geometry`` when a point, else a point on it (one geometry type makes one layer in a GIS)."""
    if geometry is None or geometry.get("type") == "Point":
        return geometry
    point = shapely.from_geojson(orjson.dumps(geometry)).point_on_surface()
    return None if point.is_empty else {"type": "Point", "coordinates": [point.x, point.y]}


def _lift(
    lift_id: str,
    geometry: dict[str, Any] | None,
    located: str | None,
    group: str,
    lift: Any,
    building_id: str | None,
    building_name: str | None,
) -> dict[str, Any]:
    return _feature(
        lift_id,
        geometry,
        {
            "group": group,
            "age_years": None if lift is None else lift["age_years"],
            "install_date": None if lift is None else lift["install_date"],
            "building_id": building_id,
            "building_name": building_name,
            "located_at": located,
        },
    )


def buried_pipes_features(store: Store, answer: BuriedPipesOut) -> dict[str, Any]:
    """:func:`~cim.queries.domain.buried_pipes`'s answer as features, with ``total_length_m`` beside them."""
    geometries = geometries_of(store, (p["id"] for p in answer["pipes"]))
    features = [_feature(p["id"], geometries.get(p["id"]), _without_id(p)) for p in answer["pipes"]]
    return feature_collection(features, total_length_m=answer["total_length_m"])


def within_distance_features(store: Store, answer: WithinDistanceOut) -> dict[str, Any]:
    """:func:`~cim.queries.domain.within_distance`'s answer as features; the question's terms beside them."""
    geometries = geometries_of(store, (a["id"] for a in answer["assets"]))
    features = [
        _feature(a["id"], geometries.get(a["id"]), _without_id(a, drop=("lon", "lat"))) for a in answer["assets"]
    ]
    terms = {key: answer[key] for key in ("kind", "near_kind", "distance_m", "beyond")}
    return feature_collection(features, **terms)


def _without_id(row: Any, drop: Sequence[str] = ()) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "id" and key not in drop}
