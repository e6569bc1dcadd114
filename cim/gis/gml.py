"""GML as CityGML uses it, read safely and one city object at a time: the XML stream, ``srsName``, geometry.

- :func:`open_citygml` streams a ``.gml`` / ``.xml`` / ``.citygml`` file (or its ``.gz``) with ``lxml.etree.iterparse``:
  one top-level ``cityObjectMember`` at a time, freed once handled, so memory stays flat whatever the file's size.
  A DOCTYPE that declares entities or an external DTD is refused before parsing (XML bombs, ``file:///etc/passwd``
  entities); the parser never expands entities, loads a DTD or touches the network either.
- :func:`srs_frame` reads ``srsName`` in its usual forms (``EPSG:25832``, ``urn:ogc:def:crs:EPSG::6697``,
  ``http://www.opengis.net/def/crs/EPSG/0/6697``, compound ``urn:ogc:def:crs,crs:EPSG::25832,crs:EPSG::5783``, the
  AdV URNs of German survey data) into a transform to WGS84 lon/lat with the heights' datum named. Its EPSG codes
  come from :func:`epsg_codes`, which CityJSON's ``metadata.referenceSystem`` is read with too.
- The polygons under a geometry property are :mod:`cim.gis.gml_geometry`'s.

Axis order: coordinates of a geographic CRS are read in the CRS's declared order (EPSG:6697 and EPSG:4326 are lat,
lon); projected ones easting first, as the files are written in practice even where EPSG declares northing first
(Gauss-Krüger EPSG:31468 files give the Rechtswert first).
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, cast

import numpy as np
import numpy.typing as npt
from lxml import etree  # type: ignore[import-untyped]
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from cim.errors import InvalidInput

#: CityGML versions by the namespace of the CityModel element.
VERSIONS = {
    "http://www.opengis.net/citygml/1.0": "1.0",
    "http://www.opengis.net/citygml/2.0": "2.0",
    "http://www.opengis.net/citygml/3.0": "3.0",
}
GML_NAMESPACES = ("http://www.opengis.net/gml", "http://www.opengis.net/gml/3.2")
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
GML_IDS = tuple(f"{{{ns}}}id" for ns in GML_NAMESPACES)
SUFFIXES = (".gml", ".xml", ".citygml")
#: How much of the (decompressed) start of a file is read to find its root element and any DOCTYPE.
_HEAD_BYTES = 256 * 1024
#: AdV CRS names (German survey authorities' URNs ``urn:adv:crs:<horizontal>*<height>``) as EPSG codes.
ADV_CRS: dict[str, int] = {
    "DE_DHDN_3GK2": 31466,
    "DE_DHDN_3GK3": 31467,
    "DE_DHDN_3GK4": 31468,
    "DE_DHDN_3GK5": 31469,
    "ETRS89_UTM32": 25832,
    "ETRS89_UTM33": 25833,
    "DE_DHHN92_NH": 5783,
    "DE_DHHN2016_NH": 7837,
}
#: An EPSG code in a CRS name: ``EPSG/<version>/<code>`` (URL), ``EPSG:<version>:<code>`` with the version optional
#: (URN), or ``EPSG:<code>``.
_EPSG_CODE = re.compile(r"EPSG(?:/[\d.]+/|:[\d.]*:|:)(\d+)", re.IGNORECASE)
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)([^>]*)>")


@dataclass(frozen=True, slots=True, eq=False)
class SrsFrame:
    """How coordinates given in one ``srsName`` become lon/lat/height, and the datum of those heights."""

    name: str
    crs: CRS
    to_wgs84: Transformer
    lat_first: bool
    height_datum: str

    def lonlat(self, xyz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """lon, lat, height of (n, 3) coordinates in this frame; NaN rows where a point is no place on Earth."""
        x, y = (xyz[:, 1], xyz[:, 0]) if self.lat_first else (xyz[:, 0], xyz[:, 1])
        with np.errstate(all="ignore"):
            lon, lat = self.to_wgs84.transform(x, y, errcheck=False)
        points = np.column_stack([lon, lat, xyz[:, 2]])
        bad = ~np.isfinite(points).all(axis=1) | (np.abs(points[:, 0]) > 180) | (np.abs(points[:, 1]) > 90)
        points[bad] = np.nan
        return points


def epsg_codes(text: str) -> list[int]:
    """The EPSG codes a CRS name gives, in its order: one, or two for a compound name (horizontal, then height);
    none when it names no EPSG code. The one reading of CRS names for CityGML's ``srsName`` and CityJSON's
    ``metadata.referenceSystem``.

    >>> epsg_codes("http://www.opengis.net/def/crs/EPSG/0/4979")
    [4979]
    >>> epsg_codes("urn:ogc:def:crs:EPSG::6697")
    [6697]
    >>> epsg_codes("urn:ogc:def:crs:EPSG:6.3:4326")
    [4326]
    >>> epsg_codes("EPSG:4326")
    [4326]
    >>> epsg_codes("urn:ogc:def:crs,crs:EPSG::6697,crs:EPSG::6695")
    [6697, 6695]
    >>> epsg_codes("urn:adv:crs:ETRS89_UTM32*DE_DHHN92_NH")
    []
    """
    return [int(code) for code in _EPSG_CODE.findall(text)]


def srs_frame(name: str, *, what: str) -> SrsFrame:
    """The frame of an ``srsName``; an error naming ``what`` when it names no CRS pyproj knows."""
    try:
        return _srs_frame(name.strip(), threading.get_ident())
    except _UnknownSrs as exc:
        raise InvalidInput(f"{what} srsName {name!r}", str(exc)) from None


class _UnknownSrs(Exception):
    """An srsName that names no CRS: :func:`srs_frame` says where it was found."""


#: Cached by name (and thread: a pyproj Transformer is not to be shared between threads). A frame costs ~0.5 ms (CRS
#: objects and a Transformer), paid once per object of a 100 MB file when the key also held the object's id
#: (measured: 0.9 s of a 5.7 s import).
@lru_cache(maxsize=64)
def _srs_frame(name: str, thread: int) -> SrsFrame:
    codes: list[int]
    if name.lower().startswith("urn:adv:crs:"):
        parts = name[len("urn:adv:crs:") :].split("*")
        unknown = [p for p in parts if p not in ADV_CRS]
        if unknown:
            known = ", ".join(sorted(ADV_CRS))
            raise _UnknownSrs(f"AdV CRS {unknown[0]!r} is not one this reader maps ({known})")
        codes = [ADV_CRS[p] for p in parts]
    else:
        codes = epsg_codes(name)
    try:
        if codes:
            crs = CRS.from_epsg(codes[0])
            vertical = CRS.from_epsg(codes[1]) if len(codes) > 1 else None
        else:
            crs, vertical = CRS.from_user_input(name), None
    except CRSError:
        raise _UnknownSrs("names no CRS pyproj knows; give one with --crs") from None
    horizontal = crs.sub_crs_list[0] if crs.is_compound else crs
    if vertical is None and crs.is_compound and len(crs.sub_crs_list) > 1:
        vertical = crs.sub_crs_list[1]
    if vertical is not None:
        datum = f"{vertical.name} (orthometric, kept as given)"
    elif horizontal.is_geographic and len(horizontal.axis_info) == 3:
        datum = f"ellipsoidal ({horizontal.name})"
    else:
        datum = "as given in the file (no vertical CRS declared)"
    lat_first = horizontal.is_geographic and horizontal.axis_info[0].direction == "north"
    to_wgs84 = Transformer.from_crs(horizontal, "EPSG:4326", always_xy=True)
    label = horizontal.to_string() if vertical is None else f"{horizontal.to_string()}+{vertical.to_string()}"
    return SrsFrame(name=label, crs=crs, to_wgs84=to_wgs84, lat_first=lat_first, height_datum=datum)


# --- the stream ---
def is_citygml(path: Path) -> bool:
    """Whether ``path`` is read as CityGML: a GML/XML name (``.gz`` too) whose start has a ``CityModel``."""
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(SUFFIXES) or not path.is_file():
        return False
    try:
        head = _head(path)
    except (OSError, zlib.error):
        return path.name.lower().endswith(".gz")  # a broken gzip of a .gml: the CityGML reader says what is wrong
    return b"CityModel" in head


def _head(path: Path) -> bytes:
    """The file's first bytes (decompressed), as many as there are when a gzip stream ends early."""
    chunks: list[bytes] = []
    size = 0
    with _open_bytes(path) as f:
        while size < _HEAD_BYTES:
            try:
                chunk = f.read(16 * 1024)
            except EOFError:  # a cut gzip: what came before still counts (the members are reported as they come)
                break
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)


def _open_bytes(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return cast("IO[bytes]", _Gunzip(path.open("rb")))
    return path.open("rb")


class _Gunzip:
    """A gzip file's bytes as they decompress. Unlike :class:`gzip.GzipFile`, a stream that ends early gives every
    byte before the cut and then ends, so the XML parser reports where the document breaks off (and the members
    before it are kept); corrupt data raises ``zlib.error``."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=31)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = self._raw.read(32 * 1024)  # small: the buffer is copied on every read
            if not chunk:
                break
            self._buffer += self._inflate.decompress(chunk)
            while self._inflate.eof and self._inflate.unused_data:  # a file of several gzip members
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                self._buffer += self._inflate.decompress(rest)
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Gunzip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class XmlStream:
    """A CityGML file being streamed: its version, root and top-level members (see :func:`open_citygml`)."""

    path: Path
    version: str
    namespace: str
    root: etree._Element
    events: Iterator[tuple[str, etree._Element]]
    file: IO[bytes]
    #: the CityModel's envelope (srsName, srsDimension), known once the first member is read
    envelope: tuple[str | None, int | None] | None = None

    def members(self) -> Iterator[etree._Element]:
        """Each top-level ``cityObjectMember``'s content element, freed after the caller is done with it. The XML's
        own errors (it ends early, a tag mismatch) raise ``etree.XMLSyntaxError`` here, after the members before."""
        root = self.root
        for event, element in self.events:
            if event != "end" or element.getparent() is not root:
                continue
            if self.envelope is None:
                self.envelope = self._envelope()
            while element.getprevious() is not None:  # the members and headers before it
                del root[0]
            if element.tag.endswith("cityObjectMember") or element.tag.endswith("featureMember"):
                children = [child for child in element if isinstance(child.tag, str)]
                yield from children
                # emptied while still in the tree: lxml frees a subtree no Python object points into at once, but
                # walks all of it to move it to a document of its own when one does (the caller's last member)
                for child in children:
                    child.clear()
            element.clear()

    def _envelope(self) -> tuple[str | None, int | None]:
        """The CityModel's own ``boundedBy`` envelope srsName and srsDimension (read before the first member)."""
        for child in self.root:
            if isinstance(child.tag, str) and child.tag.endswith("boundedBy"):
                for envelope in child:
                    name = envelope.get("srsName")
                    dimension = envelope.get("srsDimension")
                    return name, int(dimension) if dimension and dimension.isdigit() else None
        return None, None

    def open_object_id(self) -> str | None:
        """The gml:id of the member being read when the XML broke, if its start tag was read."""
        if not len(self.root):
            return None
        last = self.root[-1]
        for child in last:
            if isinstance(child.tag, str):
                return gml_id(child)
        return None


def open_citygml(path: Path) -> XmlStream:
    """``path`` opened for streaming, its root checked: a CityGML CityModel of a known version. A file that is no
    XML, declares entities, or is another version raises :class:`InvalidInput` here, before anything is read."""
    if not path.is_file():
        raise InvalidInput(f"file {path}", "does not exist")
    try:
        head = _head(path)
    except (OSError, zlib.error) as exc:
        raise InvalidInput(f"file {path}", f"cannot be read as gzip: {exc}") from None
    _refuse_entities(head, path)
    namespace, local = _root_tag(head, path)
    if local != "CityModel":
        raise InvalidInput(f"file {path}", f"is not CityGML: its root element is {local!r}, not CityModel")
    version = VERSIONS.get(namespace)
    if version is None:
        raise InvalidInput(
            f"file {path}",
            f"is CityGML of an unknown version: namespace {namespace!r}; this reader knows CityGML 1.0, 2.0 and 3.0",
        )
    file = _open_bytes(path)
    events = etree.iterparse(
        file,
        events=("start", "end"),
        tag=(f"{{{namespace}}}CityModel", "{*}cityObjectMember", "{*}featureMember", "{*}appearanceMember"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        _, root = next(events)
    except (etree.XMLSyntaxError, EOFError, zlib.error, OSError) as exc:
        file.close()
        raise InvalidInput(f"file {path}", f"is not well-formed XML: {exc}") from None
    return XmlStream(path=path, version=version, namespace=namespace, root=root, events=events, file=file)


def _refuse_entities(head: bytes, path: Path) -> None:
    """A DOCTYPE declaring entities or naming an external DTD is refused: CityGML has no use for either, and they
    are how XML bombs (billion laughs) and external-entity reads (``file:///etc/passwd``) come in."""
    start = head.find(b"<!DOCTYPE")
    if start < 0:
        return
    doctype = head[start : head.find(b">", start) + 1 if b"[" not in head[start : start + 400] else len(head)]
    if b"<!ENTITY" in head or re.search(rb"<!DOCTYPE\s+[\w:.-]+\s+(SYSTEM|PUBLIC)", doctype):
        raise InvalidInput(
            f"file {path}",
            "declares XML entities or an external DTD in its DOCTYPE; refused unread (entity expansion is how XML "
            "bombs and external-file reads work, and CityGML needs neither)",
        )


def _root_tag(head: bytes, path: Path) -> tuple[str, str]:
    """The namespace and local name of the first element, read from the file's start."""
    text = re.sub(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", b"", head, flags=re.DOTALL)
    match = _ROOT_TAG.search(text)
    if match is None or not text.lstrip().startswith(b"<"):
        raise InvalidInput(f"file {path}", "is not XML: no root element at its start")
    prefix = (match.group(1) or b"")[:-1]
    attribute = b"xmlns:" + prefix if prefix else b"xmlns"
    declared = re.search(re.escape(attribute) + rb"\s*=\s*[\"']([^\"']*)[\"']", match.group(3))
    namespace = declared.group(1).decode("utf-8", "replace") if declared else ""
    return namespace, match.group(2).decode("utf-8", "replace")


# --- geometry ---
def local_name(element: etree._Element) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def gml_id(element: etree._Element) -> str | None:
    return element.get(GML_IDS[0]) or element.get(GML_IDS[1])
