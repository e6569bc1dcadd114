"""Element meshes from ifcopenshell's geometry iterator, in world coordinates (metres), one per element.

The ``manifold`` kernel is about 10× faster than OpenCASCADE but crashes the whole process (segfault) on some
shapes (measured: an IfcFurnishingElement of duplex.ifc) and refuses others. So geometry runs in a child process
that streams meshes back:

1. the iterator (:func:`iterator`) over the element classes that become assets with ``manifold`` (openings
   subtracted, not meshed themselves);
2. elements it did not deliver (it crashed, or gave up) one by one with ``manifold``, the child reporting each
   element before it starts, so a crash names its element;
3. what is still missing one by one with OpenCASCADE; what fails there too is a failed element.

A crash never reaches the caller's process. Where ``fork`` is available the child uses the caller's parsed model
(no second parse) and starts as soon as :class:`Geometry` is created, right after the parse: it needs only the
classes present, so the caller reads georeference, properties and structure while the kernel works, and tells
which elements it wants when it reads :meth:`Geometry.batches`. The child sends meshes every :data:`_CHUNK` shapes
or :data:`_CHUNK_SECONDS`, whichever comes first, so the caller georeferences them as they come instead of all at
the end; a thread of the caller drains the pipe meanwhile, so the child never waits.
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
_QUEUED = 64  # messages the caller may hold before the child waits


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
    """The geometry iterator of the ingest, over :func:`cim.bim.structure.mesh_classes` (the benchmark's bare
    iteration uses it too, so both do the same work); None when the model has no such element."""
    import ifcopenshell.geom

    classes = structure.mesh_classes(model)
    if not classes:
        return None
    return ifcopenshell.geom.iterator(settings(), model, threads, include=classes, geometry_library=library)


class Geometry:
    """Meshes of the elements of an opened model; elements no kernel can mesh end in :attr:`failures` (step id →
    why). The first child starts at once; read :meth:`batches`, then :meth:`close` (or use ``with``)."""

    def __init__(self, model: ifcopenshell.file, path: str) -> None:
        self._model, self._path = model, path
        self.missing: set[int] = set()
        self.failures: dict[int, str] = {}
        self._ended: list[_Child] = []
        self._child: _Child | None = _Child(model, path, LIBRARIES[0], None) if structure.mesh_classes(model) else None

    def __enter__(self) -> Geometry:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Reap the children: a finished one has exited (or is about to), a working one is killed."""
        for child in (*self._ended, *([self._child] if self._child is not None else [])):
            child.close()
        self._ended, self._child = [], None

    def batches(self, ids: Iterable[int]) -> Iterator[ShapeBatch]:
        """Meshes of the elements ``ids`` (step ids; others the iterator delivers are dropped)."""
        self.missing = set(ids)
        if self._child is not None:
            yield from self._take(self._child, {})
            self._end()
        for library in LIBRARIES:
            why: dict[int, str] = {}
            while self.missing and len(why) < len(self.missing):
                todo = sorted(i for i in self.missing if i not in why)
                self._child = _Child(self._model, self._path, library, todo)
                yield from self._take(self._child, why)
                self._end()
                if set(todo) <= self.missing and not set(todo) & set(why):
                    break  # the child made no progress at all (it could not start): stop, report them failed
            if library == LIBRARIES[-1]:
                self.failures.update({i: why.get(i, "no geometry produced") for i in self.missing})

    def _end(self) -> None:
        """Done with the current child, which said so; it is reaped at :meth:`close`, not waited for now (its exit
        unmaps the memory it shares with this process: milliseconds)."""
        if self._child is not None:
            self._ended.append(self._child)
            self._child = None

    def waiting(self) -> bool:
        """Whether reading :meth:`batches` on would wait for the kernel: a child works and has nothing queued."""
        return self._child is not None and self._child.idle()

    def _take(self, child: _Child, why_failed: dict[int, str]) -> Iterator[ShapeBatch]:
        for message in child.messages():
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


class _Child:
    """One geometry child process and the thread of the caller that drains its pipe into a queue: the iterator
    when ``ids`` is None, else the elements ``ids`` one by one."""

    def __init__(self, model: ifcopenshell.file, path: str, library: Library, ids: list[int] | None):
        forking = "fork" in mp.get_all_start_methods()
        context: Any = mp.get_context("fork" if forking else "spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_worker,
            args=(model if forking else None, path, library, ids, sender),
            daemon=True,
        )
        self._process.start()
        sender.close()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(_QUEUED)
        self._stop = threading.Event()
        self._finished = False
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
                    self._queue.put(message, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if message[0] in ("eof", "done"):
                return

    def idle(self) -> bool:
        """Whether none of the child's messages waits to be read."""
        return self._queue.empty()

    def messages(self) -> Iterator[tuple[Any, ...]]:
        """Messages of the child; ends with ``("crashed", last_started, exit_code)`` if it died."""
        started: int | None = None
        while True:
            message = self._queue.get()
            if message[0] == "done":
                self._finished = True
                return
            if message[0] == "eof":
                self._finished = True
                self._process.join()
                yield ("crashed", started, self._process.exitcode)
                return
            if message[0] == "start":
                started = message[1]
            yield message

    def close(self) -> None:
        self._stop.set()
        self._process.join(timeout=5 if self._finished else 0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._receiver.close()
        self._thread.join()


def _worker(model: ifcopenshell.file | None, path: str, library: Library, ids: list[int] | None, conn: Any) -> None:
    """Child process: mesh what :func:`iterator` gives, or ``ids`` one by one; send ``("shapes", ShapeBatch)``,
    ``("start", id)``, ``("failed", id, why)``."""
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
    if ids is None:
        shapes = iterator(model, library)
        sent = time.monotonic()
        if shapes is not None and shapes.initialize():
            while True:
                element = shapes.get()
                parts.append(_part(element.id, element.geometry))
                if len(parts) >= _CHUNK or time.monotonic() - sent >= _CHUNK_SECONDS:
                    conn.send(("shapes", ShapeBatch.join(parts)))
                    parts, sent = [], time.monotonic()
                if not shapes.next():
                    break
    else:
        s = settings()
        for step_id in ids:
            conn.send(("start", step_id))
            try:
                created: Any = ifcopenshell.geom.create_shape(s, model.by_id(step_id), geometry_library=library)
                conn.send(("shapes", ShapeBatch.join([_part(step_id, created.geometry)])))
            except Exception as exc:
                conn.send(("failed", step_id, str(exc).split(",")[0][:200]))
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
