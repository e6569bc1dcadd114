"""Find an asset, an area or a named place by what a person types: its id, its name (Chinese or English) or part of
either. The answer of ``GET /search`` (:mod:`cim.api.search`).

Matching is case-insensitive (``lower`` on both sides, so Chinese matches as typed) and literal: the typed text
travels as a bound ``LIKE`` pattern whose ``%``, ``_`` and ``\\`` are escaped. Matches are ranked: an exact id, an
exact name, a prefix of a name (or id), then a substring; within a rank districts come first, then named places,
streets, other assets and grid cells last, then the shorter name, then the id (byte order, so both stores list in
one order). Areas match on their English name (``props.name_en``) too. Each match carries a point to fly to (the
centre of its bounding box), a height (its top) and, for an area, its bounding box; and the district it lies in.

Named places come from the viewer's ``places.json`` (the guided tour's list), matched the same way in Python and
merged into the store's page: the store is asked for ``offset + limit`` rows, so a page costs one query however the
places fall.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cim.store import Store
from cim.store.areas import AREA_LEVELS, area_code, areas_of_assets, props_literal
from cim.store.sqlstore import sql_store

#: Matches per page by default and at most; the deepest offset a page may start at.
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
MAX_OFFSET = 1000
#: The longest query text read (longer is a 400: nobody types a name of 200 characters).
MAX_QUERY = 200

_AREA_KINDS = ", ".join(f"'{k}'" for k in AREA_LEVELS)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
#: The order of kinds within one rank.
_GROUP_SQL = (
    "CASE WHEN kind IN ('city', 'district') THEN 0 WHEN kind = 'street' THEN 2 "
    "WHEN kind = 'grid_cell' THEN 4 ELSE 3 END"
)
_PLACE_GROUP = 1


class District(BaseModel):
    code: str
    name_zh: str | None = None
    name_en: str | None = None


class SearchMatch(BaseModel):
    id: str = Field(description="the asset's id (place:<name> for a named place)")
    kind: str = Field(description="the asset's kind, or place")
    name: str | None = Field(description="the name as stored")
    name_zh: str | None = Field(None, description="the Chinese name, where the data has one")
    name_en: str | None = Field(None, description="the English name, where the data has one")
    district: District | None = Field(None, description="the district it lies in (a district: itself)")
    lon: float = Field(description="where to fly: the centre of its bounding box")
    lat: float
    height: float | None = Field(None, description="its top in metres, where known (the camera height for a place)")
    bbox: list[float] | None = Field(None, description="west, south, east, north: for an area")
    rank: int = Field(description="0 exact id, 1 exact name, 2 prefix, 3 substring")


class SearchOut(BaseModel):
    q: str
    total: int = Field(description="matches in all (the pages together)")
    limit: int
    offset: int
    matches: list[SearchMatch]


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    lon: float
    lat: float
    height: float | None
    name_zh: str | None = None


def load_places(path: Path) -> tuple[Place, ...]:
    """The named places of a ``places.json`` (none when it is missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple(
            Place(str(p["name"]), float(p["lon"]), float(p["lat"]), p.get("height"), p.get("name_zh"))
            for p in data.get("places", [])
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()


def like_escape(text: str) -> str:
    r"""``text`` as a literal inside a ``LIKE … ESCAPE '\'`` pattern.

    >>> like_escape("50%_a\\b")
    '50\\%\\_a\\\\b'
    """
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(store: Store, q: str, *, limit: int, offset: int, places: Sequence[Place] = ()) -> SearchOut:
    text = q.replace("\x00", "").strip().lower()
    if not text:
        return SearchOut(q=q, total=0, limit=limit, offset=offset, matches=[])
    rows, total = _store_matches(store, text, offset + limit)
    found = [_place_match(p, text) for p in places]
    placed = [m for m in found if m is not None]
    merged = sorted([*rows, *placed], key=lambda m: m[0])
    page = [m for _, m in merged[offset : offset + limit]]
    _add_districts(store, page)
    return SearchOut(q=q, total=total + len(placed), limit=limit, offset=offset, matches=page)


def _key(rank: int, group: int, name: str | None, id_: str) -> tuple[int, int, int, bytes]:
    return rank, group, len(name if name is not None else id_), id_.encode()


def _store_matches(store: Store, text: str, count: int) -> tuple[list[tuple[Any, SearchMatch]], int]:
    db = sql_store(store)
    s, p = db.dialect, db.dialect.param
    name_en = f"CASE WHEN kind IN ({_AREA_KINDS}) THEN {props_literal(s, 'name_en')} END"
    prefix, inside = like_escape(text) + "%", "%" + like_escape(text) + "%"
    like = f"LIKE {p} ESCAPE '\\'"
    sql = (
        f"WITH m AS (SELECT id, kind, name, lower({name_en}) AS lname_en, {name_en} AS name_en, "
        f"{area_code(s)} AS code, min_x, min_y, max_x, max_y, z_max, height_m, {_GROUP_SQL} AS grp "
        f"FROM assets WHERE geom IS NOT NULL AND min_x IS NOT NULL AND (lower(id) {like} OR lower(name) {like} "
        f"OR lower({name_en}) {like})), "
        f"r AS (SELECT *, CASE WHEN lower(id) = {p} THEN 0 WHEN lower(name) = {p} OR lname_en = {p} THEN 1 "
        f"WHEN lower(name) {like} OR lname_en {like} OR lower(id) {like} THEN 2 ELSE 3 END AS rnk FROM m) "
        f"SELECT id, kind, name, name_en, code, min_x, min_y, max_x, max_y, z_max, height_m, grp, rnk, "
        f"count(*) OVER () AS total FROM r "
        f"ORDER BY rnk, grp, length(COALESCE(name, id)), {s.bytewise('id')} LIMIT {int(count)}"
    )
    params = [inside, inside, inside, text, text, text, prefix, prefix, prefix]
    rows = db.select_rows(sql, params)
    total = int(rows[0]["total"]) if rows else 0
    out = []
    for row in rows:
        kind = row["kind"]
        name, name_en = row["name"], row["name_en"]
        is_area = kind in AREA_LEVELS
        zh = name if name is not None and _CJK.search(name) else None
        en = name_en if name_en else (name if name is not None and zh is None else None)
        match = SearchMatch(
            id=row["id"],
            kind=kind,
            name=name,
            name_zh=zh,
            name_en=en,
            lon=(row["min_x"] + row["max_x"]) / 2,
            lat=(row["min_y"] + row["max_y"]) / 2,
            height=row["z_max"] if row["z_max"] is not None else row["height_m"],
            bbox=[row["min_x"], row["min_y"], row["max_x"], row["max_y"]] if is_area else None,
            rank=int(row["rnk"]),
        )
        if kind == "district":
            match.district = District(code=row["code"], name_zh=zh, name_en=en)
        out.append((_key(int(row["rnk"]), int(row["grp"]), name, row["id"]), match))
    return out, total


def _place_match(place: Place, text: str) -> tuple[Any, SearchMatch] | None:
    names = [n.lower() for n in (place.name, place.name_zh) if n]
    if not any(text in n for n in names):
        return None
    rank = 1 if text in names else 2 if any(n.startswith(text) for n in names) else 3
    id_ = f"place:{place.name}"
    match = SearchMatch(
        id=id_,
        kind="place",
        name=place.name,
        name_zh=place.name_zh,
        name_en=place.name,
        lon=place.lon,
        lat=place.lat,
        height=place.height,
        rank=rank,
    )
    return _key(rank, _PLACE_GROUP, place.name, id_), match


def _add_districts(store: Store, page: list[SearchMatch]) -> None:
    """Fill in the district of each match of the page: for a street its parent, for a grid cell its parent's parent,
    for another asset the district :func:`~cim.store.areas.areas_of_assets` finds it in."""
    need = [m for m in page if m.district is None and m.kind != "place"]
    if not need:
        return
    db = sql_store(store)
    s = db.dialect
    districts = {
        row["id"]: row
        for row in db.select_rows(
            f"SELECT id, name, {area_code(s)} AS code, {props_literal(s, 'name_en')} AS name_en "
            "FROM assets WHERE kind = 'district'"
        )
    }
    if not districts:
        return
    by_code = {row["code"]: row for row in districts.values()}
    areas = [m for m in need if m.kind in ("street", "grid_cell")]
    parents: dict[str, str | None] = {}
    if areas:
        ids = [m.id for m in areas]
        grid_parents: list[str] = []
        where = s.key_in("id", ids)
        for link in db.select_rows(f"SELECT id, parent_id FROM assets WHERE {where.sql}", where.params):
            parents[link["id"]] = link["parent_id"]
            if link["parent_id"] is not None:
                grid_parents.append(link["parent_id"])
        if grid_parents:
            where = s.key_in("id", sorted(set(grid_parents)))
            for link in db.select_rows(f"SELECT id, parent_id FROM assets WHERE {where.sql}", where.params):
                parents.setdefault(link["id"], link["parent_id"])
    others = [m.id for m in need if m.kind not in AREA_LEVELS]
    located = areas_of_assets(store, others) if others else {}
    for m in need:
        found: dict[str, Any] | None = None
        if m.kind == "street":
            found = districts.get(parents.get(m.id) or "")
        elif m.kind == "grid_cell":
            found = districts.get(parents.get(parents.get(m.id) or "") or "")
        elif m.kind not in AREA_LEVELS and (codes := located.get(m.id)) is not None and codes.district:
            found = by_code.get(codes.district)
        if found is not None:
            m.district = District(code=found["code"], name_zh=found["name"], name_en=found["name_en"])
