"""The web layer: ``create_app(settings)`` builds the FastAPI app; one router module per resource.

- :mod:`cim.api.tiles` — built 3D Tiles, static, cached (ETag, 304, gzip for JSON)
- :mod:`cim.api.features` — OGC API – Features Part 1 + Part 3 (CQL2 filters)
- :mod:`cim.api.queries` — the domain queries (old lifts, buried pipes, within distance)
- :mod:`cim.api.assets` — one asset with its parents, children, sensor state and alerts
"""

from __future__ import annotations

from cim.api.app import create_app

__all__ = ["create_app"]
