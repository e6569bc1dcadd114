"""``GET /history``: the span of time the model's history covers (issue 26), for the viewer's time slider and any
client choosing an ``as_of`` date: the first day a version began and the latest day one began or ended."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cim.api.deps import StoreDep
from cim.api.schemas import errors
from cim.store.sqlstore import sql_store
from cim.store.versions import history_span

router = APIRouter(tags=["history"])


class HistorySpanOut(BaseModel):
    first: str | None = Field(description="the day (UTC, YYYY-MM-DD) the model's history begins; null when empty")
    latest: str | None = Field(description="the day of the latest recorded change; null when empty")
    today: str = Field(description="today (UTC): the latest day an as_of date may name")


@router.get(
    "/history",
    summary="The span of the model's history: the days an as_of date may name",
    response_model=HistorySpanOut,
    responses=errors(),
)
async def get_history(store: StoreDep) -> Any:
    first, latest = await run_in_threadpool(history_span, sql_store(store))
    return {
        "first": None if first is None else f"{first:%Y-%m-%d}",
        "latest": None if latest is None else f"{latest:%Y-%m-%d}",
        "today": f"{datetime.now(UTC):%Y-%m-%d}",
    }
