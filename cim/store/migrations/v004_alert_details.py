"""Schema version 4: what an alert is about (issue 22).

- ``asset_id``: the asset the alert is about. Several sensors on one asset give one alert (a gas main with two
  pressure sensors), so an alert belongs to its asset; ``sensor_id`` stays the sensor that opened it.
- ``details``: the quantity, value's unit, threshold and condition, the asset's name and its street and district,
  the sensors that fired, and the Chinese text — what a wall or a list needs to show an alert without looking the
  sensor up again. JSON, so a rule of a new kind needs no step of its own.
"""

NAME = "alert details"

DUCKDB = (
    "ALTER TABLE alerts ADD COLUMN asset_id VARCHAR",
    "ALTER TABLE alerts ADD COLUMN details JSON",
)

POSTGRES = (
    "ALTER TABLE alerts ADD COLUMN asset_id TEXT",
    "ALTER TABLE alerts ADD COLUMN details JSONB",
    "CREATE INDEX alerts_asset ON alerts (asset_id, opened_at)",
)
