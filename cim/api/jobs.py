"""Write jobs in the serving process: ingest uploaded files, build tiles — one at a time, in a worker thread.

With the embedded store the running server owns the DuckDB file (one process at a time may write it), so
``cim ingest``, ``cim build`` and ``cim info`` send their work here (:mod:`cim.api.client`) instead of opening the
busy file. A job runs on the server's own store object, whose reads go on on their own cursors meanwhile (DuckDB) or
pool connections (PostGIS); the event loop only queues jobs and reads their state.

- **Uploads** (:class:`Uploads`) stream into a temp folder, at most ``max_upload_bytes`` each, under the name the
  client gave (so an ingested layer keeps the source name a local ingest gives it); a job takes them over and they
  are deleted when it ends, unused ones after an hour, all of them at shutdown.
- **Jobs** (:class:`JobRunner`) wait in a queue of at most ``max_queued_jobs``; beyond that :class:`QueueFull`
  (503 with ``Retry-After``). Each keeps its state, per-step progress, result and error, which names files by
  their client-side names and never a server path. At shutdown the running job is stopped at its next progress
  step (its transaction rolls back) and queued ones are failed.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio.to_thread
import duckdb
from rich.console import Console
from rich.progress import Progress

from cim.api.errors import RequestTooLarge
from cim.errors import CimError, InvalidInput, NotFound, StoreUnavailable
from cim.settings import AdminSettings
from cim.store import Store
from cim.store.meshes import MeshStore, open_meshes

log = logging.getLogger("cim.api.jobs")

#: Finished jobs remembered for ``GET /admin/jobs/{id}``.
KEEP_JOBS = 200
#: Uploads no job took are deleted after this many seconds.
UPLOAD_TTL_S = 3600.0
#: Bytes gathered in memory before they are written to the upload's file (in a worker thread).
WRITE_CHUNK = 1 << 20
#: A tileset name: one to three plain folder names (``city``, ``districts/pudong``).
TILESET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}){0,2}")
#: Seconds a job waits for the mesh file while a request has it open read-only (a preview picture).
MESH_OPEN_WAIT_S = 10.0


_Held = TypeVar("_Held")


def _held(lock: threading.Lock, table: dict[str, _Held], key: str, what: str, why: str) -> _Held:
    """``table[key]``, read under ``lock``; a key it does not hold is :class:`NotFound` saying ``why`` it may not."""
    with lock:
        found = table.get(key)
    if found is None:
        raise NotFound(f"{what} {key[:40]!r}", f"is not on this server ({why})")
    return found


class QueueFull(StoreUnavailable):
    """No room for another write job; the client should try again later."""


class JobStopped(CimError):
    """The server is shutting down: the running job stops at its next step, nothing of it is kept."""


# --- uploads ---


@dataclass
class Upload:
    id: str
    name: str
    folder: Path
    bytes: int
    created: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> Path:
        return self.folder / self.name


def check_file_name(name: str) -> str:
    """``name`` when it is a plain file name (no folder, not hidden), else :class:`InvalidInput`."""
    if (
        not name
        or len(name) > 255
        or name.startswith(".")
        or any(c in name for c in "/\\\x00")
        or any(ord(c) < 32 for c in name)
    ):
        raise InvalidInput(f"upload name {name[:80]!r}", "must be a plain file name such as roads.geojson")
    return name


class Uploads:
    """Uploaded files waiting for their job, each in a folder of its own (companions share their main file's)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()

    @classmethod
    def in_temp(cls, settings: AdminSettings) -> Uploads:
        if settings.upload_dir is not None:
            settings.upload_dir.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="cim-uploads-", dir=settings.upload_dir)), settings.max_upload_bytes)

    async def receive(
        self, name: str, chunks: AsyncIterator[bytes], *, declared: int | None, beside: str | None = None
    ) -> Upload:
        """Stream ``chunks`` into a new file ``name`` (beside the upload ``beside``, for a shapefile's parts)."""
        check_file_name(name)
        if declared is not None and declared > self.max_bytes:
            why = f"is {declared:,} bytes; the server takes {self.max_bytes:,} at most"
            raise RequestTooLarge(f"upload {name}", why)
        self._expire()
        if beside is not None:
            folder = self._get(beside).folder
            if (folder / name).exists():
                raise InvalidInput(f"upload {name}", "is there already beside that upload")
        else:
            folder = self.root / uuid.uuid4().hex
            folder.mkdir()
        target = folder / name
        size = 0
        try:
            with target.open("wb") as out:
                pending: list[bytes] = []
                held = 0
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise RequestTooLarge(f"upload {name}", f"is over the server's {self.max_bytes:,} bytes")
                    pending.append(chunk)
                    held += len(chunk)
                    if held >= WRITE_CHUNK:
                        await anyio.to_thread.run_sync(out.write, b"".join(pending))
                        pending, held = [], 0
                if pending:
                    await anyio.to_thread.run_sync(out.write, b"".join(pending))
        except OSError:
            self._discard(folder, target, beside)
            raise StoreUnavailable(f"upload {name}", "could not be kept: the server is out of disk space") from None
        except BaseException:
            self._discard(folder, target, beside)
            raise
        upload = Upload(id=folder.name if beside is None else uuid.uuid4().hex, name=name, folder=folder, bytes=size)
        if beside is None:  # a companion is not listed: it goes (and expires) with the file it was put beside
            with self._lock:
                self._uploads[upload.id] = upload
        return upload

    def take(self, ids: list[str]) -> list[Upload]:
        """The uploads ``ids``, no longer listed (their job owns them now); :class:`NotFound` for an unknown one."""
        with self._lock:
            missing = [i for i in ids if i not in self._uploads]
            if missing:
                raise NotFound(f"upload {missing[0][:40]!r}", "is not on this server (expired, or taken by a job)")
            return [self._uploads.pop(i) for i in ids]

    def release(self, uploads: list[Upload]) -> None:
        for folder in {u.folder for u in uploads}:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _get(self, upload_id: str) -> Upload:
        return _held(self._lock, self._uploads, upload_id, "upload", "expired, or taken by a job")

    def _discard(self, folder: Path, target: Path, beside: str | None) -> None:
        if beside is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [u for u in self._uploads.values() if now - u.created > UPLOAD_TTL_S]
            for u in old:
                del self._uploads[u.id]
        self.release(old)


# --- jobs ---

JobState = Literal["queued", "running", "done", "failed"]


@dataclass
class Job:
    """One write job: what it does, where it stands, what came of it."""

    id: str
    action: str
    work: Callable[[Job], dict[str, Any]]
    uploads: list[Upload] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # server text → what the client calls it
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    progress: Progress | None = None  # bars the work updates; read for GET /admin/jobs/{id}
    stop: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        steps = []
        if self.progress is not None:
            for task in self.progress.tasks:
                total = None if task.total is None else int(task.total)
                steps.append({"name": self.clean(task.description), "done": int(task.completed), "total": total})
        return {
            "id": self.id,
            "action": self.action,
            "state": self.state,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "steps": steps,
            "result": self.result,
            "error": self.error,
        }

    def clean(self, text: str) -> str:
        """``text`` with every server path it holds replaced by what the client calls it."""
        for server, client in sorted(self.labels.items(), key=lambda item: -len(item[0])):
            if "/" in server:  # paths only: a bare word (a relative "tiles") may be ordinary text
                text = text.replace(server, client)
        return text

    def bars(self) -> Progress:
        """Progress bars for the work, shown to no one: polled by clients, and a stop point at each step."""
        job = self

        class _Bars(Progress):
            def advance(self, task_id: Any, advance: float = 1) -> None:
                if job.stop.is_set():
                    raise JobStopped(f"{job.action} job", "stopped: the server is shutting down; nothing was kept")
                super().advance(task_id, advance)

            def update(self, task_id: Any, **changes: Any) -> None:
                if job.stop.is_set() and "completed" in changes:
                    raise JobStopped(f"{job.action} job", "stopped: the server is shutting down; nothing was kept")
                super().update(task_id, **changes)

        self.progress = _Bars(console=Console(file=io.StringIO()), disable=True)
        return self.progress


@contextmanager
def one_writer_at_a_time(tiles_dir: Path) -> Iterator[None]:
    """Held while a job runs: the jobs of every process serving ``tiles_dir`` on this machine (the workers of
    ``cim serve --workers N``) run one at a time, as one process's jobs do, since they write the same mesh file and
    tilesets. A lock file (``flock``), released by the kernel when its process ends however it ends."""
    digest = hashlib.sha256(str(tiles_dir.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"cim-write-jobs-{digest}.lock", "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits for the other worker's job
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class JobRunner:
    """The server's write jobs: a bounded queue and one worker thread (see the module docstring)."""

    def __init__(self, store: Store, tiles_dir: Path, settings: AdminSettings) -> None:
        self.store = store
        self.tiles_dir = tiles_dir
        self.settings = settings
        self.uploads = Uploads.in_temp(settings)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._work, name="cim-write-jobs", daemon=True)
        self._thread.start()

    # --- the event loop's side: queue and look up ---
    def submit(self, job: Job) -> Job:
        with self._lock:
            queued = sum(1 for j in self._jobs.values() if j.state == "queued")
            if self._stopping.is_set() or queued >= self.settings.max_queued_jobs:
                self.uploads.release(job.uploads)
                why = "is shutting down" if self._stopping.is_set() else f"already has {queued} write jobs waiting"
                raise QueueFull("server", f"{why}; try again later")
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS + self.settings.max_queued_jobs:
                oldest = next((k for k, j in self._jobs.items() if j.state in ("done", "failed")), None)
                if oldest is None:
                    break
                del self._jobs[oldest]
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        return _held(self._lock, self._jobs, job_id, "job", "unknown, or forgotten after a restart")

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {state: states.count(state) for state in ("queued", "running", "done", "failed")}

    def stop(self, wait_s: float = 3.0) -> None:
        """Stop the running job at its next step, fail the queued ones, wait up to ``wait_s`` for the thread."""
        self._stopping.set()
        with self._lock:
            for job in self._jobs.values():
                job.stop.set()
        self._queue.put(None)
        if self.join(wait_s):
            self.uploads.close()
        else:  # inside a long step (a file being read): its transaction never commits, as if the server were killed
            log.warning("a write job is still running at shutdown; nothing of it will be kept")

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the worker thread to end (after :meth:`stop`); whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the worker thread ---
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            if self._stopping.is_set():
                self._finish(job, error="job — not run: the server shut down before its turn")
                continue
            try:
                with one_writer_at_a_time(self.tiles_dir):  # the worker processes of one cim serve --workers N
                    job.state, job.started = "running", time.time()
                    result = job.work(job)
            except CimError as exc:
                self._finish(job, error=job.clean(f"{exc.what} — {exc.why}"))
            except Exception as exc:
                log.error("write job %s (%s) failed unexpectedly", job.id, job.action, exc_info=exc)
                why = f"failed unexpectedly ({type(exc).__name__}); see the server log"
                self._finish(job, error=f"{job.action} job — {why}")
            else:
                self._finish(job, result=result)
        while not self._queue.empty():  # queued behind the stop
            left = self._queue.get_nowait()
            if left is not None:
                self._finish(left, error="job — not run: the server shut down before its turn")

    def _finish(self, job: Job, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        job.result, job.error = result, error
        job.state = "failed" if error is not None else "done"
        job.finished = time.time()
        self.uploads.release(job.uploads)

    def open_meshes(self, *, read_only: bool) -> MeshStore:
        """The store's mesh file. A request may hold it open read-only for a moment (a preview picture), and DuckDB
        opens a file in one way at a time within a process: wait for it rather than fail."""
        deadline = time.monotonic() + MESH_OPEN_WAIT_S
        while True:
            try:
                return open_meshes(self.store, read_only=read_only)
            except duckdb.ConnectionException:
                if time.monotonic() > deadline:
                    raise StoreUnavailable("mesh file", "is held by another reader; try again") from None
                time.sleep(0.05)


def tileset_folder(tiles_dir: Path, name: str) -> Path:
    """The folder of the tileset ``name`` inside the tiles folder, or :class:`InvalidInput`."""
    if not TILESET_NAME.fullmatch(name):
        raise InvalidInput(
            f"tileset {name[:80]!r}", "must be a folder name inside the server's tiles folder, such as city"
        )
    return tiles_dir / name
