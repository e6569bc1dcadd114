"""Schema version 9: the original file of each source that keeps one — an ingested IFC file's bytes (issue 28, item 2).

``cim export --format ifc`` hands on the very files the BIM buildings came from, byte for byte, so the store keeps
them. ``source_files`` has one row per source (its file name, size, SHA-256, number of chunks and when it was
stored) and ``source_file_chunks`` the bytes, in chunks of :data:`cim.store.originals.CHUNK_BYTES` (8 MB) so no row
nears PostgreSQL's 1 GB field limit and a reader holds one chunk at a time. Chunks are keyed by ``file_id``, new at
each ingest, not by source: a reader that began on one ingest's file never reads a chunk of the next one (it finds
its chunks gone and starts again, :func:`cim.store.originals.read_original`).

IFC text compresses 4-6× with pglz, so PostgreSQL keeps its default (compressed) storage for ``data``. A store
written before this step has no originals: its BIM buildings are reported by the export until ingested again.
"""

NAME = "original source files"

DUCKDB = (
    """CREATE TABLE IF NOT EXISTS source_files (
  source VARCHAR PRIMARY KEY,
  file_id VARCHAR NOT NULL UNIQUE,
  name VARCHAR NOT NULL,
  size BIGINT NOT NULL,
  sha256 VARCHAR NOT NULL,
  chunks INTEGER NOT NULL,
  stored_at TIMESTAMPTZ NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS source_file_chunks (
  file_id VARCHAR NOT NULL,
  seq INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (file_id, seq)
)""",
)

POSTGRES = (
    """CREATE TABLE IF NOT EXISTS source_files (
  source TEXT PRIMARY KEY,
  file_id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  size BIGINT NOT NULL,
  sha256 TEXT NOT NULL,
  chunks INTEGER NOT NULL,
  stored_at TIMESTAMPTZ NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS source_file_chunks (
  file_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (file_id, seq)
)""",
)
