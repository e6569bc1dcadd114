"""``/health`` and ``/ready``: is the process alive, and can it do its work — and if not, which dependency is down.

``/health`` answers 200 while the event loop turns (a liveness probe: restart the process when it fails).
``/ready`` asks each dependency the app registered in :attr:`Resources.probes` (the store always; the MQTT broker
and the readings spool when live sensors run) and answers 200 when all answer, else 503 naming the ones that do
not (a readiness probe: send no traffic while it fails). Both skip admission control (:mod:`cim.api.admission`).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cim.api.deps import ResourcesDep
from cim.api.schemas import errors
from cim.errors import CimError
from cim.store import Store

router = APIRouter(tags=["health"])

#: Seconds a dependency has to answer a readiness probe.
PROBE_TIMEOUT_S = 2.0


class HealthOut(BaseModel):
    status: str = Field(description="always `ok` while the server runs")


class CheckOut(BaseModel):
    ok: bool
    ms: float = Field(description="how long the check took")
    detail: str | None = Field(None, description="why the dependency is not ready, when it is not")


class ReadyOut(BaseModel):
    status: str = Field(description="`ready`, or `unavailable` when a dependency is down")
    down: list[str] = Field(description="the dependencies that are down")
    checks: dict[str, CheckOut]


@router.get("/health", summary="Liveness: the server process answers", response_model=HealthOut, responses=errors())
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: every dependency answers (store, MQTT broker, readings spool)",
    response_model=ReadyOut,
    responses={
        **errors(),
        503: {"model": ReadyOut, "description": "A dependency is down: `down` names it"},
    },
)
async def ready(resources: ResourcesDep) -> JSONResponse:
    checks: dict[str, dict[str, Any]] = {}
    for name, probe in {"store": _store_probe(resources.store), **resources.probes}.items():
        started = time.perf_counter()
        try:
            with anyio.fail_after(PROBE_TIMEOUT_S):
                problem = await probe()
        except TimeoutError:
            problem = f"did not answer within {PROBE_TIMEOUT_S:g} s"
        checks[name] = {"ok": problem is None, "ms": round((time.perf_counter() - started) * 1000, 1)}
        if problem is not None:
            checks[name]["detail"] = problem
    down = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "unavailable" if down else "ready", "down": down, "checks": checks}
    return JSONResponse(body, status_code=503 if down else 200, headers={"Cache-Control": "no-store"})


def _store_probe(store: Store) -> Any:
    async def probe() -> str | None:
        try:
            await anyio.to_thread.run_sync(store.ping, abandon_on_cancel=True)
        except CimError as exc:
            return exc.why
        except Exception as exc:  # whatever the driver raised: its kind, never its text (it may name hosts)
            return f"failed ({type(exc).__name__})"
        return None

    return probe
