"""``GET /targets``: the plan's targets tracked from the model and its history (:mod:`cim.queries.targets`) — the
server's target file (``CIM_TARGETS_FILE``; the demo's pipeline names its own), as of a day."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from cim.api.deps import ResourcesDep, StoreDep
from cim.api.schemas import errors
from cim.errors import NotFound
from cim.queries.params import parse_date
from cim.queries.targets import load_targets, plan_dict, target_progress

router = APIRouter(tags=["targets"])


@router.get(
    "/targets",
    summary="The plan's targets: progress, pace needed and forecast, city-wide and per district / 规划目标进展",
    responses=errors(400, 404),
)
async def get_targets(
    store: StoreDep,
    resources: ResourcesDep,
    as_of: Annotated[
        str | None,
        Query(
            description="the day to measure at, YYYY-MM-DD (default today) / 截至日期", pattern=r"^\d{4}-\d{2}-\d{2}$"
        ),
    ] = None,
) -> Any:
    settings = resources.settings
    if settings.targets_file is None:
        raise NotFound("targets", "this server tracks no target file (set CIM_TARGETS_FILE)")
    day = parse_date(as_of, what="as_of") if as_of else datetime.now(UTC).date()
    plan = load_targets(settings.targets_file, scale=settings.targets_scale)
    targets = await run_in_threadpool(target_progress, store, plan, day)
    return {**plan_dict(plan), "as_of": day.isoformat(), "targets": targets}
