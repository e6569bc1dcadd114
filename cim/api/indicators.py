"""``GET /indicators``: the city vital signs (:mod:`cim.queries.indicators`), recomputed at most every
:data:`REFRESH_SECONDS` so a wall of screens polling them costs one computation."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import APIRouter

from cim.api.deps import StoreDep
from cim.api.schemas import errors
from cim.queries.indicators import IndicatorsOut, vital_signs

REFRESH_SECONDS = 15.0

router = APIRouter(tags=["indicators"])
_cache: dict[str, tuple[float, IndicatorsOut]] = {}  # by store URL: an object id may be reused by another store
_cache_lock = threading.Lock()


@router.get(
    "/indicators",
    summary="City vital signs, each with its definition and time of computation",
    response_model=IndicatorsOut,
    responses=errors(),
)
def get_indicators(store: StoreDep) -> Any:
    key = store.url
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
            return cached[1]
    result = vital_signs(store)
    with _cache_lock:
        _cache[key] = (time.monotonic(), result)
    return result
