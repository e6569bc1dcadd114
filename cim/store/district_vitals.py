"""The SQL of the vital signs per district (the annual check-up, :mod:`cim.report`): the shares that
:func:`cim.store.vitals.near_counts` counts for the city, counted per district in one statement.

A district is the one :func:`cim.store.areas.asset_areas` places the asset in (the model read, so in a view as of a
date the districts as they stood then); assets in no district are grouped under ``None``. The sums over the groups
are the city's figures (:func:`~cim.store.vitals.near_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from cim.model import Kind
from cim.store.aggregates import aggregate
from cim.store.areas import asset_areas
from cim.store.base import AssetQuery, BBox, Store
from cim.store.near_bands import PER_BAND, Band, bands_for, run_bands
from cim.store.questions import BELOW_GROUND, near_terms
from cim.store.sql import Where
from cim.store.sqlstore import sql_store


def dated_counts_by_district(store: Store, *, kind: Kind, installed_before: date) -> dict[str | None, tuple[int, int]]:
    """Per district code: (the assets of ``kind``, those installed before ``installed_before``) — what
    :func:`cim.store.vitals.dated_counts` counts for the city. Districts with none are missing."""
    p = sql_store(store).dialect.param
    every = aggregate(store, kind=kind, group_by=["district"], as_of=installed_before)
    old = aggregate(
        store,
        kind=kind,
        group_by=["district"],
        as_of=installed_before,
        condition=Where(f"install_date < {p}", [installed_before]),
    )
    olds = {g.key["district"]: g.count for g in old}
    return {g.key["district"]: (g.count, olds.get(g.key["district"], 0)) for g in every}


def buried_lengths_by_district(
    store: Store, *, networks: Sequence[str], installed_before: date
) -> dict[tuple[str | None, str], float]:
    """Metres of the below-ground pipes of each of ``networks`` installed before ``installed_before``, per
    (district code, network) — :func:`cim.store.vitals.buried_lengths` per district."""
    p = sql_store(store).dialect.param
    below = Where(
        f"{BELOW_GROUND} AND install_date < {p} AND network IN ({', '.join([p] * len(networks))})",
        [installed_before, *networks],
    )
    groups = aggregate(store, kind=Kind.PIPE, group_by=["district", "network"], as_of=installed_before, condition=below)
    return {(g.key["district"], str(g.key["network"])): g.length_m or 0.0 for g in groups}


def near_counts_by_district(
    store: Store,
    *,
    query: AssetQuery,
    near_kind: Kind,
    distance_m: float,
    extent: BBox,
    banded: bool | None = None,
    per_band: int = PER_BAND,
) -> dict[str | None, tuple[int, int]]:
    """Per district code: (the assets ``query`` selects, those with an asset of ``near_kind`` within
    ``distance_m`` metres); ``extent`` covers them. Districts with no such asset are missing. By bands of the
    assets past :data:`~cim.store.near_bands.BANDED_FROM` of them, as :func:`cim.store.vitals.near_counts`."""
    db = sql_store(store)
    p = db.dialect.param
    where = db.dialect.where(query)
    near, distance = near_terms(db.dialect, distance_m, extent)
    areas = asset_areas(store)

    def band_counts(band: Band) -> list[dict[str, Any]]:
        within = band.where(db.dialect, "assets")
        sql = (
            f"WITH a AS (SELECT id, geom, min_x, min_y, max_x, max_y FROM {db.assets_table} AS assets "
            f"WHERE {where.sql} AND {within.sql}) "
            f"SELECT ar.district AS district, count(*) AS total, sum(CASE WHEN EXISTS (SELECT 1 FROM "
            f"{db.assets_table} b WHERE b.kind = {p} AND {near.sql} AND {distance} <= {p}) THEN 1 ELSE 0 END) AS near "
            f"FROM a LEFT JOIN {areas} ar ON ar.id = a.id GROUP BY ar.district"
        )
        params = [*where.params, *within.params, str(near_kind), *near.params, distance_m]
        rows: list[dict[str, Any]] = db.select(sql, params).to_pylist()
        return rows

    counts: dict[str | None, tuple[int, int]] = {}
    for rows in run_bands(bands_for(db, where, "assets", banded=banded, per_band=per_band), band_counts):
        for row in rows:
            total, near_ = counts.get(row["district"], (0, 0))
            counts[row["district"]] = (total + int(row["total"] or 0), near_ + int(row["near"] or 0))
    return counts
