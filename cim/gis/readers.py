"""Reading vector layers through GDAL (pyogrio), in bounded batches, reprojected to WGS84.

Any format GDAL reads works: GeoJSON, GeoPackage, Shapefile, FlatGeobuf, OSM PBF … Features stream as Arrow
batches (``pyogrio.raw.open_arrow``), so a layer of millions of features never sits in memory whole.

GeoParquet is read with pyarrow instead: the GDAL inside pyogrio's wheels is built without the Parquet driver.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyogrio.errors
import pyogrio.raw
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from cim.errors import InvalidInput

BATCH_SIZE = 65_536
WGS84 = CRS.from_epsg(4326)
GEOPARQUET_SUFFIXES = (".parquet", ".geoparquet")


@dataclass(frozen=True, slots=True)
class LayerInfo:
    path: Path
    layer: str
    crs: CRS
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Attributes as Arrow columns and geometries as shapely objects in lon/lat (None where unreadable)."""

    attributes: pa.Table
    geometries: np.ndarray


def parse_crs(text: str, *, what: str = "--crs") -> CRS:
    try:
        return CRS.from_user_input(text)
    except CRSError:
        raise InvalidInput(f"{what} {text!r}", "is not a CRS pyproj knows; give e.g. EPSG:3857") from None


def list_layers(path: Path) -> list[str]:
    _check_file(path)
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError):
        raise InvalidInput(f"file {path}", "is not a GIS file GDAL can read") from None


@contextmanager
def open_layer(
    path: Path,
    *,
    layer: str | None = None,
    where: str | None = None,
    crs: CRS | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[tuple[LayerInfo, Iterator[FeatureBatch]]]:
    """Open one layer for streaming. ``crs`` is the caller's CRS for a layer that has none (or to override it)."""
    if path.suffix.lower() in GEOPARQUET_SUFFIXES:
        with _open_geoparquet(path, layer=layer, where=where, crs=crs, batch_size=batch_size) as opened:
            yield opened
        return
    layers = list_layers(path)
    if layer is None:
        if len(layers) != 1:
            raise InvalidInput(f"file {path}", f"has layers {', '.join(layers)}; name one as FILE:LAYER")
        layer = layers[0]
    elif layer not in layers:
        raise InvalidInput(f"layer {layer!r} of {path}", f"does not exist; the layers are: {', '.join(layers)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GDAL's notes on OSM/GeoJSON quirks; problems reach the findings
            opened = pyogrio.raw.open_arrow(path, layer=layer, where=where, batch_size=batch_size, use_pyarrow=True)
            meta, reader = opened.__enter__()
    except pyogrio.errors.DataLayerError as exc:
        raise InvalidInput(f"layer {layer!r} of {path}", f"cannot be read: {exc}") from None
    except ValueError as exc:  # pyogrio's "Invalid SQL query for layer …" (it has no GDALError class)
        raise InvalidInput(f"filter {where!r} on {path}:{layer}", f"GDAL refused it: {exc}") from None
    try:
        source_crs = crs or _layer_crs(meta.get("crs"), path, layer)
        geometry_column = meta.get("geometry_name") or "wkb_geometry"
        fields = tuple(str(f) for f in meta["fields"])
        info = LayerInfo(path=path, layer=layer, crs=source_crs, fields=fields)
        yield info, _batches(reader, geometry_column, source_crs, path, layer)
    finally:
        opened.__exit__(None, None, None)


@contextmanager
def _open_geoparquet(
    path: Path, *, layer: str | None, where: str | None, crs: CRS | None, batch_size: int
) -> Iterator[tuple[LayerInfo, Iterator[FeatureBatch]]]:
    _check_file(path)
    if where is not None:
        raise InvalidInput(f"filter {where!r} on {path}", "filters are not supported on GeoParquet files")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"file {path}", f"is not a GeoParquet file: {exc}") from None
    name = path.name.split(".")[0]
    if layer not in (None, name):
        raise InvalidInput(f"layer {layer!r} of {path}", f"does not exist; the layers are: {name}")
    metadata = parquet.schema_arrow.metadata or {}
    if b"geo" not in metadata:
        raise InvalidInput(f"file {path}", "is Parquet without GeoParquet metadata (no 'geo' key)")
    try:
        geo = json.loads(metadata[b"geo"])
        column = str(geo["primary_column"])
        described = dict(geo["columns"][column])
    except (ValueError, TypeError, KeyError):  # not JSON, or not the shape GeoParquet's spec gives it
        raise InvalidInput(
            f"file {path}", "has GeoParquet metadata ('geo') without a primary_column described in its columns"
        ) from None
    if described.get("encoding", "WKB").upper() != "WKB":
        raise InvalidInput(f"file {path}", f"geometry encoding {described['encoding']!r} is not supported; use WKB")
    # GeoParquet: a missing "crs" means OGC:CRS84 (lon/lat); an explicit null means unknown.
    if "crs" in described and described["crs"] is None and crs is None:
        raise InvalidInput(f"layer {name!r} of {path}", "has no CRS; give one with --crs EPSG:N")
    source_crs = crs or (parse_crs(described["crs"], what=f"CRS of {path}") if described.get("crs") else WGS84)
    fields = tuple(f for f in parquet.schema_arrow.names if f != column)
    info = LayerInfo(path=path, layer=name, crs=source_crs, fields=fields)
    reader = pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches(batch_size=batch_size))
    yield info, _batches(reader, column, source_crs, path, name)


def _batches(
    reader: pa.RecordBatchReader, geometry_column: str, source_crs: CRS, path: Path, layer: str
) -> Iterator[FeatureBatch]:
    to_wgs84 = None if source_crs.equals(WGS84) else Transformer.from_crs(source_crs, WGS84, always_xy=True)
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # GDAL's notes on unclosed rings: such features reach the findings
                batch = reader.read_next_batch()
        except StopIteration:
            return
        except (OSError, pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise InvalidInput(f"layer {layer!r} of {path}", f"cannot be read: {exc}") from None
        table = pa.Table.from_batches([batch])
        _check_text(table, path, layer)
        wkb = table.column(geometry_column).to_numpy(zero_copy_only=False)
        geoms = shapely.from_wkb(wkb, on_invalid="ignore")  # unreadable (e.g. unclosed rings) → None
        geoms = shapely.force_2d(geoms)
        if to_wgs84 is not None:
            geoms = shapely.transform(geoms, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
        yield FeatureBatch(attributes=table.drop_columns([geometry_column]), geometries=geoms)


def _check_text(table: pa.Table, path: Path, layer: str) -> None:
    """Text attributes must be UTF-8; GDAL passes other bytes through, which would fail later with no field named."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid:
                raise InvalidInput(
                    f"field {name!r} of layer {layer!r} of {path}",
                    "holds text that is not UTF-8; re-save the file as UTF-8 "
                    "(a Shapefile can name its encoding in a .cpg file)",
                ) from None


def _layer_crs(text: str | None, path: Path, layer: str) -> CRS:
    if not text:
        raise InvalidInput(f"layer {layer!r} of {path}", "has no CRS; give one with --crs EPSG:N")
    return parse_crs(text, what=f"CRS of {path}:{layer}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInput(f"file {path}", "does not exist")
    if path.is_dir() and not any(path.glob("*.shp")):
        raise InvalidInput(f"file {path}", "is a directory")
