"""``GET /indicators``: the city vital signs (:mod:`cim.queries.indicators`), recomputed at most every
:data:`REFRESH_SECONDS` so a wall of screens polling them costs one computation."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import APIRouter

from cim.api.deps import StoreDep
from cim.api.schemas import AsOfParam, errors
from cim.queries.indicators import IndicatorsOut, vital_signs
from cim.queries.params import store_as_of
from cim.store.sqlstore import sql_store

REFRESH_SECONDS = 15.0

router = APIRouter(tags=["indicators"])
#: By store URL (an object id may be reused by another store) and the day asked (None: today, the current model).
_cache: dict[tuple[str, str | None], tuple[float, IndicatorsOut]] = {}
_cache_lock = threading.Lock()


@router.get(
    "/indicators",
    summary="City vital signs, each with its definition and time of computation",
    response_model=IndicatorsOut,
    responses=errors(400),
)
def get_indicators(store: StoreDep, as_of: AsOfParam = None) -> Any:
    """The vital signs now, or of the model as of a day (the live ones — sensors reporting, open alerts — are
    only known now: as of a past day they have no value)."""
    view, day = store_as_of(store, as_of)
    past = sql_store(view).as_of_time is not None
    key = (sql_store(store).url, day.isoformat() if past and day is not None else None)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
            return cached[1]
    result = vital_signs(view, as_of=day)
    with _cache_lock:
        now = time.monotonic()
        for old in [k for k, (at, _) in _cache.items() if now - at >= REFRESH_SECONDS]:
            del _cache[old]  # days asked once are not kept
        _cache[key] = (now, result)
    return result
