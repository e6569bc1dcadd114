"""``/reports/checkup-{year}.html`` and ``.pdf``: the annual city check-up (:mod:`cim.report`), written into the
server's reports folder (``CIM_REPORTS_DIR``) when first asked and again only when the model, the year's cases or
the day changed (:func:`cim.report.build.cached_checkup`).

Generated on request rather than by ``cim report checkup`` into a served folder: while the server runs it holds the
DuckDB store, so the command could not read it, and a report written on request is the one of the model served now.
``cim report checkup`` asks a running server for these two files the way the other read commands do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from cim.api.deps import ResourcesDep, StoreDep
from cim.api.schemas import errors
from cim.report.build import cached_checkup

router = APIRouter(prefix="/reports", tags=["reports"])
Year = Annotated[int, Path(ge=1900, le=2999, description="the year of the check-up, e.g. 2026")]


def _report(store: StoreDep, resources: ResourcesDep, year: int, index: int) -> FileResponse:
    settings = resources.settings
    paths = cached_checkup(
        store, year=year, out=settings.reports_dir, targets=settings.targets_file, targets_scale=settings.targets_scale
    )
    media = ("text/html; charset=utf-8", "application/pdf")[index]
    return FileResponse(paths[index], media_type=media, filename=paths[index].name, content_disposition_type="inline")


@router.get(
    "/checkup-{year}.html",
    summary="The annual city check-up as an HTML page (城市体检报告): offline, charts and maps inline",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "the report"},
        **errors(400),
    },
)
def get_checkup_html(year: Year, store: StoreDep, resources: ResourcesDep) -> FileResponse:
    return _report(store, resources, year, 0)


@router.get(
    "/checkup-{year}.pdf",
    summary="The annual city check-up as a PDF (城市体检报告)",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the report",
        },
        **errors(400),
    },
)
def get_checkup_pdf(year: Year, store: StoreDep, resources: ResourcesDep) -> FileResponse:
    return _report(store, resources, year, 1)
