"""Where the demo city stands: the plan's named places at Shanghai's real coordinates, and the metric frame.

Centres are approximate (to a few hundred metres) and taken from public maps: the CBDs at Lujiazui, the North Bund
and Hongqiao, the Lingang special area, and the five new towns of the 2035 master plan. Everything is laid out in
metres in UTM zone 51N (EPSG:32651, the zone Shanghai lies in) and written out in WGS84 lon/lat.

>>> [d.code for d in DISTRICTS][:3]
['LJZ', 'NBD', 'HQB']
>>> lon, lat = to_lonlat(*to_metres([121.5055], [31.2355]))
>>> round(float(lon[0]), 4), round(float(lat[0]), 4)
(121.5055, 31.2355)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from pyproj import Transformer

FloatArray = npt.NDArray[np.float64]


class Profile(StrEnum):
    """What a district is built of; decides block typologies, heights, ages and lifts."""

    CBD = "cbd"  # office towers
    RIVERSIDE = "riverside"  # towers, mid-rise and older lane houses
    HUB = "hub"  # business-district mid-rise around a transport hub
    NEW_CITY = "new_city"  # 2005–2022 mid- and high-rise, industrial parks
    NEW_TOWN = "new_town"  # 1990s six-storey estates around an older core, newer mid-rise at the edge


@dataclass(frozen=True, slots=True)
class District:
    code: str
    name: str
    lon: float
    lat: float
    profile: Profile
    weight: float  # share of the city's buildings
    rotation_deg: float  # street grid bearing


DISTRICTS: tuple[District, ...] = (
    District("LJZ", "Lujiazui", 121.5055, 31.2355, Profile.CBD, 0.06, 28.0),
    District("NBD", "North Bund", 121.4960, 31.2560, Profile.RIVERSIDE, 0.07, -12.0),
    District("HQB", "Hongqiao Business District", 121.3100, 31.1950, Profile.HUB, 0.09, 0.0),
    District("LGA", "Lingang", 121.8300, 30.9250, Profile.NEW_CITY, 0.10, 45.0),
    District("JDG", "Jiading New Town", 121.2450, 31.3600, Profile.NEW_TOWN, 0.14, 8.0),
    District("QPU", "Qingpu New Town", 121.1200, 31.1500, Profile.NEW_TOWN, 0.12, -5.0),
    District("SJG", "Songjiang New Town", 121.2250, 31.0350, Profile.NEW_TOWN, 0.16, 15.0),
    District("FXN", "Fengxian New Town", 121.4700, 30.9200, Profile.NEW_TOWN, 0.13, 0.0),
    District("NHU", "Nanhui New Town", 121.9300, 30.9000, Profile.NEW_CITY, 0.13, 30.0),
)

#: The projected CRS the city is laid out in.
METRIC_CRS = "EPSG:32651"
_TO_METRES = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
_TO_LONLAT = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


def to_metres(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = _TO_METRES.transform(np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"))
    return np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")


def to_lonlat(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon, lat = _TO_LONLAT.transform(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
    return np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")


def district_centres() -> FloatArray:
    """(n, 2) centres of :data:`DISTRICTS` in metres."""
    x, y = to_metres([d.lon for d in DISTRICTS], [d.lat for d in DISTRICTS])
    return np.column_stack([x, y])


def split_buildings(total: int) -> list[int]:
    """How many of ``total`` buildings each district gets (largest remainder, so they add up exactly).

    >>> split_buildings(1000)
    [60, 70, 90, 100, 140, 120, 160, 130, 130]
    """
    weights = np.array([d.weight for d in DISTRICTS])
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(int)
    short = total - int(counts.sum())
    for i in np.argsort(-(exact - counts), kind="stable")[:short]:
        counts[i] += 1
    return [int(c) for c in counts]
