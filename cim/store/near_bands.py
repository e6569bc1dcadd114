"""Within-distance questions over layers of millions of assets, cut into bands and run side by side.

The assets asked about (homes, bus stops) are cut into horizontal bands of about :data:`PER_BAND` assets each, by the
latitude of their bounding-box centre; each band is the one-process statement with one more condition on the asked
assets, so each answers exactly what the whole statement answers for those assets (the same distance expression,
the same pruning margin and UTM zone, taken from the whole extent). An asset's centre lies in one band only, and the
assets near it are looked for over the whole layer, so an asset whose nearest park lies in the next band finds it.
The bands run :data:`WORKERS` at a time, each on a connection of its own (a PostgreSQL statement runs on one core
here: ``max_parallel_workers_per_gather=0``), and each statement stays short: under the store's read timeout at 10M
assets, where the one statement is not.

Bands are balanced with a histogram of the centres (:data:`HISTOGRAM_BUCKETS` buckets, one scan); their edges are
plain numbers compared with the same SQL expression of the centre, so no asset falls between two bands whatever the
rounding. An asset without a bounding box goes to the first band.

Why the store's SQL and not dask-geopandas (``bench/spatial_scale_bench.py``, homes beyond 500 m of a park, 500
parks per 1M homes, 2 cores shared with other work, load average 30-40 during the run; paths side by side):

=========  ========  =====================  ======================  =====================================
homes      store     one statement          bands (this module)     dask: 2 worker processes, a task per
                     counts / beyond list   counts / beyond list    band reading the store, geopandas sjoin
=========  ========  =====================  ======================  =====================================
1M         DuckDB    55.6 s / 70.1 s        42.1 s / 50.6 s         154.5 s (workers 567 MB each)
1M         PostGIS   refused, > 60 s (a)    20.5 s / 33.7 s         60.8 s (workers 537 MB each)
3M         DuckDB    60.8 s / 87.6 s        52.7 s / 48.1 s         91.5 s (workers 665 MB each)
3M         PostGIS   41.1 s / 85.8 s (a)    34.1 s / 96.6 s         84.5 s (workers 536 MB each)
=========  ========  =====================  ======================  =====================================

(a) the statement driven from the homes; driven from the parks (:attr:`~cim.store.sql.Dialect.near_side_first`) the
one statement takes 31.9 s / 45.8 s. Same answers on both store paths (counts, and the beyond list's ids hashed);
the dask path measures in UTM through pyproj, so its count differs from PostGIS's geography by 33 homes at the
500 m edge (169 at 3M). Peak RSS of the asking process after the counts: DuckDB 2,028 MB in one statement, 829 MB
by bands at 3M (bounded by a band); PostGIS 160 MB either way (the server joins). A beyond list holds its answer
(2.3M rows at 3M: 1.2-2.2 GB) whatever the path. 10M was not loaded within the time box here (PostGIS wrote 1M in
300 s under this load): each band is 250k homes whatever the city, so 10M is 40 bands, about 3.3× the 3M time
(DuckDB counts ~175 s, PostGIS ~115 s on 2 cores) at the 3M memory; one statement keeps growing with the city.
Dask pays its cluster start (1.5-15 s) and moving the layer out of the database as WKB into geopandas; the store's
index does the join where the data is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from cim.store.sql import Dialect, Where
from cim.store.sqlstore import SqlStore

#: Assets asked about per band: a band's join holds this many rows at most (memory bounded by it, not the city).
PER_BAND = 250_000
#: From this many assets asked about, a within-distance question goes by bands.
BANDED_FROM = 500_000
#: Bands run at once, each on its own connection.
WORKERS = 2
HISTOGRAM_BUCKETS = 1024

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Band:
    """The assets whose bounding-box centre latitude is at least ``low`` and below ``high`` (None: unbounded);
    ``first`` takes the assets without a bounding box too."""

    low: float | None
    high: float | None
    first: bool = False

    def where(self, s: Dialect, alias: str) -> Where:
        """The band's condition on the asset table read as ``alias``.

        >>> Band(30.0, 31.0).where(Dialect(), "a")
        Where(sql='((a.min_y + a.max_y) / 2 >= ? AND (a.min_y + a.max_y) / 2 < ?)', params=[30.0, 31.0])
        """
        if self.low is None and self.high is None:
            return Where("TRUE", [])
        centre = f"({alias}.min_y + {alias}.max_y) / 2"
        clauses, params = [], []
        if self.low is not None:
            clauses.append(f"{centre} >= {s.param}")
            params.append(self.low)
        if self.high is not None:
            clauses.append(f"{centre} < {s.param}")
            params.append(self.high)
        sql = " AND ".join(clauses) or "TRUE"
        if self.first:
            sql = f"{sql} OR {alias}.min_y IS NULL"
        return Where(f"({sql})", params)


#: The one band of every asset: the one-process statement.
WHOLE = Band(None, None, first=True)


def bands_for(
    db: SqlStore, selected: Where, alias: str, *, banded: bool | None = None, per_band: int = PER_BAND
) -> list[Band]:
    """Bands of about ``per_band`` of the assets ``selected`` picks (a condition on the asset table read as
    ``alias``), covering them all: with ``banded`` None when they are :data:`BANDED_FROM` or more, with True
    always (a single band when they fit in one), with False never."""
    if banded is False:
        return [WHOLE]
    p = db.dialect.param
    centre = f"({alias}.min_y + {alias}.max_y) / 2"
    span = db.select(
        f"SELECT count(*) AS n, min({centre}) AS low, max({centre}) AS high FROM {db.assets_table} AS {alias} "
        f"WHERE {selected.sql}",
        selected.params,
    ).to_pylist()[0]
    total = int(span["n"] or 0)
    if (banded is None and total < BANDED_FROM) or total <= per_band or span["low"] is None:
        return [WHOLE]
    if span["high"] <= span["low"]:
        return [WHOLE]
    low, step = float(span["low"]), (float(span["high"]) - float(span["low"])) / HISTOGRAM_BUCKETS
    bucket = f"floor(({centre} - {p}) / {p})"
    rows = db.select(
        f"SELECT {bucket} AS k, count(*) AS n FROM {db.assets_table} AS {alias} "
        f"WHERE {selected.sql} AND {alias}.min_y IS NOT NULL GROUP BY 1 ORDER BY 1",
        [low, step, *selected.params],
    ).to_pylist()
    edges = _edges([(int(r["k"]), int(r["n"])) for r in rows], per_band=per_band, low=low, step=step)
    bounds = [None, *edges, None]
    return [Band(lo, hi, first=i == 0) for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]


def _edges(counts: list[tuple[int, int]], *, per_band: int, low: float, step: float) -> list[float]:
    """Band edges at bucket boundaries, closing a band once it holds ``per_band`` assets (buckets in order).

    >>> _edges([(0, 3), (1, 3), (2, 3), (5, 1)], per_band=5, low=0.0, step=1.0)
    [2.0]
    """
    total = sum(n for _, n in counts)
    wanted = max(1, math.ceil(total / per_band))
    size = total / wanted
    edges: list[float] = []
    held = 0
    for k, n in counts:
        if held >= size and len(edges) < wanted - 1:
            edges.append(low + k * step)
            held = 0
        held += n
    return edges


def run_bands(bands: list[Band], task: Callable[[Band], T], *, workers: int = WORKERS) -> list[T]:
    """``task`` of each band, ``workers`` at a time, in the bands' order."""
    if len(bands) == 1 or workers <= 1:
        return [task(band) for band in bands]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="near-band") as pool:
        return list(pool.map(task, bands))
