"""Opening IFC files: clear errors for what is not IFC, and the pre-release IFC 4.3 schemas.

ifcopenshell 0.9 refuses the pre-release schemas ``IFC4X3_RC1`` … ``IFC4X3_RC4`` ("Unsupported schema"). Files in
them (GeometryGym and other early IFC 4.3 exporters wrote many) are read by rewriting the header's schema name to
``IFC4X3_ADD2`` and parsing the text as that schema. The entities used by drainage, road and site models kept their
names and attribute order from RC3 to ADD2, so this works for them; an entity that changed makes the parse fail,
and the file is then refused with an error saying it is a pre-release schema. :data:`PRE_RELEASE_REMAP` is the
whole remap.

An ``.ifczip`` (a zip archive holding one ``.ifc``, as authoring tools save it) is read from memory, with the same
checks as a plain file.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import ifcopenshell

from cim.errors import InvalidInput, NotFound

#: Header schema names read as another, released schema (see the module docstring).
PRE_RELEASE_REMAP = {f"IFC4X3_RC{n}": "IFC4X3_ADD2" for n in range(1, 5)}
SUPPORTED = ("IFC2X3", "IFC4", "IFC4X3_ADD2", "IFC4X3")
_SCHEMA_RE = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", re.IGNORECASE)
_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class OpenedIfc:
    """A parsed IFC file: the model, the schema the header names, and the schema it was read as."""

    model: ifcopenshell.file
    path: Path
    declared_schema: str
    schema: str

    @property
    def remapped(self) -> bool:
        return self.declared_schema != self.schema


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(_HEAD_BYTES)


def _must_exist(path: Path) -> None:
    if not path.is_file():
        raise NotFound(f"file {path}", "does not exist" if not path.exists() else "is not a file")


def _schema_in(head: bytes, what: str) -> str:
    if not head.lstrip().startswith(b"ISO-10303-21"):
        raise InvalidInput(what, "is not an IFC file: it does not start with the STEP header 'ISO-10303-21;'")
    found = _SCHEMA_RE.search(head)
    if found is None:
        raise InvalidInput(what, "has no FILE_SCHEMA in its header; it is truncated or not an IFC file")
    return found.group(1).decode("ascii", "replace").upper()


def _zipped_ifc(path: Path) -> bytes:
    """The one ``.ifc`` inside the zip archive ``path``."""
    what = f"file {path}"
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".ifc") and not m.endswith("/")]
            if len(members) != 1:
                found = "no .ifc file" if not members else f"{len(members)} .ifc files ({', '.join(members[:3])} …)"
                raise InvalidInput(what, f"is a zip archive holding {found}; an .ifczip holds exactly one")
            return archive.read(members[0])
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:  # RuntimeError: encrypted members
        raise InvalidInput(what, f"is a damaged or unreadable zip archive: {exc}") from None


def open_ifc(path: str | Path) -> OpenedIfc:
    """Parse ``path``; pre-release IFC 4.3 files are read as IFC4X3_ADD2.

    >>> from cim.errors import NotFound
    >>> try:
    ...     open_ifc("/nonexistent.ifc")
    ... except NotFound as exc:
    ...     print(exc)
    file /nonexistent.ifc — does not exist
    """
    path = Path(path)
    _must_exist(path)
    zipped = _zipped_ifc(path) if zipfile.is_zipfile(path) else None
    what = f"file {path}"
    declared = _schema_in(_head(path) if zipped is None else zipped[:_HEAD_BYTES], what)
    schema = PRE_RELEASE_REMAP.get(declared, declared)
    if schema.split("_")[0] not in {s.split("_")[0] for s in SUPPORTED} and schema not in SUPPORTED:
        raise InvalidInput(what, f"uses schema {declared}, which is not supported; supported: {', '.join(SUPPORTED)}")
    if not _ends_properly(path if zipped is None else zipped[-4096:]):
        raise InvalidInput(what, "is truncated: it does not end with 'END-ISO-10303-21;'")
    try:
        if schema != declared or zipped is not None:
            text = (path.read_bytes() if zipped is None else zipped).decode("utf-8", "replace")
            if schema != declared:
                text = re.sub(rf"'{declared}'", f"'{schema}'", text, count=1, flags=re.IGNORECASE)
            model = ifcopenshell.file.from_string(text)
        else:
            model = ifcopenshell.open(str(path))
    except (RuntimeError, OSError, ifcopenshell.Error) as exc:
        if schema != declared:
            raise InvalidInput(
                what, f"uses the pre-release schema {declared}, which could not be read as {schema}: {exc}"
            ) from None
        raise InvalidInput(what, f"cannot be parsed as {declared}; it is truncated or damaged: {exc}") from None
    return OpenedIfc(model=model, path=path, declared_schema=declared, schema=model.schema_identifier)


def _ends_properly(source: Path | bytes) -> bool:
    if isinstance(source, bytes):
        return b"END-ISO-10303-21" in source.upper()
    with source.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    return b"END-ISO-10303-21" in tail.upper()
