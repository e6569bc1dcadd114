"""What changed in the model between two times: the assets added, removed, renewed and otherwise changed (issue 26).

Between ``start`` and ``end`` means the model as of ``start`` against the model as of ``end`` (a change at exactly
``end`` counts, one at exactly ``start`` does not): an asset changed twice in the window is one change, from its
first state to its last; one added and removed inside the window is no change at all. Only the assets whose versions
began or ended inside the window are compared (the ``touched`` set), so a year's changes read a year's versions, not
the model.

An asset is

- ``added`` when it is in the model at ``end`` and was not at ``start``, ``removed`` the other way round;
- ``renewed`` when it is in both and its ``install_date`` moved later (a main replaced in place, a lift replaced);
- ``changed`` when it is in both and anything else differs (the fields that did are listed).

Summaries count them and sum their metres of line (the state at ``end``, or at ``start`` for a removal) per kind,
network, district and change. An asset's district is its district in the model now
(:func:`cim.store.areas.asset_areas`); an asset no longer in the model is placed by the point of its bounding box's
centre in the districts of the model now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cim.errors import InvalidInput
from cim.model.schema import COLUMN_NAMES
from cim.store.areas import area_code, asset_areas
from cim.store.sqlstore import SqlStore
from cim.store.versions import time_literal

CHANGE_KINDS = ("added", "removed", "renewed", "changed")
SUMMARY_KEYS = ("kind", "network", "district", "change")
#: Columns compared for "which fields changed" (the bounding box follows the geometry; the id is the key).
_COMPARED = tuple(c for c in COLUMN_NAMES if c != "id")


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidInput(
                f"from {self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}", "the window must end after it starts"
            )


def _pairs_sql(db: SqlStore, window: Window, kinds: Sequence[str] | None) -> tuple[str, list[Any]]:
    """``pairs``: per asset touched in the window, its version at start (columns ``b_*``) and at end (``a_*``),
    with the change's name; unchanged assets left out."""
    s, e = time_literal(window.start), time_literal(window.end)
    p = db.dialect.param
    kind_filter, params = "", []
    if kinds:
        kind_filter = f" AND kind IN ({', '.join([p] * len(kinds))})"
        params = [str(k) for k in kinds]

    def at(t: str) -> str:
        cols = ", ".join(f"v.{c}" for c in (*COLUMN_NAMES, "min_x", "min_y", "max_x", "max_y", "row_hash"))
        return (
            f"SELECT {cols} FROM asset_versions v JOIN touched USING (id) "
            f"WHERE v.valid_from <= {t} AND (v.valid_to IS NULL OR v.valid_to > {t})"
        )

    differs = " OR ".join(f"b.{c} IS DISTINCT FROM a.{c}" for c in _COMPARED)
    change = (
        "CASE WHEN b.id IS NULL THEN 'added' WHEN a.id IS NULL THEN 'removed' "
        "WHEN a.install_date > b.install_date THEN 'renewed' ELSE 'changed' END"
    )
    sql = (
        f"touched AS (SELECT DISTINCT id FROM asset_versions WHERE ((valid_from > {s} AND valid_from <= {e}) "
        f"OR (valid_to > {s} AND valid_to <= {e})){kind_filter}), "
        f"before AS ({at(s)}), after AS ({at(e)}), "
        f"pairs AS (SELECT COALESCE(a.id, b.id) AS id, COALESCE(a.kind, b.kind) AS kind, "
        f"COALESCE(a.network, b.network) AS network, COALESCE(a.name, b.name) AS name, {change} AS change, "
        "CASE WHEN a.id IS NULL THEN b.geom ELSE a.geom END AS geom, "
        "(COALESCE(a.min_x, b.min_x) + COALESCE(a.max_x, b.max_x)) / 2 AS cx, "
        "(COALESCE(a.min_y, b.min_y) + COALESCE(a.max_y, b.max_y)) / 2 AS cy, "
        + ", ".join(f"b.{c} AS b_{c}, a.{c} AS a_{c}" for c in _COMPARED if c != "geom")
        + " FROM before b FULL JOIN after a ON a.id = b.id "
        f"WHERE b.id IS NULL OR a.id IS NULL OR (a.row_hash <> b.row_hash AND ({differs})))"
    )
    return sql, params


def _district_sql(db: SqlStore, *, wanted: bool = True) -> str:
    """``placed``: ``pairs`` with each asset's district code (see the module's docstring; NULL when not
    ``wanted``)."""
    if not wanted:
        return "placed AS (SELECT x.*, CAST(NULL AS TEXT) AS district FROM pairs x)"
    areas = asset_areas(db)
    s = db.dialect
    point = s.point("x.cx", "x.cy")
    return (
        f"districts AS (SELECT {area_code(s)} AS code, geom, min_x, min_y, max_x, max_y FROM assets "
        "WHERE kind = 'district'), "
        f"placed AS (SELECT x.*, COALESCE(ar.district, (SELECT min(d.code) FROM districts d WHERE x.cx BETWEEN "
        f"d.min_x AND d.max_x AND x.cy BETWEEN d.min_y AND d.max_y AND ST_Intersects(d.geom, {point}))) AS district "
        f"FROM pairs x LEFT JOIN {areas} ar ON ar.id = x.id)"
    )


def change_summary(
    db: SqlStore, window: Window, *, by: Sequence[str] = SUMMARY_KEYS, kinds: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Counts and metres of line per group of ``by`` (some of :data:`SUMMARY_KEYS`), largest count first."""
    unknown = [k for k in by if k not in SUMMARY_KEYS]
    if unknown or not by:
        raise InvalidInput(f"by {','.join(by)}", f"group by some of {', '.join(SUMMARY_KEYS)}")
    pairs, params = _pairs_sql(db, window, kinds)
    keys = ", ".join(by)
    line = f"CASE WHEN ST_Dimension(geom) = 1 THEN {db.dialect.length_m('geom')} END"
    sql = (
        f"WITH {pairs}, {_district_sql(db, wanted='district' in by)} "
        f"SELECT {keys}, count(*) AS count, sum({line}) AS length_m FROM placed GROUP BY {keys} "
        f"ORDER BY count(*) DESC, {keys}"
    )
    rows = db.select_rows(sql, params)
    for row in rows:
        row["count"] = int(row["count"])
        row["length_m"] = None if row["length_m"] is None else round(float(row["length_m"]), 1)
    return rows


def change_rows(
    db: SqlStore, window: Window, *, kinds: Sequence[str] | None = None, limit: int = 1000, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The changed assets in id order (a page of them) with their changed fields, and how many there are."""
    pairs, params = _pairs_sql(db, window, kinds)
    p = db.dialect.param
    text = "CAST(b_props AS TEXT) AS b_props, CAST(a_props AS TEXT) AS a_props"
    columns = [c for c in _COMPARED if c not in ("geom", "props")]
    picked = ", ".join(f"b_{c}, a_{c}" for c in columns)
    sql = (
        f"WITH {pairs}, {_district_sql(db)} SELECT id, kind, name, network, change, district, cx, cy, "
        f"{picked}, {text}, (SELECT count(*) FROM placed) AS total FROM placed ORDER BY id LIMIT {p} OFFSET {p}"
    )
    rows = db.select_rows(sql, [*params, limit, offset])
    total = int(rows[0]["total"]) if rows else 0
    out = []
    for row in rows:
        fields = (
            [c for c in columns if row[f"b_{c}"] != row[f"a_{c}"]] if row["change"] in ("renewed", "changed") else []
        )
        if row["change"] in ("renewed", "changed"):
            fields += _props_diff(row["b_props"], row["a_props"])
        out.append(
            {
                "id": row["id"],
                "kind": row["kind"],
                "name": row["name"],
                "network": row["network"],
                "change": row["change"],
                "district": row["district"],
                "lon": row["cx"],
                "lat": row["cy"],
                "fields": fields,
                "before": {c: _plain(row[f"b_{c}"]) for c in fields if not c.startswith("props.")},
                "after": {c: _plain(row[f"a_{c}"]) for c in fields if not c.startswith("props.")},
            }
        )
    return out, total


def _props_diff(before: str | None, after: str | None) -> list[str]:
    import orjson

    b = orjson.loads(before) if before else {}
    a = orjson.loads(after) if after else {}
    if not isinstance(b, dict) or not isinstance(a, dict):
        return ["props"] if before != after else []
    return [f"props.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
