"""``/admin``: ingest and build while serving, through the server that owns the store (:mod:`cim.api.jobs`).

- ``POST /admin/uploads?name=roads.geojson[&beside=ID]`` — the raw file as the body (``beside``: a shapefile's
  ``.dbf``/``.shx``/``.prj`` next to its ``.shp``); 201 with the upload's id; 413 over ``CIM_ADMIN_MAX_UPLOAD_BYTES``.
- ``POST /admin/jobs`` — ``{"action": "ingest", "files": [{"upload": ID, "label": "data/roads.geojson",
  "layer": null}], "kind" | "preset" | "mapping" (TOML text), "crs", "place"}`` or ``{"action": "build",
  "tileset": "city"}`` (built into the server's tiles folder, swapped in atomically); 202 with the job; 503 with
  ``Retry-After`` when the queue is full.
- ``GET /admin/jobs/{id}`` — state (``queued``, ``running``, ``done``, ``failed``), progress steps, the result a
  local ``cim ingest --json`` / ``cim build --json`` prints, or the error.
- ``GET /admin/info`` — what ``cim info`` shows (public, like every read), the write jobs and the tilesets.

Every write needs ``Authorization: Bearer <CIM_WRITE_TOKEN>``, checked before the body is read.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from cim.api.deps import StoreDep, json_body, require_write_token
from cim.api.errors import error_response
from cim.api.jobs import Job, JobRunner, QueueFull, Upload, tileset_folder
from cim.api.schemas import errors
from cim.errors import InvalidInput
from cim.queries.params import parse_date, store_as_of
from cim.settings import AppSettings
from cim.store import Store, duckdb_path

if TYPE_CHECKING:
    from pyproj import CRS

    from cim.bim.georef import Placement
    from cim.gis.mapping import LayerMapping

log = logging.getLogger("cim.api.admin")
#: Seconds a client is asked to wait when the job queue is full.
RETRY_AFTER_S = 5


class IngestFileIn(BaseModel):
    upload: str = Field(max_length=64, description="id from POST /admin/uploads")
    label: str = Field(max_length=500, description="the file as the client names it (used in results and errors)")
    layer: str | None = Field(None, max_length=200, description="the layer to read, for files holding several")


class JobIn(BaseModel):
    action: Literal["ingest", "build"]
    files: list[IngestFileIn] = Field(default_factory=list, max_length=200)
    kind: str | None = Field(None, max_length=40)
    preset: str | None = Field(None, max_length=40)
    mapping: str | None = Field(None, max_length=200_000, description="layer mapping TOML text")
    mapping_label: str | None = Field(None, max_length=500, description="the mapping file as the client names it")
    crs: str | None = Field(None, max_length=2000)
    place: str | None = Field(None, max_length=200)
    valid_from: date | None = Field(None, description="ingest: the day its changes enter the model's history")
    tileset: str | None = Field(None, max_length=200, description="build: tileset folder in the tiles folder")
    compress: Literal["meshopt", "none"] = Field("meshopt", description="build: mesh compression of the glbs")
    implicit: bool | None = Field(None, description="build: implicit tiling (true), explicit (false), by size (null)")
    as_of: str | None = Field(
        None,
        max_length=10,
        json_schema_extra={"format": "date"},
        description="build: the city as the model stood at the end of this day (YYYY-MM-DD) / 按该日结束时的模型构建",
    )


class UploadOut(BaseModel):
    id: str
    name: str
    bytes: int


class StepOut(BaseModel):
    name: str
    done: int
    total: int | None


class JobOut(BaseModel):
    id: str
    action: str
    state: Literal["queued", "running", "done", "failed"]
    created: float
    started: float | None
    finished: float | None
    steps: list[StepOut]
    result: dict[str, Any] | None = Field(description="as `cim ingest --json` / `cim build --json` print it")
    error: str | None = Field(description="`<what> — <why>`, when the job failed")


class InfoOut(BaseModel):
    assets: dict[str, int]
    extent: list[float] | None
    jobs: dict[str, int]
    tilesets: list[str]
    max_upload_bytes: int


async def get_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.admin_jobs
    return runner


RunnerDep = Annotated[JobRunner, Depends(get_runner)]
WRITE = [Depends(require_write_token)]


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place, for a request body read by hand."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


def build_admin_router(settings: AppSettings) -> APIRouter:
    """The ``/admin`` routes, with a lifespan that starts the job runner on the server's store and stops it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = app.state.resources.store  # opened by the app's lifespan, which runs around this one
        app.state.admin_jobs = runner = JobRunner(store, settings.server.tiles_dir, settings.admin)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(runner.stop)

    router = APIRouter(prefix="/admin", tags=["admin"], lifespan=lifespan)
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    router.add_api_route(
        "/uploads", upload, methods=["POST"], status_code=201, response_model=UploadOut, dependencies=WRITE,
        summary="Upload a file for an ingest job (the raw file as the body)",
        openapi_extra={"requestBody": {"required": True, "content": binary}},
        responses=errors(401, 403, 400, 404, 413),
    )  # fmt: skip
    router.add_api_route(
        "/jobs", create_job, methods=["POST"], status_code=202, response_model=JobOut, dependencies=WRITE,
        summary="Queue a write job: ingest uploaded files, or build tiles into the served tiles folder",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(JobIn)}}}
        },
        responses=errors(401, 403, 400, 404, 413),
    )  # fmt: skip
    router.add_api_route(
        "/jobs/{job_id}", get_job, methods=["GET"], response_model=JobOut, dependencies=WRITE,
        summary="A write job's state, progress, result or error",
        responses=errors(401, 403, 404),
    )  # fmt: skip
    router.add_api_route(
        "/info", get_info, methods=["GET"], response_model=InfoOut, responses=errors(),
        summary="What the store holds (as `cim info`), the write jobs and the tilesets",
    )  # fmt: skip
    return router


async def upload(
    request: Request,
    runner: RunnerDep,
    name: Annotated[
        str,
        Query(
            min_length=1,
            max_length=255,
            pattern=r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]*$",  # jobs.check_file_name: no folder, not hidden
            description="the file's name, e.g. roads.geojson",
        ),
    ],
    beside: Annotated[str | None, Query(max_length=64, description="put it beside this upload")] = None,
) -> UploadOut:
    declared = request.headers.get("content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    received = await runner.uploads.receive(name, request.stream(), declared=size, beside=beside)
    return UploadOut(id=received.id, name=received.name, bytes=received.bytes)


async def create_job(request: Request, runner: RunnerDep) -> JSONResponse:
    try:
        spec = JobIn.model_validate(await json_body(request))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput("job", problems) from None
    job = _ingest_job(runner, spec) if spec.action == "ingest" else _build_job(runner, spec)
    try:
        runner.submit(job)
    except QueueFull as exc:
        response = error_response(503, "ServiceUnavailable", exc.what, exc.why)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/admin/jobs/{job.id}"})


async def get_job(job_id: str, runner: RunnerDep) -> dict[str, Any]:
    return runner.get(job_id).to_dict()


def get_info(store: StoreDep, runner: RunnerDep) -> InfoOut:
    extent = store.extent()
    tiles = runner.tiles_dir
    names = sorted(p.name for p in tiles.iterdir() if not p.name.startswith(".")) if tiles.is_dir() else []
    return InfoOut(
        assets=store.count_by_kind(),
        extent=None if extent is None else list(extent),
        jobs=runner.counts(),
        tilesets=names,
        max_upload_bytes=runner.settings.max_upload_bytes,
    )


def _store_labels(store: Store) -> dict[str, str]:
    """How errors name the store: a DuckDB file by its name, a database by neither host nor user."""
    url = store.url
    path = duckdb_path(url)
    name = "(database)" if path is None else path.name
    return {url: name, str((Path(url) if path is None else path).resolve()): name}


def _ingest_job(runner: JobRunner, spec: JobIn) -> Job:
    if not spec.files:
        raise InvalidInput("ingest job", "names no files; upload them first (POST /admin/uploads)")
    options = _ingest_options(runner, spec)  # checked now: a bad option is a 400, not a failed job
    uploads = runner.uploads.take([f.upload for f in spec.files])
    job = Job(id=uuid.uuid4().hex, action="ingest", work=lambda job: {}, uploads=uploads)
    job.labels = {**_store_labels(runner.store), str(runner.uploads.root): "(upload)"}
    for upload, file in zip(uploads, spec.files, strict=True):
        job.labels[str(upload.path)] = file.label
        job.labels[str(upload.folder)] = "(upload)"

    def work(job: Job) -> dict[str, Any]:
        return _ingest(runner, job, spec, uploads, options)

    job.work = work
    return job


IngestOptions = tuple["LayerMapping | None", "CRS | None", "Placement | None"]


def _ingest_options(runner: JobRunner, spec: JobIn) -> IngestOptions:
    """The layer mapping, CRS and placement the job names, as ``cim ingest`` reads them from its options."""
    from cim.errors import CimError
    from cim.gis.mapping import LayerMapping, load_mapping, preset
    from cim.gis.readers import parse_crs
    from cim.model import parse_kind

    given = [name for name, value in (("kind", spec.kind), ("preset", spec.preset), ("mapping", spec.mapping)) if value]
    if len(given) > 1:
        raise InvalidInput("ingest options", f"give at most one of kind, preset or mapping (got {', '.join(given)})")
    mapping: LayerMapping | None = None
    if spec.mapping is not None:
        label = spec.mapping_label or "mapping.toml"
        path = runner.uploads.root / f"mapping-{uuid.uuid4().hex}.toml"
        path.write_text(spec.mapping, encoding="utf-8")
        try:
            mapping = load_mapping(path)
        except CimError as exc:
            raise InvalidInput(exc.what.replace(str(path), label), exc.why.replace(str(path), label)) from None
        finally:
            path.unlink(missing_ok=True)
    elif spec.preset is not None:
        mapping = preset(spec.preset)
    elif spec.kind is not None:
        mapping = LayerMapping(kind=parse_kind(spec.kind))
    crs = parse_crs(spec.crs) if spec.crs else None
    placement = None
    if spec.place:  # ifcopenshell loads only when an IFC placement is given
        from cim.bim.georef import Placement

        placement = Placement.parse(spec.place)
    return mapping, crs, placement


def _ingest(runner: JobRunner, job: Job, spec: JobIn, uploads: list[Upload], options: IngestOptions) -> dict[str, Any]:
    """The job's work, in the runner's thread: the same :func:`ingest_files` as ``cim ingest``."""
    from cim.pipeline.dated import at_midnight
    from cim.pipeline.files import ingest_files

    started = time.perf_counter()
    mapping, crs, placement = options
    specs = [str(u.path) + (f":{f.layer}" if f.layer else "") for u, f in zip(uploads, spec.files, strict=True)]
    with runner.open_meshes(read_only=False) as meshes:
        at = at_midnight(spec.valid_from) if spec.valid_from is not None else None
        summary = ingest_files(
            runner.store, meshes, specs, mapping=mapping, crs=crs, placement=placement, progress=job.bars(), at=at
        )
    for entry, file in zip(summary["files"], spec.files, strict=True):
        entry["path"] = file.label
        if entry.get("error"):
            entry["error"] = job.clean(entry["error"])
    return {**summary, "seconds": round(time.perf_counter() - started, 3)}


def _build_job(runner: JobRunner, spec: JobIn) -> Job:
    if not spec.tileset:
        raise InvalidInput("build job", 'names no tileset; give e.g. "tileset": "city"')
    out = tileset_folder(runner.tiles_dir, spec.tileset)
    job = Job(id=uuid.uuid4().hex, action="build", work=lambda job: {})
    job.labels = {
        **_store_labels(runner.store),
        str(out.resolve()): spec.tileset,
        str(out): spec.tileset,
        str(runner.tiles_dir.resolve()): "(tiles folder)",
        str(runner.tiles_dir): "(tiles folder)",
    }

    if spec.as_of is not None:
        parse_date(spec.as_of, what="as_of")  # not a date: refused now (400); a day out of the history fails the job

    def work(job: Job) -> dict[str, Any]:
        return _build(runner, job, out, spec.compress, spec.implicit, spec.as_of)

    job.work = work
    return job


def _build(
    runner: JobRunner,
    job: Job,
    out: Path,
    compress: str = "meshopt",
    implicit: bool | None = None,
    as_of: str | None = None,
) -> dict[str, Any]:
    from cim.store.meshes import has_meshes
    from cim.tiling.build import build_tiles

    if not has_meshes(runner.store):
        raise InvalidInput("store", "has no meshes yet: ingest layers before building tiles")
    bars = job.bars()
    task = bars.add_task("tiles", total=None)
    with runner.open_meshes(read_only=True) as meshes:
        summary = build_tiles(
            store_as_of(runner.store, as_of)[0],
            meshes,
            out,
            progress=lambda done, total: bars.update(task, completed=done, total=total),
            compress=compress,
            implicit=implicit,
            cluster=runner.settings.dask_cluster,  # else a local cluster for this job, stopped after it
        )
    return {
        **summary.to_json(),
        "version": Path(summary.path).name,
        "written": summary.written,
        "reused": summary.reused,
        "without_mesh": summary.without_mesh,
        "without_mesh_examples": summary.without_mesh_examples,
        "degenerate_triangles": summary.degenerate_triangles,
    }
