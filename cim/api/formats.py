"""The formats an answer of features comes in — GeoJSON, CSV, FlatGeobuf, HTML — chosen by ``f=`` or ``Accept``.

Every encoder starts from the GeoJSON body the route built (a FeatureCollection or one Feature as a dict, features
with flat properties), so the OGC items, one item and the domain queries share one path to each format. None of
them queries the store.

- ``geojson`` / ``json``: the body as it is (``application/geo+json`` / ``application/json``).
- ``csv``: ``text/csv`` in UTF-8 *with* a byte-order mark — Excel on a Chinese Windows reads a CSV without one as
  GBK and garbles every name; pandas, pyarrow and GDAL skip the mark. Columns: ``id``, every property in the order
  first seen, then the geometry as WKT (``geometry``) or as ``lon``, ``lat`` of the point (of a representative point
  inside any other shape). Lists and objects are JSON text. A text that a spreadsheet would run as a formula
  (``=``, ``+``, ``-``, ``@`` first, and not a number) is written with a leading ``'`` (OWASP's CSV injection rule).
  Which geometry columns: the route reads the ``geometry`` query parameter with :data:`CsvGeometryParam`
  (``wkt`` or ``lonlat``) and passes it as ``csv_geometry``.
- ``fgb``: FlatGeobuf written by GDAL (pyogrio) into a temporary file and sent from it in chunks, so a page of
  10,000 features is not held in memory twice; one geometry type when all agree, else Unknown; with a spatial
  index when every feature has a geometry (GDAL's index cannot hold one without), so QGIS can read parts of it.
- ``html``: a page (:mod:`cim.api.html`), zh-CN first with English.
- ``gpkg`` and ``cityjson`` (a collection's items only, :data:`ITEMS_FORMATS`): the page's assets as the exports
  write them (:mod:`cim.export.gpkg`, :mod:`cim.export.cityjson`: typed columns and props, LoD1 solids), from the
  assets rather than the GeoJSON body, into a temporary file sent in chunks as FlatGeobuf is. CityJSON holds
  buildings: it is offered on the building collection only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal
from urllib.parse import quote

import numpy as np
import orjson
import pyarrow as pa
import shapely
from fastapi import Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from cim.api.html import feature_page, features_page
from cim.errors import InvalidInput
from cim.model import Asset

GEOJSON_TYPE = "application/geo+json"
CSV_TYPE = "text/csv; charset=utf-8"
FLATGEOBUF_TYPE = "application/flatgeobuf"
#: HTML pages load nothing from anywhere (the server is used offline) and run no script.
HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"
#: Bytes per chunk of a FlatGeobuf answer.
CHUNK_BYTES = 256 * 1024


class OutputFormat(StrEnum):
    """The values of ``f=``."""

    GEOJSON = "geojson"
    JSON = "json"
    CSV = "csv"
    FLATGEOBUF = "fgb"
    HTML = "html"
    GEOPACKAGE = "gpkg"
    CITYJSON = "cityjson"


#: What the feature routes offer, the default first.
FEATURE_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat.GEOJSON,
    OutputFormat.JSON,
    OutputFormat.CSV,
    OutputFormat.FLATGEOBUF,
    OutputFormat.HTML,
)

#: What a collection's items offer: the feature formats and the two exports of a page.
ITEMS_FORMATS: tuple[OutputFormat, ...] = (*FEATURE_FORMATS, OutputFormat.GEOPACKAGE, OutputFormat.CITYJSON)

GEOPACKAGE_TYPE = "application/geopackage+sqlite3"  # OGC's registration of the GeoPackage media type
CITYJSON_TYPE = "application/city+json"  # the CityJSON specification's media type

#: The media type each format answers with, and the one ``Accept`` names it by.
MEDIA_TYPES: dict[OutputFormat, str] = {
    OutputFormat.GEOJSON: GEOJSON_TYPE,
    OutputFormat.JSON: "application/json",
    OutputFormat.CSV: "text/csv",
    OutputFormat.FLATGEOBUF: FLATGEOBUF_TYPE,
    OutputFormat.HTML: "text/html",
    OutputFormat.GEOPACKAGE: GEOPACKAGE_TYPE,
    OutputFormat.CITYJSON: CITYJSON_TYPE,
}

CsvGeometry = Literal["wkt", "lonlat"]
#: The ``geometry`` query parameter of a route that offers CSV; pass its value as ``csv_geometry``.
CsvGeometryParam = Annotated[
    CsvGeometry,
    Query(description="CSV only: the geometry as WKT (column geometry) or as lon, lat of a point (columns lon, lat)"),
]


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
    return best_accepted(request.headers.get("accept"), offered)


def best_accepted(accept: str | None, offered: Sequence[OutputFormat]) -> OutputFormat:
    """The format of ``offered`` the ``Accept`` header ranks highest; among equals, the one offered first. A media
    range's q applies to the types it covers unless a more specific range names them (RFC 9110 §12.5.1).

    >>> best_accepted("text/html,application/xhtml+xml,*/*;q=0.8", FEATURE_FORMATS)
    <OutputFormat.HTML: 'html'>
    >>> best_accepted("application/json", FEATURE_FORMATS), best_accepted("*/*", FEATURE_FORMATS)
    (<OutputFormat.JSON: 'json'>, <OutputFormat.GEOJSON: 'geojson'>)
    >>> best_accepted("text/csv;q=0.5, application/flatgeobuf", FEATURE_FORMATS)
    <OutputFormat.FLATGEOBUF: 'fgb'>
    >>> best_accepted("image/png", FEATURE_FORMATS)
    <OutputFormat.GEOJSON: 'geojson'>
    """
    if not accept:
        return offered[0]
    ranges: list[tuple[str, float]] = []
    for part in accept.split(",")[:32]:
        media, *parameters = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    best, best_q = offered[0], 0.0
    for fmt in offered:
        q = _quality(MEDIA_TYPES[fmt], ranges)
        if q > best_q:
            best, best_q = fmt, q
    return best


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> float:
    """The q the most specific matching range gives ``media_type`` (0 when none matches)."""
    kind = media_type.split("/")[0]
    found: tuple[int, float] = (-1, 0.0)
    for media, q in ranges:
        specificity = 2 if media == media_type else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if specificity > found[0] or (specificity == found[0] and q > found[1]):
            found = (specificity, q) if specificity >= 0 else found
    return found[1]


def features_response(
    fmt: OutputFormat, *, request: Request, title: str, body: dict[str, Any], csv_geometry: str = "wkt"
) -> Response:
    """A FeatureCollection ``body`` as ``fmt``; ``title`` heads an HTML page and names a download."""
    if fmt is OutputFormat.GEOJSON or fmt is OutputFormat.JSON:
        return json_response(body, media_type=MEDIA_TYPES[fmt])
    features = body.get("features") or []
    if fmt is OutputFormat.CSV:
        return _csv_response(features, title=title, geometry=checked_csv_geometry(csv_geometry))
    if fmt is OutputFormat.FLATGEOBUF:
        return _flatgeobuf_response(features, title=title)
    return _html_response(features_page(request=request, title=title, body=body))


def feature_response(fmt: OutputFormat, *, request: Request, title: str, body: dict[str, Any]) -> Response:
    """One Feature ``body`` as ``fmt``."""
    if fmt is OutputFormat.GEOJSON or fmt is OutputFormat.JSON:
        return json_response(body, media_type=MEDIA_TYPES[fmt])
    if fmt is OutputFormat.HTML:
        return _html_response(feature_page(request=request, title=title, body=body))
    one = {"type": "FeatureCollection", "features": [body]}
    return features_response(fmt, request=request, title=title, body=one)


def json_response(body: dict[str, Any], *, media_type: str) -> Response:
    """``body`` as compact UTF-8 JSON, encoded by orjson (a page of 10,000 features: 9 ms against json's 86 ms of
    CPU); what orjson refuses (an integer beyond 64 bits) goes through json as Starlette would encode it."""
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return JSONResponse(_without_fragments(body), media_type=media_type)
    return Response(content, media_type=media_type)


def _without_fragments(value: Any) -> Any:
    """``value`` with each ``orjson.Fragment`` (JSON text already written, e.g. a page's geometries) parsed back,
    for the json module, which cannot take one."""
    if isinstance(value, orjson.Fragment):
        return orjson.loads(orjson.dumps(value))
    if isinstance(value, dict):
        return {key: _without_fragments(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_fragments(item) for item in value]
    return value


def checked_csv_geometry(value: str) -> CsvGeometry:
    """``wkt`` or ``lonlat``, else a 400 naming ``geometry``."""
    if value == "wkt":
        return "wkt"
    if value == "lonlat":
        return "lonlat"
    raise InvalidInput(f"geometry {value[:40]!r}", "must be wkt or lonlat")


def _html_response(page: str) -> HTMLResponse:
    return HTMLResponse(page, headers={"Content-Security-Policy": HTML_POLICY, "X-Content-Type-Options": "nosniff"})


def download_name(title: str, extension: str) -> str:
    """A ``Content-Disposition`` value naming the file after ``title``: an ASCII name for every client, the UTF-8
    one (RFC 6266/5987) for those that read it.

    >>> download_name("building", "csv")
    'attachment; filename="building.csv"; filename*=UTF-8\\'\\'building.csv'
    >>> download_name('老旧电梯 "old"/lifts', "csv")
    'attachment; filename="old_lifts.csv"; filename*=UTF-8\\'\\'%E8%80%81%E6%97%A7%E7%94%B5%E6%A2%AF%20_old__lifts.csv'
    """
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_.")[:80] or "features"
    full = re.sub(r'[\x00-\x1f"/\\]', "_", title)[:80] or "features"
    return f"attachment; filename=\"{ascii_name}.{extension}\"; filename*=UTF-8''{quote(full)}.{extension}"


# --- CSV ---------------------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(features: Sequence[dict[str, Any]], *, geometry: CsvGeometry = "wkt") -> str:
    """The features as CSV text (lines end in CRLF, as RFC 4180 has it; without the byte-order mark the response
    adds).

    >>> point = {"type": "Point", "coordinates": [121.5, 31.2]}
    >>> one = {"id": "p1", "geometry": point, "properties": {"name": "=1+1", "tags": ["a"], "ok": True}}
    >>> print(csv_text([one], geometry="lonlat").replace("\\r", ""), end="")
    id,name,tags,ok,lon,lat
    p1,'=1+1,"[""a""]",true,121.5,31.2
    """
    names: dict[str, None] = {}
    for item in features:
        names.update(dict.fromkeys(item.get("properties") or {}))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    geometry_columns = ["lon", "lat"] if geometry == "lonlat" else ["geometry"]
    writer.writerow(["id", *names, *geometry_columns])
    shapes = _geometries(features)
    if geometry == "lonlat":
        points = shapely.point_on_surface(shapes)
        xs, ys = shapely.get_x(points), shapely.get_y(points)
        places: Iterator[list[Any]] = ([_number(x), _number(y)] for x, y in zip(xs, ys, strict=True))
    else:
        places = ([text or ""] for text in shapely.to_wkt(shapes, rounding_precision=-1))
    for item, place in zip(features, places, strict=True):
        properties = item.get("properties") or {}
        writer.writerow([_cell(item.get("id")), *(_cell(properties.get(name)) for name in names), *place])
    return out.getvalue()


def _number(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def _cell(value: Any) -> str:
    if type(value) is str:
        return "'" + value if value.startswith(_FORMULA_START) and not _is_number(value) else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_response(features: Sequence[dict[str, Any]], *, title: str, geometry: CsvGeometry) -> Response:
    content = "\ufeff" + csv_text(features, geometry=geometry)
    return Response(
        content.encode("utf-8"),
        media_type=CSV_TYPE,
        headers={"Content-Disposition": download_name(title, "csv")},
    )


def _geometries(features: Sequence[dict[str, Any]]) -> np.ndarray:
    """The features' geometries as shapely objects (None where a feature has none)."""
    # orjson: a quarter of json's time for 10,000 polygons
    texts = [None if item.get("geometry") is None else orjson.dumps(item["geometry"]) for item in features]
    return shapely.from_geojson(np.array(texts, dtype=object), on_invalid="ignore")


# --- FlatGeobuf --------------------------------------------------------------------------------------------------


def flatgeobuf_table(features: Sequence[dict[str, Any]]) -> tuple[pa.Table, str]:
    """The features as an Arrow table for GDAL (``id``, the properties, ``geometry`` as WKB) and the layer's
    geometry type (``Unknown`` when they differ)."""
    shapes = _geometries(features)
    types = {shape.geom_type for shape in shapes if shape is not None}
    multi = next((t for t in types if t in _MULTI_OF), None)
    if multi is not None and types == {multi, _MULTI_OF[multi]}:  # e.g. Polygon and MultiPolygon: a MultiPolygon
        shapes = _promoted(shapes, single=_MULTI_OF[multi])  # layer, its single polygons made one-part multis
        types = {multi}
    geometry_type = types.pop() if len(types) == 1 else "Unknown"
    names: dict[str, None] = {}
    for item in features:
        names.update(dict.fromkeys(item.get("properties") or {}))
    names.pop("id", None)  # the feature's id is the column ``id``
    columns: dict[str, pa.Array] = {"id": pa.array([_text(item.get("id")) for item in features], pa.string())}
    for name in names:
        values = [(item.get("properties") or {}).get(name) for item in features]
        columns[name] = _typed_column(values)
    columns["geometry"] = pa.array(shapely.to_wkb(shapes), pa.binary())
    return pa.table(columns), geometry_type


#: A multi geometry type and the single type it holds.
_MULTI_OF = {"MultiPoint": "Point", "MultiLineString": "LineString", "MultiPolygon": "Polygon"}


def _promoted(shapes: np.ndarray, *, single: str) -> np.ndarray:
    """``shapes`` with each geometry of type ``single`` made a one-part multi geometry of its type."""
    make = {"Point": shapely.multipoints, "LineString": shapely.multilinestrings, "Polygon": shapely.multipolygons}
    out = shapes.copy()
    for i, shape in enumerate(shapes):
        if shape is not None and shape.geom_type == single:
            out[i] = make[single]([shape])
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _typed_column(values: list[Any]) -> pa.Array:
    """A column of one type: booleans, whole numbers or numbers when every value given is one, else text."""
    given = [v for v in values if v is not None]
    if given and all(isinstance(v, bool) for v in given):
        return pa.array(values, pa.bool_())
    whole = given and all(isinstance(v, int) and not isinstance(v, bool) for v in given)
    if whole and all(-(2**63) <= v < 2**63 for v in given):
        return pa.array(values, pa.int64())
    if given and all(isinstance(v, int | float) and not isinstance(v, bool) for v in given):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([_text(v) if not isinstance(v, str) else v for v in values], pa.string())


def write_flatgeobuf(features: Sequence[dict[str, Any]], path: str) -> None:
    """The features as a FlatGeobuf file at ``path`` (lon/lat, EPSG:4326)."""
    import pyogrio

    table, geometry_type = flatgeobuf_table(features)
    # GDAL's spatial index has no place for a feature without geometry: such a file goes without one
    indexed = table.column("geometry").null_count == 0
    pyogrio.write_arrow(
        table,
        path,
        layer="features",
        driver="FlatGeobuf",
        geometry_name="geometry",
        geometry_type=geometry_type,
        crs="EPSG:4326",
        layer_options={"SPATIAL_INDEX": "YES" if indexed else "NO"},
    )


def _flatgeobuf_response(features: Sequence[dict[str, Any]], *, title: str) -> StreamingResponse:
    handle, path = tempfile.mkstemp(suffix=".fgb", prefix="cim-")
    os.close(handle)
    try:
        write_flatgeobuf(features, path)
        file = open(path, "rb")  # noqa: SIM115 - closed by the generator, or when it is dropped unread
    finally:
        os.unlink(path)  # the open file keeps its bytes until it is closed; nothing is left behind either way
    return _file_response(file, media_type=FLATGEOBUF_TYPE, filename=download_name(title, "fgb"))


def _file_response(file: BinaryIO, *, media_type: str, filename: str) -> StreamingResponse:
    size = os.fstat(file.fileno()).st_size
    return StreamingResponse(
        _chunks(file), media_type=media_type, headers={"Content-Disposition": filename, "Content-Length": str(size)}
    )


# --- GeoPackage and CityJSON: a page as the exports write it -----------------------------------------------------


def export_page_response(fmt: OutputFormat, *, kind: str, assets: Sequence[Asset], title: str) -> StreamingResponse:
    """A page's ``assets`` (all of ``kind``) as a GeoPackage with the layer ``kind``, or as CityJSON (buildings
    only: anything else is a 400 naming ``f``)."""
    from cim.export.cityjson import COLUMNS, make_frame, write_city_objects
    from cim.export.gpkg import write_layer
    from cim.model import AssetBatch, Kind

    if fmt is OutputFormat.CITYJSON and kind != Kind.BUILDING.value:
        raise InvalidInput(f"f {fmt.value!r}", "is offered on the building collection only; use f=gpkg for others")
    table = AssetBatch.from_assets(assets).table
    folder = tempfile.mkdtemp(prefix="cim-")  # GDAL creates the GeoPackage itself: no empty file may be there
    extension = "gpkg" if fmt is OutputFormat.GEOPACKAGE else "city.json"
    path = Path(folder) / f"page.{extension}"
    try:
        if fmt is OutputFormat.GEOPACKAGE:
            write_layer(path, Kind(kind), [table])
        else:
            geoms = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
            bounds = shapely.total_bounds(geoms) if len(assets) else np.zeros(4)
            extent = (float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3]))
            write_city_objects([table.select(list(COLUMNS))], path, frame=make_frame(extent))
        file = open(path, "rb")  # noqa: SIM115 - closed by the generator, or when it is dropped unread
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the open file keeps its bytes until it is closed
    return _file_response(file, media_type=MEDIA_TYPES[fmt], filename=download_name(title, extension))


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk
