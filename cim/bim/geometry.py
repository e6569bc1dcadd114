"""Element meshes from ifcopenshell's geometry kernels, in world coordinates (metres), one per element.

Each element is meshed on its own with ``ifcopenshell.geom.create_shape``, with the settings of ifcopenshell's
geometry iterator (:func:`settings`; openings subtracted, not meshed themselves), not with the iterator: the
iterator keeps every shape it made until it is freed (``all_processed_elements_`` in ifcopenshell's
``Iterator.h``; 4.9 KB for each plain wall, 216 KB for each element of AC20-FZK-Haus), and starting one costs a
pass over the whole model (180 ms for 100,000 walls), so bounding its memory costs either many starts or a mesh
kept per element. Element by element, the kernel gives the iterator's meshes (every element of the test files: the
same vertices and triangles) in about the same time (5,000 walls: 0.60 s against 0.57; duplex.ifc with
OpenCASCADE: 2.42 against 2.28 s, where the iterator reuses the shapes of type objects) and keeps nothing.

The ``manifold`` kernel is about 10× faster than OpenCASCADE but crashes the whole process (segfault) on some
shapes (measured: an IfcFurnishingElement of duplex.ifc) and refuses others. So geometry runs in child processes
that stream meshes back:

1. :data:`WORKERS` children, each meshing its share of the elements with ``manifold``;
2. elements they did not deliver (a child crashed, or the kernel gave up) again with ``manifold``, in one child;
3. what is still missing with OpenCASCADE; what fails there too is a failed element.

A child notes in shared memory which element it is working on, so a crash names its element; a crash never
reaches the caller's process. Where ``fork`` is available the children use the caller's parsed model (no second
parse) and start as soon as :class:`Geometry` is created, right after the parse: they need only the elements of
the classes present, so the caller reads georeference, properties and structure while the kernels work, and
tells which elements it wants when it reads :meth:`Geometry.batches`. A child sends meshes every :data:`_CHUNK`
shapes or :data:`_CHUNK_SECONDS`, whichever comes first, so the caller georeferences them as they come instead
of all at the end; a thread of the caller drains each pipe meanwhile, so the children never wait.
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


def iterator(model: ifcopenshell.file, library: Library, threads: int = 1) -> Any:
    """ifcopenshell's geometry iterator over :func:`cim.bim.structure.mesh_classes` with :func:`settings`: what
    the ingest meshes, as the iterator would (the benchmark's bare iteration, the reference of the issue's time
    target, and the tests that check the ingest's meshes against it); None when the model has no such element."""
    import ifcopenshell.geom

    include = structure.mesh_classes(model)
    if not include:  # to ifcopenshell, no filter means every element
        return None
    return ifcopenshell.geom.iterator(settings(), model, threads, include=include, geometry_library=library)


class Geometry:
    """Meshes of the elements of an opened model; elements no kernel can mesh end in :attr:`failures` (step id →
    why). The first children start at once; read :meth:`batches`, then :meth:`close` (or use ``with``).

    ``workers`` children share the first pass, each meshing every ``workers``-th element (by step id): with the
    model parsed once and shared by ``fork``, two kernels take half the time of one (5,000 elements: 0.48 →
    0.27 s), where ifcopenshell's own iterator threads make it slower (0.9). Without ``fork`` there is one."""

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
        workers = min(workers, len(elements))  # no child without elements
        if "fork" not in mp.get_all_start_methods():
            workers = 1
        shares = [elements[k::workers] for k in range(workers)]
        self._children = [_Child(model, path, LIBRARIES[0], share, k, self._queue) for k, share in enumerate(shares)]

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
        """Meshes of the elements ``ids`` (step ids; others the children deliver are dropped)."""
        self.missing = set(ids)
        why: dict[int, str] = {}  # elements the current kernel failed on, and why
        if self._children:
            yield from self._take(why)
            self._end()
        for library in LIBRARIES:
            if library != LIBRARIES[0]:
                why = {}
            while self.missing and len(why) < len(self.missing):
                todo = sorted(i for i in self.missing if i not in why)
                self._children = [_Child(self._model, self._path, library, todo, 0, self._queue)]
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
    died ends with ``("crashed", the element it was working on or None, exit code)``."""
    while not all(child.finished for child in children):
        tag, message = inbox.get()
        child = children[tag]
        if message[0] == "done":
            child.finished = True
        elif message[0] == "eof":
            child.finished = True
            child.process.join()
            yield ("crashed", child.current.value or None, child.process.exitcode)
        else:
            yield message


class _Child:
    """One geometry child process meshing ``elements`` (step ids), and the thread of the caller that drains its
    pipe into ``inbox``, each message tagged with ``tag``; :attr:`current` is the element the child works on (0
    before the first)."""

    def __init__(
        self,
        model: ifcopenshell.file,
        path: str,
        library: Library,
        elements: list[int],
        tag: int,
        inbox: queue.Queue[tuple[int, tuple[Any, ...]]],
    ):
        forking = "fork" in mp.get_all_start_methods()
        context: Any = mp.get_context("fork" if forking else "spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self.current: Any = context.RawValue("q", 0)  # shared memory: read when the child died
        self.process = context.Process(
            target=_worker,
            args=(model if forking else None, path, library, elements, sender, self._receiver, self.current),
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
    conn: Any,
    receiver: Any,
    current: Any,
) -> None:
    """Child process: mesh ``elements`` one by one, noting each in ``current`` before it starts; send
    ``("shapes", ShapeBatch)`` and ``("failed", id, why)``, then ``("done",)``."""
    import faulthandler

    # without the caller's end of the pipe here, a send fails when the caller is gone (it died), instead of
    # waiting for ever
    receiver.close()

    import ifcopenshell.geom
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    faulthandler.disable()  # a crash is reported by the caller, naming its element
    # ifcopenshell keeps every log message in memory for the life of the process: the kernels log two or three
    # warnings per element ("No material and surface styles for: #18=IfcWall(...)"), 20,000 walls: +16 MB. What
    # a failure says reaches the caller as its exception, so only errors are kept
    wrapper.logger.root().verbosity(wrapper.logger.LOG_ERROR)
    devnull = os.open(os.devnull, os.O_WRONLY)
    # the kernels' diagnostics (some on stdout, e.g. "local z: …" for linear placements, which would corrupt
    # `cim ingest --json`); failures reach the caller as messages
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    if model is None:
        from cim.bim.reader import open_ifc

        model = open_ifc(path).model
    s = settings()
    parts: list[tuple[int, bytes, bytes, tuple[float, float, float, float] | None]] = []
    sent = time.monotonic()
    for step_id in elements:
        current.value = step_id
        try:
            created: Any = ifcopenshell.geom.create_shape(s, model.by_id(step_id), geometry_library=library)
        except Exception as exc:
            conn.send(("failed", step_id, str(exc).split(",")[0][:200]))
        else:
            parts.append(_part(step_id, created.geometry))
        if len(parts) >= _CHUNK or (parts and time.monotonic() - sent >= _CHUNK_SECONDS):
            conn.send(("shapes", ShapeBatch.join(parts)))
            parts, sent = [], time.monotonic()
    if parts:
        conn.send(("shapes", ShapeBatch.join(parts)))
    conn.send(("done",))


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
