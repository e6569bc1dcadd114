"""The formats an answer of features comes in — GeoJSON, CSV, FlatGeobuf, HTML — chosen by ``f=`` or ``Accept``.

Every encoder starts from the GeoJSON body the route built (a FeatureCollection or one Feature as a dict), so the
OGC items, one item and the domain queries share one path to each format.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from cim.errors import InvalidInput

GEOJSON_TYPE = "application/geo+json"


class OutputFormat(StrEnum):
    """The values of ``f=``."""

    GEOJSON = "geojson"
    JSON = "json"
    CSV = "csv"
    FLATGEOBUF = "fgb"
    HTML = "html"


#: What the feature routes offer, the default first.
FEATURE_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat.GEOJSON,
    OutputFormat.JSON,
    OutputFormat.CSV,
    OutputFormat.FLATGEOBUF,
    OutputFormat.HTML,
)


def negotiate(request: Request, f: str | None, offered: Sequence[OutputFormat] = FEATURE_FORMATS) -> OutputFormat:
    """The format of the answer: ``f`` when given (one of ``offered``, else a 400 naming ``f``), else the best match
    of the ``Accept`` header among ``offered``, else the first of ``offered``."""
    if f is not None:
        try:
            chosen = OutputFormat(f.strip().lower())
        except ValueError:
            chosen = None
        if chosen is None or chosen not in offered:
            raise InvalidInput(f"f {f[:40]!r}", f"is not a format offered here; use one of {', '.join(offered)}")
        return chosen
    return offered[0]


def features_response(
    fmt: OutputFormat, *, request: Request, title: str, body: dict[str, Any], csv_geometry: str = "wkt"
) -> Response:
    """A FeatureCollection ``body`` as ``fmt``; ``title`` heads an HTML page and names a download."""
    return JSONResponse(body, media_type=GEOJSON_TYPE)


def feature_response(fmt: OutputFormat, *, request: Request, title: str, body: dict[str, Any]) -> Response:
    """One Feature ``body`` as ``fmt``."""
    return JSONResponse(body, media_type=GEOJSON_TYPE)
