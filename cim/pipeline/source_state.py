"""What the pipeline remembers of each source between runs: the digest and asset count of its last good ingest,
so an unchanged source is skipped (``cim run`` on an unchanged pipeline takes seconds)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cim.errors import InvalidInput
from cim.pipeline.model import CityJsonSource, GisSource, IfcSource, Pipeline
from cim.store import AssetQuery, Store


class SourceState:
    """Digest and asset count of each source's last good ingest, kept in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            self.entries = {}

    def unchanged(self, key: str, digest: str, store: Store) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        if not entry or entry.get("digest") != digest:
            return None
        stored = store.count_assets(AssetQuery(where={"source": entry["source"]}))
        return entry if stored == entry.get("count") else None

    def remember(
        self, key: str, digest: str, source: str, count: int, assets: dict[str, int], *, pipeline: str
    ) -> None:
        self.entries[key] = {"digest": digest, "source": source, "count": count, "assets": assets}
        self.entries[key]["pipeline"] = pipeline
        self._save()

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.entries, indent=1), encoding="utf-8")
        temporary.replace(self.path)


def source_digest(pipeline: Pipeline, source: GisSource | CityJsonSource | IfcSource, path: Path) -> str:
    """What a source is now: its settings and the bytes of its files (and of its layer mapping), as one SHA-256."""
    if not path.exists():
        raise InvalidInput(f"source {path}", "does not exist")
    digest = hashlib.sha256(source.model_dump_json().encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if isinstance(source, GisSource) and source.map is not None:
        files.append(pipeline.resolve(source.map))
    for file in files:
        try:
            with file.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InvalidInput(f"source file {file}", f"cannot be read: {exc.strerror}") from None
    return digest.hexdigest()
