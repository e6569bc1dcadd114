"""The CLI's side of operating while serving: find the ``cim serve`` that holds a store, and send it the work.

DuckDB lets one process at a time open a file for writing, and a running server holds its store. So ``cim serve``
on a DuckDB store announces itself in a small file beside it (``city.duckdb`` → ``city.server.json``: its URL, pid,
store and tiles folder; no secret), removed when it stops and ignored once its pid is gone. ``cim ingest``,
``cim build`` and ``cim info`` look for it (or take ``--server URL`` / ``CIM_SERVER``) and then upload the files and
run the job in the server (:mod:`cim.api.admin`) instead of opening the busy file, showing its progress and printing
the result a local run prints. Writes need the server's token in ``CIM_WRITE_TOKEN``.

Only the standard library speaks HTTP here: the CLI needs no HTTP client package.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from rich.progress import Progress, TaskID

from cim.errors import CimError, InvalidInput, StoreUnavailable
from cim.store import duckdb_path

log = logging.getLogger("cim.api.client")

#: The announcement beside a DuckDB store: ``city.duckdb`` → ``city.server.json``.
SIDECAR_SUFFIX = ".server.json"
#: The same announcement in the tiles folder a server serves (any store): a build as of a day refuses to write there.
SERVED_MARKER = ".cim-server.json"
#: Seconds to keep trying a server that was announced but does not answer yet (it may be starting).
CONNECT_WAIT_S = 10.0
#: Seconds between two looks at a running job.
POLL_S = 0.25
#: Bytes sent per write of an upload.
UPLOAD_CHUNK = 1 << 20
#: Parts of a shapefile (and kin) sent beside the main file.
COMPANIONS = {
    ".shp": (".dbf", ".shx", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml"),
    ".tab": (".dat", ".id", ".map", ".ind"),
}


class RemoteError(CimError):
    """The server refused or failed a request; ``what``/``why`` are its own."""


# --- the announcement ---


def sidecar_for(store_url: str) -> Path | None:
    """Where a server on the store at ``store_url`` announces itself: beside a DuckDB file; None for PostGIS."""
    path = duckdb_path(store_url)
    return None if path is None else path.with_name(path.name.removesuffix(".duckdb") + SIDECAR_SUFFIX)


@contextmanager
def announce(store_url: str, *, host: str, port: int, tiles_dir: Path) -> Iterator[None]:
    """Write the announcement for as long as the block runs (beside a DuckDB store; in the tiles folder, hidden, for
    any store: :func:`serving_folder`), then remove it."""
    sidecar = sidecar_for(store_url)
    marker = tiles_dir / SERVED_MARKER
    local_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://[{local_host}]:{port}" if ":" in local_host else f"http://{local_host}:{port}"
    store_path = Path(store_url.removeprefix("duckdb://"))
    body = {
        "url": url,
        "pid": os.getpid(),
        "store": str(store_path.resolve()),
        "tiles_dir": str(tiles_dir.resolve()),
        "started": time.time(),
    }
    written: list[Path] = []
    for path in (sidecar, marker):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(body, indent=1), encoding="utf-8")
            temporary.replace(path)
            written.append(path)
        except OSError as exc:
            log.warning("cannot write %s (%s): cim ingest/build/info will not find this server", path, exc.strerror)

    def remove() -> None:
        for path in written:
            if _read_sidecar(path).get("pid") == os.getpid():
                path.unlink(missing_ok=True)

    # uvicorn ends on SIGTERM by raising it again once it has shut down, with the handler found before it ran:
    # this one, which removes the announcement and then lets the signal end the process as it would have
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        remove()
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        signal.raise_signal(signum)

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        remove()


def serving_folder(path: Path) -> tuple[Path, str] | None:
    """(the tiles folder, the server's URL) when ``path`` lies in a tiles folder a live ``cim serve`` serves (its
    hidden marker, which the tiles route never serves), else None."""
    for folder in Path(os.path.abspath(path)).parents:
        found = _read_sidecar(folder / SERVED_MARKER)
        if found and _alive(found.get("pid")):
            return folder, str(found.get("url"))
    return None


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# --- finding the server ---


@dataclass
class Server:
    """A running ``cim serve`` to send work to: its URL, and (when announced) its pid and tiles folder."""

    url: str
    token: str | None = None
    pid: int | None = None
    tiles_dir: Path | None = None
    announcement: Path | None = None  # the file that named it

    def describe(self) -> str:
        return f"cim serve at {self.url}" + (f" (pid {self.pid})" if self.pid else "")


def find_server(store_url: str, *, server: str | None, token: str | None) -> Server | None:
    """The server to send work to: ``server`` when given, else the live one announced beside the store, else None
    (the work runs here, as when no server runs)."""
    if server:
        if not server.startswith(("http://", "https://")):
            raise InvalidInput(f"--server {server}", "must be a URL such as http://127.0.0.1:8000")
        return Server(url=server.rstrip("/"), token=token)
    sidecar = sidecar_for(store_url)
    if sidecar is None or not sidecar.is_file():
        return None
    announced = _read_sidecar(sidecar)
    if not _alive(announced.get("pid")) or not isinstance(announced.get("url"), str):
        return None  # a server that was killed: its store is free again
    tiles = announced.get("tiles_dir")
    tiles_dir = Path(tiles) if tiles else None
    return Server(url=announced["url"], token=token, pid=announced["pid"], tiles_dir=tiles_dir, announcement=sidecar)


# --- talking to it ---


class AdminClient:
    """The ``/admin`` API of one server (see :mod:`cim.api.admin`)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        parts = urlsplit(server.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/admin/info", write=False)

    def check_token(self) -> None:
        """Fail now, before any upload, when the token is missing or the server refuses it."""
        try:
            self._call("GET", "/admin/jobs/-")
        except RemoteError as exc:
            if not exc.what.startswith("job "):  # a 404 for the job "-": the token was taken
                raise

    def upload(self, path: Path, *, beside: str | None = None, sent: Callable[[int], None] | None = None) -> str:
        query = f"?name={quote(path.name)}" + (f"&beside={quote(beside)}" if beside else "")
        size = path.stat().st_size
        with path.open("rb") as body:
            answer = self._call("POST", f"/admin/uploads{query}", body=body, size=size, sent=sent, what=path.name)
        return str(answer["id"])

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(spec).encode()
        return self._call("POST", "/admin/jobs", body=data, size=len(data), content_type="application/json")

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/jobs/{quote(job_id)}")

    def wait(self, job: dict[str, Any], on_progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Poll the job until it ends, passing each state to ``on_progress``; the last state."""
        while job["state"] in ("queued", "running"):
            on_progress(job)
            time.sleep(POLL_S)
            try:
                job = self.job(job["id"])
            except StoreUnavailable as exc:
                why = f"the server at {self.server.url} stopped answering before the job ended"
                raise StoreUnavailable(
                    f"{job['action']} job", f"{why} ({exc.why.split(';')[0]}); cim info shows what went in"
                ) from None
        on_progress(job)
        return job

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=60)
        return http.client.HTTPConnection(self._host, self._port, timeout=60)

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        size: int = 0,
        content_type: str = "application/octet-stream",
        write: bool = True,
        sent: Callable[[int], None] | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if write:
            if not self.server.token:
                raise InvalidInput(
                    f"store served by {self.server.describe()}",
                    "writes go through the server and need its write token: set CIM_WRITE_TOKEN to it",
                )
            headers["Authorization"] = f"Bearer {self.server.token}"
        deadline = time.monotonic() + (CONNECT_WAIT_S if self.server.pid else 0)
        while True:
            connection = self._connection()
            try:
                connection.connect()
                break
            except OSError as exc:
                connection.close()
                if time.monotonic() >= deadline or not _alive(self.server.pid):
                    stale = f" (if pid {self.server.pid} is not it, delete {self.server.announcement})"
                    why = f"does not answer ({exc.strerror or exc}); is cim serve running?"
                    raise StoreUnavailable(
                        f"server {self.server.url}", why + (stale if self.server.pid else "")
                    ) from None
                time.sleep(0.2)
        try:
            connection.putrequest(method, self._base + path)
            for name, value in headers.items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Type", content_type)
                connection.putheader("Content-Length", str(size))
            connection.endheaders()
            with suppress(BrokenPipeError, ConnectionResetError):  # the server answered early (413, 401): read it
                if isinstance(body, bytes):
                    connection.send(body)
                elif body is not None:
                    while chunk := body.read(UPLOAD_CHUNK):
                        connection.send(chunk)
                        if sent is not None:
                            sent(len(chunk))
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise StoreUnavailable(f"server {self.server.url}", f"the connection failed: {exc}") from None
        finally:
            connection.close()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        if status >= 400:
            raise self._refusal(status, answer, what)
        return answer if isinstance(answer, dict) else {}

    def _refusal(self, status: int, answer: dict[str, Any], what: str | None) -> CimError:
        where = f"server {self.server.url}"
        if status == 401:
            return RemoteError(where, "refused the write token: set CIM_WRITE_TOKEN to the token it was started with")
        if status == 403:
            return RemoteError(where, "takes no writes: it was started without CIM_WRITE_TOKEN; restart it with one")
        if status == 404 and not answer.get("what"):
            return RemoteError(where, "has no /admin API: is it an older cim serve?")
        if answer.get("what") and answer.get("why"):
            return RemoteError(str(answer["what"]), str(answer["why"]))
        return RemoteError(what or where, f"answered HTTP {status}")


# --- the commands' remote halves ---


def info_through(server: Server, store_label: str) -> dict[str, Any]:
    """What ``cim info --json`` prints, asked of the server."""
    answer = AdminClient(server).info()
    return {"store": store_label, "assets": answer["assets"], "extent": _extent(answer.get("extent"))}


def _extent(value: Any) -> Any:
    return None if value is None else tuple(value)


def ingest_through(server: Server, files: list[str], options: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``cim ingest`` through the server: upload each file (with its companions), run one job, wait for it.
    ``options``: kind, preset, mapping (a path), crs, place, valid_from. The summary a local run prints."""
    client = AdminClient(server)
    started = time.perf_counter()
    spec: dict[str, Any] = {"action": "ingest", "files": []}
    for key in ("kind", "preset", "crs", "place", "valid_from"):
        if options.get(key):
            spec[key] = options[key]
    if options.get("mapping"):
        mapping = Path(options["mapping"])
        try:
            spec["mapping"] = mapping.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"mapping {mapping}", f"cannot be read: {exc}") from None
        spec["mapping_label"] = str(mapping)
    local: dict[int, dict[str, Any]] = {}  # entries decided here (missing files), by position
    limit = int(client.info().get("max_upload_bytes") or 0)
    for position, given in enumerate(files):
        path_text, _, layer = given.partition(":") if not Path(given).exists() else (given, "", "")
        path = Path(path_text)
        problem = _unsendable(path, limit)
        if problem is not None:
            local[position] = _failed_entry(path, layer, problem)
            progress.console.print(f"[red]error:[/] {local[position]['error']}", highlight=False)
            continue
        task = progress.add_task(f"upload {path.name}", total=path.stat().st_size)
        upload = client.upload(path, sent=partial(progress.advance, task))
        for companion in _companions(path):
            client.upload(companion, beside=upload)
        spec["files"].append({"upload": upload, "label": str(path), "layer": layer or None})
    results: list[dict[str, Any]] = []
    if spec["files"]:
        job = _run(client, spec, progress)
        if job["state"] == "failed":
            raise _job_error(job["error"])
        results = list(job["result"]["files"])
    for position in sorted(local):
        results.insert(position, local[position])
    totals: dict[str, int] = {}
    for entry in results:
        for kind, count in entry.get("assets", {}).items():
            totals[kind] = totals.get(kind, 0) + count
    return {"files": results, "assets": totals, "seconds": round(time.perf_counter() - started, 3)}


def build_through(
    server: Server,
    out: Path,
    progress: Progress,
    compress: str = "meshopt",
    *,
    implicit: bool | None = None,
    as_of: date | None = None,
) -> dict[str, Any]:
    """``cim build --out OUT [--as-of DAY]`` through the server: the tileset OUT names inside its tiles folder. The
    job's result, with ``path`` the version folder as a local build names it."""
    client = AdminClient(server)
    name = out.name
    if server.tiles_dir is not None:
        absolute = Path(os.path.abspath(out)).parent.resolve() / out.name  # out itself links to a version
        try:
            name = absolute.relative_to(server.tiles_dir).as_posix()
        except ValueError:
            raise InvalidInput(
                f"output {out}",
                f"is not in the tiles folder the {server.describe()} serves ({server.tiles_dir}); "
                f"give --out {server.tiles_dir / out.name}",
            ) from None
    spec = {"action": "build", "tileset": name, "compress": compress, "implicit": implicit}
    if as_of is not None:
        spec["as_of"] = as_of.isoformat()
    job = _run(client, spec, progress)
    if job["state"] == "failed":
        raise _job_error(job["error"])
    result = dict(job["result"])
    result["path"] = str(out.parent / f".{out.name}.versions" / result["version"])
    return result


def _run(client: AdminClient, spec: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Submit the job and show its steps as bars until it ends."""
    tasks: dict[int, TaskID] = {}
    waiting = progress.add_task("waiting for the server's write queue", total=None, visible=False)

    def show(job: dict[str, Any]) -> None:
        progress.update(waiting, visible=job["state"] == "queued")
        for index, step in enumerate(job.get("steps", [])):
            if index not in tasks:
                tasks[index] = progress.add_task(step["name"], total=step["total"])
            progress.update(tasks[index], completed=step["done"], total=step["total"])
        if job["state"] not in ("queued", "running"):
            progress.update(waiting, visible=False)

    return client.wait(client.submit(spec), show)


def _unsendable(path: Path, limit: int) -> str | None:
    if not path.exists():
        return f"file {path} — does not exist"
    if path.is_dir():
        return f"file {path} — is a folder; while the store is served, ingest takes files (stop the server for this)"
    size = path.stat().st_size
    if limit and size > limit:
        return f"file {path} — is {size:,} bytes; the server takes {limit:,} at most (CIM_ADMIN_MAX_UPLOAD_BYTES)"
    return None


def _companions(path: Path) -> list[Path]:
    suffixes = COMPANIONS.get(path.suffix.lower(), ())
    found = []
    for suffix in suffixes:
        for variant in (suffix, suffix.upper()):
            candidate = path.with_name(path.stem + variant)
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def _failed_entry(path: Path, layer: str, error: str) -> dict[str, Any]:
    return {
        "path": str(path), "layer": layer or None, "ok": False, "error": error, "features_read": 0, "assets": {},
        "repaired": 0, "rejected": 0, "findings": [],
    }  # fmt: skip


def _job_error(message: str | None) -> RemoteError:
    """The error of a failed job, ``<what> — <why>``, as the error the CLI prints."""
    what, sep, why = (message or "").partition(" — ")
    return RemoteError(what, why) if sep else RemoteError("job", message or "failed")
