"""Where an IFC file with no georeference of its own goes: ``cim ingest --place LON,LAT,HEIGHT[,ROTATION]``.

Apart from :mod:`cim.bim.georef` so that the command line checks ``--place`` without importing ifcopenshell
(0.2-0.35 s) before it opens the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cim.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Placement:
    """An explicit placement: the model origin at ``lon``/``lat``/``height``, +X turned ``rotation`` degrees
    counter-clockwise from east.

    >>> Placement.parse("121.5,31.2,4,90")
    Placement(lon=121.5, lat=31.2, height=4.0, rotation=90.0)
    """

    lon: float
    lat: float
    height: float = 0.0
    rotation: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Placement:
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (3, 4) or not all(math.isfinite(v) for v in values):
            raise InvalidInput(f"placement {text!r}", "must be LON,LAT,HEIGHT[,ROTATION] as numbers")
        if not (-180 <= values[0] <= 180 and -90 <= values[1] <= 90):
            raise InvalidInput(f"placement {text!r}", "lon must be in -180..180 and lat in -90..90")
        return cls(*values)
