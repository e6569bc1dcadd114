"""Schema version 7: every version of every asset, with the time it was valid (issue 26, item 1).

``asset_versions`` holds the asset table's columns (and its bounding box) once per version, with ``valid_from`` and
``valid_to`` (NULL while the version is current), what made it (``change``: ``ingest``, ``edit``, ``merge``,
``remove`` …, and ``changed_by``: the source, user or case) and ``row_hash``, a hash of the asset's columns that
tells a re-ingest which assets really changed (:mod:`cim.store.versions`). The asset table itself stays the current
state, as it was, so current-state queries read what they read before; the model as of a date reads this table.

A store written before this step seeds the table with its assets as they are, valid from the moment it was upgraded
(``change = 'migrate'``): its past before that was never kept. The hash spelled here is the one
:meth:`cim.store.sql.Dialect.version_hash` writes; a release that changes that spelling records each asset once
more at its next ingest, and nothing worse.
"""

NAME = "asset versions"

_COLUMNS = (
    "id, kind, name, parent_id, source, geom, z_min, z_max, install_date, status, material, height_m, network, "
    "diameter_mm, depth_m, storeys, props, min_x, min_y, max_x, max_y"
)
_HASHED = (
    "id, kind, name, parent_id, source, geom, z_min, z_max, install_date, status, material, height_m, network, "
    "diameter_mm, depth_m, storeys, props"
)
_VERSION = "row_hash, valid_from, valid_to, change, changed_by"

DUCKDB = (
    """CREATE TABLE IF NOT EXISTS asset_versions (
  id VARCHAR NOT NULL, kind VARCHAR NOT NULL, name VARCHAR, parent_id VARCHAR, source VARCHAR, geom GEOMETRY,
  z_min DOUBLE, z_max DOUBLE, install_date DATE, status VARCHAR, material VARCHAR, height_m DOUBLE,
  network VARCHAR, diameter_mm DOUBLE, depth_m DOUBLE, storeys INTEGER, props JSON,
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
  row_hash VARCHAR NOT NULL, valid_from TIMESTAMPTZ NOT NULL, valid_to TIMESTAMPTZ,
  change VARCHAR NOT NULL, changed_by VARCHAR
)""",
    f"INSERT INTO asset_versions ({_COLUMNS}, {_VERSION}) SELECT {_COLUMNS}, CAST(hash({_HASHED}) AS VARCHAR), "
    "now(), NULL, 'migrate', NULL FROM assets",
)

POSTGRES = (
    """CREATE TABLE IF NOT EXISTS asset_versions (
  id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, parent_id TEXT, source TEXT, geom geometry(Geometry, 4326),
  z_min DOUBLE PRECISION, z_max DOUBLE PRECISION, install_date DATE, status TEXT, material TEXT,
  height_m DOUBLE PRECISION, network TEXT, diameter_mm DOUBLE PRECISION, depth_m DOUBLE PRECISION, storeys INTEGER,
  props JSONB, min_x DOUBLE PRECISION, min_y DOUBLE PRECISION, max_x DOUBLE PRECISION, max_y DOUBLE PRECISION,
  row_hash TEXT NOT NULL, valid_from TIMESTAMPTZ NOT NULL, valid_to TIMESTAMPTZ,
  change TEXT NOT NULL, changed_by TEXT
)""",
    f"INSERT INTO asset_versions ({_COLUMNS}, {_VERSION}) SELECT {_COLUMNS}, md5(CAST(ROW({_HASHED}) AS TEXT)), "
    "now(), NULL, 'migrate', NULL FROM assets",
    # one current version per asset; the anti-joins of every change read it
    "CREATE UNIQUE INDEX IF NOT EXISTS asset_versions_current ON asset_versions (id) WHERE valid_to IS NULL",
    "CREATE INDEX IF NOT EXISTS asset_versions_id ON asset_versions (id, valid_from)",
    "CREATE INDEX IF NOT EXISTS asset_versions_source ON asset_versions (source)",
    "CREATE INDEX IF NOT EXISTS asset_versions_from ON asset_versions (valid_from)",
    "CREATE INDEX IF NOT EXISTS asset_versions_to ON asset_versions (valid_to)",
    "CREATE INDEX IF NOT EXISTS asset_versions_kind ON asset_versions (kind)",
    "CREATE INDEX IF NOT EXISTS asset_versions_geom ON asset_versions USING GIST (geom)",
)
