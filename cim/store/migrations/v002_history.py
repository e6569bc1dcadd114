"""Schema version 2: a table recording each schema step, when it was applied and by which release.

Needed now, before the steps of cases and grids (issue 21) and history (issue 26) arrive: ``cim store info`` shows
from it when a city's store was upgraded and by what, which a copy-aside file name alone does not tell. Steps a store
ran before this table existed are listed with no date (``applied_at`` NULL).
"""

NAME = "migration history"

SQL = (
    "CREATE TABLE cim_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ, "
    "cim_version TEXT)",
)
