"""The external tilesets mounted beside a built city (:mod:`cim.tiling.external`), as the tiles route serves them:
``<city>/external/<name>/<path>`` is ``<path>`` in the mounted folder, or fetched from the mounted URL.

A folder mount is read like the city's own files (:class:`cim.api.tilefiles.TileFiles`: the same checks, cache and
ETags; a path whose real location — symlinks followed — is outside the mounted folder is not found). A URL mount is
proxied: each GET fetches from the server on this machine (standard library, in the route's thread; the runtime
has no HTTP client of its own) and the answer is kept for :data:`URL_TTL_S` seconds, with an ETag from its bytes, so
a client revalidating gets a 304. Fetching at mount time and copying instead would copy a whole city mesh (often
gigabytes) for a view of a few tiles. A mount whose folder is gone answers 404 and one whose server does not answer
502, each naming the tileset (not the server path or address).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cim.errors import InvalidInput, NotFound, UpstreamError
from cim.tiling.external import PREFIX, read_mounts
from cim.tiling.external_check import OPENER, TIMEOUT_S, check_local_url, gunzip

#: How long a proxied file is answered from memory before it is fetched again.
URL_TTL_S = 10.0


@dataclass(frozen=True)
class Mounted:
    """A request path inside a mounted tileset: the mount's name, its folder or URL, the path inside it."""

    name: str
    folder: Path | None
    url: str | None
    rest: str

    def path(self) -> Path:
        """The file in the mounted folder (symlinks followed, never outside it), or NotFound."""
        assert self.folder is not None
        what = f'external tileset "{self.name}" {self.rest[:200]}'
        if not self.folder.is_dir():
            raise NotFound(
                f'external tileset "{self.name}"',
                "its folder is no longer there (moved or deleted); mount it again or take it out of the pipeline",
            )
        try:
            path = (self.folder / self.rest).resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(what, "no such file in the mounted tileset") from None
        if not path.is_relative_to(self.folder.resolve()) or not path.is_file():
            raise NotFound(what, "no such file in the mounted tileset")
        return path

    def fetch(self) -> tuple[bytes, str | None]:
        """The body and content type the mounted server answers for this path; NotFound for its 404,
        UpstreamError when it does not answer (or answers another error)."""
        assert self.url is not None
        url = check_local_url(self.url + urllib.parse.quote(self.rest))
        what = f'external tileset "{self.name}" {self.rest[:200]}'
        try:
            with OPENER.open(urllib.request.Request(url), timeout=TIMEOUT_S) as response:
                body = response.read()
                if response.headers.get("Content-Encoding", "").lower() == "gzip":  # served as stored, gzipped
                    body = gunzip(body, what=self.rest)
                return body, response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise NotFound(what, "its server has no such file") from None
            raise UpstreamError(what, f"its server answered {exc.code}") from None
        except InvalidInput:  # a redirect off this machine (the opener follows local ones only)
            raise UpstreamError(what, "its server redirected off this machine") from None
        except OSError:
            raise UpstreamError(
                f'external tileset "{self.name}"', "its server on this machine does not answer; is it running?"
            ) from None


class Mounts:
    """The mounts recorded under a tiles folder, re-read when a ``.mounts.json`` changes (a rebuild swaps the city's
    link to a new version: another file)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._read: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def locate(self, parts: list[str]) -> Mounted | None:
        """The mounted file a request path's segments name (``…/external/<name>/<path>``), else None."""
        for i, part in enumerate(parts[:-2]):
            if part != PREFIX:
                continue
            mounts = self._mounts(Path(self.root, *parts[:i]))
            record = mounts.get(parts[i + 1])
            if record is not None and (record.get("folder") or record.get("url")):
                folder = Path(record["folder"]) if record.get("folder") else None
                return Mounted(parts[i + 1], folder, record.get("url"), "/".join(parts[i + 2 :]))
            if mounts:
                raise NotFound(f'external tileset "{parts[i + 1][:80]}"', "is not mounted here")
        return None

    def _mounts(self, folder: Path) -> dict[str, dict[str, Any]]:
        key = str(folder)
        try:
            stat = os.stat(folder / ".mounts.json")
        except OSError:
            self._read.pop(key, None)
            return {}
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        known = self._read.get(key)
        if known is not None and known[0] == signature:
            return known[1]
        mounts = {m["name"]: m for m in read_mounts(folder).get("mounts", []) if isinstance(m, dict) and "name" in m}
        if len(self._read) > 64:
            self._read.clear()
        self._read[key] = (signature, mounts)
        return mounts
