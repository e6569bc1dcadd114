"""Schema version 6: trigram indexes for the search box (issue 25, item 1), PostgreSQL only.

``GET /search`` (:mod:`cim.queries.search`) matches what a person types anywhere inside an asset's id, its name or an
area's English name: ``lower(…) LIKE '%text%'``. A btree cannot answer a pattern that starts with ``%``; a GIN index
of trigrams (``pg_trgm``'s ``gin_trgm_ops``) can, one per matched expression, which the planner ORs together. Each
index is on exactly the expression the search writes (the area name's ``CASE`` included), or the planner would not
use it. Typed text of fewer than three characters has no trigram: such a search still reads the table.

DuckDB has no trigram index; its search stays a scan of the asset table (fast enough at a city's size, measured in
``bench/viewer_bench.py --search``). This step does nothing there.
"""

NAME = "search trigrams"

#: The area kinds of :data:`cim.store.areas.AREA_LEVELS`, spelled out: a released step never changes.
_AREA_KINDS = "'city', 'district', 'street', 'grid_cell'"

DUCKDB: tuple[str, ...] = ()

POSTGRES = (
    # In public, which every store's search_path ends with, so stores in other schemas find the operator class.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
    "CREATE INDEX IF NOT EXISTS assets_id_trgm ON assets USING GIN (lower(id) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS assets_name_trgm ON assets USING GIN (lower(name) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS assets_name_en_trgm ON assets USING GIN "
    f"(lower(CASE WHEN kind IN ({_AREA_KINDS}) THEN (props ->> 'name_en') END) gin_trgm_ops)",
)
