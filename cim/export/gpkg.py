"""The GeoPackage export: every kind of asset a layer of one ``.gpkg``, for QGIS, GDAL and any GIS.

Each layer is named by its kind (``building``, ``pipe`` …) and holds the asset's id, the typed columns that apply to
the kind (:func:`cim.model.fields_of`: a column that cannot apply is always empty and is left out), the vertical
extent (``z_min``/``z_max``, metres, ellipsoidal), ``props`` as JSON text (nothing of the asset is lost) and the 2D
geometry in EPSG:4326, as stored.

Written through pyogrio's Arrow path: the store streams each kind's rows in batches
(:func:`cim.export.asset_batches`) straight into GDAL, so memory holds one batch, however large the city. The file
is written beside ``--out`` and renamed when whole (:func:`cim.export.written_whole`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from cim.errors import InvalidInput
from cim.export import ExportSummary, asset_batches, pa_schema_of, written_whole
from cim.model import Kind, fields_of
from cim.model.source import Progress
from cim.store import AssetQuery, BBox, Store
from cim.store.meshes import MeshStore

#: The columns of every layer, before the kind's typed columns; ``props`` and ``geom`` come last.
LEADING = ("id", "name", "parent_id", "source", "z_min", "z_max")


def layer_columns(kind: Kind) -> tuple[str, ...]:
    """The asset columns of ``kind``'s layer, in order.

    >>> layer_columns(Kind.PIPE)[-5:]
    ('network', 'diameter_mm', 'depth_m', 'props', 'geom')
    """
    return (*LEADING, *fields_of(kind), "props", "geom")


def write_gpkg(
    store: Store,
    meshes: MeshStore | None,
    out: Path,
    *,
    kinds: Sequence[Kind] | None = None,
    bbox: BBox | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the assets of ``kinds`` (None: every kind) inside ``bbox`` to the GeoPackage ``out``, one layer per
    kind that has any. ``meshes`` are not read: a GeoPackage holds the 2D shape.

    >>> import tempfile, pathlib
    >>> from cim.store.duckdb import DuckDBStore
    >>> from cim.model import Asset, AssetBatch
    >>> from shapely.geometry import Point
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with DuckDBStore(folder / "city.duckdb") as store:
    ...     _ = store.upsert_assets(AssetBatch.from_assets([Asset(id="p1", kind=Kind.POLE, geom=Point(121.5, 31.2))]))
    ...     write_gpkg(store, None, folder / "city.gpkg").objects
    {'pole': 1}
    """
    summary = ExportSummary(format="gpkg", out=str(out), files=[str(out)])
    present = _present_kinds(store, kinds, bbox)
    if not present:
        raise InvalidInput(_selection(kinds, bbox), "holds no assets: nothing to export")
    with written_whole(out) as partial:
        for kind in present:
            written = write_layer(
                partial, kind, asset_batches(store, kinds=[kind], bbox=bbox, columns=layer_columns(kind)), progress
            )
            summary.objects[kind.value] = written
    return summary


def write_layer(
    path: Path, kind: Kind, tables: Iterator[pa.Table] | Sequence[pa.Table], progress: Progress | None = None
) -> int:
    """Write the asset tables of one kind as the layer ``kind`` of the GeoPackage at ``path`` (created when
    missing, else the layer is added); the number of features written. Also the API's ``f=gpkg``."""
    import pyogrio

    schema = pa_schema_of(layer_columns(kind))
    count = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for table in tables:
            table = table.select(list(schema.names))
            count += table.num_rows
            yield from table.to_batches()
            if progress is not None:
                progress(table.num_rows)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    pyogrio.write_arrow(
        reader,
        path,
        layer=kind.value,
        driver="GPKG",
        geometry_name="geom",
        geometry_type="Unknown",
        crs="EPSG:4326",
        append=path.exists(),
        # GeoPackage 1.3, not GDAL 3.12's 1.4: GDAL before 3.7 (QGIS LTRs, Debian 12's ogrinfo) warns on 1.4 files
        dataset_options=None if path.exists() else {"VERSION": "1.3"},
        layer_options={"FID": "fid"},
    )
    return count


def _present_kinds(store: Store, kinds: Sequence[Kind] | None, bbox: BBox | None) -> list[Kind]:
    """The kinds asked for that have assets in the selection, in the order of :class:`Kind`."""
    asked = list(Kind) if kinds is None else [k for k in Kind if k in set(kinds)]
    if bbox is None:
        counts = store.count_by_kind()
        return [k for k in asked if counts.get(k.value)]
    return [k for k in asked if store.count_assets(AssetQuery(kinds=[k], bbox=bbox, limit=1))]


def _selection(kinds: Sequence[Kind] | None, bbox: BBox | None) -> str:
    named = "every kind" if kinds is None else "kinds " + ", ".join(k.value for k in kinds)
    return f"the selection ({named}{'' if bbox is None else f' in bbox {bbox}'})"
