"""The tiles folder as the server sees it: safe path resolution and a bounded in-memory cache of file bodies.

A request path may never reach outside the folder: ``..`` segments (also when sent percent-encoded), absolute paths,
NUL bytes and hidden segments are refused, and a path whose real location (symlinks followed) is outside the folder
is not found. Bodies are cached by (path, mtime, size), so a rebuilt tileset is picked up at once.
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cim.errors import InvalidInput, NotFound

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
#: Content types worth compressing.
COMPRESSIBLE = frozenset({"application/json", "model/gltf+json", "application/geo+json"})
CACHE_BYTES = 256 * 1024 * 1024
#: Files larger than this are read each time instead of cached.
LARGEST_CACHED = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TileFile:
    path: Path
    content_type: str
    etag: str
    body: bytes
    gzipped: bytes | None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


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

    def resolve(self, relative: str) -> Path:
        """The file ``relative`` names under the root, or InvalidInput (a path that tries to leave) / NotFound."""
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
        path = self.resolve(relative)
        try:
            stat = path.stat()
        except OSError:
            raise NotFound(f"tile path {relative[:200]!r}", "no such file in the tiles folder") from None
        return self._hit(str(path), stat.st_mtime_ns, stat.st_size)

    def _hit(self, key: str, mtime: int, size: int) -> TileFile | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == mtime and hit[1] == size:
                self._cache.move_to_end(key)
                return hit[2]
        return None

    def get(self, relative: str) -> TileFile:
        path = self.resolve(relative)
        try:
            stat = path.stat()
        except OSError:
            raise NotFound(f"tile path {relative[:200]!r}", "no such file in the tiles folder") from None
        key = str(path)
        hit = self._hit(key, stat.st_mtime_ns, stat.st_size)
        if hit is not None:
            return hit
        try:
            body = path.read_bytes()
        except OSError:
            raise NotFound(f"tile path {relative[:200]!r}", "cannot be read") from None
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        gzipped = gzip.compress(body, compresslevel=6) if content_type in COMPRESSIBLE and len(body) > 256 else None
        tile = TileFile(
            path=path,
            content_type=content_type,
            etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
            body=body,
            gzipped=gzipped,
        )
        if tile.size <= LARGEST_CACHED:
            self._remember(key, stat.st_mtime_ns, stat.st_size, tile)
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
