"""Pages of one collection (the assets of one kind) for OGC API – Features, filtered in SQL.

>>> parse_datetime("2000-01-01/..")
(datetime.date(2000, 1, 1), None)
>>> parse_sortby("-install_date,name", kind=Kind.PIPE)
(('install_date', True), ('name', False))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from cim.errors import InvalidInput
from cim.model import Asset, Kind, fields_of
from cim.queries.checks import checked_text
from cim.queries.cql import BASE_COLUMNS
from cim.store import AssetQuery, BBox, Store
from cim.store.pages import feature_page
from cim.store.sql import Where

#: Most ids one request may name.
MAX_IDS = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemsQuery:
    """Which features of one collection to return. ``installed`` keeps assets whose ``install_date`` falls in the
    (start, end) interval, both inclusive, either open (None); ``sortby`` is (column, descending) pairs."""

    kind: Kind
    bbox: BBox | None = None
    ids: Sequence[str] | None = None
    installed: tuple[date | None, date | None] | None = None
    filter: Where | None = None
    sortby: Sequence[tuple[str, bool]] = field(default_factory=tuple)
    limit: int = 10
    offset: int = 0


@dataclass(frozen=True, slots=True)
class FeaturePage:
    """The assets of one page, and whether another page follows."""

    assets: list[Asset]
    more: bool


def find_features(store: Store, query: ItemsQuery) -> FeaturePage:
    """The page ``query`` selects, in SQL: one statement, ``limit + 1`` rows to know whether more follow."""
    if query.ids is not None and len(query.ids) > MAX_IDS:
        raise InvalidInput("ids", f"names {len(query.ids):,} assets; at most {MAX_IDS:,} per request")
    for asset_id in query.ids or ():
        checked_text(asset_id, what="ids: asset id")
    batch, more = feature_page(
        store,
        query=AssetQuery(kinds=(query.kind,), bbox=query.bbox, ids=query.ids),
        installed=query.installed,
        condition=query.filter,
        sortby=query.sortby,
        limit=query.limit,
        offset=query.offset,
    )
    return FeaturePage(assets=[] if batch is None else batch.to_assets(), more=more)


def parse_datetime(text: str) -> tuple[date | None, date | None]:
    """An OGC ``datetime`` parameter (an instant, or ``start/end`` with ``..`` for open) as an inclusive interval."""
    parts = text.split("/")
    if len(parts) > 2:
        raise InvalidInput(f"datetime {text[:80]!r}", "must be an instant or start/end (use .. for an open end)")
    bounds = [_instant(part, text) for part in parts]
    if len(bounds) == 1:
        return bounds[0], bounds[0]
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"datetime {text[:80]!r}", "starts after it ends")
    return start, end


def _instant(part: str, whole: str) -> date | None:
    if part in ("..", ""):
        return None
    try:
        if "T" in part or " " in part:
            return datetime.fromisoformat(part.replace("Z", "+00:00")).date()
        return date.fromisoformat(part)
    except ValueError:
        raise InvalidInput(
            f"datetime {whole[:80]!r}", f"{part[:40]!r} is not an RFC 3339 date or date-time (e.g. 2020-01-31)"
        ) from None


def parse_sortby(text: str, *, kind: Kind) -> tuple[tuple[str, bool], ...]:
    """An OGC ``sortby`` parameter (``+name,-install_date``) as (column, descending) pairs of known columns."""
    allowed = set(BASE_COLUMNS) | set(fields_of(kind))
    result = []
    for raw in text.split(","):
        item = raw.strip()
        descending = item.startswith("-")
        column = item.lstrip("+-").strip()
        if column not in allowed:
            raise InvalidInput(
                f"sortby {column[:60]!r}", f"is not a sortable property of {kind}; use {', '.join(sorted(allowed))}"
            )
        result.append((column, descending))
    return tuple(result)
