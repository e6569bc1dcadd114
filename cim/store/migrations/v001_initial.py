"""Schema version 1: the tables every release up to the first with migrations created (commit 2a3f3ad).

Frozen: stores in the field were made by exactly this. ``IF NOT EXISTS`` is kept as those releases spelled it.
"""

NAME = "initial schema"

_ALERTS = (
    "CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, rule TEXT NOT NULL, sensor_id TEXT NOT NULL, "
    "severity TEXT NOT NULL, message TEXT NOT NULL, value DOUBLE PRECISION, "
    "opened_at TIMESTAMPTZ NOT NULL, closed_at TIMESTAMPTZ)"
)

DUCKDB = (
    "CREATE TABLE IF NOT EXISTS cim_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS assets (
  id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, name VARCHAR, parent_id VARCHAR, source VARCHAR, geom GEOMETRY,
  z_min DOUBLE, z_max DOUBLE, install_date DATE, status VARCHAR, material VARCHAR, height_m DOUBLE, network VARCHAR,
  diameter_mm DOUBLE, depth_m DOUBLE, storeys INTEGER, props JSON,
  min_x DOUBLE PRECISION, min_y DOUBLE PRECISION, max_x DOUBLE PRECISION, max_y DOUBLE PRECISION
)""",
    "CREATE INDEX IF NOT EXISTS assets_geom ON assets USING RTREE (geom)",
    "CREATE INDEX IF NOT EXISTS assets_parent ON assets (parent_id)",
    "CREATE TABLE IF NOT EXISTS readings (sensor_id VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, "
    "value DOUBLE, status VARCHAR)",
    "CREATE TABLE IF NOT EXISTS sensor_state (sensor_id VARCHAR PRIMARY KEY, "
    "time TIMESTAMPTZ NOT NULL, value DOUBLE, status VARCHAR)",
    _ALERTS,
)

POSTGRES = (
    "CREATE TABLE IF NOT EXISTS cim_meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE IF NOT EXISTS assets (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT, parent_id TEXT, source TEXT, geom geometry(Geometry, 4326),
  z_min DOUBLE PRECISION, z_max DOUBLE PRECISION, install_date DATE, status TEXT, material TEXT,
  height_m DOUBLE PRECISION, network TEXT, diameter_mm DOUBLE PRECISION, depth_m DOUBLE PRECISION, storeys INTEGER,
  props JSONB, min_x DOUBLE PRECISION, min_y DOUBLE PRECISION, max_x DOUBLE PRECISION, max_y DOUBLE PRECISION
)""",
    "CREATE INDEX IF NOT EXISTS assets_geom ON assets USING GIST (geom)",
    "CREATE INDEX IF NOT EXISTS assets_parent ON assets (parent_id)",
    "CREATE INDEX IF NOT EXISTS assets_kind ON assets (kind)",
    "CREATE TABLE IF NOT EXISTS readings (sensor_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, "
    "value DOUBLE PRECISION, status TEXT)",
    "CREATE INDEX IF NOT EXISTS readings_sensor_time ON readings (sensor_id, time)",
    "CREATE TABLE IF NOT EXISTS sensor_state (sensor_id TEXT PRIMARY KEY, "
    "time TIMESTAMPTZ NOT NULL, value DOUBLE PRECISION, status TEXT)",
    _ALERTS,
    "CREATE INDEX IF NOT EXISTS alerts_open ON alerts (closed_at, opened_at)",
)
