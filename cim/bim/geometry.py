"""Element meshes from ifcopenshell's geometry iterator, in world coordinates (metres), one per element.

The ``manifold`` kernel is about 10× faster than OpenCASCADE but crashes the whole process (segfault) on some
shapes (measured: an IfcFurnishingElement of duplex.ifc) and refuses others. So geometry runs in a child process
that streams meshes back:

1. the iterator over all wanted elements with ``manifold`` (openings subtracted, not meshed themselves);
2. elements it did not deliver (it crashed, or gave up) one by one with ``manifold``, the child reporting each
   element before it starts, so a crash names its element;
3. what is still missing one by one with OpenCASCADE; what fails there too is a failed element.

A crash never reaches the caller's process. Where ``fork`` is available the child uses the caller's parsed model
(no second parse) and starts as soon as :class:`Geometry` is created, so the caller can read properties and
structure while the kernel works; a thread of the caller drains the pipe meanwhile, so the child never waits.
The child's standard error goes to /dev/null: the kernels print diagnostics there (``local z: …``) that are no
use to a user; what matters reaches the caller as a failure reason (the kernel's exception text, or the exit
code of a crash).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import ifcopenshell
import numpy as np
import numpy.typing as npt

Library = Literal["manifold", "opencascade"]
LIBRARIES: tuple[Library, ...] = ("manifold", "opencascade")
_CHUNK = 128  # shapes per message from the child
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
    def join(cls, parts: Sequence[tuple[int, Any, Any, tuple[float, float, float, float] | None]]) -> ShapeBatch:
        """A batch from ``(step id, vertex buffer, face buffer, colour)`` per element (buffers as the kernel gives)."""
        vertices = [np.frombuffer(p[1], np.float64).reshape(-1, 3) for p in parts]
        triangles = [np.frombuffer(p[2], np.int32).reshape(-1, 3) for p in parts]
        return cls(
            step_ids=np.array([p[0] for p in parts], dtype=np.int64),
            vertices=np.concatenate(vertices) if parts else np.zeros((0, 3)),
            vertex_offsets=_offsets([len(v) for v in vertices]),
            triangles=(np.concatenate(triangles) if parts else np.zeros((0, 3), np.int32)).astype(np.uint32),
            triangle_offsets=_offsets([len(t) for t in triangles]),
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


class Geometry:
    """Meshes of the elements ``ids`` (step ids) of an opened model; elements no kernel can mesh end in
    :attr:`failures` (step id → why). The first child starts at once; read :meth:`batches`, then :meth:`close`
    (or use ``with``)."""

    def __init__(self, model: ifcopenshell.file, path: str, ids: Sequence[int]) -> None:
        self._model, self._path = model, path
        self.missing = set(ids)
        self.failures: dict[int, str] = {}
        self._child: _Child | None = _Child(model, path, LIBRARIES[0], sorted(self.missing), False) if ids else None

    def __enter__(self) -> Geometry:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None

    def batches(self) -> Iterator[ShapeBatch]:
        if self._child is not None:
            yield from self._take(self._child, {})
            self.close()
        for library in LIBRARIES:
            why: dict[int, str] = {}
            while self.missing and len(why) < len(self.missing):
                todo = sorted(i for i in self.missing if i not in why)
                self._child = _Child(self._model, self._path, library, todo, True)
                yield from self._take(self._child, why)
                self.close()
                if set(todo) <= self.missing and not set(todo) & set(why):
                    break  # the child made no progress at all (it could not start): stop, report them failed
            if library == LIBRARIES[-1]:
                self.failures.update({i: why.get(i, "no geometry produced") for i in self.missing})

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
    """One geometry child process and the thread of the caller that drains its pipe into a queue."""

    def __init__(self, model: ifcopenshell.file, path: str, library: Library, ids: list[int], one_by_one: bool):
        forking = "fork" in mp.get_all_start_methods()
        context: Any = mp.get_context("fork" if forking else "spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_worker,
            args=(model if forking else None, path, library, ids, one_by_one, sender),
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


def _worker(
    model: ifcopenshell.file | None, path: str, library: Library, ids: list[int], one_by_one: bool, conn: Any
) -> None:
    """Child process: mesh ``ids``; send ``("shapes", ShapeBatch)``, ``("start", id)``, ``("failed", id, why)``."""
    import faulthandler

    import ifcopenshell.geom

    faulthandler.disable()  # a crash is reported by the caller, naming its element
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # the kernels' diagnostics; failures reach the caller as messages
    os.close(devnull)
    if model is None:
        from cim.bim.reader import open_ifc

        model = open_ifc(path).model
    s = settings()
    parts: list[tuple[int, Any, Any, tuple[float, float, float, float] | None]] = []
    if not one_by_one:
        iterator = ifcopenshell.geom.iterator(
            s, model, 1, include=[model.by_id(i) for i in ids], geometry_library=library
        )
        if iterator.initialize():
            while True:
                element = iterator.get()
                parts.append(_part(element.id, element.geometry))
                if len(parts) >= _CHUNK:
                    conn.send(("shapes", ShapeBatch.join(parts)))
                    parts = []
                if not iterator.next():
                    break
    else:
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


def _part(step_id: int, geometry: Any) -> tuple[int, Any, Any, tuple[float, float, float, float] | None]:
    color = None
    materials = geometry.materials
    if len(materials):
        ids = np.frombuffer(geometry.material_ids_buffer, np.int32)
        ids = ids[ids >= 0]
        m = materials[int(np.bincount(ids).argmax()) if len(ids) else 0]
        d = m.diffuse
        alpha = 1.0 - (m.transparency if m.transparency == m.transparency else 0.0)
        color = (float(d.r()), float(d.g()), float(d.b()), float(alpha))
    return (step_id, geometry.verts_buffer, geometry.faces_buffer, color)


def _offsets(counts: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
