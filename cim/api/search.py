"""``GET /search``: find an asset, an area or a named place by id or name as a person types (the viewer's search
box). The matching and ranking are :mod:`cim.queries.search`'s; the named places are the viewer's ``places.json``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query

from cim.api.deps import ResourcesDep
from cim.api.schemas import errors
from cim.queries.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_QUERY,
    Place,
    SearchOut,
    load_places,
    search,
)

router = APIRouter(tags=["Search"])

DESCRIPTION = f"""Assets, areas (districts, streets, grid cells) and named places whose id or name holds `q`,
case-insensitively (Chinese as typed; `%`, `_` and `\\` are matched literally). Ranked: an exact id, an exact name, a
name (or id) that starts with `q`, then one that holds it; within a rank districts, named places, streets, other
assets, grid cells; then the shorter name. Each match has a point to fly to (`lon`, `lat`, its top as `height`), a
`bbox` when it is an area, and the district it lies in. Paged by `limit` (default {DEFAULT_LIMIT}, at most
{MAX_LIMIT}) and `offset` (at most {MAX_OFFSET:,}); `total` counts every match."""


@lru_cache(maxsize=4)
def _places(path: Path, mtime: float) -> tuple[Place, ...]:
    return load_places(path)


def places_of(viewer_dir: Path) -> tuple[Place, ...]:
    path = viewer_dir / "places.json"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return ()
    return _places(path, mtime)


@router.get(
    "/search",
    summary="Find assets, areas and places by id or name",
    description=DESCRIPTION,
    response_model=SearchOut,
    responses=errors(400),
)
def get_search(
    resources: ResourcesDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY, description="what was typed: an id, a name, or part")],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"matches per page (at most {MAX_LIMIT})")] = (
        DEFAULT_LIMIT
    ),
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="matches to skip")] = 0,
) -> SearchOut:
    places = places_of(resources.settings.viewer_dir)
    return search(resources.store, q, limit=limit, offset=offset, places=places)
