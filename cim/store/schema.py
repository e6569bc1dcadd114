"""What the stores add to the asset table of :mod:`cim.model.schema`.

Both stores keep the same table: the columns of :data:`cim.model.schema.ASSET_COLUMNS` and the geometry's
bounding box (``min_x`` … ``max_y``). The bounding-box columns are derived by the store on write; they let a window
query prune by plain comparisons, which DuckDB answers from its zone maps far faster than by fetching rows through
the R-tree when a window holds thousands of assets (see bench/store_bench.py). The tables themselves, and the
schema version, are the numbered steps of :mod:`cim.store.migrations`.
"""

from __future__ import annotations

from cim.model.schema import COLUMN_NAMES

#: Columns the store derives from ``geom``; not part of a batch.
BBOX_COLUMNS: tuple[str, ...] = ("min_x", "min_y", "max_x", "max_y")

#: Typed columns a filter may compare by name (``geom`` and ``props`` have their own filters).
FILTERABLE_COLUMNS: frozenset[str] = frozenset(COLUMN_NAMES) - {"geom", "props"}
