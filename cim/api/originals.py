"""``GET /collections/{collectionId}/items/{feature_id}/ifc``: the original IFC file a BIM feature came from.

A route of its own rather than ``f=ifc`` on the item: ``f`` chooses how *this feature* is written, where this answers
the whole file its source ingested (the building with its site, storeys, elements and every property set), byte for
byte as the store keeps it (:mod:`cim.store.originals`), as an attachment under the file's own name. A feature that
came from no IFC file, or whose file was ingested before the store kept originals, is a 404 saying so.

The file is copied to a spooled temporary file first (memory up to one chunk, disk beyond), so a re-ingest while it
is read is answered with the old file or the new one, whole and checked against its SHA-256, never a mix.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from cim.api.deps import KindDep, StoreDep
from cim.api.formats import download_name
from cim.api.schemas import errors
from cim.errors import NotFound
from cim.queries.items import find_feature
from cim.store.originals import CHUNK_BYTES

router = APIRouter(tags=["OGC API – Features"])

#: IFC's media type (STEP physical file, ISO 10303-21), and the zipped form's.
IFC_TYPE = "application/x-step"
IFCZIP_TYPE = "application/zip"
_SENT_BYTES = 256 * 1024


@router.get(
    "/collections/{collectionId}/items/{feature_id}/ifc",
    summary="The original IFC file of a BIM feature",
    description=(
        "The IFC file the feature's source ingested, byte for byte (the whole file: the building with its site, "
        "storeys and elements), as an attachment under its own name. 404 when the feature came from no IFC file, or "
        "its file was ingested before the store kept originals (ingest it again)."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The original file",
            "content": {
                IFC_TYPE: {"schema": {"type": "string", "format": "binary"}},
                IFCZIP_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **errors(400, 404),
    },
)
def original_ifc(
    kind: KindDep,
    feature_id: Annotated[str, Path(description="the feature's id")],
    store: StoreDep,
) -> StreamingResponse:
    asset = find_feature(store, feature_id, kind=kind)
    source = asset.source or ""
    if not source.endswith(":ifc"):
        raise NotFound(f"original IFC of {kind} {feature_id[:200]!r}", "it came from no IFC file")
    spooled = tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES)  # noqa: SIM115 - closed by the generator
    try:
        original = store.copy_original(source, spooled)
    except BaseException:
        spooled.close()
        raise
    if original is None:
        spooled.close()
        raise NotFound(
            f"original IFC of {kind} {feature_id[:200]!r}",
            f"{source.removesuffix(':ifc')} was ingested before the store kept original files; ingest it again",
        )
    spooled.seek(0)
    stem, _, extension = original.name.rpartition(".")
    return StreamingResponse(
        _chunks(spooled),
        media_type=IFCZIP_TYPE if extension.lower() == "ifczip" else IFC_TYPE,
        headers={
            "Content-Disposition": download_name(stem or original.name, extension or "ifc"),
            "Content-Length": str(original.size),
            "ETag": f'"{original.sha256}"',
        },
    )


def _chunks(file: IO[bytes]) -> Iterator[bytes]:
    with file:
        while chunk := file.read(_SENT_BYTES):
            yield chunk
