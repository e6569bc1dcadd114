"""WGS84 geodesy on numpy arrays: lon/lat/height ↔ ECEF, and local east-north-up (ENU) frames.

Meshes live in an ENU frame around a float64 origin (see :class:`cim.model.Mesh`); tiles carry an ENU → ECEF
``transform``. Everything here works on whole arrays at once, with one origin per point where frames differ.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

#: WGS84 semi-major axis (m) and first eccentricity squared.
A = 6_378_137.0
E2 = 6.694379990141316e-3
#: Metres in a degree of longitude at the equator (2πA / 360), and near enough (±0.5%) in a degree of latitude
#: anywhere: for sizes and search windows, not for measuring.
METRES_PER_DEGREE = 111_320.0
#: Fewer metres than any degree of latitude holds (110,574 m at the equator): margins in degrees derived from it err
#: on the wide side, so a window built with them surely covers the distance asked for.
METRES_PER_DEGREE_AT_LEAST = 110_500.0


def lonlat_to_ecef(lon: npt.ArrayLike, lat: npt.ArrayLike, height: npt.ArrayLike) -> F64:
    """ECEF metres (…, 3) of WGS84 lon/lat (degrees) and ellipsoidal height (m).

    >>> lonlat_to_ecef(0.0, 0.0, 0.0).round(3).tolist()
    [6378137.0, 0.0, 0.0]
    """
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    h = np.asarray(height, dtype=np.float64)
    sin_phi = np.sin(phi)
    n = A / np.sqrt(1.0 - E2 * sin_phi * sin_phi)
    cos_phi = np.cos(phi)
    return np.stack(
        [(n + h) * cos_phi * np.cos(lam), (n + h) * cos_phi * np.sin(lam), (n * (1.0 - E2) + h) * sin_phi], axis=-1
    )


def ecef_to_lonlat(xyz: npt.ArrayLike) -> F64:
    """WGS84 lon, lat (degrees) and ellipsoidal height (m) of ECEF points (…, 3); Bowring's method, sub-mm on Earth.

    >>> ecef_to_lonlat(lonlat_to_ecef(121.5, 31.2, -3.0)).round(6).tolist()
    [121.5, 31.2, -3.0]
    """
    p = np.asarray(xyz, dtype=np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    b = A * np.sqrt(1.0 - E2)
    ep2 = (A * A - b * b) / (b * b)
    r = np.hypot(x, y)
    theta = np.arctan2(z * A, r * b)
    phi = np.arctan2(z + ep2 * b * np.sin(theta) ** 3, r - E2 * A * np.cos(theta) ** 3)
    n = A / np.sqrt(1.0 - E2 * np.sin(phi) ** 2)
    h = r / np.cos(phi) - n
    return np.stack([np.degrees(np.arctan2(y, x)), np.degrees(phi), h], axis=-1)


def enu_rotation(lon: npt.ArrayLike, lat: npt.ArrayLike) -> F64:
    """Rotation matrices (…, 3, 3) whose rows are the east, north and up unit vectors in ECEF.

    ``R @ (p_ecef - origin_ecef)`` gives ENU coordinates; ``R.T @ enu + origin_ecef`` gives ECEF back.

    >>> enu_rotation(0.0, 0.0).round(6).tolist()
    [[-0.0, 1.0, 0.0], [-0.0, -0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
    zero = np.zeros_like(sl)
    east = np.stack([-sl, cl, zero], axis=-1)
    north = np.stack([-sp * cl, -sp * sl, cp], axis=-1)
    up = np.stack([cp * cl, cp * sl, sp], axis=-1)
    return np.stack([east, north, up], axis=-2)


def lonlat_to_enu(lon: npt.ArrayLike, lat: npt.ArrayLike, height: npt.ArrayLike, origin: npt.ArrayLike) -> F64:
    """ENU metres (…, 3) of lon/lat/height points in the frame at ``origin`` (lon, lat, height); ``origin`` may be
    one point or one per point (…, 3).

    >>> lonlat_to_enu(121.501, 31.2, 10.0, (121.5, 31.2, 0.0)).round(1).tolist()
    [95.3, 0.0, 10.0]
    """
    o = np.asarray(origin, dtype=np.float64)
    p = lonlat_to_ecef(lon, lat, height) - lonlat_to_ecef(o[..., 0], o[..., 1], o[..., 2])
    r = enu_rotation(o[..., 0], o[..., 1])
    return np.einsum("...ij,...j->...i", r, p)


def enu_to_ecef_matrix(origin: tuple[float, float, float]) -> F64:
    """The 4×4 matrix (row-major) taking ENU coordinates at ``origin`` to ECEF — a 3D Tiles tile ``transform`` is
    this matrix in column-major order (``m.T.ravel()``)."""
    r = enu_rotation(origin[0], origin[1])
    m = np.eye(4)
    m[:3, :3] = r.T
    m[:3, 3] = lonlat_to_ecef(*origin)
    return m


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the WGS84 UTM zone holding (lon, lat).

    >>> utm_epsg(121.47, 31.23)
    32651
    """
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def degrees_for(metres: float, lat: float) -> tuple[float, float]:
    """(Δlon, Δlat) in degrees that surely cover ``metres`` around latitude ``lat``: a bbox margin for pruning."""
    dlat = metres / METRES_PER_DEGREE_AT_LEAST
    dlon = metres / (METRES_PER_DEGREE_AT_LEAST * max(math.cos(math.radians(min(abs(lat) + dlat, 89.0))), 0.01))
    return dlon, dlat
