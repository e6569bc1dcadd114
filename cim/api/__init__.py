"""The web layer: ``create_app(settings)`` builds the FastAPI app; one router module per resource.

- :mod:`cim.api.tiles` — built 3D Tiles, static, cached (ETag, 304, gzip for JSON and glb)
- :mod:`cim.api.ogc_features` — OGC API – Features Part 1 + Part 3 (CQL2 filters)
- :mod:`cim.api.queries` — the domain queries (old lifts, buried pipes, within distance)
- :mod:`cim.api.assets` — one asset with its parents, children, sensor state and alerts
- :mod:`cim.api.indicators` — the city vital signs
- :mod:`cim.api.viewer` — the CesiumJS viewer and CesiumJS itself
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # FastAPI loads only when an app is built, not for every `cim` command
        from cim.api.app import create_app

        return create_app
    raise AttributeError(name)
