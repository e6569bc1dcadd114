"""What the case service is configured with, all kept in the store so every server on it reads the same: the units
(``units`` table, written by ``cim run`` from the pipeline's ``[[units]]``), the case rules and the deadline scale
(``cim_meta``, written in the same transaction from ``[[case_rules]]`` and ``[cases]``), the area tree (assets).

Synchronous: called on the service's store thread, or by the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cim.cases.dispatch import AreaLike, DispatchTable, Unit, expand_units
from cim.cases.rules import CaseRule, case_rules
from cim.errors import InvalidInput
from cim.model.cases import AreaLevel
from cim.store import Store
from cim.store import cases as case_store
from cim.store.areas import area_tree as stored_tree

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaseConfig:
    """What ``cim run`` declared for the case service besides the units: the alert → case rules, and the factor
    every deadline is scaled by (1: real deadlines; the demo runs a day of deadlines in minutes)."""

    rules: tuple[CaseRule, ...] = ()
    deadline_scale: float = 1.0


def read_case_config(store: Store) -> CaseConfig | None:
    """The case configuration kept in the store (with the units), or None when the pipeline declared none."""
    data = case_store.load_case_config(store)
    if data is None:
        return None
    scale = data.get("deadline_scale", 1.0)
    if not isinstance(scale, int | float) or not 0 < scale <= 1000:
        raise InvalidInput("case configuration deadline_scale", f"must be a positive number, got {scale!r}")
    return CaseConfig(rules=tuple(case_rules(data.get("case_rules") or [])), deadline_scale=float(scale))


def config_json(declared_rules: Sequence[Mapping[str, Any]], *, deadline_scale: float = 1.0) -> dict[str, Any]:
    """The JSON the store keeps of the declared case rules (checked before with :func:`case_rules`)."""
    return {"case_rules": [dict(d) for d in declared_rules], "deadline_scale": deadline_scale}


def area_tree(store: Store) -> dict[str, AreaLike]:
    return dict(stored_tree(store))


def build_units(
    declared: Sequence[Mapping[str, Any]], tree: Mapping[str, AreaLike], *, require_all_categories: bool = False
) -> DispatchTable:
    """The pipeline's ``[[units]]`` expanded and checked against the area tree (nothing is stored here)."""
    if declared and not tree:
        raise InvalidInput(
            "dispatch table ([[units]])",
            "the store holds no areas (district/street/grid_cell assets): ingest the areas before declaring units",
        )
    units = expand_units(declared, tree)
    return DispatchTable.build(units, tree, require_all_categories=require_all_categories)


def save_table(store: Store, table: DispatchTable | None, *, config: Mapping[str, Any] | None = None) -> int:
    """The units of ``table`` (None: none) and the case configuration, in one transaction."""
    rows = [unit_row(u) for u in table.units.values()] if table is not None else None
    return case_store.save_units(store, rows, config=config)


def unit_row(unit: Unit) -> Any:
    return case_store.UnitRow(
        id=unit.id,
        name=unit.name,
        name_en=unit.name_en or None,
        categories=tuple(unit.categories),
        areas=tuple(unit.areas),
        reports_to=unit.reports_to,
        level=str(unit.level),
    )


def unit_of_row(row: Any) -> Unit:
    return Unit(
        id=row.id,
        name=row.name,
        name_en=getattr(row, "name_en", None) or "",
        categories=tuple(row.categories),
        areas=tuple(row.areas),
        reports_to=row.reports_to,
        level=AreaLevel(row.level),
    )


def load_table(store: Store, tree: Mapping[str, AreaLike]) -> DispatchTable | None:
    """The stored units as a dispatch table (None when there are none). A table the current areas no longer fit
    (areas re-ingested since the units were written) is logged and used as far as it goes."""
    units = [unit_of_row(r) for r in case_store.load_units(store)]
    if not units:
        return None
    try:
        return DispatchTable.build(units, tree)
    except InvalidInput as exc:
        log.error("stored units — %s; dispatching by them as far as they go", exc.why)
        return DispatchTable.build(units, tree, check=False)
