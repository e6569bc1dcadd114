"""Schema version 3: cases and the units that handle them (issue 21).

- ``units``: the responsible units (departments, companies, grid teams), their case categories and areas, whom they
  report to, their level, and the sha256 (hex) of their API token.
- ``cases``: one row per case, its columns the fields of :class:`cim.model.cases.Case`, the milestone times
  included, so a list or an assessment reads one row per case and never the log. ``geom`` is the case's point.
- ``case_events``: the append-only log, one row per step, chained by ``prev_hash``/``hash``. ``acted_at`` is the
  step's ``at`` (a keyword of DuckDB); ``at_offset_s`` keeps the UTC offset its time was written with (a time zone
  column stores the instant only), so the time reads back spelled as it was hashed.
- ``case_photos``: photos by the sha256 of their bytes (written once, never changed).
- ``case_alerts``: which case each alert opened or joined; its key keeps an alert out of two cases, and it finds
  the alerts no case holds after a crash.

Append-only: in PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE of ``case_events`` and ``case_photos``.
DuckDB has no triggers; there a rewritten step shows in the hash chain (:func:`cim.model.cases.verify_chain`).

Indexes: PostgreSQL gets a B-tree for each list filter (with ``reported_at`` second, the order lists are read in),
one on ``closed_at``, a partial one over the open cases (overdue checks, joining alerts), and a GiST index on
``geom``. DuckDB keeps its keys only: its ART indexes serve point lookups of constants, not the range and
multi-column filters of a case list, which it answers by scans its zone maps prune (the bench loads cases in report
order); and every index costs each update of its columns (a case's state changes at every step).
DuckDB's ``optimize`` rebuilds only the asset table: these tables are left as they are.
"""

NAME = "cases and units"

_CASE_COLUMNS = """
  id {text} PRIMARY KEY, category {text} NOT NULL, source {text} NOT NULL, severity {text} NOT NULL,
  state {text} NOT NULL, resolution {text}, title {text} NOT NULL DEFAULT '', description {text} NOT NULL DEFAULT '',
  reporter {text}, lon DOUBLE PRECISION, lat DOUBLE PRECISION, geom {geom}, grid_cell {text}, street {text},
  district {text}, asset_ids {text}[] NOT NULL, alert_ids {text}[] NOT NULL, unit_id {text}, level {text} NOT NULL,
  reported_at TIMESTAMPTZ NOT NULL, deadline TIMESTAMPTZ NOT NULL, filed_at TIMESTAMPTZ, dispatched_at TIMESTAMPTZ,
  handled_at TIMESTAMPTZ, closed_at TIMESTAMPTZ, dispatched_by_machine BOOLEAN NOT NULL, reopened INTEGER NOT NULL,
  version INTEGER NOT NULL, updated_at TIMESTAMPTZ, last_hash {text} NOT NULL
"""
_EVENT_COLUMNS = """
  case_id {text} NOT NULL, seq INTEGER NOT NULL, action {text} NOT NULL, from_state {text}, to_state {text} NOT NULL,
  actor {text} NOT NULL, unit_id {text}, acted_at TIMESTAMPTZ NOT NULL, at_offset_s INTEGER NOT NULL,
  note {text} NOT NULL DEFAULT '', photos {text}[] NOT NULL, data JSON, prev_hash {text} NOT NULL,
  hash {text} NOT NULL, PRIMARY KEY (case_id, seq)
"""
_UNIT_COLUMNS = """
  id {text} PRIMARY KEY, name {text} NOT NULL, name_en {text}, categories {text}[] NOT NULL,
  areas {text}[] NOT NULL, reports_to {text}, level {text} NOT NULL, token_hash {text}, props JSON
"""


def _tables(text: str, geom: str, blob: str) -> tuple[str, ...]:
    return (
        f"CREATE TABLE units ({_UNIT_COLUMNS.format(text=text)})",
        f"CREATE TABLE cases ({_CASE_COLUMNS.format(text=text, geom=geom)})",
        f"CREATE TABLE case_events ({_EVENT_COLUMNS.format(text=text)})",
        f"CREATE TABLE case_photos (id {text} PRIMARY KEY, content_type {text} NOT NULL, bytes {blob} NOT NULL, "
        "size BIGINT NOT NULL, added_at TIMESTAMPTZ NOT NULL)",
        f"CREATE TABLE case_alerts (alert_id {text} PRIMARY KEY, case_id {text} NOT NULL, "
        "added_at TIMESTAMPTZ NOT NULL)",
    )


DUCKDB = _tables("VARCHAR", "GEOMETRY", "BLOB")

_APPEND_ONLY = """CREATE FUNCTION cim_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  RAISE EXCEPTION USING
    MESSAGE = 'table ' || TG_TABLE_NAME || ' is append-only: its rows are never changed or deleted ('
      || TG_OP || ' refused)',
    ERRCODE = 'insufficient_privilege';
END
$body$"""

POSTGRES = (
    *_tables("TEXT", "geometry(Point, 4326)", "BYTEA"),
    "CREATE INDEX cases_state ON cases (state, reported_at)",
    "CREATE INDEX cases_category ON cases (category, reported_at)",
    "CREATE INDEX cases_district ON cases (district, reported_at)",
    "CREATE INDEX cases_street ON cases (street, reported_at)",
    "CREATE INDEX cases_grid_cell ON cases (grid_cell, reported_at)",
    "CREATE INDEX cases_unit ON cases (unit_id, reported_at)",
    "CREATE INDEX cases_reported ON cases (reported_at, id)",
    "CREATE INDEX cases_closed ON cases (closed_at)",
    "CREATE INDEX cases_open ON cases (deadline) WHERE state <> 'closed'",
    "CREATE INDEX cases_geom ON cases USING GIST (geom)",
    "CREATE INDEX case_alerts_case ON case_alerts (case_id)",
    "CREATE INDEX units_token ON units (token_hash)",
    _APPEND_ONLY,
    "CREATE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE ON case_events "
    "FOR EACH ROW EXECUTE FUNCTION cim_append_only()",
    "CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON case_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION cim_append_only()",
    "CREATE TRIGGER case_photos_append_only BEFORE UPDATE OR DELETE ON case_photos "
    "FOR EACH ROW EXECUTE FUNCTION cim_append_only()",
    "CREATE TRIGGER case_photos_no_truncate BEFORE TRUNCATE ON case_photos "
    "FOR EACH STATEMENT EXECUTE FUNCTION cim_append_only()",
)
