"""The tiles folder as the server sees it: safe path resolution and a bounded in-memory cache of files ready to send.

A request path may never reach outside the folder: ``..`` segments (also when sent percent-encoded), absolute paths,
NUL bytes and hidden segments are refused, and a path whose real location (symlinks followed) is outside the folder
is not found. ``<city>/external/<name>/…`` paths are the files of a tileset mounted beside the city
(:mod:`cim.api.mounted`): a folder read the same way, or a URL on this machine fetched. Files are cached by (path,
mtime, size), so a rebuilt tileset is picked up at once, each with its response headers prepared (:class:`Encoded`),
so that a cached answer costs one ``stat`` and no header building.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cim.api.mounted import URL_TTL_S, Mounted, Mounts
from cim.errors import InvalidInput, NotFound
from cim.tiling.external import PREFIX

CONTENT_TYPES = {
    ".json": "application/json",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ktx2": "image/ktx2",
    ".geojson": "application/geo+json",
}
#: Content types worth compressing. glb too: gzip halves even meshopt-compressed tiles (EXT_meshopt_compression's
#: bitstream is made to be gzipped on top; 100,000 LOD1 buildings, ``bench/tiles_bench.py``: 289 → 123 B per
#: building, and 676 → 193 for plain glbs), once per file, as the cache keeps the gzipped body.
COMPRESSIBLE = frozenset({"application/json", "model/gltf+json", "application/geo+json", "model/gltf-binary"})
#: Tileset JSON changes on every rebuild; content files are replaced, never edited, but share names across builds.
CACHE_CONTROL = {"application/json": "public, max-age=60, must-revalidate"}
DEFAULT_CACHE_CONTROL = "public, max-age=3600, must-revalidate"
CACHE_BYTES = 256 * 1024 * 1024
#: Files larger than this are read each time instead of cached.
LARGEST_CACHED = 16 * 1024 * 1024
#: Request paths remembered for :meth:`TileFiles.fresh` (only strings: the bodies stay bounded by CACHE_BYTES).
KNOWN_PATHS = 100_000

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A response prepared once: status, headers (ASGI's pairs, and the same as HTTP/1.1 lines) and body."""

    status: int
    headers: Headers
    lines: bytes
    body: bytes

    @classmethod
    def of(cls, status: int, headers: Headers, body: bytes = b"") -> Reply:
        return cls(status, headers, b"".join(name + b": " + value + b"\r\n" for name, value in headers), body)


@dataclass(frozen=True, slots=True)
class Encoded:
    """One encoding of a file (as stored, or gzipped) with its ETag and its replies to GET, HEAD and a matching
    ``If-None-Match``."""

    etag: bytes
    ok: Reply
    head: Reply
    not_modified: Reply

    @classmethod
    def of(cls, body: bytes, etag: str, content_type: str, gzipped: bool) -> Encoded:
        cache = CACHE_CONTROL.get(content_type, DEFAULT_CACHE_CONTROL)
        common = ((b"etag", etag.encode()), (b"cache-control", cache.encode()), (b"vary", b"Accept-Encoding"))
        ok = (
            *common,
            *(((b"content-encoding", b"gzip"),) if gzipped else ()),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", content_type.encode()),
        )
        return cls(etag.encode(), Reply.of(200, ok, body), Reply.of(200, ok), Reply.of(304, common))


@dataclass(frozen=True, slots=True)
class TileFile:
    path: Path
    content_type: str
    plain: Encoded
    gzipped: Encoded | None  # for compressible types only, with an ETag of its own

    @property
    def size(self) -> int:
        return len(self.plain.ok.body) + (len(self.gzipped.ok.body) if self.gzipped else 0)


class TileFiles:
    """Files under ``root``, read safely and cached.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "tileset.json").write_text("{}")
    2
    >>> TileFiles(root).get("tileset.json").content_type
    'application/json'
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: OrderedDict[str, tuple[int, int, TileFile]] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        # Request paths resolve() accepted → (that path under the root, cache key, device and inode of the file)
        self._known: dict[str, tuple[str, str, int, int]] = {}
        self.mounts = Mounts(self.root)
        self._fetched: OrderedDict[str, tuple[float, TileFile]] = OrderedDict()  # URL mounts' files, briefly

    def resolve(self, relative: str) -> Path:
        """The file ``relative`` names under the root, or InvalidInput (a path that tries to leave) / NotFound.
        A file of a URL mount has no path: :class:`_Remote` (:meth:`get` fetches it)."""
        what = f"tile path {relative[:200]!r}"
        if "\x00" in relative or "\\" in relative:
            raise InvalidInput(what, "contains a NUL byte or a backslash")
        if relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
            raise InvalidInput(what, "is absolute; give a path inside the tiles folder")
        parts = relative.split("/")
        if any(part in ("..", ".") for part in parts):
            raise InvalidInput(what, "contains '..' or '.' segments; paths may not leave the tiles folder")
        if any(part.startswith(".") for part in parts):
            raise NotFound(what, "no such file in the tiles folder")
        mounted = self.mounts.locate(parts)
        if mounted is not None:
            if mounted.folder is None:
                raise _Remote(mounted)
            return mounted.path()
        root = self.root.resolve()
        try:
            path = (root / relative).resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(what, "no such file in the tiles folder") from None
        if not path.is_relative_to(root) or not path.is_file():
            raise NotFound(what, "no such file in the tiles folder")
        return path

    def cached(self, relative: str) -> TileFile | None:
        """The file if its body is cached and unchanged on disk (checked by path, mtime and size), else None;
        raises like :meth:`get` for a path that is refused or missing. Cheap enough for the event loop."""
        try:
            path = self.resolve(relative)
        except _Remote:
            return None  # fetched by get(), in a thread
        try:
            stat = path.stat()
        except OSError:
            raise NotFound(f"tile path {relative[:200]!r}", "no such file in the tiles folder") from None
        tile = self._hit(str(path), stat.st_mtime_ns, stat.st_size)
        if tile is not None:
            self._know(relative, str(path), stat)
        return tile

    def fresh(self, relative: str) -> TileFile | None:
        """The cached file of a request path that :meth:`cached` or :meth:`get` accepted before, if the path still
        leads to the same, unchanged file (one ``stat``, symlinks followed: same inode, mtime and size), else None:
        then ask :meth:`cached` / :meth:`get`. A rebuild swaps a symlink to a new version folder: a new inode.

        Safe without the path checks: only accepted paths are remembered, and what a hit returns is a body read
        from inside the folder when the path was accepted."""
        known = self._known.get(relative)
        if known is None:
            return None
        requested, key, device, inode = known
        try:
            stat = os.stat(requested)
        except OSError:
            return None
        if stat.st_ino != inode or stat.st_dev != device:
            return None
        return self._hit(key, stat.st_mtime_ns, stat.st_size)

    def _know(self, relative: str, key: str, stat: os.stat_result) -> None:
        if PREFIX in relative.split("/"):
            return  # a mounted folder's file: the route answers it (a mount can be taken away)
        if len(self._known) >= KNOWN_PATHS:
            self._known.clear()
        self._known[relative] = (os.path.join(self.root, relative), key, stat.st_dev, stat.st_ino)

    def _hit(self, key: str, mtime: int, size: int) -> TileFile | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == mtime and hit[1] == size:
                self._cache.move_to_end(key)
                return hit[2]
        return None

    def get(self, relative: str) -> TileFile:
        try:
            path = self.resolve(relative)
        except _Remote as remote:
            return self._fetch(remote.mounted)
        try:
            stat = path.stat()
        except OSError:
            raise NotFound(f"tile path {relative[:200]!r}", "no such file in the tiles folder") from None
        key = str(path)
        hit = self._hit(key, stat.st_mtime_ns, stat.st_size)
        if hit is not None:
            self._know(relative, key, stat)
            return hit
        try:
            body = path.read_bytes()
        except OSError:
            raise NotFound(f"tile path {relative[:200]!r}", "cannot be read") from None
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        tile = _tile_file(path, body, f"{stat.st_mtime_ns:x}-{stat.st_size:x}", content_type)
        if tile.size <= LARGEST_CACHED:
            self._remember(key, stat.st_mtime_ns, stat.st_size, tile)
            self._know(relative, key, stat)
        return tile

    def _fetch(self, mounted: Mounted) -> TileFile:
        """A URL mount's file: from memory for :data:`URL_TTL_S` seconds, else fetched (an ETag of its bytes)."""
        key = f"{mounted.url}{mounted.rest}"
        now = time.monotonic()
        with self._lock:
            hit = self._fetched.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        body, _ = mounted.fetch()
        suffix = os.path.splitext(mounted.rest)[1].lower()
        content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        tile = _tile_file(Path(mounted.rest), body, hashlib.sha256(body).hexdigest()[:24], content_type)
        if tile.size <= LARGEST_CACHED:
            with self._lock:
                self._fetched[key] = (now + URL_TTL_S, tile)
                while len(self._fetched) > 256:
                    self._fetched.popitem(last=False)
        return tile

    def _remember(self, key: str, mtime: int, size: int, tile: TileFile) -> None:
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._cached_bytes -= old[2].size
            self._cache[key] = (mtime, size, tile)
            self._cached_bytes += tile.size
            while self._cached_bytes > CACHE_BYTES and self._cache:
                _, (_, _, dropped) = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.size


class _Remote(Exception):  # control flow inside TileFiles, never seen outside
    """Raised by :meth:`TileFiles.resolve` for a file of a URL mount."""

    def __init__(self, mounted: Mounted) -> None:
        super().__init__(mounted.name)
        self.mounted = mounted


def _tile_file(path: Path, body: bytes, etag: str, content_type: str) -> TileFile:
    """A file's replies, with a gzipped form for compressible types."""
    compress = content_type in COMPRESSIBLE and len(body) > 256
    return TileFile(
        path=path,
        content_type=content_type,
        plain=Encoded.of(body, f'"{etag}"', content_type, gzipped=False),
        gzipped=Encoded.of(gzip.compress(body, compresslevel=6), f'"{etag}-gz"', content_type, gzipped=True)
        if compress
        else None,
    )
