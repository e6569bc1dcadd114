"""Dated ingests in a pipeline run: the demo city's past states, a generated source's first ingest at the start of
that past, and a user's ``valid_from`` (issue 26).

A generated city whose manifest lists ``history`` (:mod:`cim.synth.history`) is ingested in date order: each past
state's layers at that date (UTC midnight), oldest first, then the current files now. A generated source the store
has never held is dated at the first state (the baseline), so the model as of any year of the past has its
buildings, roads and towers. History is only written forward: a past state of a source the store already holds
changes of after that date is skipped (said so in its result), never rewritten.

>>> at_midnight(date(2021, 12, 31)).isoformat()
'2021-12-31T00:00:00+00:00'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from cim.errors import InvalidInput
from cim.pipeline.model import CityJsonSource, GisSource, IfcSource
from cim.store import Store
from cim.store.sqlstore import sql_store
from cim.store.versions import source_changed_at


@dataclass(frozen=True, slots=True)
class PastState:
    """One past state of a generated layer: its file, the mapping of the current layer, and its date."""

    day: date
    source: GisSource

    @property
    def at(self) -> datetime:
        return at_midnight(self.day)

    @property
    def key(self) -> str:
        """Its entry in the pipeline's state file (apart from the current layer's, which has the same source)."""
        return f"history:{self.day.isoformat()}:{Path(self.source.path).resolve()}"


def at_midnight(day: date) -> datetime:
    """A date as the start of that day, UTC: what a dated ingest is recorded at."""
    return datetime.combine(day, time(), tzinfo=UTC)


def past_states(manifest: dict[str, Any], out: Path) -> list[PastState]:
    """The manifest's ``history`` states, oldest first, each layer with the mapping its current file is read by. A
    state naming a layer the manifest does not have, or a date that is not YYYY-MM-DD, is :class:`InvalidInput`."""
    states: list[PastState] = []
    layers = manifest.get("layers", {})
    for entry in sorted(manifest.get("history", []), key=lambda e: str(e.get("date"))):
        try:
            day = date.fromisoformat(str(entry["date"]))
        except (KeyError, ValueError):
            raise InvalidInput(
                f"generated city {out}", f"history date {entry.get('date')!r} is not YYYY-MM-DD"
            ) from None
        for layer, file in entry.get("layers", {}).items():
            if layer not in layers:
                raise InvalidInput(f"generated city {out}", f"history {day} names layer {layer!r}, which it has not")
            mapping = str(Path(layers[layer]["mapping"]).resolve())
            states.append(PastState(day, GisSource(path=str((out / file).resolve()), map=mapping)))
    return states


def generated_source_name(source: GisSource | CityJsonSource | IfcSource) -> str:
    """The source name a generated file's assets get: an IFC tower's, or a GeoParquet layer's (its one layer is
    named after the file)."""
    path = Path(source.path)
    if isinstance(source, IfcSource):
        return f"{path.name}:ifc"  # cim.bim.asset_rows.source_name, without loading ifcopenshell
    if isinstance(source, CityJsonSource) or source.map is None:
        raise InvalidInput(f"source {path}", "is not a generated layer")
    from cim.gis.layer import source_name
    from cim.gis.mapping import load_mapping

    return source_name(path, path.name.split(".")[0], load_mapping(Path(source.map)))


def changed_at(store: Store, source: str) -> datetime | None:
    """The latest change the store recorded of ``source``, None when it never held it."""
    return source_changed_at(sql_store(store), source)


def first_ingest_at(
    store: Store, source: GisSource | CityJsonSource | IfcSource, baseline: date | None
) -> datetime | None:
    """When to date a generated layer's ingest: the baseline when the store never held its source, else now."""
    if baseline is None or changed_at(store, generated_source_name(source)) is not None:
        return None
    return at_midnight(baseline)


def past_done(
    past: PastState, digest: str, entry: dict[str, Any] | None, store: Store, *, force: bool
) -> dict[str, Any] | None:
    """Why a past state is skipped: ingested before with this content (its state file ``entry``), or the store
    already holds later changes of its source (history is not rewritten); None when it is to be ingested."""
    latest = changed_at(store, generated_source_name(past.source))
    if latest is None or latest < past.at:
        return None
    if not force and entry is not None and entry.get("digest") == digest:
        return {"valid_from": past.at.isoformat(), "unchanged": True}
    return {"valid_from": past.at.isoformat(), "not_rewritten": f"the store holds later changes ({latest:%Y-%m-%d})"}


def ingest_time(
    store: Store, source: GisSource | CityJsonSource | IfcSource, past: PastState | None, baseline: date | None
) -> datetime | None:
    """When an ingest is recorded: a past state at its date, a source with ``valid_from`` at that day, a generated
    source the store never held at the ``baseline`` (given for generated sources only); None: now."""
    if past is not None:
        return past.at
    if source.valid_from is not None:
        return at_midnight(source.valid_from)
    return first_ingest_at(store, source, baseline)
