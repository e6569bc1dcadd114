"""Layer groups: which assets go into which external tileset, so each can be shown, hidden and rebuilt alone.

- ``buildings``: LOD1 blocks from GIS — kind ``building`` and ``bridge`` (a bridge deck is an extruded footprint
  like a building and is looked at with them), unless the asset comes from an IFC source.
- ``bim``: detail from IFC sources — ``storey``, ``space``, ``element`` and ``lift`` whatever their source (only
  BIM produces them), and ``site``/``building`` assets whose source is an IFC file (their IFC shells).
- ``underground``: buried networks — ``pipe`` and ``node``.
- ``points``: point assets drawn as markers — ``hydrant``, ``pole``, ``transit_stop``, ``metro_exit``, ``charger``,
  ``sensor``.

Not tiled: ground layers (``park``, ``water``, ``road``, ``railway``, ``land_use``, ``vegetation``), the areas
(``city``, ``district``, ``street``, ``grid_cell``) and non-IFC ``site`` — they are flat areas the viewer draws from
the features API, not 3D shapes.

A source is an IFC source when its name mentions an ``.ifc``/``.ifczip`` file or starts with ``ifc:``.

>>> group_of(["building", "building", "pipe", "park"], ["osm.pbf:x:building", "tower.ifc", None, None]).tolist()
['buildings', 'bim', 'underground', '']
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cim.model import Kind

GROUPS: tuple[str, ...] = ("buildings", "bim", "underground", "points")

#: Kinds that always belong to one group.
GROUP_OF_KIND: dict[Kind, str] = {
    Kind.BUILDING: "buildings",
    Kind.BRIDGE: "buildings",
    Kind.STOREY: "bim",
    Kind.SPACE: "bim",
    Kind.ELEMENT: "bim",
    Kind.LIFT: "bim",
    Kind.PIPE: "underground",
    Kind.NODE: "underground",
    Kind.HYDRANT: "points",
    Kind.POLE: "points",
    Kind.TRANSIT_STOP: "points",
    Kind.METRO_EXIT: "points",
    Kind.CHARGER: "points",
    Kind.SENSOR: "points",
}
#: Kinds that move to ``bim`` when they come from an IFC source.
IFC_SHELL_KINDS = frozenset({Kind.SITE, Kind.BUILDING})
TILED_KINDS: frozenset[Kind] = frozenset(GROUP_OF_KIND) | IFC_SHELL_KINDS

_IFC_SOURCE = re.compile(r"(^ifc:)|(\.ifc(zip)?\b)", re.IGNORECASE)


def is_ifc_source(source: str | None) -> bool:
    """Whether assets of ``source`` came from an IFC file.

    >>> is_ifc_source("Duplex.ifc"), is_ifc_source("ky4_pipes.geojson:pipes:pipe")
    (True, False)
    """
    return bool(source) and _IFC_SOURCE.search(source or "") is not None


def group_of(kinds: Sequence[str | None], sources: Sequence[str | None]) -> npt.NDArray[np.str_]:
    """The group of each asset ('' for assets that are not tiled); decided once per distinct (kind, source)."""
    kind_a = np.asarray(kinds, dtype=object).astype(str)
    source_a = np.asarray(sources, dtype=object).astype(str)
    if not len(kind_a):
        return np.zeros(0, dtype="<U12")
    keys = np.char.add(np.char.add(kind_a, "\x00"), source_a)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    decided = np.array([_group(kind_a[i], source_a[i]) for i in first], dtype="<U12")
    return decided[inverse.ravel()]


def _group(kind: str, source: str) -> str:
    try:
        k = Kind(kind)
    except ValueError:
        return ""
    if k in IFC_SHELL_KINDS and source != "None" and is_ifc_source(source):
        return "bim"
    return GROUP_OF_KIND.get(k, "")
