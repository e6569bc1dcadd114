"""What a store holds, in a form two moments can be compared by: the hostile-input tests take one before a bad
input and assert it is the same after (or that exactly the good part was added).

>>> import tempfile, os
>>> snapshot(os.path.join(tempfile.mkdtemp(), "empty.duckdb")).kinds
{}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cim.store import AssetQuery, open_store
from cim.store.meshes import MeshStore


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Assets per kind, a SHA-256 over every asset row (by id), and one over every live mesh (None: no mesh file)."""

    kinds: dict[str, int]
    assets: str
    meshes: str | None


def snapshot(store_url: str, *, meshes: Path | None = None) -> Snapshot:
    """The content of the store at ``store_url`` and, when given, of the mesh file ``meshes``."""
    with open_store(store_url) as store:
        kinds = store.count_by_kind()
        table = store.find_batch(AssetQuery()).table.sort_by("id")
    rows = json.dumps(table.to_pylist(), sort_keys=True, default=repr).encode()
    return Snapshot(kinds=kinds, assets=hashlib.sha256(rows).hexdigest(), meshes=_meshes(meshes))


def _meshes(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    with MeshStore(path, read_only=True) as opened:
        table = opened.digests().sort_by("asset_id")
    return hashlib.sha256(json.dumps(table.to_pylist(), default=repr).encode()).hexdigest()
