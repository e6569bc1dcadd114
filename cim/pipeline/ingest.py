"""The one write path: a source file into the store and its mesh file.

:func:`write_source` chooses the reader for a file (:func:`file_type`: IFC, CityGML, CityJSON or a GIS layer), opens it
(a file problem raises before anything is written), and replaces what an earlier ingest of the same source wrote:
the assets in one store transaction (:meth:`Store.replace_source`), the meshes in one mesh-file transaction
(:meth:`MeshStore.replacing`) that commits only after the assets did. Whatever fails half-way, the store keeps what
it held. Used by ``cim ingest`` and the server's ingest jobs (:mod:`cim.pipeline.files`) and by ``cim run``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from cim.errors import InvalidInput
from cim.model import AssetBatch, MeshBatch
from cim.model.source import Marker, Progress, SourceRead
from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore, MeshWriter
from cim.store.originals import OriginalFile

if TYPE_CHECKING:
    from pyproj import CRS

    from cim.bim.asset_rows import IfcSummary
    from cim.bim.georef import Placement
    from cim.gis.citygml import CityGmlSummary
    from cim.gis.cityjson import CityJsonSummary
    from cim.gis.layer import LayerSummary
    from cim.gis.mapping import LayerMapping

FileType = Literal["gis", "cityjson", "citygml", "ifc"]
Summary: TypeAlias = "LayerSummary | CityJsonSummary | CityGmlSummary | IfcSummary"
IFC_SUFFIXES = (".ifc", ".ifczip")


def is_ifc(path: Path) -> bool:
    """Whether ``path`` is read as IFC: by its suffix alone, without opening it."""
    return path.suffix.lower() in IFC_SUFFIXES


def file_type(path: Path) -> FileType:
    """How a file is read: IFC by its suffix, CityGML (a ``.gml``/``.xml`` with a CityModel) and CityJSON by name
    and first bytes, else a GIS layer."""
    if is_ifc(path):
        return "ifc"
    from cim.gis.gml import is_citygml  # lxml only: GDAL stays unloaded for a CityGML file

    if is_citygml(path):
        return "citygml"
    from cim.gis.cityjson import is_cityjson  # GDAL and geopandas load only for a GIS or CityJSON file

    return "cityjson" if is_cityjson(path) else "gis"


def write_source(
    store: Store,
    path: str | Path,
    *,
    read_as: FileType | None = None,
    mapping: LayerMapping | None = None,
    layer: str | None = None,
    crs: CRS | None = None,
    placement: Placement | None = None,
    meshes: MeshStore | None = None,
    progress: Progress | None = None,
    allow_empty: bool = False,
    at: datetime | None = None,
) -> Summary:
    """Read ``path`` (as ``read_as``, or as :func:`file_type` says) into ``store`` and its shapes into ``meshes``,
    replacing what an earlier ingest of the same source wrote. A GIS layer is read through ``mapping`` (its
    ``layer``, in ``crs`` when the file does not say); an IFC file placed at ``placement`` when it has no
    georeference of its own. A GIS layer, CityGML or CityJSON file that yields no valid asset is refused (see
    :func:`cim.gis.layer.check_not_empty`) unless ``allow_empty``: then it empties the source. What changed is
    recorded in the model's history at ``at`` (default now; see :meth:`~cim.store.base.Store.replace_source`)."""
    opened: AbstractContextManager[SourceRead[Summary]]
    path = Path(path)
    kind = read_as or file_type(path)
    original = None
    if kind == "ifc":
        original = OriginalFile(path, path.name)  # kept byte for byte beside its assets: `cim export --format ifc`
        from cim.bim.source import read_ifc  # ifcopenshell loads only when an IFC file is given

        opened = read_ifc(path, placement=placement, with_meshes=meshes is not None)
    elif kind == "cityjson":
        from cim.gis.cityjson import read_cityjson

        opened = read_cityjson(path, crs=crs)
    elif kind == "citygml":
        from cim.gis.citygml import read_citygml

        opened = read_citygml(path, crs=crs)
    elif mapping is None:
        raise InvalidInput(f"file {path}", "a GIS layer needs one of --kind, --map or --preset")
    else:
        from cim.gis.layer import read_layer

        opened = read_layer(path, mapping, layer=layer, crs=crs)
    with opened as read:
        return _write(store, read, meshes=meshes, progress=progress, allow_empty=allow_empty, at=at, original=original)


def _write(
    store: Store,
    read: SourceRead[Summary],
    *,
    meshes: MeshStore | None = None,
    progress: Progress | None = None,
    allow_empty: bool = False,
    at: datetime | None = None,
    original: OriginalFile | None = None,
) -> Summary:
    """Write an opened source: its assets (and its ``original`` file, :mod:`cim.store.originals`) in one store
    transaction, its meshes in one mesh-file transaction that commits after it, and its summary. Meshes made from
    the assets (:attr:`SourceRead.derive_meshes`) are made and staged on a second thread while the store writes the
    assets: numpy, GEOS and DuckDB release the GIL, so the two overlap on two cores; one batch in flight keeps
    memory bounded."""
    stored = 0 if allow_empty else store.count_assets(AssetQuery(where={"source": read.source}))
    with _mesh_writer(meshes, read.source) as writer, ThreadPoolExecutor(1) as staging:
        pending: list[Future[None]] = []

        def assets() -> Generator[AssetBatch, None, None]:
            with closing(read.items(progress)) as items:
                for item in items:
                    if isinstance(item, AssetBatch):
                        if writer is not None and read.derive_meshes is not None:
                            _wait(pending)
                            pending.append(staging.submit(_stage, writer, read.derive_meshes, item))
                        yield item
                    elif isinstance(item, MeshBatch):
                        if writer is not None:
                            writer.add(item)
                    elif item is Marker.MESHES_DONE and writer is not None:
                        pending.append(staging.submit(writer.prepare))
            if not allow_empty:  # raised inside the store's transaction, so its DELETE is rolled back too
                read.refuse_empty(stored)
            if read.derive_meshes is None:
                _wait(pending)  # the meshes were put in place while the last assets were written

        batches = assets()
        try:
            written = store.replace_source(read.source, batches, at=at, original=original)
        finally:
            batches.close()  # the reader stops, and a staged put-in-place is waited for, before the meshes' block ends
        _wait(pending)
    return read.summary(written, writer.written if writer is not None else 0)


def _stage(writer: MeshWriter, derive: Callable[[AssetBatch], MeshBatch], assets: AssetBatch) -> None:
    writer.add(derive(assets))


def _wait(pending: list[Future[None]]) -> None:
    while pending:
        pending.pop(0).result()


@contextmanager
def _mesh_writer(meshes: MeshStore | None, source: str) -> Iterator[MeshWriter | None]:
    if meshes is None:
        yield None
        return
    with meshes.replacing(source) as writer:
        yield writer
