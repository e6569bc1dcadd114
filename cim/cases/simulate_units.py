"""Simulated units and a simulated command centre working the cases of a running server, over its HTTP API.

For the demo: the sensor simulator's faults become cases (machine dispatch), and these simulated people take them
round the loop — a unit accepts a dispatched case after a while and handles it (sometimes too late, sometimes it
returns one as not its own), the command centre verifies the handled ones (sometimes it rejects the handling) and
closes them, and re-dispatches returned ones. Each acts with its own token, names the version it read, and a 409
(someone acted first) is counted and shrugged off, as a person would. The delays are drawn per case from seeded
random numbers, scaled by ``speed``, so the wall shows a loop that turns rather than a pile that grows.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: Seconds (at speed 1) before each state's next step is taken: (low, high) of a uniform draw.
DELAYS: Mapping[str, tuple[float, float]] = {
    "filed": (5.0, 20.0),  # the centre re-dispatches a returned case
    "dispatched": (5.0, 30.0),  # the unit accepts
    "in_progress": (15.0, 150.0),  # the unit handles: the long tail runs past the shortest deadlines
    "handled": (10.0, 40.0),  # the centre verifies (or rejects)
    "verified": (3.0, 15.0),  # the centre closes
}
WORKED_STATES = ",".join(DELAYS)


@dataclass
class Behaviour:
    """How the simulated people behave; shares are probabilities per case step."""

    return_share: float = 0.05  # a unit sends a dispatched case back: not ours
    reject_share: float = 0.10  # the centre finds the handling not done
    speed: float = 1.0  # >1: everyone works faster
    tick_s: float = 2.0  # how often the case list is read


@dataclass
class UnitSimulator:
    """``run()`` until cancelled. ``unit_tokens``: unit id → that unit's bearer token."""

    base_url: str
    centre_token: str
    unit_tokens: Mapping[str, str]
    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: int = 7
    counts: Counter[str] = field(default_factory=Counter)
    _due: dict[tuple[str, int], float] = field(default_factory=dict)
    _units: list[dict[str, Any]] = field(default_factory=list)

    async def run(self) -> None:
        rng = random.Random(self.seed)
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30.0) as client:
            self._units = (await client.get("/cases/units")).json()
            while True:
                try:
                    await self._tick(client, rng, loop.time())
                except (httpx.HTTPError, ValueError) as exc:  # the server restarts, or is busy: try again later
                    self.counts["errors"] += 1
                    log.info("unit simulator: %s", exc)
                await asyncio.sleep(self.behaviour.tick_s)

    async def _tick(self, client: httpx.AsyncClient, rng: random.Random, now: float) -> None:
        answer = await client.get("/cases", params={"state": WORKED_STATES, "limit": 2000})
        answer.raise_for_status()
        live = set()
        for feature in answer.json()["features"]:
            case = feature["properties"]
            key = (case["id"], case["version"])
            live.add(key)
            due = self._due.get(key)
            if due is None:
                low, high = DELAYS[case["state"]]
                self._due[key] = now + rng.uniform(low, high) / self.behaviour.speed
            elif now >= due:
                await self._step(client, rng, case)
        for key in [k for k in self._due if k not in live]:
            del self._due[key]

    async def _step(self, client: httpx.AsyncClient, rng: random.Random, case: dict[str, Any]) -> None:
        state, unit = case["state"], case.get("unit_id")
        token, body = self.centre_token, {"version": case["version"]}
        if state == "dispatched" or state == "in_progress":
            if unit is None or unit not in self.unit_tokens:
                return  # a unit nobody simulates: the case waits, escalates, and shows on the wall
            token = self.unit_tokens[unit]
            if state == "dispatched" and rng.random() < self.behaviour.return_share:
                body |= {"action": "return", "note": "不属于本单位职责 — not ours to handle", "actor": f"{unit} duty"}
            elif state == "dispatched":
                body |= {"action": "accept", "actor": f"{unit} duty"}
            else:
                body |= {"action": "handle", "note": "已到场处置 — handled on site", "actor": f"{unit} crew"}
        elif state == "handled":
            if rng.random() < self.behaviour.reject_share:
                body |= {"action": "reject", "note": "核查未通过 — still a problem on site", "actor": "inspector"}
            else:
                body |= {"action": "verify", "note": "核查通过 — checked on site", "actor": "inspector"}
        elif state == "verified":
            body |= {"action": "close", "actor": "command centre"}
        elif state == "filed":
            target = self._unit_for(case)
            if target is None:
                return
            body |= {"action": "dispatch", "unit": target, "actor": "command centre"}
        else:
            return
        answer = await client.post(
            f"/cases/{case['id']}/transitions", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        self.counts[f"{body['action']} {answer.status_code}"] += 1
        if answer.status_code >= 500:
            answer.raise_for_status()

    def _unit_for(self, case: dict[str, Any]) -> str | None:
        """The unit a returned case goes to next: one for its category in its district, else any for it."""
        fitting = [u for u in self._units if case["category"] in u.get("categories", [])]
        local = [u for u in fitting if case.get("district") in u.get("areas", [])]
        chosen = local or fitting
        return str(chosen[0]["id"]) if chosen else None
