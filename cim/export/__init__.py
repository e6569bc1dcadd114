"""Exports: the model handed on in the formats other tools read (``cim export --format … --out …``, and ``f=``).

Exports read the store (and its meshes) and write files; they sit beside :mod:`cim.tiling` in the one-way flow
(sources → model → store → tiling / export → api) and never write to the store.

Every format is one function with the same signature, :class:`Writer`, named in :data:`FORMATS` and imported only
when that format is asked for (GDAL, lxml and ifcopenshell load only for their own format):

- ``gpkg``: GeoPackage, every kind a layer (:mod:`cim.export.gpkg`).
- ``cityjson``: CityJSON 2.0, buildings with their geometry and attributes (:mod:`cim.export.cityjson`).
- ``citygml``: CityGML 3.0, buildings (:mod:`cim.export.citygml`).
- ``ifc``: the original IFC files the selected BIM buildings came from (:mod:`cim.export.ifc`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cim.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa
    import pyproj

    from cim.model import Kind
    from cim.model.source import Progress
    from cim.store import BBox, Store
    from cim.store.meshes import MeshStore


@dataclass
class ExportSummary:
    """What an export wrote: its format, where, how many objects of each kind, the files written (one for most
    formats; one per original for ``ifc``) and what it left out and why (``{"rule", "count", "examples"}``)."""

    format: str
    out: str
    #: Objects written per asset kind (:class:`cim.model.Kind` values: ``building``, ``element`` …), in every format.
    objects: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)
    #: The same objects per the format's own object type, where it says more than the kind (CityJSON and CityGML:
    #: ``Building``, ``BuildingPart``); empty for the formats whose objects are the kinds.
    types: dict[str, int] = field(default_factory=dict)


class Writer(Protocol):
    """One format's export: the assets of ``kinds`` (None: what the format holds) inside ``bbox`` (west, south,
    east, north in lon/lat; None: everywhere) written to ``out``; ``progress(n)`` hears of each n objects written."""

    def __call__(
        self,
        store: Store,
        meshes: MeshStore | None,
        out: Path,
        *,
        kinds: Sequence[Kind] | None = None,
        bbox: BBox | None = None,
        progress: Progress | None = None,
    ) -> ExportSummary: ...


#: Format name → "module:function" of its :class:`Writer`.
FORMATS: dict[str, str] = {
    "gpkg": "cim.export.gpkg:write_gpkg",
    "cityjson": "cim.export.cityjson:write_cityjson",
    "citygml": "cim.export.citygml:write_citygml",
    "ifc": "cim.export.ifc:write_ifc",
}


def writer(format_name: str) -> Writer:
    """The writer of ``format_name``, or an error naming the formats there are."""
    target = FORMATS.get(format_name.lower())
    if target is None:
        raise InvalidInput(f"export format {format_name!r}", f"use one of {', '.join(FORMATS)}")
    module, _, function = target.partition(":")
    found: Writer = getattr(importlib.import_module(module), function)
    return found


#: Rows per batch an export reads from the store: big enough that the per-batch costs vanish, small enough that a
#: batch (geometry and props included) stays a few tens of MB.
BATCH_ROWS = 65_536


def asset_batches(
    store: Store,
    *,
    kinds: Sequence[Kind] | None = None,
    bbox: BBox | None = None,
    ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """The assets of ``kinds`` (None: all) inside ``bbox`` (and among ``ids`` when given) as Arrow tables of the
    asset schema (``geom`` as WKB, ``props`` as JSON text; only ``columns`` when given), streamed from the store in
    its storage order: memory holds one batch however large the store. An empty selection yields nothing.

    No ORDER BY on purpose: sorting a city's rows makes the database hold them all before the first one comes."""
    from cim.model.schema import ASSET_SCHEMA
    from cim.store.base import AssetQuery
    from cim.store.sqlstore import as_schema, sql_store

    db = sql_store(store)
    schema = ASSET_SCHEMA if columns is None else pa_schema_of(columns)
    where = db.dialect.where(AssetQuery(kinds=kinds, bbox=bbox, ids=ids))
    spelled = {"geom": db.dialect.geom_as_wkb("geom") + " AS geom", "props": db.dialect.props_as_text() + " AS props"}
    select = ", ".join(spelled.get(name, name) for name in schema.names)
    sql = f"SELECT {select} FROM {db.assets_table} AS assets WHERE {where.sql}"
    for table in db.select_batches(sql, where.params, rows=rows):
        if table.num_rows:
            yield as_schema(table, schema)


def pa_schema_of(columns: Sequence[str]) -> pa.Schema:
    """The asset schema's fields named in ``columns``, in that order."""
    import pyarrow as pa

    from cim.model.schema import ASSET_SCHEMA

    unknown = [name for name in columns if name not in ASSET_SCHEMA.names]
    if unknown:
        raise InvalidInput(f"export columns {unknown}", f"not asset columns; known: {', '.join(ASSET_SCHEMA.names)}")
    return pa.schema([ASSET_SCHEMA.field(name) for name in columns])


def check_out(out: Path, *, force: bool = False) -> Path:
    """``out`` made absolute, or an error naming it: its folder must exist, and a file already there is kept
    unless ``force`` (a folder there never is replaced)."""
    out = out.expanduser().absolute()
    if out.is_dir():
        raise InvalidInput(f"--out {out}", "is a folder; give the path of the file to write")
    if not out.parent.is_dir():
        raise InvalidInput(f"--out {out}", f"its folder {out.parent} does not exist")
    if out.exists() and not force:
        raise InvalidInput(f"--out {out}", "exists already; give another path, or --force to replace it")
    return out


@contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out`` to write to (and close) in the block: synced to disk and renamed to ``out``
    when the block ends, removed when it raises (or the process is killed before: it is a hidden ``.partial`` file,
    never ``out``). A rename in one folder is atomic, and the data is on disk before it, so ``out`` is the previous
    file or the whole new one, never half of one, nor an empty one after a power cut."""
    # the format's own extension last: GDAL checks a GeoPackage's
    partial = out.with_name(f".{out.stem}.{os.getpid()}.partial{out.suffix}")
    partial.unlink(missing_ok=True)
    try:
        yield partial
        _sync(partial)
        os.replace(partial, out)
        _sync(out.parent)
    finally:
        partial.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """Flush what the system holds of ``path`` (a file the writer has closed, or a folder) to the disk. A folder
    cannot be opened so on every system (Windows): there the rename is as durable as the system makes it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The widest selection (degrees of longitude) the UTM zone of its centre is chosen for: 9° either side of the
#: zone's meridian keeps the scale error under about 1.3 %; wider, the user names the CRS.
MAX_UTM_SPAN_DEG = 18.0


def export_crs(
    given: str | int | pyproj.CRS | None, extent: BBox | None, *, param: str = "--crs"
) -> tuple[pyproj.CRS, str]:
    """The CRS an export writes coordinates in, and why: ``given`` when there is one (it must be projected, in
    metres, with an EPSG code: CityJSON wants x, y and z in one unit, and both CityJSON and CityGML name the CRS by
    its EPSG code), else the WGS84 UTM zone of the centre of ``extent`` (lon/lat; zone 31N at 0, 0 when there is
    none): metric, conformal, defined everywhere and one transform from the store's WGS84. An error names ``param``,
    the parameter the caller took ``given`` from (the API passes ``"crs"``).

    >>> export_crs(None, (121.4, 31.1, 121.6, 31.3))[0].to_epsg()
    32651
    >>> export_crs("EPSG:4326", None)
    Traceback (most recent call last):
    ...
    cim.errors.InvalidInput: --crs 'EPSG:4326' — must be a projected CRS in metres with an EPSG code, e.g. EPSG:32651
    >>> delft_and_tokyo = (4.3, 51.9, 139.8, 35.7)
    >>> export_crs(None, delft_and_tokyo)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cim.errors.InvalidInput: --crs (not given) — the selection spans longitudes 4.30…139.80, wider than one UTM ...
    """
    import pyproj

    from cim.geodesy import utm_epsg

    if given is not None:
        named = f"{param} {str(given)[:60]!r}"
        try:
            crs = pyproj.CRS.from_user_input(given)
        except (pyproj.exceptions.CRSError, ValueError, TypeError):  # a ValueError or TypeError for some inputs
            raise InvalidInput(named, "is not a CRS pyproj knows; give an EPSG code, e.g. EPSG:32651") from None
        unit = crs.axis_info[0].unit_name if crs.axis_info else ""
        if not crs.is_projected or unit not in ("metre", "meter") or crs.to_epsg() is None:
            raise InvalidInput(named, "must be a projected CRS in metres with an EPSG code, e.g. EPSG:32651")
        return crs, "asked for"
    if extent is None:
        return pyproj.CRS.from_epsg(utm_epsg(0.0, 0.0)), "nothing selected"
    west, south, east, north = extent
    if east - west > MAX_UTM_SPAN_DEG:  # Tokyo and Delft in one store: no one zone holds both
        raise InvalidInput(
            f"{param} (not given)",
            f"the selection spans longitudes {west:.2f}…{east:.2f}, wider than one UTM zone holds without distortion; "
            f"give {param} (e.g. EPSG:3857) or select a smaller area",
        )
    lon, lat = (west + east) / 2, (south + north) / 2
    return pyproj.CRS.from_epsg(utm_epsg(lon, lat)), f"the UTM zone of the selection's centre ({lon:.4f}, {lat:.4f})"
