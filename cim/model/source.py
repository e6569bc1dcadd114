"""What a source hands the one write path: a file opened for reading, as batches.

Sources (:mod:`cim.gis`, :mod:`cim.bim`) read a file and know nothing of the store; the write path
(:func:`cim.pipeline.ingest.write_source`) opens one with its reader, puts what :meth:`SourceRead.items` yields in
the store and the mesh file in one transaction each, and asks the reader for its summary at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from enum import Enum
from typing import Protocol, TypeVar

from cim.model.batch import AssetBatch
from cim.model.meshes import MeshBatch

#: ``progress(n)``: n more features (or elements) of the file are done.
Progress = Callable[[int], None]
Summary_co = TypeVar("Summary_co", covariant=True)


class Marker(Enum):
    #: Yielded once a source has sent its last :class:`MeshBatch`: the write path puts the meshes in place
    #: meanwhile, while it writes the assets the source still sends.
    MESHES_DONE = "meshes done"


#: One thing a source yields: assets to store, meshes to keep beside them, or a :class:`Marker`.
Item = AssetBatch | MeshBatch | Marker


class SourceRead(Protocol[Summary_co]):
    """One file opened for reading. Opening it checks the file (a problem raises before anything is written)."""

    @property
    def source(self) -> str:
        """The name its assets and meshes are stored under; writing it again replaces them."""
        ...

    def items(self, progress: Progress | None) -> Generator[Item, None, None]:
        """The file's assets and meshes, once; ``progress`` hears of each part read."""
        ...

    @property
    def derive_meshes(self) -> Callable[[AssetBatch], MeshBatch] | None:
        """How meshes are made from a batch of its assets (GIS shapes), or None when its meshes come as items. The
        write path makes them on a second thread while the store writes the assets."""
        ...

    def refuse_empty(self, stored: int) -> None:
        """After the last item: raise when the file yielded no asset where that cannot be what the user meant
        (``stored``: how many assets the store holds from this source). Inside the store's transaction, so
        raising keeps what the store held."""
        ...

    def summary(self, written: int, meshes: int) -> Summary_co:
        """What the read did, once it is written: ``written`` assets stored, ``meshes`` meshes staged."""
        ...
