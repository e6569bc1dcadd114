"""``/assets/{id}``: one asset with its parent chain, children, its sensors' latest state, open alerts and areas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from cim.api.deps import AlertLookup, StoreDep, get_alerts
from cim.api.geojson import feature
from cim.api.schemas import AssetDetailOut, errors
from cim.queries import asset_detail
from cim.store import Store
from cim.store.areas import NOWHERE, areas_of_assets

router = APIRouter(prefix="/assets", tags=["assets"])


@router.get(
    "/{asset_id}",
    summary="An asset with its surroundings in the model",
    response_model=AssetDetailOut,
    responses=errors(404),
)
def get_asset(asset_id: str, store: StoreDep, alerts: Annotated[AlertLookup, Depends(get_alerts)]) -> dict[str, Any]:
    detail = asset_detail(store, asset_id)
    return {
        "asset": feature(detail.asset),
        "parents": [{"id": a.id, "kind": str(a.kind), "name": a.name} for a in detail.parents],
        "children": [{"id": a.id, "kind": str(a.kind), "name": a.name} for a in detail.children],
        "children_truncated": detail.children_truncated,
        "latest_state": {
            sensor: {"time": r.time.isoformat(), "value": r.value, "status": r.status}
            for sensor, r in sorted(detail.latest_state.items())
        },
        "alerts": alerts(detail.asset.id),
        "areas": _areas(store, detail.asset.id),
    }


def _areas(store: Store, asset_id: str) -> dict[str, str | None] | None:
    """The asset's grid cell, street and district codes (None for an area itself, or a store without areas)."""
    codes = areas_of_assets(store, [asset_id]).get(asset_id)
    if codes is None or codes == NOWHERE:
        return None
    return {"grid_cell": codes.grid_cell, "street": codes.street, "district": codes.district}
