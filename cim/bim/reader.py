"""Opening IFC files: clear errors for what is not IFC, and the pre-release IFC 4.3 schemas.

ifcopenshell 0.9 refuses the pre-release schemas ``IFC4X3_RC1`` … ``IFC4X3_RC4`` ("Unsupported schema"). Files in
them (GeometryGym and other early IFC 4.3 exporters wrote many) are read by rewriting the header's schema name to
``IFC4X3_ADD2`` and parsing the text as that schema. The entities used by drainage, road and site models kept their
names and attribute order from RC3 to ADD2, so this works for them; an entity that changed makes the parse fail,
and the file is then refused with an error saying it is a pre-release schema. :data:`PRE_RELEASE_REMAP` is the
whole remap.
"""

from __future__ import annotations

import re
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


def header_schema(path: Path) -> str:
    """The schema name in the STEP header of ``path``, or :class:`InvalidInput` if it is no STEP file."""
    what = f"file {path}"
    if not path.is_file():
        raise NotFound(what, "does not exist" if not path.exists() else "is not a file")
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if not head.lstrip().startswith(b"ISO-10303-21"):
        raise InvalidInput(what, "is not an IFC file: it does not start with the STEP header 'ISO-10303-21;'")
    found = _SCHEMA_RE.search(head)
    if found is None:
        raise InvalidInput(what, "has no FILE_SCHEMA in its header; it is truncated or not an IFC file")
    return found.group(1).decode("ascii", "replace").upper()


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
    declared = header_schema(path)
    what = f"file {path}"
    schema = PRE_RELEASE_REMAP.get(declared, declared)
    if schema.split("_")[0] not in {s.split("_")[0] for s in SUPPORTED} and schema not in SUPPORTED:
        raise InvalidInput(what, f"uses schema {declared}, which is not supported; supported: {', '.join(SUPPORTED)}")
    if not _ends_properly(path):
        raise InvalidInput(what, "is truncated: it does not end with 'END-ISO-10303-21;'")
    try:
        if schema != declared:
            text = path.read_bytes().decode("utf-8", "replace")
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


def _ends_properly(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    return b"END-ISO-10303-21" in tail.upper()
