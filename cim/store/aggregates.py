"""Counts, lengths and areas of one kind's assets, grouped by attributes, age band or administrative area: the SQL.

One statement per answer, grouped in the store. Lengths are metres on the spheroid (:meth:`Dialect.length_m`) and
count lines only; areas are square metres on the spheroid and count polygons only (PostGIS: ``geography``;
DuckDB: ``ST_Area_Spheroid``); a group with no line (no polygon) has no length (area): ``None``, never 0. Area
levels (``district``, ``street``, ``grid_cell``) come from :func:`cim.store.areas.asset_areas`, so a group holds
exactly the assets ``/assets/{id}`` places in that area.

Age bands count whole years from ``install_date`` to ``as_of``: an asset installed exactly 15 years before is in
``15-20``; one installed after ``as_of`` is in ``0-5``; one without a date in ``unknown``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from cim.errors import InvalidInput
from cim.model import Kind, fields_of
from cim.store.areas import AREA_LEVELS, area_code, asset_areas, props_literal
from cim.store.base import AssetQuery, BBox, Store
from cim.store.pages import page_where
from cim.store.sql import Where
from cim.store.sqlstore import sql_store

#: Attribute keys (typed columns), then the derived ones.
COLUMN_KEYS: tuple[str, ...] = ("kind", "status", "network", "material")
AREA_KEYS: tuple[str, ...] = ("district", "street", "grid_cell")
GROUP_KEYS: tuple[str, ...] = (*COLUMN_KEYS, "age_band", *AREA_KEYS)
MAX_GROUP_KEYS = 3
#: (label, lowest age in years); each band runs to the next one's lowest age.
AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("0-5", 0),
    ("5-10", 5),
    ("10-15", 10),
    ("15-20", 15),
    ("20-30", 20),
    ("30+", 30),
)
UNKNOWN_AGE = "unknown"
_BAND_ORDER = {label: i for i, (label, _) in enumerate(AGE_BANDS)} | {UNKNOWN_AGE: len(AGE_BANDS)}
_LINE, _POLYGON = 1, 2  # ST_Dimension
_DIGITS = 1  # lengths and areas to a decimetre (square decimetre): equal answers whatever order the store sums in


@dataclass(frozen=True, slots=True)
class Group:
    """One group: its key values (None where the assets have none) and its measures."""

    key: dict[str, str | None]
    count: int
    length_m: float | None
    area_m2: float | None


def check_group_by(kind: Kind, group_by: Sequence[str]) -> tuple[str, ...]:
    """``group_by`` checked against ``kind``: known keys, no repeats, at most :data:`MAX_GROUP_KEYS`, each applying
    to the kind (``network`` to networked kinds, area levels to assets that are no area)."""
    keys = tuple(group_by)
    allowed = ", ".join(GROUP_KEYS)
    if not keys:
        raise InvalidInput("group_by", f"is empty; use one to {MAX_GROUP_KEYS} of {allowed}")
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise InvalidInput(
            f"group_by {', '.join(unknown)[:100]!r}", f"unknown; use one to {MAX_GROUP_KEYS} of {allowed}"
        )
    if len(keys) > MAX_GROUP_KEYS or len(set(keys)) != len(keys):
        raise InvalidInput(
            "group_by", f"names {len(keys)} keys; use one to {MAX_GROUP_KEYS} different keys of {allowed}"
        )
    for key in keys:
        if key in COLUMN_KEYS and key != "kind" and key not in fields_of(kind):
            raise InvalidInput(f"group_by {key!r}", f"does not apply to {kind}; it has {', '.join(fields_of(kind))}")
        if key in AREA_KEYS and kind in AREA_LEVELS:
            raise InvalidInput(f"group_by {key!r}", f"does not apply to {kind}: areas are not placed in areas")
    return keys


def aggregate(
    store: Store,
    *,
    kind: Kind,
    group_by: Sequence[str],
    as_of: date,
    bbox: BBox | None = None,
    installed: tuple[date | None, date | None] | None = None,
    condition: Where | None = None,
) -> list[Group]:
    """The groups of the assets of ``kind`` (within ``bbox``, installed in the inclusive ``installed`` interval,
    meeting ``condition``: SQL over the assets' columns), sorted by their keys (age bands in age order, None last).
    """
    keys = check_group_by(kind, group_by)
    db = sql_store(store)
    s, p = db.dialect, db.dialect.param
    where = page_where(store, query=AssetQuery(kinds=(kind,), bbox=bbox), installed=installed, condition=condition)
    exprs: list[str] = []
    for key in keys:
        exprs.append(f"ar.{key}" if key in AREA_KEYS else f"sel.{key}")
    join = f" LEFT JOIN {asset_areas(store)} ar ON ar.id = sel.id" if set(keys) & set(AREA_KEYS) else ""
    band = _age_band(p, as_of) if "age_band" in keys else Where("NULL", [])
    dim = "ST_Dimension(sel.geom)"
    # the filters name bare columns (CQL2), so they apply in a subquery of the assets alone
    sql = (
        f"WITH sel AS (SELECT id, kind, status, network, material, {band.sql} AS age_band, geom "
        f"FROM {db.assets_table} AS assets WHERE {where.sql}) "
        f"SELECT {', '.join(f'{e} AS k{i}' for i, e in enumerate(exprs))}, count(*) AS n, "
        f"sum(CASE WHEN {dim} = {_LINE} THEN {s.length_m('sel.geom')} END) AS length_m, "
        f"sum(CASE WHEN {dim} = {_POLYGON} THEN {s.area_m2('sel.geom')} END) AS area_m2 "
        f"FROM sel{join} GROUP BY {', '.join(exprs)}"
    )
    rows = db.select(sql, [*band.params, *where.params]).to_pylist()
    groups = [
        Group(
            key={key: _text(row[f"k{i}"]) for i, key in enumerate(keys)},
            count=int(row["n"]),
            length_m=_measure(row["length_m"]),
            area_m2=_measure(row["area_m2"]),
        )
        for row in rows
    ]
    return sorted(groups, key=lambda g: tuple(_sort_key(k, g.key[k]) for k in keys))


def area_names(store: Store, levels: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """The (Chinese, English) names of the areas of ``levels`` (``district`` …) by code: the area's ``name`` and
    its ``props.name_en``. Only those levels are read (a city has thousands of grid cells, a few districts)."""
    kinds = [level for level in levels if level in AREA_KEYS]
    if not kinds:
        return {}
    db = sql_store(store)
    s = db.dialect
    rows = db.select(
        f"SELECT {area_code(s)} AS code, name, {props_literal(s, 'name_en')} AS name_en "
        f"FROM {db.assets_table} AS assets WHERE kind IN ({', '.join([s.param] * len(kinds))})",
        kinds,
    ).to_pylist()
    return {row["code"]: (row["name"], row["name_en"]) for row in rows}


def total(groups: Sequence[Group]) -> Group:
    """All groups together (no key): sums of the counts and of the measures (None when no group has one)."""
    lengths = [g.length_m for g in groups if g.length_m is not None]
    areas = [g.area_m2 for g in groups if g.area_m2 is not None]
    return Group(
        key={},
        count=sum(g.count for g in groups),
        length_m=round(math.fsum(lengths), _DIGITS) if lengths else None,
        area_m2=round(math.fsum(areas), _DIGITS) if areas else None,
    )


def _age_band(p: str, as_of: date) -> Where:
    """A CASE naming the age band of ``install_date`` as of ``as_of``, oldest band tested first."""
    whens, params = [f"WHEN install_date IS NULL THEN '{UNKNOWN_AGE}'"], []
    for label, years in reversed(AGE_BANDS[1:]):
        whens.append(f"WHEN install_date <= {p} THEN '{label}'")
        params.append(_years_before(as_of, years))
    return Where(f"CASE {' '.join(whens)} ELSE '{AGE_BANDS[0][0]}' END", params)


def _years_before(day: date, years: int) -> date:
    """The same day ``years`` whole years before (29 February falls back to the 28th; never before year 1), as
    :func:`cim.queries.domain.years_before` counts."""
    if day.year - years < date.min.year:
        return date.min
    if day.month == 2 and day.day == 29:
        day = day.replace(day=28)
    return day.replace(year=day.year - years)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _measure(value: Any) -> float | None:
    return None if value is None else round(float(value), _DIGITS)


def _sort_key(key: str, value: str | None) -> tuple[int, Any]:
    if value is None:
        return (1, "")
    if key == "age_band":
        return (0, _BAND_ORDER.get(value, len(_BAND_ORDER)))
    return (0, value.encode())  # byte order, as the stores list ids
