"""The steps people take: reporting a case (hotline, inspector, command centre) and acting on one. Synchronous; runs on
the case service's store thread (:mod:`cim.cases.service`), which serialises them with machine dispatch.

Who may act (:func:`act`): the command centre (``unit_id`` None) takes any action allowed from the case's state;
a unit takes only :data:`~cim.model.cases.UNIT_ACTIONS`, and only on a case dispatched to it (else
:class:`~cim.errors.NotPermitted` naming the case's unit). ``clear``, ``escalate`` and ``join`` are the machine's.
A change names the version it read (``version``): a stale one is a :class:`~cim.errors.Conflict` carrying the
current state and version, and the store refuses a write whose expected version moved meanwhile — never a lost
update. Without ``version`` the action applies to the case as it is when the step runs (a store conflict from
another process is retried on the fresh case, a few times).

A reported location outside every area of the store is refused (:class:`~cim.errors.InvalidInput` naming the
point): a hotline or inspector app places its reports inside the city. A store with no areas at all takes any
location, at the city level. (A sensor alert outside every area is kept at the city level instead:
:mod:`cim.cases.machine`.)
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cim.cases.dispatch import DispatchTable, Unit
from cim.cases.machine import machine_steps
from cim.cases.photos import Photo, check_photos
from cim.errors import Conflict, InvalidInput, NotFound, NotPermitted
from cim.model import Asset
from cim.model.cases import (
    MACHINE_ACTIONS,
    UNIT_ACTIONS,
    Action,
    Case,
    CaseEvent,
    CaseSource,
    Severity,
    apply_action,
    category,
    new_case,
)
from cim.store import Store
from cim.store import cases as case_store
from cim.store.areas import areas_of_assets, locate

#: Attempts at a step whose case another process changed meanwhile (only when the caller named no version).
RETRIES = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseDraft:
    """A case as a person reports it (``POST /cases``): a category, a place (a point or an asset), what and who."""

    category: str
    severity: str = "normal"
    source: str = "hotline"
    lon: float | None = None
    lat: float | None = None
    asset_id: str | None = None
    title: str = ""
    description: str = ""
    reporter: str | None = None
    photos: Sequence[Photo | bytes] = field(default_factory=tuple)


def report(
    store: Store,
    table: DispatchTable | None,
    draft: CaseDraft,
    *,
    actor: str,
    now: datetime,
    has_areas: bool,
    deadline_scale: float = 1.0,
) -> tuple[Case, list[CaseEvent]]:
    """File a reported case and dispatch it by the table (by machine); stored in one transaction."""
    cat = category(draft.category).id
    try:
        severity = Severity(draft.severity)
    except ValueError:
        known = ", ".join(s.value for s in Severity)
        raise InvalidInput(f"severity {draft.severity!r}", f"is not a case severity; known: {known}") from None
    try:
        source = CaseSource(draft.source)
    except ValueError:
        known = ", ".join(s.value for s in CaseSource)
        raise InvalidInput(f"source {draft.source!r}", f"is not a case source; known: {known}") from None
    photos = check_photos(draft.photos)
    lon, lat, areas, assets = _place(store, draft, has_areas)
    case = new_case(
        id=f"C{now:%Y%m%d}-{secrets.token_hex(5)}",
        category=cat,
        source=source,
        severity=severity,
        at=now,
        actor=actor,
        deadline_scale=deadline_scale,
        title=draft.title or category(cat).zh,
        description=draft.description,
        reporter=draft.reporter or actor,
        lon=lon,
        lat=lat,
        grid_cell=getattr(areas, "grid_cell", None),
        street=getattr(areas, "street", None),
        district=getattr(areas, "district", None),
        asset_ids=assets,
    )
    photo_ids = tuple(case_store.save_photo(store, data, content_type) for data, content_type in photos)
    case, events = machine_steps(case, table, at=now, actor=actor, photos=photo_ids)
    case_store.insert_case(store, case, events)
    return case, events


def _place(store: Store, draft: CaseDraft, has_areas: bool) -> tuple[float | None, float | None, Any, tuple[str, ...]]:
    if draft.asset_id is not None:
        asset = store.get_asset(draft.asset_id)  # NotFound names the asset
        lon, lat = draft.lon, draft.lat
        if lon is None and asset.geom is not None and not asset.geom.is_empty:
            point = asset.geom.representative_point()
            lon, lat = point.x, point.y
        areas = areas_of_assets(store, [asset.id]).get(asset.id)
        return lon, lat, areas, (asset.id,)
    if draft.lon is None or draft.lat is None:
        raise InvalidInput("case location", "give lon and lat, or the asset_id of the asset concerned")
    if not (-180 <= draft.lon <= 180 and -90 <= draft.lat <= 90):
        raise InvalidInput(f"case location ({draft.lon}, {draft.lat})", "is not a lon/lat")
    (areas,) = locate(store, [(draft.lon, draft.lat)])
    if has_areas and not any(getattr(areas, k, None) for k in ("grid_cell", "street", "district")):
        raise InvalidInput(f"case location ({draft.lon}, {draft.lat})", "lies outside every area of the city")
    return draft.lon, draft.lat, areas, ()


def act(
    store: Store,
    table: DispatchTable | None,
    case_id: str,
    action: str,
    *,
    actor: str,
    unit_id: str | None,
    now: datetime,
    note: str = "",
    version: int | None = None,
    photos: Sequence[Photo | bytes] = (),
    data: Mapping[str, Any] | None = None,
) -> tuple[Case, CaseEvent]:
    """One step on a case by a person; see the module docstring."""
    try:
        step = Action(action)
    except ValueError:
        known = ", ".join(a.value for a in Action if a not in MACHINE_ACTIONS and a is not Action.REPORT)
        raise InvalidInput(f"action {action!r}", f"is not a case action; known: {known}") from None
    if step in MACHINE_ACTIONS or step is Action.REPORT:
        raise NotPermitted(f"action {step}", "is taken by the machine only")
    checked = check_photos(photos)
    for attempt in range(RETRIES):
        case = case_store.get_case(store, case_id)
        _may(case, step, unit_id)
        if version is not None and version != case.version:
            raise Conflict(
                f"case {case_id}",
                f"changed meanwhile: you read version {version}, it is at version {case.version} ({case.state})",
                allowed=_allowed(case),
                current={"state": str(case.state), "version": case.version},
            )
        step_data = _step_data(table, case, step, data)
        renewal = _asset_change(case, step, step_data)
        apply_action(case, step, actor=actor, at=now, note=note, unit_id=unit_id, data=step_data)  # refuses early
        photo_ids = tuple(case_store.save_photo(store, d, t) for d, t in checked)
        updated, event = apply_action(
            case, step, actor=actor, at=now, note=note, unit_id=unit_id, photos=photo_ids, data=step_data
        )
        try:
            case_store.apply_event(store, updated, event, expected_version=case.version)
        except Conflict:
            if version is not None or attempt == RETRIES - 1:
                raise
            continue
        if renewal is not None:
            _change_asset(store, case, *renewal)
        return updated, event
    raise AssertionError("unreachable")


#: What a unit handling a case may record of the asset it repaired or replaced (``data.asset`` of ``handle``).
ASSET_FIELDS = ("install_date", "status", "material", "diameter_mm", "depth_m")


def _asset_change(case: Case, step: Action, data: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``data.asset`` of a ``handle`` — the case's asset as the unit left it (a pipe replaced: its new install date
    and material) — checked before anything is written: (asset id, typed fields), or None."""
    given = data.get("asset")
    if given is None:
        return None
    what = f"case {case.id} handle data.asset"
    if step is not Action.HANDLE:
        raise InvalidInput(f"case {case.id} {step} data.asset", "only a handle records the asset")
    if not isinstance(given, Mapping) or not given:
        raise InvalidInput(what, f"must be an object of some of {', '.join(ASSET_FIELDS)}")
    asset_id = str(given.get("id") or (case.asset_ids[0] if case.asset_ids else ""))
    if not asset_id or asset_id not in case.asset_ids:
        raise InvalidInput(f"{what}.id", f"must be one of the case's assets: {', '.join(case.asset_ids) or 'none'}")
    fields: dict[str, Any] = {}
    for key, value in given.items():
        if key == "id":
            continue
        if key not in ASSET_FIELDS:
            raise InvalidInput(f"{what}.{key}"[:200], f"is not recordable; use {', '.join(ASSET_FIELDS)}")
        if key == "install_date":
            try:
                fields[key] = date.fromisoformat(str(value))
            except ValueError:
                raise InvalidInput(f"{what}.install_date", "is not a date (YYYY-MM-DD)") from None
        elif key in ("diameter_mm", "depth_m"):
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise InvalidInput(f"{what}.{key}", "must be a number")
            fields[key] = float(value)
        else:
            fields[key] = str(value)[:200]
    return asset_id, fields


def _change_asset(store: Store, case: Case, asset_id: str, fields: dict[str, Any]) -> None:
    """Write the handled asset's new state; the model's history records it as made by this case."""
    from cim.store.sqlstore import sql_store

    def change(asset: Asset | None) -> Asset | None:
        if asset is None:
            raise NotFound(f"asset {asset_id!r} of case {case.id}", "is no longer in the model")
        return dataclasses.replace(asset, **fields)

    sql_store(store).edit_asset(asset_id, change, by=f"case:{case.id}", change="case")


def _allowed(case: Case) -> tuple[str, ...]:
    from cim.model.cases import allowed_actions

    return allowed_actions(case.state)


def _may(case: Case, step: Action, unit_id: str | None) -> None:
    if unit_id is None:
        return
    if step not in UNIT_ACTIONS:
        mine = ", ".join(sorted(a.value for a in UNIT_ACTIONS))
        raise NotPermitted(f"unit {unit_id!r} action {step}", f"is the command centre's; a unit may {mine}")
    if case.unit_id != unit_id:
        owner = f"unit {case.unit_id!r}" if case.unit_id else "no unit (the command centre holds it)"
        raise NotPermitted(f"unit {unit_id!r} on case {case.id}", f"the case is dispatched to {owner}")


def _step_data(table: DispatchTable | None, case: Case, step: Action, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The action's data; a dispatch names a known unit (by default the table's for the case)."""
    out = dict(data or {})
    if step is not Action.DISPATCH:
        return out
    units: Mapping[str, Unit] = table.units if table is not None else {}
    wanted = out.get("unit")
    if wanted:
        unit = units.get(str(wanted))
        if unit is None:
            raise InvalidInput(
                f"dispatch unit {wanted!r}", f"is not a unit; known: {', '.join(sorted(units)) or 'none'}"
            )
    else:
        found = table.unit_for(case.category, (case.grid_cell, case.street, case.district)) if table else None
        if found is None:
            raise InvalidInput(f"dispatch of case {case.id}", f"no unit answers for {case.category} there: name one")
        unit = found
    out.update({"unit": unit.id, "level": str(unit.level)})
    return out
