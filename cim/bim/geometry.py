"""Element meshes from ifcopenshell's geometry iterator, in world coordinates (metres), one per element.

The ``manifold`` kernel is about 10× faster than OpenCASCADE but crashes the whole process (segfault) on some
shapes (measured: an IfcFurnishingElement of duplex.ifc) and refuses others. So geometry runs in a child process
that streams meshes back:

1. the iterator (:func:`iterator`) over the element classes that become assets with ``manifold`` (openings
   subtracted, not meshed themselves);
2. elements it did not deliver (it crashed, or gave up) one by one with ``manifold``, the child reporting each
   element before it starts, so a crash names its element;
3. what is still missing one by one with OpenCASCADE; what fails there too is a failed element.

A crash never reaches the caller's process. Where ``fork`` is available the children use the caller's parsed model
(no second parse) and start as soon as :class:`Geometry` is created, right after the parse: they need only the
elements of the classes present, so the caller reads georeference, properties and structure while the kernels
work, and tells which elements it wants when it reads :meth:`Geometry.batches`. Step 1 runs in :data:`WORKERS`
children, each iterating its share of the elements. A child sends meshes every :data:`_CHUNK` shapes or
:data:`_CHUNK_SECONDS`, whichever comes first, so the caller georeferences them as they come instead of all at
the end; a thread of the caller drains each pipe meanwhile, so the children never wait.
The child's standard error goes to /dev/null: the kernels print diagnostics there (``local z: …``) that are no
use to a user; what matters reaches the caller as a failure reason (the kernel's exception text, or the exit
code of a crash).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import ifcopenshell
import numpy as np
import numpy.typing as npt

from cim.bim import structure

Library = Literal["manifold", "opencascade"]
LIBRARIES: tuple[Library, ...] = ("manifold", "opencascade")
_CHUNK = 128  # shapes per message from the child at most
_CHUNK_SECONDS = 0.05  # … and at least this often while it has shapes (slow files give few shapes per second)
_ITERATOR_ELEMENTS = 5000  # elements per iterator at most (see _pieces) …
_PIECES = 4  # … unless a child would start more iterators than this
_QUEUED = 64  # messages the caller may hold before the children wait
#: Geometry children of the first pass (the machines this runs on have two cores or more).
WORKERS = 2


@dataclass(frozen=True, slots=True)
class ShapeBatch:
    """Meshes of several elements as flat arrays: element ``step_ids[i]`` owns
    ``vertices[vertex_offsets[i]:vertex_offsets[i+1]]`` (world metres) and the triangles
    ``triangles[triangle_offsets[i]:triangle_offsets[i+1]]`` (indices from its own first vertex); ``colors`` is
    its dominant material colour (RGBA), NaN where it has none.
    """

    step_ids: npt.NDArray[np.int64]
    vertices: npt.NDArray[np.float64]
    vertex_offsets: npt.NDArray[np.int64]
    triangles: npt.NDArray[np.uint32]
    triangle_offsets: npt.NDArray[np.int64]
    colors: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.step_ids)

    @classmethod
    def join(cls, parts: Sequence[tuple[int, bytes, bytes, tuple[float, float, float, float] | None]]) -> ShapeBatch:
        """A batch from ``(step id, vertex buffer, face buffer, colour)`` per element, the buffers as the kernel
        gives them (float64 xyz, int32 vertex triples): joined as bytes, one array each."""
        return cls(
            step_ids=np.array([p[0] for p in parts], dtype=np.int64),
            vertices=np.frombuffer(b"".join(p[1] for p in parts), np.float64).reshape(-1, 3),
            vertex_offsets=_offsets([len(p[1]) // 24 for p in parts]),
            triangles=np.frombuffer(b"".join(p[2] for p in parts), np.int32).astype(np.uint32).reshape(-1, 3),
            triangle_offsets=_offsets([len(p[2]) // 12 for p in parts]),
            colors=np.array([p[3] or (np.nan,) * 4 for p in parts], dtype=np.float32).reshape(-1, 4),
        )

    def take(self, keep: npt.NDArray[np.bool_]) -> ShapeBatch:
        """The elements where ``keep`` is true."""
        if keep.all():
            return self
        vcounts, tcounts = np.diff(self.vertex_offsets), np.diff(self.triangle_offsets)
        return ShapeBatch(
            step_ids=self.step_ids[keep],
            vertices=self.vertices[np.repeat(keep, vcounts)],
            vertex_offsets=_offsets(vcounts[keep]),
            triangles=self.triangles[np.repeat(keep, tcounts)],
            triangle_offsets=_offsets(tcounts[keep]),
            colors=self.colors[keep],
        )


def settings() -> Any:
    """The geometry settings of the ingest (and of the benchmark's bare iteration)."""
    import ifcopenshell.geom

    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    s.set("weld-vertices", True)
    return s


def iterator(model: ifcopenshell.file, library: Library, threads: int = 1, subset: list[Any] | None = None) -> Any:
    """The geometry iterator of the ingest, over :func:`cim.bim.structure.mesh_classes` (the benchmark's bare
    iteration uses it too, so both do the same work), or over the elements ``subset`` of those; None when the
    model has no such element."""
    import ifcopenshell.geom

    include = structure.mesh_classes(model) if subset is None else subset
    if not include:  # also an empty subset: to ifcopenshell, no filter means every element
        return None
    return ifcopenshell.geom.iterator(settings(), model, threads, include=include, geometry_library=library)


class Geometry:
    """Meshes of the elements of an opened model; elements no kernel can mesh end in :attr:`failures` (step id →
    why). The first children start at once; read :meth:`batches`, then :meth:`close` (or use ``with``).

    ``workers`` children share the first pass, each iterating every ``workers``-th element (by step id): with the
    model parsed once and shared by ``fork``, two kernels take half the time of one (5,000 elements: 0.48 →
    0.27 s), where ifcopenshell's own iterator threads make it slower (0.9). Without ``fork`` there is one. A
    child iterates its share in pieces (:func:`_pieces`), a new iterator each, so its memory stays bounded."""

    def __init__(self, model: ifcopenshell.file, path: str, workers: int | None = None) -> None:
        self._model, self._path = model, path
        workers = WORKERS if workers is None else workers
        self.missing: set[int] = set()
        self.failures: dict[int, str] = {}
        self._queue: queue.Queue[tuple[int, tuple[Any, ...]]] = queue.Queue(_QUEUED)
        self._ended: list[_Child] = []
        self._children: list[_Child] = []
        classes = structure.mesh_classes(model)
        if not classes:
            return
        elements = sorted({e.id() for c in classes for e in model.by_type(c, include_subtypes=False)})
        workers = min(workers, len(elements))  # an empty subset would mean no filter: every element
        if "fork" not in mp.get_all_start_methods():
            workers = 1
        self._children = [
            _Child(model, path, LIBRARIES[0], elements[k::workers], False, k, self._queue) for k in range(workers)
        ]

    def __enter__(self) -> Geometry:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Reap the children: a finished one has exited (or is about to), a working one is killed."""
        for child in (*self._ended, *self._children):
            child.close()
        self._ended, self._children = [], []

    def batches(self, ids: Iterable[int]) -> Iterator[ShapeBatch]:
        """Meshes of the elements ``ids`` (step ids; others the iterator delivers are dropped)."""
        self.missing = set(ids)
        if self._children:
            yield from self._take({})
            self._end()
        for library in LIBRARIES:
            why: dict[int, str] = {}
            while self.missing and len(why) < len(self.missing):
                todo = sorted(i for i in self.missing if i not in why)
                self._children = [_Child(self._model, self._path, library, todo, True, 0, self._queue)]
                yield from self._take(why)
                self._end()
                if set(todo) <= self.missing and not set(todo) & set(why):
                    break  # the child made no progress at all (it could not start): stop, report them failed
            if library == LIBRARIES[-1]:
                self.failures.update({i: why.get(i, "no geometry produced") for i in self.missing})

    def _end(self) -> None:
        """Done with the current children, which said so; they are reaped at :meth:`close`, not waited for now
        (an exit unmaps the memory a child shares with this process: milliseconds)."""
        self._ended += self._children
        self._children = []

    def waiting(self) -> bool:
        """Whether reading :meth:`batches` on would wait for the kernel: a child works and nothing is queued."""
        return any(not child.finished for child in self._children) and self._queue.empty()

    def _take(self, why_failed: dict[int, str]) -> Iterator[ShapeBatch]:
        for message in _messages(self._children, self._queue):
            if message[0] == "shapes":
                batch: ShapeBatch = message[1]
                wanted = np.array([int(i) in self.missing for i in batch.step_ids], dtype=bool)
                keep = wanted & (np.diff(batch.triangle_offsets) > 0)
                if keep.any():
                    batch = batch.take(keep)
                    self.missing.difference_update(batch.step_ids.tolist())
                    yield batch
            elif message[0] == "failed":
                why_failed[message[1]] = message[2]
            elif message[0] == "crashed" and message[1] is not None:
                why_failed[message[1]] = f"the geometry kernel crashed (exit code {message[2]})"


def _messages(children: list[_Child], inbox: queue.Queue[tuple[int, tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    """Messages of ``children`` (whose pipes drain into ``inbox``) as they come, until each is done; a child that
    died ends with ``("crashed", the element it last started, exit code)``."""
    started: dict[int, int] = {}
    while not all(child.finished for child in children):
        tag, message = inbox.get()
        child = children[tag]
        if message[0] == "done":
            child.finished = True
        elif message[0] == "eof":
            child.finished = True
            child.process.join()
            yield ("crashed", started.get(tag), child.process.exitcode)
        else:
            if message[0] == "start":
                started[tag] = message[1]
            yield message


class _Child:
    """One geometry child process and the thread of the caller that drains its pipe into ``inbox``, each message
    tagged with ``tag``: meshes of ``elements`` (step ids) by the iterator, or one by one."""

    def __init__(
        self,
        model: ifcopenshell.file,
        path: str,
        library: Library,
        elements: list[int],
        one_by_one: bool,
        tag: int,
        inbox: queue.Queue[tuple[int, tuple[Any, ...]]],
    ):
        forking = "fork" in mp.get_all_start_methods()
        context: Any = mp.get_context("fork" if forking else "spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_worker,
            args=(model if forking else None, path, library, elements, one_by_one, sender),
            daemon=True,
        )
        self.process.start()
        sender.close()
        self._tag, self._inbox = tag, inbox
        self._stop = threading.Event()
        self.finished = False
        self._thread = threading.Thread(target=self._drain, name="ifc-geometry-pipe", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._receiver.recv()
            except (EOFError, OSError):
                message = ("eof",)
            while not self._stop.is_set():
                try:
                    self._inbox.put((self._tag, message), timeout=0.2)
                    break
                except queue.Full:
                    continue
            if message[0] in ("eof", "done"):
                return

    def close(self) -> None:
        self._stop.set()
        self.process.join(timeout=5 if self.finished else 0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._receiver.close()
        self._thread.join()


def _worker(
    model: ifcopenshell.file | None,
    path: str,
    library: Library,
    elements: list[int],
    one_by_one: bool,
    conn: Any,
) -> None:
    """Child process: mesh ``elements`` with :func:`iterator` (in :func:`_pieces`), or one by one; send
    ``("shapes", ShapeBatch)``, ``("start", id)``, ``("failed", id, why)``."""
    import faulthandler

    import ifcopenshell.geom

    faulthandler.disable()  # a crash is reported by the caller, naming its element
    devnull = os.open(os.devnull, os.O_WRONLY)
    # the kernels' diagnostics (some on stdout, e.g. "local z: …" for linear placements, which would corrupt
    # `cim ingest --json`); failures reach the caller as messages
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    if model is None:
        from cim.bim.reader import open_ifc

        model = open_ifc(path).model
    parts: list[tuple[int, bytes, bytes, tuple[float, float, float, float] | None]] = []
    if not one_by_one:
        sent = time.monotonic()
        for piece in _pieces(elements):
            shapes = iterator(model, library, subset=[model.by_id(i) for i in piece])
            if shapes is not None and shapes.initialize():
                while True:
                    element = shapes.get()
                    parts.append(_part(element.id, element.geometry))
                    if len(parts) >= _CHUNK or time.monotonic() - sent >= _CHUNK_SECONDS:
                        conn.send(("shapes", ShapeBatch.join(parts)))
                        parts, sent = [], time.monotonic()
                    if not shapes.next():
                        break
            del shapes  # frees every shape it made
    else:
        s = settings()
        for step_id in elements:
            conn.send(("start", step_id))
            try:
                created: Any = ifcopenshell.geom.create_shape(s, model.by_id(step_id), geometry_library=library)
                conn.send(("shapes", ShapeBatch.join([_part(step_id, created.geometry)])))
            except Exception as exc:
                conn.send(("failed", step_id, str(exc).split(",")[0][:200]))
    if parts:
        conn.send(("shapes", ShapeBatch.join(parts)))
    conn.send(("done",))


def _pieces(elements: list[int], most: int | None = None) -> list[list[int]]:
    """``elements`` in even runs of at most ``most`` (:data:`_ITERATOR_ELEMENTS`) elements, one iterator each, but
    never more than :data:`_PIECES` runs: ifcopenshell's iterator keeps every shape it made until it is freed
    (40,000 walls: 195 MB), and starting one costs a pass over the whole model (100,000 walls: 165 ms).

    >>> _pieces(list(range(11)), most=5)
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    >>> [len(piece) for piece in _pieces(list(range(100)), most=5)]
    [25, 25, 25, 25]
    """
    most = _ITERATOR_ELEMENTS if most is None else most
    if len(elements) <= most:
        return [elements]
    count = min(-(-len(elements) // most), _PIECES)
    size = -(-len(elements) // count)  # as even as can be
    return [elements[i : i + size] for i in range(0, len(elements), size)]


def _part(step_id: int, geometry: Any) -> tuple[int, bytes, bytes, tuple[float, float, float, float] | None]:
    """One element's buffers and its dominant material colour (the material of most triangles)."""
    color = None
    materials = geometry.materials
    if materials:
        m = materials[0]
        if len(materials) > 1:
            ids = np.frombuffer(geometry.material_ids_buffer, np.int32)
            ids = ids[ids >= 0]
            m = materials[int(np.bincount(ids).argmax()) if len(ids) else 0]
        d, transparency = m.diffuse, m.transparency
        alpha = 1.0 - (transparency if transparency == transparency else 0.0)
        color = (float(d.r()), float(d.g()), float(d.b()), float(alpha))
    return (step_id, geometry.verts_buffer, geometry.faces_buffer, color)


def _offsets(counts: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
