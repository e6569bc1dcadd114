"""One IFC file as a source: its spatial structure, elements, properties and meshes, as asset and mesh batches.

:func:`read_ifc` opens it; :func:`cim.pipeline.ingest.write_source` writes what it yields under one source name
(``"<file name>:ifc"``), assets and meshes each in one transaction, the meshes' committed only after the assets'
was, so a failed asset write leaves both as they were.

The file is read in a child process, the reader (:func:`cim.bim.asset_rows.read_rows`: parse, geometry, properties,
asset rows), which sends rows and meshes to this process as they are done. The two are never at their biggest at the
same time: the reader holds the parsed model (about 5× the file) until it ends, and the store's transaction holds
its rows at about 4× their Arrow size (DuckDB: 40,000 walls, 92 MB against 21). So this process writes the meshes as
they come and the first rows at once (paying the one-time costs of a write while the reader works), checks the rest
as they come and holds them, compact, until the reader has ended; then it writes them, merges the footprints of the
buildings and storeys from the reader's partial footprints (a footprint of 40,000 parts is ~34 MB in GEOS), and
commits. 40,000 walls (34 MB): the process tree peaked at 12-13× the file when this process read the file itself,
9.5× since (``bench/bim_bench.py``).

The reader's memory goes back to the system when it ends, where ifcopenshell keeps most of a model's memory
after the model is freed: a server ingesting file after file would pile it up (4 ingests of a 4 MB file in one
process: RSS +77, +41, +18, +23 MB when this process read the file, +52, +14, +14, +9 MB with the reader; the
rest is the store's). A crash in the reader (ifcopenshell's parser is C++) is one file's error, not the
caller's end. Where ``fork`` is not available, the reader runs in this process.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa

from cim.bim.asset_rows import IfcSummary, Message, merged_footprint, read_rows, source_name
from cim.bim.georef import Placement
from cim.errors import CimError, InvalidInput
from cim.model import AssetBatch
from cim.model.schema import ASSET_SCHEMA
from cim.model.source import Item, Marker, Progress


@contextmanager
def read_ifc(path: str | Path, *, placement: Placement | None = None, with_meshes: bool = True) -> Iterator[IfcRead]:
    """The IFC file at ``path`` opened for reading, in the reader process: a file problem (missing, not IFC,
    truncated, no georeference) raises here, before anything is written; an element whose geometry fails is counted
    in ``failed_elements`` and kept without a mesh.

    Python's cyclic garbage collector is paused while it is open (for the whole process): the ingest makes many
    objects and no cycles, and each full collection walks every object of a process that imported the store
    (~80,000 after pyarrow, pandas and DuckDB), 40-100 ms for nothing collected, at the end of the ingest where it
    waits. Arrow allocates in the system allocator meanwhile (see :func:`_arrow_in_system_allocator`).
    """
    started = time.perf_counter()
    path = Path(path)
    with _collector_paused(), _arrow_in_system_allocator(), _native_stdout_to_stderr():
        forked = "fork" in mp.get_all_start_methods()
        with _reader(path, placement, with_meshes, forked) as messages:
            first = next(messages)
            if first != ("ready",):
                raise RuntimeError(f"the IFC reader began with {first[0]!r}, not 'ready'")
            yield IfcRead(path, messages, hold=forked, started=started)


@contextmanager
def _arrow_in_system_allocator() -> Iterator[None]:
    """pyarrow's default allocator (mimalloc) keeps the pages of the tables the ingest makes and drops, batch
    after batch; glibc's hands them to the next batch (40,000 walls: peak RSS 690-696 MB with mimalloc, 646-670
    without). For the whole process, as pyarrow's default pool is; a buffer goes back to the pool that made it, so
    switching is safe."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@contextmanager
def _native_stdout_to_stderr() -> Iterator[None]:
    """ifcopenshell's C++ code prints diagnostics to stdout (``local z: …`` when it evaluates a linear placement),
    which ``cim ingest --json`` keeps for its JSON: while the file is read, file descriptor 1 leads to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class IfcRead:
    """One IFC file as asset and mesh batches (a :class:`~cim.model.source.SourceRead`), from the reader's messages.

    With ``hold`` (the reader is a child process), the first rows are sent at once and the rest when the reader has
    ended (see the module docstring): they are checked as they come (:class:`AssetBatch`), the last ones (with the
    footprints) when they are sent. The meshes are sent as they come (held, they would save ~6 MB at 40,000 walls,
    and cost small files their write at the end), and put in place while the held rows are written (DuckDB lets go
    of the GIL while it writes); the store commits first, the meshes after it."""

    derive_meshes = None  # its meshes come from the reader

    def __init__(self, path: Path, messages: Iterator[Message], *, hold: bool, started: float) -> None:
        self.path = path
        self.source = source_name(path)
        self._messages = messages
        self._hold = hold
        self._started = started
        self._done: list[IfcSummary] = []

    def items(self, progress: Progress | None) -> Generator[Item, None, None]:
        held: list[AssetBatch] = []
        last: list[dict[str, Any]] = []
        footprints: list[list[bytes]] = []
        wrote = False
        for message in self._messages:
            tag = message[0]
            if tag == "assets":
                batch = _asset_batch(message[1])
                if self._hold and wrote:
                    held.append(batch)
                else:
                    yield batch
                    wrote = True
            elif tag == "last_assets":
                last.append(message[1])
            elif tag == "footprints":
                footprints = message[1]
            elif tag == "meshes":
                yield message[1]
            elif tag == "progress":
                if progress is not None:
                    progress(message[1])
            elif tag == "done":
                self._done.append(message[1])
            else:
                raise RuntimeError(f"unknown message from the IFC reader: {tag!r}")
        yield Marker.MESHES_DONE
        while held:
            yield held.pop(0)
        merged = [merged_footprint(partials) for partials in footprints]
        while last:
            columns = last.pop(0)
            # a building's or storey's geom is the index of its footprint (see cim.bim.asset_rows.Message)
            columns["geom"] = [merged[g] if isinstance(g, int) else g for g in columns["geom"]]
            yield _asset_batch(columns)

    def refuse_empty(self, stored: int) -> None:
        """An IFC file always yields its site: nothing to refuse."""

    def summary(self, written: int, meshes: int) -> IfcSummary:
        summary = self._done[0]
        summary.seconds = round(time.perf_counter() - self._started, 3)
        return summary


def _asset_batch(columns: dict[str, Any]) -> AssetBatch:
    return AssetBatch.from_table(pa.table(columns, schema=pa.schema([ASSET_SCHEMA.field(n) for n in columns])))


@contextmanager
def _reader(path: Path, placement: Placement | None, with_meshes: bool, forked: bool) -> Iterator[Iterator[Message]]:
    """The messages of :func:`read_rows` for ``path``, read in a child process when ``forked`` (else in this one).
    The child has ended when ``("done", …)`` is passed on; leaving earlier stops it and its geometry children."""
    if not forked:
        with closing(read_rows(path, placement, with_meshes)) as messages:
            yield messages
        return
    reader = _ReaderProcess(path, placement, with_meshes)
    try:
        yield reader.messages()
    finally:
        reader.close()


class _ReaderProcess:
    """:func:`read_rows` in a child process, in its own process group with its geometry children, sending its
    messages through a pipe."""

    def __init__(self, path: Path, placement: Placement | None, with_meshes: bool) -> None:
        self.path = path
        self.done = False
        context = mp.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        # not a daemon: daemons may not have children, and it has its geometry children
        self._process = context.Process(
            target=_read_and_send,
            args=(path, placement, with_meshes, sender, self._receiver),
            name="ifc-reader",
            daemon=False,
        )
        self._process.start()
        pid = self._process.pid
        assert pid is not None
        self._pid = pid
        with suppress(OSError):  # both sides set the group: whichever comes first, it is set before it matters
            os.setpgid(self._pid, self._pid)
        sender.close()

    def messages(self) -> Iterator[Message]:
        """Its messages until ``done``; its errors raised here, and its end without ``done`` (a crash). Its geometry
        children hold copies of its end of the pipe (and of the pipe multiprocessing watches), so neither closes
        when it dies alone: whether it lives is asked while no message comes."""
        while True:
            while not self._receiver.poll(0.2):
                if not self._process.is_alive() and not self._receiver.poll():
                    raise self._ended_unexpectedly()
            try:
                message = self._receiver.recv()
            except EOFError:
                raise self._ended_unexpectedly() from None
            tag = message[0]
            if tag == "error":
                raise message[1]
            if tag == "failed":
                error = InvalidInput(f"file {self.path}", f"could not be read: {message[1]}")
                error.add_note(f"in the IFC reader process:\n{message[2]}")
                raise error
            if tag == "done":
                self._process.join()  # it exits at once: its memory is the system's again before the held rows
                self.done = True
            yield message
            if tag == "done":
                return

    def _ended_unexpectedly(self) -> InvalidInput:
        self._process.join()
        why = f"the IFC reader process ended unexpectedly (exit code {self._process.exitcode})"
        return InvalidInput(f"file {self.path}", why)

    def close(self) -> None:
        """Stop the reader and its geometry children unless it is done (a group outlives its first process while
        others are in it, and its id is not reused meanwhile), and reap it."""
        self._receiver.close()
        if not self.done:
            with suppress(OSError):
                os.killpg(self._pid, signal.SIGKILL)
        self._process.join()


def _read_and_send(path: Path, placement: Placement | None, with_meshes: bool, sender: Any, receiver: Any) -> None:
    """The reader process: its own process group, so that stopping it stops its geometry children too."""
    import faulthandler

    # without the caller's end of the pipe here, a send fails when the caller is gone, instead of waiting for ever
    receiver.close()
    os.setpgid(0, 0)
    faulthandler.disable()  # a crash is reported by the caller, naming the file, in one line
    try:
        for message in read_rows(path, placement, with_meshes):
            sender.send(message)
            if message[0] == "done":
                # exit at once: leaving the generator would free the parsed model object by object (40,000
                # walls: ~170 ms), where the end of the process frees it whole
                sender.close()
                os._exit(0)
    except CimError as exc:
        with suppress(OSError):
            sender.send(("error", exc))
    except BrokenPipeError:
        pass  # the caller is gone
    except Exception as exc:
        with suppress(OSError):
            sender.send(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        sender.close()
