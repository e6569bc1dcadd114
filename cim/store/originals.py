"""The original file of a source, kept in the store beside its assets (schema step 9): an ingested IFC file, byte for
byte, for ``cim export --format ifc`` and ``GET /collections/{collectionId}/items/{featureId}?f=ifc``.

Written by :meth:`~cim.store.sqlstore.SqlStore.replace_source` inside the transaction that replaces the source's
assets, so assets and original always come from the same ingest: a re-ingest that fails keeps both as they were, and
a store never holds assets without the original they came with, nor an original without its assets. Removing a
source (:meth:`~cim.store.sqlstore.SqlStore.delete_assets` by source) removes its original in the same transaction.

The bytes are kept in chunks of :data:`CHUNK_BYTES` under a ``file_id`` new at each ingest. A reader
(:func:`copy_original`) reads the source's row, then its chunks one statement each; when a re-ingest commits
meanwhile, the old chunks are gone and the reader starts again on the new file: it hands on the old file or the new
one, never a mix, and checks the SHA-256 of what it wrote against the one stored.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cim.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from cim.store.sqlstore import SqlStore

#: Bytes per stored chunk: PostgreSQL's bytea and DuckDB's BLOB both take them in one parameter, and a reader or writer
#: holds one at a time.
CHUNK_BYTES = 8 * 1024 * 1024
#: Times :func:`copy_original` starts again when re-ingests keep replacing the file under it.
ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class OriginalFile:
    """A file to keep as the original of a source: where it is now, and the name it is handed on under."""

    path: Path
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredOriginal:
    """The original of ``source`` as the store keeps it."""

    source: str
    file_id: str
    name: str
    size: int
    sha256: str
    chunks: int
    stored_at: datetime


class OriginalReplaced(Exception):
    """The original being read was replaced by a re-ingest meanwhile: read it again from its row."""


def replace_original(
    store: SqlStore, source: str, original: OriginalFile | None, *, chunk_bytes: int = CHUNK_BYTES
) -> StoredOriginal | None:
    """Inside the caller's change: drop the original ``source`` had and keep ``original`` (None: none) instead,
    streamed from its file ``chunk_bytes`` at a time and hashed on the way."""
    p = store.dialect.param
    store.execute(
        f"DELETE FROM source_file_chunks WHERE file_id IN (SELECT file_id FROM source_files WHERE source = {p})",
        [source],
    )
    store.execute(f"DELETE FROM source_files WHERE source = {p}", [source])
    if original is None:
        return None
    file_id = uuid.uuid4().hex
    digest = hashlib.sha256()
    size = seq = 0
    try:
        handle = original.path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"file {original.path}", f"cannot be kept as the original: {exc.strerror}") from None
    with handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
            size += len(chunk)
            store.execute(f"INSERT INTO source_file_chunks VALUES ({p}, {p}, {p})", [file_id, seq, chunk])
            seq += 1
    kept = StoredOriginal(
        source=source,
        file_id=file_id,
        name=original.name,
        size=size,
        sha256=digest.hexdigest(),
        chunks=seq,
        stored_at=datetime.now(UTC),
    )
    store.execute(
        f"INSERT INTO source_files VALUES ({', '.join([p] * 7)})",
        [source, file_id, kept.name, size, kept.sha256, seq, kept.stored_at],
    )
    return kept


def delete_original(store: SqlStore, source: str) -> None:
    """Inside the caller's change: the original of ``source`` goes (a source removed)."""
    replace_original(store, source, None)


_HEADER = "source, file_id, name, size, sha256, chunks, stored_at"


def originals_of(store: SqlStore, sources: Sequence[str]) -> dict[str, StoredOriginal]:
    """The stored originals of these sources, by source (a source without one is left out)."""
    if not sources:
        return {}
    p = store.dialect.param
    rows = store.select_rows(
        f"SELECT {_HEADER} FROM source_files WHERE source IN ({', '.join([p] * len(sources))})", list(sources)
    )
    return {row["source"]: _stored(row) for row in rows}


def chunks_of(store: SqlStore, original: StoredOriginal) -> Iterator[bytes]:
    """The bytes of ``original``, a chunk at a time; :class:`OriginalReplaced` when a re-ingest replaced it
    meanwhile."""
    p = store.dialect.param
    for seq in range(original.chunks):
        rows = store.select_rows(
            f"SELECT data FROM source_file_chunks WHERE file_id = {p} AND seq = {p}", [original.file_id, seq]
        )
        if not rows:
            raise OriginalReplaced(original.source)
        yield bytes(rows[0]["data"])


def copy_original(store: SqlStore, source: str, out: IO[bytes]) -> StoredOriginal | None:
    """Write the original of ``source`` to ``out`` (from its start, which is truncated first) and return what it is,
    or None when the source has none. The bytes written are the old file or the new one when a re-ingest replaces
    it meanwhile, never a mix (see the module docstring), and their SHA-256 is the one stored."""
    for _ in range(ATTEMPTS):
        original = originals_of(store, [source]).get(source)
        if original is None:
            return None
        out.seek(0)
        out.truncate()
        digest = hashlib.sha256()
        try:
            for chunk in chunks_of(store, original):
                digest.update(chunk)
                out.write(chunk)
        except OriginalReplaced:
            continue
        if digest.hexdigest() != original.sha256:
            raise StoreError(
                f"original {original.name!r} of {source}",
                f"its bytes do not match the SHA-256 stored with them ({original.sha256[:12]}…); ingest it again",
            )
        out.flush()
        return original
    raise StoreError(f"original of {source}", f"was replaced {ATTEMPTS} times while it was read; try again")


def _stored(row: dict[str, object]) -> StoredOriginal:
    stored_at = row["stored_at"]
    assert isinstance(stored_at, datetime)
    return StoredOriginal(
        source=str(row["source"]),
        file_id=str(row["file_id"]),
        name=str(row["name"]),
        size=int(str(row["size"])),
        sha256=str(row["sha256"]),
        chunks=int(str(row["chunks"])),
        stored_at=stored_at,
    )
