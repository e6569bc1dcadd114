"""The store contract: what every backend does, as a small typed protocol.

Queries (``get_asset``, ``find_assets`` …) are apart from changes (``upsert_assets``, ``delete_assets`` …). A change
is one transaction: it is written whole or, on any error, not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import IO, TYPE_CHECKING, Protocol, Self

from shapely.geometry.base import BaseGeometry

from cim.errors import InvalidInput
from cim.model import Alert, Asset, AssetBatch, Kind, Reading
from cim.store.history import SeriesPoint
from cim.store.schema import FILTERABLE_COLUMNS

if TYPE_CHECKING:
    from cim.store.originals import OriginalFile, StoredOriginal

Scalar = str | int | float | bool
BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetQuery:
    """Which assets to find. Every field narrows the result; an empty query finds everything.

    ``where`` compares by equality: a typed column by name (``"network": "gas"``) or a property by
    ``"props.<key>"`` (``"props.Pset_Asset.Owner": "city"``). ``bbox`` is (west, south, east, north) in lon/lat;
    ``polygon`` a shapely geometry in lon/lat; both keep assets whose geometry intersects them. ``z_range`` keeps
    assets whose vertical extent overlaps (low, high).

    >>> AssetQuery(kinds=(Kind.PIPE,), where={"network": "gas"}, bbox=(121.4, 31.1, 121.5, 31.2)).limit is None
    True
    """

    kinds: Sequence[Kind] | None = None
    ids: Sequence[str] | None = None
    parent_id: str | None = None
    where: Mapping[str, Scalar] | None = None
    bbox: BBox | None = None
    polygon: BaseGeometry | None = None
    z_range: tuple[float, float] | None = None
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        for key in self.where or {}:
            if not key.startswith("props.") and key not in FILTERABLE_COLUMNS:
                raise InvalidInput(
                    f"filter field {key!r}",
                    f"not an asset column; use one of {', '.join(sorted(FILTERABLE_COLUMNS))} or props.<key>",
                )
        if self.bbox is not None:
            west, south, east, north = self.bbox
            if not (west <= east and south <= north):
                raise InvalidInput(
                    f"bbox {self.bbox}", "must be (west, south, east, north) with west ≤ east and south ≤ north"
                )
        if self.polygon is not None and (self.polygon.is_empty or not self.polygon.is_valid):
            raise InvalidInput("polygon", "is empty or not valid")
        if (self.limit is not None and self.limit < 0) or self.offset < 0:
            raise InvalidInput("limit/offset", "must not be negative")


class ClosedOnExit:
    """A store that is closed when the ``with`` block holding it ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Store(Protocol):
    """A place the city model lives. Backends: :mod:`cim.store.duckdb` and :mod:`cim.store.postgis`."""

    @property
    def url(self) -> str:
        """Where the store is, without credentials, for messages."""
        ...

    # --- assets: changes ---
    def upsert_assets(
        self, batch: AssetBatch, *, at: datetime | None = None, change: str = "edit", by: str | None = None
    ) -> int:
        """Insert or replace the batch's assets by id, in one transaction. Returns the number written. Each asset
        that changed gets a new version (:mod:`cim.store.versions`) valid from ``at`` (default now), made by
        ``change`` (``edit``, ``merge`` …) of ``by``."""
        ...

    def replace_source(
        self,
        source: str,
        batches: Iterable[AssetBatch],
        *,
        at: datetime | None = None,
        original: OriginalFile | None = None,
    ) -> int:
        """Replace every asset of ``source`` by the batches' assets, in one transaction: a re-ingest drops what
        left the source, and a failure half-way leaves the previous version whole. Returns the number written.
        What changed is versioned at ``at`` (default now; never before the source's latest change, nor later
        than now): what left the source ends there, what is new or changed begins. The source's original file
        (:mod:`cim.store.originals`) is replaced in the same transaction by ``original`` (None: it keeps none)."""
        ...

    def delete_assets(
        self,
        *,
        ids: Sequence[str] | None = None,
        source: str | None = None,
        at: datetime | None = None,
        by: str | None = None,
    ) -> int:
        """Delete the assets with these ids and/or from this source. Returns the number deleted. Their versions end
        at ``at`` (default now); their past stays. A source deleted whole (no ``ids``) loses its original file."""
        ...

    def originals(self, sources: Sequence[str]) -> dict[str, StoredOriginal]:
        """The original files kept for these sources (an ingested IFC file), by source; a source without one is
        left out."""
        ...

    def copy_original(self, source: str, out: IO[bytes]) -> StoredOriginal | None:
        """Write the original file of ``source`` to ``out``, byte for byte and checked against its SHA-256: the
        file of one ingest even when a re-ingest replaces it meanwhile. None when the source keeps none."""
        ...

    def optimize(self) -> None:
        """Reorder the assets for spatial locality and refresh statistics; call after a large load."""
        ...

    # --- assets: queries ---
    def get_asset(self, asset_id: str) -> Asset:
        """The asset with this id, or :class:`~cim.errors.NotFound`."""
        ...

    def children(self, parent_id: str, *, kind: Kind | None = None) -> list[Asset]:
        """The assets whose parent is ``parent_id``, ordered by id."""
        ...

    def find_assets(self, query: AssetQuery) -> list[Asset]:
        """The assets the query selects, ordered by id."""
        ...

    def find_batch(self, query: AssetQuery) -> AssetBatch:
        """The same as :meth:`find_assets`, as columns: no Python object per asset, for large results."""
        ...

    def count_assets(self, query: AssetQuery) -> int: ...

    def count_by_kind(self) -> dict[str, int]: ...

    def extent(self, *, kind: Kind | None = None) -> BBox | None:
        """The lon/lat bounding box of all assets (of one kind), or None when there are none."""
        ...

    # --- sensors ---
    def append_readings(self, readings: Sequence[Reading]) -> int:
        """Append readings to the history, move each sensor's latest state forward and merge them into the minute,
        hour and day rollups, in one transaction."""
        ...

    def readings(
        self,
        sensor_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Reading]:
        """A sensor's raw history, newest first (``newest_first=False``: oldest first), ``start`` inclusive, ``end``
        exclusive; ``limit`` keeps the first of that order."""
        ...

    def reading_series(
        self,
        sensor_ids: Sequence[str] | None,
        *,
        start: datetime,
        end: datetime,
        step: str | None = None,
        area: str | None = None,
        per_sensor: bool = False,
    ) -> list[SeriesPoint]:
        """The readings of the sensors (None: every sensor) that are in ``area`` (a district, street or grid cell
        code; None: anywhere) in buckets of ``step`` ("raw", "1m", "1h", "1d"; None picks by the window, see
        :func:`cim.store.history.pick_step`) overlapping [start, end), oldest first: summed over the selection, or
        one series per sensor when ``per_sensor``. An empty window, an unknown step or too many buckets is
        :class:`~cim.errors.InvalidInput`."""
        ...

    def apply_retention(self, now: datetime) -> dict[str, int]:
        """Drop the history older than the store's retention (:class:`~cim.store.history.Retention`) allows, as of
        ``now``: what went, per table."""
        ...

    def latest_states(self, sensor_ids: Sequence[str] | None = None) -> dict[str, Reading]:
        """The newest reading of each sensor (of the given ones, or all)."""
        ...

    # --- alerts ---
    def save_alerts(self, alerts: Sequence[Alert]) -> int:
        """Insert or replace alerts by id (opening, then closing, one alert), in one transaction."""
        ...

    def alerts(
        self,
        *,
        open: bool | None = None,
        sensor_id: str | None = None,
        asset_id: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Alerts newest first (by ``opened_at``, then id): all (``open=None``), the open ones (``open=True``) or
        the closed ones (``open=False``); of one sensor (the one that opened them) or of one asset."""
        ...

    def ping(self) -> None:
        """Ask the database something trivial: returns when it answers, raises
        :class:`~cim.errors.StoreUnavailable` when it does not (for readiness probes)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
