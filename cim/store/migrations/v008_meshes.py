"""Schema version 8: the meshes of a PostgreSQL store in its database (issue 27, item 1), PostgreSQL only.

A cluster's tile tasks run on machines that never see the machine that ingested, so they read the meshes from the
store (:class:`cim.store.pg_meshes.PgMeshStore`): one row per asset, the layout of the DuckDB mesh file
(:mod:`cim.store.meshes`) plus ``digest``, the mesh's 64-bit hash as that file computes it, kept so a build plans
without reading the blobs. Vertices and triangles are float32 and uint32 arrays that pglz barely shrinks: stored
uncompressed (``STORAGE EXTERNAL``), a write spends no time trying.

A store written before this step finds its meshes in the old local file (``data/meshes/…``): the first
``PgMeshStore`` opened on that machine copies them in. DuckDB keeps its mesh file; this step does
nothing there.
"""

NAME = "meshes in the database"

DUCKDB: tuple[str, ...] = ()

POSTGRES = (
    """CREATE TABLE IF NOT EXISTS meshes (
  asset_id TEXT PRIMARY KEY,
  source TEXT,
  lon DOUBLE PRECISION NOT NULL, lat DOUBLE PRECISION NOT NULL, h DOUBLE PRECISION NOT NULL,
  vertex_count INTEGER NOT NULL,
  triangle_count INTEGER NOT NULL,
  vertices BYTEA NOT NULL,
  triangles BYTEA NOT NULL,
  color REAL[],
  digest BIGINT NOT NULL
)""",
    "ALTER TABLE meshes ALTER COLUMN vertices SET STORAGE EXTERNAL",
    "ALTER TABLE meshes ALTER COLUMN triangles SET STORAGE EXTERNAL",
    "CREATE INDEX IF NOT EXISTS meshes_source ON meshes (source)",
)
