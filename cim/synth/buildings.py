"""Building footprints on the plots of a block, with storeys, heights, ages and lift counts by district profile.

A block of one typology is cut into ``cols × rows`` plots; each footprint stays inside its plot with a margin, so no
two footprints overlap. Footprints are rectangles, L shapes or courtyard blocks (a polygon with a hole).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
import shapely

from cim.synth.grid import BLOCK_H, BLOCK_W, PITCH_X, PITCH_Y, STREET_W, Frame, IntArray
from cim.synth.places import FloatArray, Profile

PLOT_MARGIN = 3.0  # metres between a footprint and its plot's edge
REFERENCE_YEAR = 2026  # the generator's "now": ages and install years never depend on the clock


class Typology(IntEnum):
    PARK = 0
    TOWER = 1
    SLAB = 2
    MIDRISE = 3
    COURTYARD = 4
    L_SHAPE = 5
    INDUSTRIAL = 6
    LANE = 7


@dataclass(frozen=True, slots=True)
class PlotLayout:
    """How a block of one typology is divided into building plots, and the size range of each footprint (metres)."""

    cols: int
    rows: int
    shape: str  # rect, l, courtyard
    width: tuple[float, float]
    depth: tuple[float, float]
    arm: tuple[float, float] = (0.0, 0.0)


LAYOUTS: dict[Typology, PlotLayout] = {
    Typology.PARK: PlotLayout(0, 0, "rect", (0, 0), (0, 0)),
    Typology.TOWER: PlotLayout(2, 2, "rect", (34, 56), (34, 56)),
    Typology.SLAB: PlotLayout(2, 6, "rect", (55, 80), (10.5, 13)),
    Typology.MIDRISE: PlotLayout(3, 3, "rect", (24, 40), (15, 22)),
    Typology.COURTYARD: PlotLayout(2, 1, "courtyard", (62, 85), (100, 140), (13, 18)),
    Typology.L_SHAPE: PlotLayout(2, 2, "l", (50, 80), (45, 68), (13, 18)),
    Typology.INDUSTRIAL: PlotLayout(2, 2, "rect", (50, 82), (35, 65)),
    Typology.LANE: PlotLayout(4, 8, "rect", (34, 41), (11, 14)),
}

#: Typology shares per profile, in Typology order (PARK first).
MIX: dict[Profile, tuple[float, ...]] = {
    Profile.CBD: (0.15, 0.55, 0.0, 0.15, 0.05, 0.10, 0.0, 0.0),
    Profile.RIVERSIDE: (0.10, 0.15, 0.05, 0.25, 0.15, 0.10, 0.0, 0.20),
    Profile.HUB: (0.15, 0.20, 0.0, 0.30, 0.15, 0.20, 0.0, 0.0),
    Profile.NEW_CITY: (0.10, 0.05, 0.10, 0.35, 0.05, 0.10, 0.25, 0.0),
    Profile.NEW_TOWN: (0.10, 0.0, 0.50, 0.20, 0.07, 0.08, 0.05, 0.0),
}
PLOTS = np.array([LAYOUTS[t].cols * LAYOUTS[t].rows for t in Typology])
USES = ("residential", "office", "mixed", "industrial")
STOREY_M = np.array([2.9, 4.2, 3.3, 6.0])


@dataclass(frozen=True, slots=True)
class Footprints:
    """Buildings of one chunk, in block-then-plot order."""

    geometry: npt.NDArray[np.object_]  # shapely polygons in grid metres
    anchor_u: FloatArray  # a point inside each footprint (the core), grid metres
    anchor_v: FloatArray
    block: IntArray  # position of the building's block in the chunk
    rank: IntArray  # position of the building in its block
    typology: IntArray
    shape: npt.NDArray[np.str_]


def typologies(profile: Profile, n: int, rng: np.random.Generator) -> IntArray:
    return rng.choice(len(Typology), size=n, p=np.array(MIX[profile])).astype(np.int64)


def footprints(
    block_i: IntArray, block_j: IntArray, typology: IntArray, limit: IntArray, rng: np.random.Generator
) -> Footprints:
    """Footprints on the blocks' plots, at most ``limit[b]`` in block ``b``."""
    parts: list[Footprints] = []
    for t in Typology:
        plan = LAYOUTS[t]
        blocks = np.flatnonzero(typology == t)
        if plan.cols == 0 or len(blocks) == 0:
            continue
        rank = np.tile(np.arange(plan.cols * plan.rows), len(blocks))
        b = np.repeat(blocks, plan.cols * plan.rows)
        keep = rank < limit[b]
        rank, b = rank[keep], b[keep]
        parts.append(_plots(plan, t, block_i[b], block_j[b], b, rank, rng))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        none = np.zeros(0, dtype=np.float64)
        return Footprints(np.zeros(0, object), none, none, empty, empty, empty, np.zeros(0, str))
    merged = Footprints(*(np.concatenate([getattr(p, f) for p in parts]) for f in Footprints.__slots__))
    order = np.lexsort((merged.rank, merged.block))
    return Footprints(*(getattr(merged, f)[order] for f in Footprints.__slots__))


def _plots(
    plan: PlotLayout, t: Typology, bi: IntArray, bj: IntArray, b: IntArray, rank: IntArray, rng: np.random.Generator
) -> Footprints:
    n = len(b)
    cw, ch = BLOCK_W / plan.cols, BLOCK_H / plan.rows
    col, row = rank % plan.cols, rank // plan.cols
    cu = bi * PITCH_X + STREET_W / 2 + (col + 0.5) * cw
    cv = bj * PITCH_Y + STREET_W / 2 + (row + 0.5) * ch
    w = np.minimum(rng.uniform(*plan.width, n), cw - 2 * PLOT_MARGIN)
    d = np.minimum(rng.uniform(*plan.depth, n), ch - 2 * PLOT_MARGIN)
    u0 = cu - w / 2 + rng.uniform(-1, 1, n) * (cw - 2 * PLOT_MARGIN - w) / 2
    v0 = cv - d / 2 + rng.uniform(-1, 1, n) * (ch - 2 * PLOT_MARGIN - d) / 2
    arm = rng.uniform(*plan.arm, n) if plan.shape != "rect" else np.zeros(n)
    if plan.shape == "rect":
        ring = _box(u0, v0, w, d)
        geometry = shapely.polygons(ring)
        au, av = u0 + w / 2, v0 + d / 2
    elif plan.shape == "courtyard":
        geometry = shapely.polygons(
            _box(u0, v0, w, d), holes=_box(u0 + arm, v0 + arm, w - 2 * arm, d - 2 * arm)[:, None]
        )
        au, av = u0 + arm / 2, v0 + d / 2
    else:  # L: the long arm along the bottom, the short one up the left; mirrored at random
        xs = np.column_stack([np.zeros(n), w, w, arm, arm, np.zeros(n), np.zeros(n)])
        ys = np.column_stack([np.zeros(n), np.zeros(n), arm, arm, d, d, np.zeros(n)])
        flip_u, flip_v = rng.random(n) < 0.5, rng.random(n) < 0.5
        xs = np.where(flip_u[:, None], w[:, None] - xs, xs)
        ys = np.where(flip_v[:, None], d[:, None] - ys, ys)
        ring = np.stack([u0[:, None] + xs, v0[:, None] + ys], axis=-1)
        geometry = shapely.polygons(shapely.orient_polygons(shapely.linearrings(ring)))
        au = u0 + np.where(flip_u, w - arm / 2, arm / 2)
        av = v0 + np.where(flip_v, d - arm / 2, arm / 2)
    return Footprints(
        geometry=np.asarray(geometry, dtype=object),
        anchor_u=au,
        anchor_v=av,
        block=b,
        rank=rank,
        typology=np.full(n, int(t), dtype=np.int64),
        shape=np.full(n, {"rect": "rectangle", "l": "l_shape", "courtyard": "courtyard"}[plan.shape]),
    )


def _box(u0: FloatArray, v0: FloatArray, w: FloatArray, d: FloatArray) -> npt.NDArray[np.float64]:
    xs = np.column_stack([u0, u0 + w, u0 + w, u0, u0])
    ys = np.column_stack([v0, v0, v0 + d, v0 + d, v0])
    return np.stack([xs, ys], axis=-1)


def to_world(geometry: npt.NDArray[np.object_], frame: Frame) -> npt.NDArray[np.object_]:
    """Grid-metre geometries → projected metres (vertices only; the transform is a rotation and a shift)."""
    return shapely.transform(geometry, lambda uv: np.column_stack(frame.to_world(uv[:, 0], uv[:, 1])))


@dataclass(frozen=True, slots=True)
class Attributes:
    storeys: IntArray
    height_m: FloatArray
    year_built: IntArray
    use: IntArray  # index into USES
    lifts: IntArray


def attributes(typology: IntArray, profile: Profile, rng: np.random.Generator) -> Attributes:
    """Storeys, height, year built, use and number of lifts, following the typology and the district."""
    n = len(typology)
    t = typology
    new = profile in (Profile.NEW_CITY, Profile.HUB)
    storeys = np.select(
        [t == Typology.TOWER, t == Typology.SLAB, t == Typology.MIDRISE, t == Typology.COURTYARD],
        [
            np.clip(np.round(20 + rng.gamma(2.0, 14.0 if profile is Profile.CBD else 6.0, n)), 20, 128),
            rng.choice([5, 6, 6, 6, 6, 6, 7], n),
            rng.integers(14, 34, n) if new else rng.integers(11, 19, n),
            rng.integers(5, 10, n),
        ],
        default=np.select(
            [t == Typology.L_SHAPE, t == Typology.INDUSTRIAL],
            [rng.integers(4, 13, n), rng.integers(1, 5, n)],
            default=rng.integers(2, 4, n),
        ),
    ).astype(np.int64)
    year = np.select(
        [t == Typology.TOWER, t == Typology.SLAB, t == Typology.MIDRISE, t == Typology.LANE, t == Typology.INDUSTRIAL],
        [
            rng.integers(1993, 2023, n) if profile is Profile.CBD else rng.integers(2000, 2024, n),
            _span(profile, n, rng, new_town=(1985, 2003), riverside=(1980, 1999), new=(2005, 2015), other=(1990, 2006)),
            _span(profile, n, rng, new_town=(1998, 2021), riverside=(1995, 2021), new=(2006, 2024), other=(1995, 2021)),
            rng.integers(1912, 1939, n),
            _span(profile, n, rng, new_town=(1990, 2016), riverside=(1990, 2016), new=(2005, 2023), other=(2000, 2023)),
        ],
        default=rng.integers(1990 if profile is Profile.RIVERSIDE else 1998, 2024, n),
    ).astype(np.int64)
    office = (t == Typology.TOWER) & (profile in (Profile.CBD, Profile.HUB))
    use = np.select(
        [office, (t == Typology.COURTYARD) | (t == Typology.L_SHAPE), t == Typology.INDUSTRIAL], [1, 2, 3], default=0
    )
    height = np.round(storeys * STOREY_M[use] + rng.uniform(0.5, 3.5, n), 1)
    lifts = np.select(
        [
            t == Typology.TOWER,
            (t == Typology.MIDRISE) | (t == Typology.COURTYARD),
            t == Typology.L_SHAPE,
            t == Typology.SLAB,  # Shanghai retrofits lifts to 1990s six-storey estates
            t == Typology.INDUSTRIAL,
        ],
        [
            np.ceil(storeys / 5),
            np.where(storeys >= 18, 2, rng.integers(1, 3, n)),
            (storeys >= 7).astype(int),
            (rng.random(n) < 0.15).astype(int),
            ((storeys >= 2) & (rng.random(n) < 0.3)).astype(int),
        ],
        default=0,
    ).astype(np.int64)
    return Attributes(storeys=storeys, height_m=height, year_built=year, use=use.astype(np.int64), lifts=lifts)


def _span(
    profile: Profile,
    n: int,
    rng: np.random.Generator,
    *,
    new_town: tuple[int, int],
    riverside: tuple[int, int],
    new: tuple[int, int],
    other: tuple[int, int],
) -> IntArray:
    lo, hi = {Profile.NEW_TOWN: new_town, Profile.RIVERSIDE: riverside, Profile.NEW_CITY: new, Profile.HUB: new}.get(
        profile, other
    )
    return rng.integers(lo, hi, n).astype(np.int64)
