"""What changed in the city between two days (issue 26): the answers ``GET /changes``, ``GET /changes/summary`` and
``cim changes`` share. This module checks the parameters and shapes the answers; the SQL is
:mod:`cim.store.changes`.

Both days are included: ``from 2026-01-01 to 2026-12-31`` compares the model at the end of 2025-12-31 with the model
at the end of 2026-12-31 (now, when ``to`` is today), so every change dated in 2026 counts, and ``from`` = ``to`` is
one day's changes. ``from`` may be the first day of the model's history (all its assets are then ``added``), not
before it; neither day may be in the future.

>>> parse_by(" district , change ")
('district', 'change')
>>> parse_kinds(["pipe", "lift,pipe"])
['pipe', 'lift']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NotRequired

import orjson
import shapely
from typing_extensions import TypedDict

from cim.errors import InvalidInput
from cim.model import Kind
from cim.queries.aggregates import AreaNameOut
from cim.queries.params import end_of_day, parse_date
from cim.store import Store
from cim.store.aggregates import area_names
from cim.store.changes import CHANGE_KINDS, SUMMARY_KEYS, Window, change_rows, change_summary
from cim.store.sqlstore import sql_store
from cim.store.versions import history_span

#: The most changed assets one page holds, and the furthest a page may start.
MAX_LIMIT = 10_000
MAX_OFFSET = 10_000_000
DEFAULT_LIMIT = 100
_KIND_VALUES = tuple(k.value for k in Kind)
_KNOWN_KINDS = ", ".join(_KIND_VALUES)


class ChangeOut(TypedDict):
    id: str
    kind: str
    name: str | None
    network: str | None
    change: str  # added, removed, renewed or changed
    district: str | None  # the district's code
    district_zh: str | None
    district_en: str | None
    lon: float | None  # the centre of its bounding box (at the end, or at the start for a removed one)
    lat: float | None
    fields: list[str]  # the columns that changed, props.<key> for a property, geom for the shape
    before: dict[str, Any]  # their values at the start (the shape not listed)
    after: dict[str, Any]  # and at the end


class ChangeLinkOut(TypedDict):
    href: str
    rel: str
    type: str
    title: str


#: ``from``: the first day included; ``next_offset``: the next page's offset, None on the last page; ``links``:
#: self and next, over HTTP.
ChangesOut = TypedDict(
    "ChangesOut",
    {
        "from": str,
        "to": str,
        "kinds": list[str] | None,
        "numberMatched": int,
        "numberReturned": int,
        "next_offset": int | None,
        "changes": list[ChangeOut],
        "links": NotRequired[list[ChangeLinkOut]],
    },
)


class ChangeGroupOut(TypedDict, total=False):
    key: dict[str, str | None]
    names: dict[str, AreaNameOut]  # the district's Chinese and English names (when grouped by district)
    count: int
    length_m: float | None
    length_km: float | None


class ChangeTotalOut(TypedDict):
    count: int
    length_m: float | None
    length_km: float | None


ChangeSummaryOut = TypedDict(
    "ChangeSummaryOut",
    {
        "from": str,
        "to": str,
        "by": list[str],
        "kinds": list[str] | None,
        "groups": list[ChangeGroupOut],
        "total": ChangeTotalOut,
    },
)


def parse_by(text: str) -> tuple[str, ...]:
    """A comma-separated ``by`` parameter: one to four of :data:`SUMMARY_KEYS`, each once."""
    keys = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [k for k in keys if k not in SUMMARY_KEYS]
    if unknown or not keys:
        shown = f"{unknown[0][:40]!r}" if unknown else "is empty"
        raise InvalidInput(f"by {shown}" if unknown else "by", f"group by one or more of {', '.join(SUMMARY_KEYS)}")
    return keys


def parse_kinds(values: Sequence[str] | None) -> list[str] | None:
    """``kind`` parameters, each a kind or a comma-separated list of kinds; None (every kind) when none is given."""
    if not values:
        return None
    kinds: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in _KIND_VALUES:
                raise InvalidInput(f"kind {part[:40]!r}", f"is not an asset kind; known kinds: {_KNOWN_KINDS}")
            kinds[part] = None
    return list(kinds) or None


def change_window(store: Store, start: date, end: date | None = None) -> Window:
    """The window from the start of ``start`` to the end of ``end`` (default today), or a clear refusal naming
    ``from`` or ``to``: a day in the future, ``from`` after ``to``, ``from`` before the model's history."""
    today = datetime.now(UTC).date()
    end = end or today
    for what, day in (("from", start), ("to", end)):
        if day > today:
            raise InvalidInput(f"{what} {day.isoformat()}", f"is in the future (today is {today.isoformat()})")
    if start > end:
        raise InvalidInput(f"from {start.isoformat()}", f"is after to {end.isoformat()}")
    first, _ = history_span(sql_store(store))
    if first is None:
        raise InvalidInput(f"from {start.isoformat()}", "the model has no history yet (nothing was ingested)")
    if start < first.date():
        raise InvalidInput(f"from {start.isoformat()}", f"is before the model's history, which begins {first:%Y-%m-%d}")
    return Window(end_of_day(start - timedelta(days=1)), end_of_day(end))


def parse_days(start: str, end: str | None) -> tuple[date, date | None]:
    """The ``from`` and ``to`` parameters as dates (YYYY-MM-DD)."""
    return parse_date(start, what="from"), None if end is None else parse_date(end, what="to")


def changes(
    store: Store,
    *,
    start: date,
    end: date | None = None,
    kinds: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> ChangesOut:
    """A page of the assets added, removed, renewed or changed from ``start`` to ``end`` (both days included), in
    id order, each with its changed fields' values before and after, and its district."""
    answer, _ = _changes(store, start=start, end=end, kinds=kinds, limit=limit, offset=offset, geometry=False)
    return answer


def changes_features(
    store: Store,
    *,
    start: date,
    end: date | None = None,
    kinds: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """:func:`changes` as a GeoJSON FeatureCollection: each changed asset's shape at ``end`` (at ``start`` for a
    removed one) with the change as its properties."""
    answer, shapes = _changes(store, start=start, end=end, kinds=kinds, limit=limit, offset=offset, geometry=True)
    features = [
        {
            "type": "Feature",
            "id": item["id"],
            "geometry": shape,
            "properties": {k: v for k, v in item.items() if k not in ("id", "lon", "lat")},
        }
        for item, shape in zip(answer["changes"], shapes, strict=True)
    ]
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": answer["numberMatched"],
        "numberReturned": answer["numberReturned"],
        "from": answer["from"],
        "to": answer["to"],
        "kinds": answer["kinds"],
        "next_offset": answer["next_offset"],
    }


def _changes(
    store: Store,
    *,
    start: date,
    end: date | None,
    kinds: Sequence[str] | None,
    limit: int,
    offset: int,
    geometry: bool,
) -> tuple[ChangesOut, list[dict[str, Any] | None]]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit {limit}", f"must be between 1 and {MAX_LIMIT:,}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"offset {offset}", f"must be between 0 and {MAX_OFFSET:,}")
    kinds = parse_kinds(kinds)
    window = change_window(store, start, end)
    rows, total = change_rows(sql_store(store), window, kinds=kinds, limit=limit, offset=offset, geometry=geometry)
    names = area_names(store, ["district"]) if rows else {}
    shapes: list[dict[str, Any] | None] = []
    if geometry:
        texts = shapely.to_geojson(shapely.from_wkb([row.pop("geom_wkb") for row in rows]))
        shapes = [None if text is None else orjson.loads(text) for text in texts]
    out: list[ChangeOut] = []
    for row in rows:
        zh, en = names.get(row["district"] or "", (None, None))
        out.append(
            {
                "id": row["id"],
                "kind": row["kind"],
                "name": row["name"],
                "network": row["network"],
                "change": row["change"],
                "district": row["district"],
                "district_zh": zh,
                "district_en": en,
                "lon": _coordinate(row["lon"]),
                "lat": _coordinate(row["lat"]),
                "fields": row["fields"],
                "before": row["before"],
                "after": row["after"],
            }
        )
    following = offset + len(out)
    answer: ChangesOut = {
        "from": start.isoformat(),
        "to": (end or datetime.now(UTC).date()).isoformat(),
        "kinds": kinds,
        "numberMatched": total,
        "numberReturned": len(out),
        "next_offset": following if out and following < total else None,
        "changes": out,
    }
    return answer, shapes


def change_summary_json(
    store: Store,
    *,
    start: date,
    end: date | None = None,
    by: Sequence[str] = SUMMARY_KEYS,
    kinds: Sequence[str] | None = None,
) -> ChangeSummaryOut:
    """Counts and kilometres of line changed from ``start`` to ``end`` per group of ``by`` (largest count first),
    with the districts' names, and their total."""
    by = parse_by(",".join(by))
    kinds = parse_kinds(kinds)
    window = change_window(store, start, end)
    rows = change_summary(sql_store(store), window, by=by, kinds=kinds)
    names = area_names(store, ["district"]) if "district" in by and rows else {}
    groups: list[ChangeGroupOut] = []
    for row in rows:
        group: ChangeGroupOut = {"key": {k: row[k] for k in by}}
        if "district" in by:
            zh, en = names.get(row["district"] or "", (None, None))
            group["names"] = {"district": {"zh": zh, "en": en}}
        group["count"] = row["count"]
        group["length_m"] = row["length_m"]
        group["length_km"] = _km(row["length_m"])
        groups.append(group)
    lengths = [row["length_m"] for row in rows if row["length_m"] is not None]
    metres = round(math.fsum(lengths), 1) if lengths else None
    return {
        "from": start.isoformat(),
        "to": (end or datetime.now(UTC).date()).isoformat(),
        "by": list(by),
        "kinds": kinds,
        "groups": groups,
        "total": {"count": sum(row["count"] for row in rows), "length_m": metres, "length_km": _km(metres)},
    }


def _km(metres: float | None) -> float | None:
    return None if metres is None else round(metres / 1000, 3)


def _coordinate(value: Any) -> float | None:
    return None if value is None else round(float(value), 7)


__all__ = [
    "CHANGE_KINDS",
    "ChangeSummaryOut",
    "ChangesOut",
    "change_summary_json",
    "change_window",
    "changes",
    "changes_features",
    "parse_by",
    "parse_days",
    "parse_kinds",
]
