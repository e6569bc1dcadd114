"""What a store holds, in a form two moments can be compared by: the hostile-input tests take one before a bad
input and assert it is the same after (or that exactly the good part was added).

>>> import tempfile, os
>>> from cim.store import open_store
>>> with open_store(os.path.join(tempfile.mkdtemp(), "empty.duckdb")) as store:
...     snapshot(store).kinds
{}
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

from cim.store import AssetQuery, Store
from cim.store.meshes import MeshStore


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Assets per kind, a SHA-256 over every asset row (by id), and one over every live mesh (None: no mesh file)."""

    kinds: dict[str, int]
    assets: str
    meshes: str | None


def snapshot(store: Store, meshes: MeshStore | None = None, *, source: str | None = None) -> Snapshot:
    """The content of ``store`` (only the assets of ``source``, when given) and of the mesh file ``meshes``."""
    table = store.find_batch(AssetQuery(where=None if source is None else {"source": source})).table.sort_by("id")
    kinds = dict(sorted(Counter(table.column("kind").to_pylist()).items()))
    rows = json.dumps(table.to_pylist(), sort_keys=True, default=repr).encode()
    mesh_digest = None
    if meshes is not None:
        mesh_rows = meshes.digests().sort_by("asset_id").to_pylist()
        mesh_digest = hashlib.sha256(json.dumps(mesh_rows, default=repr).encode()).hexdigest()
    return Snapshot(kinds=kinds, assets=hashlib.sha256(rows).hexdigest(), meshes=mesh_digest)
