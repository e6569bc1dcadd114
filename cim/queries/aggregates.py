"""Totals of one collection grouped by attributes, age band or administrative area: the answer the HTTP route
(``/collections/{id}/aggregate``), the command line (``cim query aggregate``) and the vital signs share.

>>> parse_group_by(" district , network ")
('district', 'network')
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from typing_extensions import TypedDict

from cim.errors import InvalidInput
from cim.model import Kind
from cim.store import BBox, Store
from cim.store.aggregates import AREA_KEYS, GROUP_KEYS, MAX_GROUP_KEYS, Group, aggregate, area_names, total
from cim.store.sql import Where


class AreaNameOut(TypedDict):
    zh: str | None
    en: str | None


class GroupOut(TypedDict, total=False):
    key: dict[str, str | None]
    names: dict[str, AreaNameOut]  # the Chinese and English names of the group's areas (area keys only)
    count: int
    length_m: float | None
    area_m2: float | None


class TotalOut(TypedDict):
    count: int
    length_m: float | None
    area_m2: float | None


class AggregateOut(TypedDict):
    collection: str
    group_by: list[str]
    as_of: str
    groups: list[GroupOut]
    total: TotalOut
    computed_at: str


def parse_group_by(text: str) -> tuple[str, ...]:
    """A comma-separated ``group_by`` parameter as its keys (checked against a kind by :func:`aggregate_json`)."""
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    if not keys:
        raise InvalidInput("group_by", f"is empty; use one to {MAX_GROUP_KEYS} of {', '.join(GROUP_KEYS)}")
    return keys


def aggregate_json(
    store: Store,
    *,
    kind: Kind,
    group_by: Sequence[str],
    as_of: date | None = None,
    bbox: BBox | None = None,
    installed: tuple[date | None, date | None] | None = None,
    condition: Where | None = None,
    now: datetime | None = None,
) -> AggregateOut:
    """The groups of the assets of ``kind`` (see :func:`cim.store.aggregates.aggregate`) with the names of their
    areas, their total, and when and as of which day (for age bands) they were computed."""
    as_of = as_of or date.today()
    groups = aggregate(
        store, kind=kind, group_by=group_by, as_of=as_of, bbox=bbox, installed=installed, condition=condition
    )
    levels = [key for key in group_by if key in AREA_KEYS]
    names: dict[str, AreaNameOut] = {code: {"zh": zh, "en": en} for code, (zh, en) in area_names(store, levels).items()}
    everything = total(groups)
    return {
        "collection": str(kind),
        "group_by": list(group_by),
        "as_of": as_of.isoformat(),
        "groups": [_group_out(g, levels, names) for g in groups],
        "total": {"count": everything.count, "length_m": everything.length_m, "area_m2": everything.area_m2},
        "computed_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }


def _group_out(group: Group, levels: Sequence[str], names: dict[str, AreaNameOut]) -> GroupOut:
    out: GroupOut = {"key": group.key}
    if levels:
        unnamed: AreaNameOut = {"zh": None, "en": None}
        out["names"] = {level: names.get(group.key[level] or "", unnamed) for level in levels}
    out["count"] = group.count
    out["length_m"] = group.length_m
    out["area_m2"] = group.area_m2
    return out
