"""Asset versions: what every change to the asset table keeps, and the model as of a date (issue 26).

``asset_versions`` (schema step 7) holds each version of each asset with ``valid_from`` / ``valid_to`` (NULL while
current). Every change to ``assets`` — an ingest, a merge, an edit through the API, a removal — runs
:func:`record` in its own transaction, after the asset table was written, over the assets the change could touch
(its :class:`Scope`):

1. the current versions in scope whose asset is gone, or whose columns hash differently now, end at the change's
   time (``valid_to``);
2. the assets in scope that have no current version (new, or just ended) get one, valid from that time.

An unchanged asset keeps its version, so re-ingesting a layer of a million assets in which a thousand changed adds a
thousand versions. Current-state queries never read this table; the model as of a date (:func:`as_of_table`) is the
versions valid then.

A change may not be dated before the latest change already recorded for the assets it touches (history is written
forward, never rewritten) nor in the future: :func:`check_time`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cim.errors import InvalidInput
from cim.model.schema import COLUMN_NAMES
from cim.store.schema import BBOX_COLUMNS

if TYPE_CHECKING:
    from cim.store.sqlstore import SqlStore

#: What made a version (``asset_versions.change``).
CHANGES = ("ingest", "edit", "merge", "remove", "migrate", "case")
#: The clock skew a change dated "now" by another machine may have.
_SKEW = timedelta(minutes=5)
_COLUMNS = ", ".join((*COLUMN_NAMES, *BBOX_COLUMNS))


@dataclass(frozen=True, slots=True)
class Scope:
    """The assets one change may touch: a condition over ``asset_versions`` (unqualified columns) and one over the
    asset table (alias ``a``), each with its parameters."""

    versions: str
    assets: str
    versions_params: list[Any] = field(default_factory=list)
    assets_params: list[Any] = field(default_factory=list)


def source_scope(db: SqlStore, source: str) -> Scope:
    """A source replaced: its versions, and those of assets it now holds that another source had."""
    p = db.dialect.param
    return Scope(
        versions=f"(source = {p} OR id IN (SELECT id FROM assets WHERE source = {p}))",
        assets=f"a.source = {p}",
        versions_params=[source, source],
        assets_params=[source],
    )


def ids_scope(db: SqlStore, ids: Sequence[str], *, source: str | None = None) -> Scope:
    """These assets (of this source, when given)."""
    s = db.dialect
    extra, extra_params = (f" AND source = {s.param}", [source]) if source is not None else ("", [])
    return Scope(
        versions=s.in_list("id") + extra,
        assets=s.in_list("a.id") + extra.replace("source", "a.source"),
        versions_params=[list(ids), *extra_params],
        assets_params=[list(ids), *extra_params],
    )


def source_only_scope(db: SqlStore, source: str) -> Scope:
    """Every asset of a source (a source removed)."""
    p = db.dialect.param
    return Scope(versions=f"source = {p}", assets=f"a.source = {p}", versions_params=[source], assets_params=[source])


def change_time(at: datetime | None) -> datetime:
    """The time of a change: ``at`` in UTC (a naive time is taken as UTC), or now. A time in the future is
    refused."""
    now = datetime.now(UTC)
    if at is None:
        return now
    when = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if when > now + _SKEW:
        raise InvalidInput(f"change time {when.isoformat()}", f"is in the future (now is {now:%Y-%m-%d %H:%M} UTC)")
    return when


def check_time(db: SqlStore, scope: Scope, at: datetime, *, asked: bool = True) -> datetime:
    """The time to record a change at: ``at``, refused when it is before the latest change already recorded for
    the assets in scope. A time nobody ``asked`` for (now) moves up to that latest change instead: a writer whose
    clock read came a moment before a concurrent writer's commit."""
    rows = db.select_rows(
        f"SELECT max(COALESCE(valid_to, valid_from)) AS latest FROM asset_versions WHERE {scope.versions}",
        scope.versions_params,
    )
    latest = rows[0]["latest"] if rows else None
    if latest is None or latest.astimezone(UTC) <= at:
        return at
    if not asked:
        return latest.astimezone(UTC)
    raise InvalidInput(
        f"change time {at.isoformat()}",
        f"is before the latest recorded change of these assets ({latest.astimezone(UTC).isoformat()}); "
        "history is written forward only",
    )


def record(db: SqlStore, scope: Scope, at: datetime, *, change: str, by: str | None) -> tuple[int, int]:
    """Inside the change's transaction, after ``assets`` was written: end the versions that no longer hold and open
    versions for what has none. Returns (versions ended, versions opened)."""
    s, p = db.dialect, db.dialect.param
    ended = db.execute(
        f"UPDATE asset_versions SET valid_to = {p} WHERE valid_to IS NULL AND {scope.versions} "
        f"AND NOT EXISTS (SELECT 1 FROM assets a WHERE a.id = asset_versions.id "
        f"AND {s.version_hash('a')} = asset_versions.row_hash)",
        [at, *scope.versions_params],
    )
    # a version that began at this very time (two changes in one instant) is replaced, not kept for no time at all
    db.execute(f"DELETE FROM asset_versions WHERE valid_to = valid_from AND valid_to = {p}", [at])
    opened = db.execute(
        f"INSERT INTO asset_versions ({_COLUMNS}, row_hash, valid_from, valid_to, change, changed_by) "
        f"SELECT {', '.join(f'a.{c}' for c in (*COLUMN_NAMES, *BBOX_COLUMNS))}, {s.version_hash('a')}, {p}, NULL, "
        f"{p}, {p} FROM assets a WHERE {scope.assets} AND NOT EXISTS "
        "(SELECT 1 FROM asset_versions v WHERE v.id = a.id AND v.valid_to IS NULL)",
        [at, change, by, *scope.assets_params],
    )
    return ended, opened


def time_literal(when: datetime) -> str:
    """A UTC time as SQL text both stores read (written into a query, so a derived table's SQL may hold it)."""
    return f"CAST('{when.astimezone(UTC).isoformat()}' AS TIMESTAMPTZ)"


def as_of_table(when: datetime) -> str:
    """The asset table as it stood at ``when``: a subquery with the asset table's columns, for ``FROM … AS x``."""
    t = time_literal(when)
    return f"(SELECT {_COLUMNS} FROM asset_versions WHERE valid_from <= {t} AND (valid_to IS NULL OR valid_to > {t}))"


def history_span(db: SqlStore) -> tuple[datetime | None, datetime | None]:
    """(the first, the latest) time a version began or ended: the span the model's history covers."""
    rows = db.select_rows(
        "SELECT min(valid_from) AS first, max(COALESCE(valid_to, valid_from)) AS latest FROM asset_versions"
    )
    first, latest = (rows[0]["first"], rows[0]["latest"]) if rows else (None, None)
    return (
        None if first is None else first.astimezone(UTC),
        None if latest is None else latest.astimezone(UTC),
    )


def check_as_of(db: SqlStore, when: datetime) -> datetime:
    """``when`` in UTC, or a clear refusal: a date in the future, or before the model's history begins."""
    now = datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    day = when.date().isoformat()  # 0379-03-07, where strftime's %Y would write 379
    if when > now + _SKEW:
        raise InvalidInput(f"as_of {day}", f"is in the future (today is {now:%Y-%m-%d})")
    first, _ = history_span(db)
    if first is None:
        raise InvalidInput(f"as_of {day}", "the model has no history yet (nothing was ingested)")
    if when < first:
        raise InvalidInput(f"as_of {day}", f"is before the model's history, which begins {first:%Y-%m-%d}")
    return when


def source_changed_at(db: SqlStore, source: str) -> datetime | None:
    """The latest time a version of ``source``'s assets began or ended, or None when the source has no history
    (never ingested): a pipeline dates a source's first ingest, and skips a past state it has already gone beyond."""
    p = db.dialect.param
    rows = db.select_rows(
        f"SELECT max(COALESCE(valid_to, valid_from)) AS latest FROM asset_versions WHERE source = {p}", [source]
    )
    latest = rows[0]["latest"] if rows else None
    return None if latest is None else latest.astimezone(UTC)
