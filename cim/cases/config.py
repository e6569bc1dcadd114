"""What the case service is configured with, and where it lives: the units in the store (``units`` table, written by
``cim run`` from the pipeline's ``[[units]]``), the case rules in a small JSON file beside the store's mesh file
(``city.duckdb`` → ``city.cases.json``, written by ``cim run`` from ``[[case_rules]]``), the area tree in the store.

Synchronous: called on the service's store thread, or by the pipeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cim.cases.dispatch import AreaLike, DispatchTable, Unit, expand_units
from cim.cases.rules import CaseRule, case_rules
from cim.errors import InvalidInput
from cim.model.cases import AreaLevel
from cim.store import Store
from cim.store import cases as case_store
from cim.store.areas import area_tree as stored_tree
from cim.store.meshes import mesh_path_for

log = logging.getLogger(__name__)


def case_config_path(store_url: str) -> Path:
    """``city.duckdb`` → ``city.cases.json`` (beside the mesh file, as the pipeline's other state files are)."""
    meshes = mesh_path_for(store_url)
    stem = meshes.name.removesuffix(".duckdb").removesuffix(".meshes")
    return meshes.with_name(stem + ".cases.json")


def write_case_rules(store_url: str, declared: Sequence[Mapping[str, Any]]) -> Path:
    """Keep the declared case rules (already checked with :func:`~cim.cases.rules.case_rules`) for the server."""
    path = case_config_path(store_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"case_rules": [dict(d) for d in declared]}, indent=1), encoding="utf-8")
    temporary.replace(path)
    return path


def read_case_rules(store_url: str) -> list[CaseRule] | None:
    """The case rules kept for this store, or None when there is no file."""
    path = case_config_path(store_url)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"case rules {path}", f"is not JSON: {exc}") from None
    return case_rules(data.get("case_rules") or [])


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


def save_table(store: Store, table: DispatchTable) -> int:
    rows = [unit_row(u) for u in table.units.values()]
    case_store.save_units(store, rows)
    return len(rows)


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
