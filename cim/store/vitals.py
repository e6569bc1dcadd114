"""The SQL of the city's vital signs (:mod:`cim.queries.indicators`): counts and lengths over the assets, built
and run in the store (metres, never degrees)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from cim.model import Kind
from cim.store.aggregates import aggregate
from cim.store.base import AssetQuery, BBox, Store
from cim.store.near_bands import PER_BAND, Band, bands_for, run_bands
from cim.store.questions import BELOW_GROUND, near_ids, near_terms
from cim.store.sql import Where
from cim.store.sqlstore import sql_store


def dated_counts(store: Store, *, kind: Kind, installed_before: date) -> tuple[int, int, int]:
    """(all assets of ``kind``, those with an install date, those installed before ``installed_before``)."""
    db = sql_store(store)
    p = db.dialect.param
    row = db.select(
        f"SELECT count(*) AS total, count(install_date) AS dated, "
        f"sum(CASE WHEN install_date < {p} THEN 1 ELSE 0 END) AS old FROM {db.assets_table} AS assets WHERE kind = {p}",
        [installed_before, str(kind)],
    ).to_pylist()[0]
    return int(row["total"] or 0), int(row["dated"] or 0), int(row["old"] or 0)


def buried_lengths(store: Store, *, networks: Sequence[str], installed_before: date) -> dict[str, float]:
    """Metres (on the spheroid) of the below-ground pipes of each of ``networks`` installed before
    ``installed_before``; a network with none is missing. The pipes' lengths by network of
    :func:`cim.store.aggregates.aggregate`, so the wall's panels and this sign sum one way."""
    p = sql_store(store).dialect.param
    below = Where(
        f"{BELOW_GROUND} AND install_date < {p} AND network IN ({', '.join([p] * len(networks))})",
        [installed_before, *networks],
    )
    groups = aggregate(store, kind=Kind.PIPE, group_by=["network"], as_of=installed_before, condition=below)
    return {str(g.key["network"]): g.length_m or 0.0 for g in groups}


def near_counts(
    store: Store,
    *,
    query: AssetQuery,
    near_kind: Kind,
    distance_m: float,
    extent: BBox,
    banded: bool | None = None,
    per_band: int = PER_BAND,
) -> tuple[int, int]:
    """(the assets ``query`` selects, those with an asset of ``near_kind`` within ``distance_m`` metres);
    ``extent`` covers them. Past :data:`~cim.store.near_bands.BANDED_FROM` assets (or with ``banded``) counted by
    bands of them side by side (:mod:`cim.store.near_bands`): the same figures, memory bounded by a band."""
    db = sql_store(store)
    p = db.dialect.param
    where = db.dialect.where(query)
    near, distance = near_terms(db.dialect, distance_m, extent)

    def band_counts(band: Band) -> tuple[int, int]:
        within = band.where(db.dialect, "assets")
        if db.dialect.near_side_first:
            inside = band.where(db.dialect, "a")  # the query's own columns are unqualified: the table read as a
            ids = near_ids(db, Where(f"{where.sql} AND {inside.sql}", [*where.params, *inside.params]),
                           near_kind=near_kind, distance_m=distance_m, extent=extent)  # fmt: skip
            sql = (
                f"SELECT (SELECT count(*) FROM {db.assets_table} AS assets WHERE {where.sql} AND {within.sql}) "
                f"AS total, "
                f"(SELECT count(*) FROM ({ids.sql}) n) AS near"
            )
            row = db.select(sql, [*where.params, *within.params, *ids.params]).to_pylist()[0]
            return int(row["total"] or 0), int(row["near"] or 0)
        sql = (
            f"WITH a AS (SELECT id, geom, min_x, min_y, max_x, max_y FROM {db.assets_table} AS assets "
            f"WHERE {where.sql} AND {within.sql}) "
            f"SELECT count(*) AS total, sum(CASE WHEN EXISTS (SELECT 1 FROM {db.assets_table} b "
            f"WHERE b.kind = {p} AND {near.sql} "
            f"AND {distance} <= {p}) THEN 1 ELSE 0 END) AS near FROM a"
        )
        params = [*where.params, *within.params, str(near_kind), *near.params, distance_m]
        row = db.select(sql, params).to_pylist()[0]
        return int(row["total"] or 0), int(row["near"] or 0)

    counts = run_bands(bands_for(db, where, "assets", banded=banded, per_band=per_band), band_counts)
    return sum(total for total, _ in counts), sum(near for _, near in counts)
