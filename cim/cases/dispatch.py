"""Responsible units and the dispatch table: category × area → unit, the most specific area winning.

A :class:`Unit` answers for some case categories in some areas (area codes at any level: a grid cell, a street, a
district, or none for the whole city). A case located in grid cell *g* of street *s* of district *d* goes to the unit
declared for its category at *g*, else at *s*, else at *d*, else city-wide: a street's team beats the district's
department, which beats a city-wide authority. ``reports_to`` names the unit a case escalates to past its deadline.

Units are declared in the pipeline file (``[[units]]``, :mod:`cim.pipeline.model`); a template with ``per =
"district"`` (or ``"street"``, ``"grid_cell"``) is one unit per area of that level, ``{code}``, ``{name}``,
``{name_en}``, ``{parent}`` substituted in its id, names and ``reports_to`` (:func:`expand_units`).
:meth:`DispatchTable.build` checks the whole table — unknown categories, areas and units, gaps, ambiguity, loops in
``reports_to`` — and raises one :class:`~cim.errors.InvalidInput` naming every problem, so nothing is stored from an
invalid table.

>>> tree = {"D1": Area("D1", "黄浦区", "Huangpu", "district", None),
...         "S1": Area("S1", "外滩街道", "Bund", "street", "D1")}
>>> units = [Unit(id="gas", name="燃气集团", categories=("gas_leak",)),
...          Unit(id="bund", name="外滩网格", categories=("gas_leak",), areas=("S1",), reports_to="gas")]
>>> table = DispatchTable.build(units, tree)
>>> table.unit_for("gas_leak", ("S1", "D1")).id, table.unit_for("gas_leak", ("D1",)).id
('bund', 'gas')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cim.errors import InvalidInput
from cim.model.cases import CATEGORIES, CATEGORY_BY_ID, AreaLevel

#: Levels from the widest down; a unit's level is the widest of its areas' (none: the city).
LEVEL_ORDER: tuple[AreaLevel, ...] = (AreaLevel.CITY, AreaLevel.DISTRICT, AreaLevel.STREET, AreaLevel.GRID_CELL)
#: How many example areas a gap message names.
GAP_EXAMPLES = 4
TEMPLATE_FIELDS = ("code", "name", "name_en", "parent")


class AreaLike(Protocol):
    """One node of the area tree (``cim.store.areas.AreaNode`` has this shape)."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def name_en(self) -> str | None: ...
    @property
    def level(self) -> Any: ...  # an AreaLevel or its value
    @property
    def parent(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Area:
    """A plain area node, for tests and doctests."""

    code: str
    name: str | None
    name_en: str | None
    level: str
    parent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    """A department or team: the categories it answers for, in which areas (none: the whole city)."""

    id: str
    name: str
    name_en: str = ""
    categories: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    reports_to: str | None = None
    level: AreaLevel = AreaLevel.CITY

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "name_en": self.name_en,
            "categories": list(self.categories),
            "areas": list(self.areas),
            "reports_to": self.reports_to,
            "level": str(self.level),
        }


def level_of(value: Any) -> AreaLevel:
    return AreaLevel(str(getattr(value, "value", value)))


def expand_units(declared: Iterable[Mapping[str, Any]], tree: Mapping[str, AreaLike]) -> list[Unit]:
    """Units from their declarations (the pipeline's ``[[units]]`` as dicts): a template (``per``) becomes one unit
    per area of that level, in code order. Levels are not checked here: :meth:`DispatchTable.build` does."""
    units: list[Unit] = []
    for index, entry in enumerate(declared):
        per = entry.get("per")
        if not per:
            units.append(_unit(entry, entry.get("areas") or ()))
            continue
        try:
            level = AreaLevel(per)
        except ValueError:
            known = ", ".join(str(x) for x in LEVEL_ORDER[1:])
            raise InvalidInput(
                f"units[{index}] ({entry.get('id')!r}) per", f"{per!r} is not a level; use {known}"
            ) from None
        if entry.get("areas"):
            raise InvalidInput(f"unit template {entry.get('id')!r}", "per and areas exclude each other")
        nodes = sorted((n for n in tree.values() if level_of(n.level) is level), key=lambda n: n.code)
        if not nodes:
            raise InvalidInput(f"unit template {entry.get('id')!r}", f"the store holds no area of level {level}")
        for node in nodes:
            parent = tree.get(node.parent) if node.parent else None
            values = {
                "code": node.code,
                "name": node.name or node.code,
                "name_en": node.name_en or node.name or node.code,
                "parent": node.parent or "",
                "parent_name": (parent.name or parent.code) if parent else "",
            }
            filled = {k: _fill(v, values) if isinstance(v, str) else v for k, v in entry.items()}
            units.append(_unit(filled, (node.code,)))
    return units


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _unit(entry: Mapping[str, Any], areas: Iterable[str]) -> Unit:
    return Unit(
        id=str(entry["id"]),
        name=str(entry.get("name") or entry["id"]),
        name_en=str(entry.get("name_en") or ""),
        categories=tuple(str(c) for c in entry.get("categories") or ()),
        areas=tuple(str(a) for a in areas),
        reports_to=str(entry["reports_to"]) if entry.get("reports_to") else None,
    )


@dataclass(frozen=True, slots=True)
class DispatchTable:
    """Category × area → unit. Build it with :meth:`build` (which checks it); look up with :meth:`unit_for`."""

    units: Mapping[str, Unit]
    #: (category, area code or "" for the city) → unit id
    entries: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        units: Sequence[Unit],
        tree: Mapping[str, AreaLike],
        *,
        require_all_categories: bool = False,
        check: bool = True,
    ) -> DispatchTable:
        """The checked table, or :class:`~cim.errors.InvalidInput` naming every problem found. ``check=False``
        builds what it can (a stored table the areas no longer fit), the first unit winning an ambiguity."""
        problems: list[str] = []
        by_id: dict[str, Unit] = {}
        for unit in units:
            if unit.id in by_id:
                problems.append(f"unit {unit.id!r} is declared twice")
                continue
            bad = [c for c in unit.categories if c not in CATEGORY_BY_ID]
            if bad:
                known = ", ".join(c.id for c in CATEGORIES)
                problems.append(f"unit {unit.id!r}: unknown categories {', '.join(bad)} (known: {known})")
            if not unit.categories:
                problems.append(f"unit {unit.id!r}: names no category")
            unknown_areas = [a for a in unit.areas if a not in tree]
            if unknown_areas:
                problems.append(f"unit {unit.id!r}: unknown area codes {', '.join(unknown_areas[:GAP_EXAMPLES])}")
            levels = [level_of(tree[a].level) for a in unit.areas if a in tree]
            city_wide = not unit.areas or AreaLevel.CITY in levels
            level = AreaLevel.CITY if city_wide else min(levels, key=LEVEL_ORDER.index, default=AreaLevel.CITY)
            by_id[unit.id] = replace(unit, level=level)
        for unit in by_id.values():
            if unit.reports_to is not None and unit.reports_to not in by_id:
                problems.append(f"unit {unit.id!r}: reports_to {unit.reports_to!r}, which is not a unit")
        problems += _loops(by_id)
        entries: dict[tuple[str, str], str] = {}
        for unit in by_id.values():
            for cat in unit.categories:
                for area in _keys(unit, tree):
                    other = entries.setdefault((cat, area), unit.id)
                    if other != unit.id:
                        where = f"area {area}" if area else "the whole city"
                        problems.append(f"units {other!r} and {unit.id!r} both answer for {cat} in {where}")
        table = cls(units=by_id, entries=entries)
        if not problems and check:
            wanted = [c.id for c in CATEGORIES] if require_all_categories else sorted({c for c, _ in entries})
            problems += table._gaps(wanted, tree)
        if problems and check:
            raise InvalidInput("dispatch table ([[units]])", "; ".join(problems))
        return table

    def unit_for(self, category: str, areas: Sequence[str | None]) -> Unit | None:
        """The unit for ``category`` at the most specific of ``areas`` (most specific first), else the city-wide
        one; None when no unit answers (the case stays with the command centre)."""
        for area in (*areas, ""):
            if area is None:
                continue
            unit_id = self.entries.get((category, area))
            if unit_id is not None:
                return self.units[unit_id]
        return None

    def categories(self) -> set[str]:
        return {c for c, _ in self.entries}

    def _gaps(self, wanted: Sequence[str], tree: Mapping[str, AreaLike]) -> list[str]:
        leaves = _leaves(tree)
        problems = []
        for cat in wanted:
            missing = [leaf for leaf in leaves if self.unit_for(cat, _chain(leaf, tree)) is None]
            if not missing:
                continue
            examples = ", ".join(
                f"{code} ({tree[code].name_en or tree[code].name or '?'})" for code in missing[:GAP_EXAMPLES]
            )
            problems.append(f"category {cat} has no unit for {len(missing)} area(s), e.g. {examples}")
        return problems


def area_chain(code: str | None, tree: Mapping[str, AreaLike]) -> list[str]:
    """``code`` and its ancestors, most specific first (empty for None or an unknown code)."""
    return _chain(code, tree) if code else []


def _chain(code: str | None, tree: Mapping[str, AreaLike]) -> list[str]:
    chain: list[str] = []
    while code is not None and code in tree and code not in chain:
        chain.append(code)
        code = tree[code].parent
    return chain


def _keys(unit: Unit, tree: Mapping[str, AreaLike]) -> list[str]:
    """The table keys a unit takes: its area codes, or "" (the city) when it has none or names the city."""
    if not unit.areas:
        return [""]
    return ["" if level_of(tree[a].level) is AreaLevel.CITY else a for a in unit.areas if a in tree]


def _leaves(tree: Mapping[str, AreaLike]) -> list[str]:
    """The areas no other area lies in (grid cells, or streets/districts with none), in code order."""
    parents = {n.parent for n in tree.values() if n.parent}
    return sorted(code for code in tree if code not in parents)


def _loops(units: Mapping[str, Unit]) -> list[str]:
    problems: list[str] = []
    seen_cycles: set[frozenset[str]] = set()
    for start in units:
        path: list[str] = []
        current: str | None = start
        while current is not None and current in units and current not in path:
            path.append(current)
            current = units[current].reports_to
        if current is not None and current in path:
            cycle = path[path.index(current) :]
            if frozenset(cycle) not in seen_cycles:
                seen_cycles.add(frozenset(cycle))
                problems.append(f"reports_to loops: {' → '.join([*cycle, current])}")
    return problems
