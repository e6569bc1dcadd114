"""Check an existing 3D Tiles tileset before it is mounted beside the city: a broken one is a clear error that names
the tileset, the file and the field, never a blank layer in the viewer.

The rules are the 3D Tiles 1.1 specification's that a client relies on to show a tileset (the schema's words are
quoted where a rule comes from): the tileset JSON's ``asset.version``, ``geometricError`` and ``root``; every tile's
``boundingVolume`` (one of box — 12 numbers —, region — 6, latitudes and longitudes in range, south ≤ north,
minimum height ≤ maximum height — or sphere — 4, radius not negative), ``geometricError`` (a number, minimum 0),
``refine`` ("required for the root tile"), ``transform`` (16 numbers), ``content`` / ``contents`` (not both, each
with a ``uri``), ``children`` (at least one when given); and the content the tiles name: it exists, and a
glb / b3dm / i3dm / pnts / cmpt starts with its magic bytes. External tilesets a content names are read and checked
the same way, up to a budget (a city mesh may have hundreds of thousands of tiles: the check reads the first
tileset files and contents, breadth first; the rest fail in the viewer as any missing tile does).

A tileset is read from a folder (:class:`FolderSource`, no path may leave it, symlinks followed) or from a web
server on this machine (:class:`UrlSource`: localhost, 127.0.0.1 or ::1 only, redirects elsewhere refused), with
the standard library only: the runtime has no HTTP client of its own.
"""

from __future__ import annotations

import gzip
import json
import math
import posixpath
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cim.errors import InvalidInput

#: The hosts a URL mount may name: this machine only.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Tileset versions CesiumJS and this server read (older ones: upgrade with ``3d-tiles-tools upgrade``).
VERSIONS = ("1.0", "1.1")
#: The magic bytes each content type starts with (3D Tiles 1.1, "Tile formats"; glb: glTF 2.0 "Binary glTF").
MAGIC = {".glb": b"glTF", ".b3dm": b"b3dm", ".i3dm": b"i3dm", ".pnts": b"pnts", ".cmpt": b"cmpt", ".subtree": b"subt"}
GZIP_MAGIC = b"\x1f\x8b"
BOUNDING_LENGTHS = {"box": 12, "region": 6, "sphere": 4}
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Budget:
    """How much of a tileset the check reads: tileset JSON files, contents checked to exist, contents whose first
    bytes are read."""

    tilesets: int
    exists: int
    magic: int


FOLDER_BUDGET = Budget(tilesets=64, exists=20_000, magic=500)
URL_BUDGET = Budget(tilesets=16, exists=64, magic=16)


class Missing(Exception):
    """A file the tileset names is not there (the caller says which field named it)."""


class TilesetSource(Protocol):
    """Where a mounted tileset's files are: relative paths (``/``-separated, already decoded) inside it."""

    budget: Budget

    def read(self, relative: str, limit: int | None = None) -> bytes: ...

    def exists(self, relative: str) -> bool: ...


class FolderSource:
    """A tileset folder; a path that leaves it (``..``, a symbolic link pointing out) is refused."""

    budget = FOLDER_BUDGET

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    def locate(self, relative: str) -> Path:
        """The file ``relative`` names inside the folder, or :class:`Missing` (also for one that leads outside)."""
        try:
            path = (self.folder / relative).resolve(strict=True)
        except (OSError, RuntimeError):
            raise Missing(relative) from None
        if not path.is_relative_to(self.folder) or not path.is_file():
            raise Missing(relative)
        return path

    def read(self, relative: str, limit: int | None = None) -> bytes:
        try:
            with self.locate(relative).open("rb") as f:
                return f.read(limit) if limit is not None else f.read()
        except OSError:
            raise Missing(relative) from None

    def exists(self, relative: str) -> bool:
        try:
            self.locate(relative)
        except Missing:
            return False
        return True


class _LocalRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to this machine: a local server must not send the mount's requests elsewhere."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        check_local_url(newurl, what="a redirect")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


#: No proxy (a proxy set in the environment is for the outside world) and local redirects only.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _LocalRedirects())


def check_local_url(url: str, *, what: str = "url") -> str:
    """``url`` if it is http(s) on this machine, else InvalidInput. ``what`` names it in the message."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise InvalidInput(what, f"{url[:200]!r} is not an http(s) URL")
    host = (parsed.hostname or "").lower()
    if host not in LOCAL_HOSTS:
        raise InvalidInput(what, f"host {host or '(none)'!r} is not this machine; only localhost, 127.0.0.1 or ::1")
    return url


class UrlSource:
    """A tileset on a web server of this machine; ``base`` is the URL of its folder (ending in ``/``)."""

    budget = URL_BUDGET

    def __init__(self, base: str) -> None:
        self.base = check_local_url(base)

    def url_of(self, relative: str) -> str:
        return self.base + urllib.parse.quote(relative)

    def open(self, relative: str, *, method: str = "GET", limit: int | None = None) -> tuple[int, bytes]:
        """Status and body (at most ``limit`` bytes) of a request for ``relative``; :class:`Missing` on a 404,
        OSError when the server does not answer."""
        headers = {"Range": f"bytes=0-{limit - 1}"} if limit else {}
        request = urllib.request.Request(self.url_of(relative), method=method, headers=headers)
        try:
            with OPENER.open(request, timeout=TIMEOUT_S) as response:
                if method == "HEAD":
                    return int(response.status), b""
                if response.headers.get("Content-Encoding", "").lower() == "gzip":  # stored gzipped: read it whole
                    return int(response.status), gunzip(response.read(), what=relative)[:limit]
                return int(response.status), response.read(limit) if limit else response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise Missing(relative) from None
            raise OSError(f"answered {exc.code} {exc.reason}") from None
        except InvalidInput as exc:  # a redirect off this machine (_LocalRedirects)
            raise OSError(f"its server redirected it off this machine ({exc.why})") from None

    def read(self, relative: str, limit: int | None = None) -> bytes:
        return self.open(relative, limit=limit)[1]

    def exists(self, relative: str) -> bool:
        try:
            self.open(relative, method="HEAD")
        except Missing:
            return False
        except OSError as exc:
            if "answered 405" not in str(exc) and "answered 501" not in str(exc):
                raise
            return self.exists_by_get(relative)  # a server that does not answer HEAD
        return True

    def exists_by_get(self, relative: str) -> bool:
        try:
            self.open(relative, limit=1)
        except Missing:
            return False
        return True


def gunzip(data: bytes, *, what: str) -> bytes:
    """The bytes a gzip body holds; OSError when it is not gzip."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        raise OSError(f"{what!r} says it is gzipped but is not") from None


def resolve_uri(referrer: str, uri: str) -> str:
    """The path inside the tileset that ``uri`` (as written in the tileset JSON file ``referrer``) names: relative
    to the referring file ("When the uri is relative, it is relative to the referring tileset JSON file"), its
    query and fragment dropped, percent-decoded. ValueError for a URI that is absolute or leaves the tileset."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme or parsed.netloc or parsed.path.startswith("/"):
        raise ValueError(f"{uri[:200]!r} is not a relative URI inside the tileset")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(referrer), urllib.parse.unquote(parsed.path)))
    if joined == ".." or joined.startswith("../") or joined == ".":
        raise ValueError(f"{uri[:200]!r} points outside the mounted tileset")
    return joined


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def read_tileset_json(source: TilesetSource, relative: str, what: str) -> dict[str, Any]:
    """The tileset JSON file ``relative`` of ``source`` as a dict (``what`` names it in errors)."""
    try:
        data = source.read(relative)
    except Missing:
        raise InvalidInput(what, "no such file in the mounted tileset") from None
    except OSError as exc:
        raise InvalidInput(what, f"cannot be read: {exc}") from None
    if data.startswith(GZIP_MAGIC):
        raise InvalidInput(what, "is gzipped as a file; ungzip the tileset first (3d-tiles-tools ungzip)")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(what, f"is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(what, "is not a JSON object (a tileset JSON file holds one)")
    return doc


def check_tileset(source: TilesetSource, entry: str, *, name: str) -> dict[str, Any]:
    """Check the tileset whose JSON file is ``entry`` in ``source`` (and the external tilesets and contents it
    names, within the source's budget); return its parsed root tileset JSON. InvalidInput names the tileset
    ``name``, the file and the field: ``tileset "lyon-mesh" tileset.json root.boundingVolume — …``."""
    budget = source.budget
    counts = {"exists": 0, "magic": 0}
    queue: deque[str] = deque([entry])
    seen = {entry}
    first: dict[str, Any] | None = None
    while queue and len(seen) - len(queue) < budget.tilesets:
        relative = queue.popleft()
        label = f'tileset "{name}" {relative}'
        doc = read_tileset_json(source, relative, label)
        check_document(doc, label)
        first = first if first is not None else doc
        for tile, where in walk_tiles(doc["root"], "root"):
            for uri, field, subtree in _content_uris(tile, where):
                try:
                    target = resolve_uri(relative, uri)
                except ValueError as exc:
                    raise InvalidInput(f"{label} {field}", str(exc)) from None
                if target.lower().endswith(".json") and not subtree:
                    if target not in seen:
                        seen.add(target)
                        queue.append(target)
                    continue
                _check_content(source, target, f"{label} {field}", counts, budget)
    assert first is not None
    return first


def _check_content(source: TilesetSource, target: str, what: str, counts: dict[str, int], budget: Budget) -> None:
    """The content exists (within budget) and starts with its magic bytes (within budget)."""
    try:
        if counts["magic"] < budget.magic:
            counts["magic"] += 1
            head = source.read(target, limit=16)
            check_magic(target, head, what)
        elif counts["exists"] < budget.exists:
            counts["exists"] += 1
            if not source.exists(target):
                raise Missing(target)
    except Missing:
        raise InvalidInput(what, f"{target!r} is not in the mounted tileset") from None
    except OSError as exc:
        raise InvalidInput(what, f"{target!r} cannot be read: {exc}") from None


def check_magic(target: str, head: bytes, what: str) -> None:
    """A content's first bytes match its type: the magic its extension promises, or (other names) one of the
    content magics or a JSON document (a glTF JSON or a tileset)."""
    if head.startswith(GZIP_MAGIC):
        raise InvalidInput(what, f"{target!r} is gzipped as a file; ungzip the tileset first (3d-tiles-tools ungzip)")
    suffix = posixpath.splitext(target)[1].lower()
    expected = MAGIC.get(suffix)
    if expected is not None:
        if not head.startswith(expected):
            raise InvalidInput(what, f"{target!r} starts with {head[:4]!r}, not the {suffix[1:]} magic {expected!r}")
        return
    if head[:4] in MAGIC.values() or head.lstrip()[:1] == b"{":
        return
    raise InvalidInput(what, f"{target!r} starts with {head[:4]!r}: not glb, b3dm, i3dm, pnts, cmpt or JSON")


def check_document(doc: dict[str, Any], label: str) -> None:
    """The top-level rules of a tileset JSON file (``label`` names it), then every tile's."""
    asset = doc.get("asset")
    if not isinstance(asset, dict):
        raise InvalidInput(f"{label} asset", "is required: an object with the 3D Tiles version")
    version = asset.get("version")
    if not isinstance(version, str):
        raise InvalidInput(f"{label} asset.version", 'is required: a string such as "1.1"')
    if version not in VERSIONS:
        raise InvalidInput(
            f"{label} asset.version",
            f"{version[:20]!r} is not a 3D Tiles version this server reads ({' or '.join(VERSIONS)}); "
            "upgrade it first, e.g. with 3d-tiles-tools upgrade",
        )
    _check_error(doc, "geometricError", label, "geometricError")
    root = doc.get("root")
    if not isinstance(root, dict):
        raise InvalidInput(f"{label} root", "is required: the root tile, an object")
    used = doc.get("extensionsUsed", [])
    for extension in doc.get("extensionsRequired", []) or []:
        if not isinstance(used, list) or extension not in used:
            raise InvalidInput(f"{label} extensionsRequired", f"{extension!r} is not also in extensionsUsed")
    for tile, where in walk_tiles(root, "root"):
        check_tile(tile, where, label, is_root=where == "root")


def walk_tiles(root: dict[str, Any], where: str) -> list[tuple[dict[str, Any], str]]:
    """Every tile below and with ``root`` and its JSON path (``root.children[2]``), depth first; a child that is
    not an object is reported here."""
    out: list[tuple[dict[str, Any], str]] = []
    stack = [(root, where)]
    while stack:
        tile, path = stack.pop()
        out.append((tile, path))
        children = tile.get("children")
        if isinstance(children, list):
            for i in range(len(children) - 1, -1, -1):
                child = children[i]
                if isinstance(child, dict):
                    stack.append((child, f"{path}.children[{i}]"))
    return out


def check_tile(tile: dict[str, Any], where: str, label: str, *, is_root: bool) -> None:
    """One tile's rules; ``where`` is its JSON path in the file ``label``."""
    check_bounding_volume(tile.get("boundingVolume"), f"{label} {where}.boundingVolume", required=True)
    if "viewerRequestVolume" in tile:
        check_bounding_volume(tile["viewerRequestVolume"], f"{label} {where}.viewerRequestVolume", required=True)
    _check_error(tile, "geometricError", label, f"{where}.geometricError")
    refine = tile.get("refine")
    if refine is None and is_root:
        raise InvalidInput(f"{label} {where}.refine", 'is required on the root tile: "ADD" or "REPLACE"')
    if refine is not None and refine not in ("ADD", "REPLACE"):
        raise InvalidInput(f"{label} {where}.refine", f'{str(refine)[:40]!r} is neither "ADD" nor "REPLACE"')
    if "transform" in tile:
        transform = tile["transform"]
        if not (isinstance(transform, list) and len(transform) == 16 and all(map(_finite, transform))):
            raise InvalidInput(f"{label} {where}.transform", "is not 16 numbers (a column-major 4×4 matrix)")
    if "content" in tile and "contents" in tile:
        raise InvalidInput(f"{label} {where}.contents", "is given with content; a tile has one or the other")
    contents = tile.get("contents")
    if contents is not None and (not isinstance(contents, list) or not contents):
        raise InvalidInput(f"{label} {where}.contents", "is not a non-empty array of contents")
    for content, field in _contents(tile, where):
        if not isinstance(content, dict) or not isinstance(content.get("uri"), str):
            raise InvalidInput(f"{label} {field}.uri", "is required: the content's URI, a string")
        if "boundingVolume" in content:
            check_bounding_volume(content["boundingVolume"], f"{label} {field}.boundingVolume", required=True)
    children = tile.get("children")
    if children is not None:
        if not isinstance(children, list) or not children:
            raise InvalidInput(f"{label} {where}.children", "is not a non-empty array of tiles")
        for i, child in enumerate(children):
            if not isinstance(child, dict):
                raise InvalidInput(f"{label} {where}.children[{i}]", "is not a tile object")
    implicit = tile.get("implicitTiling")
    if implicit is not None:
        _check_implicit(implicit, f"{label} {where}.implicitTiling")


def check_bounding_volume(volume: Any, what: str, *, required: bool) -> None:
    """A bounding volume: an object with a box (12 numbers), region (6) or sphere (4), each within the spec's
    ranges."""
    if volume is None and not required:
        return
    if not isinstance(volume, dict):
        raise InvalidInput(what, "is required: an object with a box, region or sphere")
    given = [kind for kind in BOUNDING_LENGTHS if kind in volume]
    if not given:
        raise InvalidInput(what, "has none of box, region or sphere")
    for kind in given:
        values = volume[kind]
        length = BOUNDING_LENGTHS[kind]
        if not isinstance(values, list) or len(values) != length or not all(map(_finite, values)):
            raise InvalidInput(f"{what}.{kind}", f"is not an array of {length} numbers")
    if "region" in volume:
        west, south, east, north, low, high = volume["region"]
        if not (-math.pi <= west <= math.pi and -math.pi <= east <= math.pi):
            raise InvalidInput(f"{what}.region", "longitudes are not in [-π, π] radians (degrees given?)")
        if not (-math.pi / 2 <= south <= math.pi / 2 and -math.pi / 2 <= north <= math.pi / 2):
            raise InvalidInput(f"{what}.region", "latitudes are not in [-π/2, π/2] radians (degrees given?)")
        if south > north:
            raise InvalidInput(f"{what}.region", "south is larger than north")
        if low > high:
            raise InvalidInput(f"{what}.region", "the minimum height is larger than the maximum height")
    if "sphere" in volume and volume["sphere"][3] < 0:
        raise InvalidInput(f"{what}.sphere", "the radius is negative")


def _check_implicit(implicit: Any, what: str) -> None:
    if not isinstance(implicit, dict):
        raise InvalidInput(what, "is not an object")
    if implicit.get("subdivisionScheme") not in ("QUADTREE", "OCTREE"):
        raise InvalidInput(f"{what}.subdivisionScheme", 'is neither "QUADTREE" nor "OCTREE"')
    for key in ("subtreeLevels", "availableLevels"):
        value = implicit.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{what}.{key}", "is not an integer of at least 1")
    subtrees = implicit.get("subtrees")
    if not isinstance(subtrees, dict) or not isinstance(subtrees.get("uri"), str):
        raise InvalidInput(f"{what}.subtrees.uri", "is required: the template URI of the subtree files")


def _contents(tile: dict[str, Any], where: str) -> list[tuple[Any, str]]:
    if "content" in tile:
        return [(tile["content"], f"{where}.content")]
    return [(c, f"{where}.contents[{i}]") for i, c in enumerate(tile.get("contents") or [])]


def _content_uris(tile: dict[str, Any], where: str) -> list[tuple[str, str, bool]]:
    """The URIs of a tile's content to check, the field naming each and whether it is a subtree file. An implicit
    tile's are templates: the root subtree (level 0) is checked; its contents are found from the subtree's
    availability, which the client reads (not here)."""
    implicit = tile.get("implicitTiling")
    if implicit is not None:
        template = implicit["subtrees"]["uri"]
        zero = template.replace("{level}", "0").replace("{x}", "0").replace("{y}", "0").replace("{z}", "0")
        return [(zero, f"{where}.implicitTiling.subtrees.uri", True)]
    return [(c["uri"], f"{field}.uri", False) for c, field in _contents(tile, where)]


def _check_error(holder: dict[str, Any], key: str, label: str, field: str) -> None:
    value = holder.get(key)
    if not _finite(value) or value is None or value < 0:
        raise InvalidInput(f"{label} {field}", "is required: a number of at least 0 (metres)")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
