"""The demo city generator: :func:`generate_city` writes one GeoParquet file per layer, seeded and deterministic,
and the earlier yearly states of the layers that change (:mod:`cim.synth.history`).

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as folder:
...     summary = generate_city(out=pathlib.Path(folder), buildings=300, seed=1, towers=0)
>>> summary.layers["buildings"]
300
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import shapely

from cim.errors import InvalidInput
from cim.synth import amenities, areas, networks, water
from cim.synth.buildings import PLOTS, REFERENCE_YEAR, USES, Typology, attributes, footprints, to_world, typologies
from cim.synth.grid import PITCH_X, PITCH_Y, candidate_blocks, cell_polygons, frame_of, nodes_of, streets_of
from cim.synth.history import HistoryWriters, Past, history_manifest
from cim.synth.landmarks import landmark_plots
from cim.synth.layers import LAYERS, ids, join, pick
from cim.synth.lifts import lifts
from cim.synth.networks import Layer
from cim.synth.places import DISTRICTS, District, district_centres, split_buildings, to_lonlat
from cim.synth.writer import LayerWriter, lonlat_wkb

MAX_BUILDINGS = 5_000_000
MAX_RADIUS = 120  # grid cells (about 25 km) a district may reach from its centre
CHUNK_BLOCKS = 2_000  # blocks per written chunk (≤ 64,000 buildings): bounds memory at any size
MAPPINGS = "pipelines/mappings"
#: Raised whenever the generator's output changes for the same seed and sizes, so ``cim demo`` regenerates a city
#: an older version wrote instead of reusing it (the manifest records the version that wrote it).
GENERATOR_VERSION = 4
#: Metres a block's grid cell (block and half its streets) keeps from the water and the landmarks' plots: the
#: street furniture, metro exits and pipe offsets of its streets stay within it.
CLEARANCE_M = 40.0
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TowerSite:
    """Where a generated BIM tower stands: a reserved plot in Lujiazui."""

    lon: float
    lat: float
    rotation_deg: float


@dataclass
class SynthSummary:
    out: str
    seed: int
    buildings: int
    layers: dict[str, int] = field(default_factory=dict)
    mains_km: dict[str, float] = field(default_factory=dict)
    lifts_older_than_15_years: int = 0
    lifts_without_date: int = 0
    towers: list[str] = field(default_factory=list)
    landmarks: list[str] = field(default_factory=list)
    history: dict[str, dict[str, int]] = field(default_factory=dict)  # rows per changing layer, by state date


def mapping_file(layer: str) -> str:
    """The layer mapping that ingests ``layer``: ``pipelines/mappings/synth-<layer>.toml``."""
    return f"{MAPPINGS}/synth-{layer.replace('_', '-')}.toml"


def generate_city(
    *,
    out: Path,
    buildings: int = 20_000,
    seed: int = 0,
    towers: int = 3,
    landmarks: bool = True,
    progress: Progress | None = None,
) -> SynthSummary:
    """Generate the demo city into ``out``: ``<layer>.parquet`` per layer, the earlier yearly states of the layers
    that change under ``history/<date>/`` (:mod:`cim.synth.history`), ``manifest.json`` naming each layer's mapping
    and listing the states, ``towers`` IFC towers and, with ``landmarks``, Lujiazui's landmark towers
    (:mod:`cim.synth.landmarks`). No block stands in the water (:mod:`cim.synth.water`) or on a landmark's plot,
    whether or not the landmarks are written. The same ``buildings`` and ``seed`` give byte-identical files."""
    if not 1 <= buildings <= MAX_BUILDINGS:
        raise InvalidInput(f"--buildings {buildings}", f"must be between 1 and {MAX_BUILDINGS:,}")
    if not 0 <= towers <= 8:
        raise InvalidInput(f"--towers {towers}", "must be between 0 and 8")
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out}", "is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    summary = SynthSummary(out=str(out), seed=seed, buildings=buildings)
    lengths = {m.network: 0.0 for m in networks.MAINS}
    centres = district_centres()
    sites: list[TowerSite] = []
    with ExitStack() as stack:
        writers = {
            name: stack.enter_context(LayerWriter(out / f"{name}.parquet", schema=schema, geometry_types=types))
            for name, (schema, types) in LAYERS.items()
        }
        past = stack.enter_context(HistoryWriters(out))

        def write(layer: str, written: tuple[dict[str, Any], Any], history: Past) -> None:
            writers[layer].write(*written)
            past.write(layer, *written, history)

        writers["areas"].write(*areas.area_layer(seed))
        writers["water"].write(*water.water_layer())
        layouts = _layouts(centres, buildings, math.ceil(towers / 4), seed)
        for index, (district, (bi, bj, typ, limit)) in enumerate(zip(DISTRICTS, layouts, strict=True)):
            reserve = math.ceil(towers / 4) if index == 0 else 0
            if len(bi) == 0:
                continue
            frame = frame_of(district, (float(centres[index, 0]), float(centres[index, 1])))
            if reserve:
                sites = _tower_sites(frame, bi[:reserve], bj[:reserve], district.rotation_deg)[:towers]
            edges = streets_of(bi, bj)
            ni, nj = nodes_of(edges)

            def rng(stream: int, _index: int = index) -> np.random.Generator:
                return np.random.default_rng([seed, _index, stream])

            writers["roads"].write(*networks.roads(district, frame, edges, rng(2)))
            pipe_layer, gas_sensors, pipe_past = networks.pipes(district, frame, edges, rng(3))
            write("pipes", pipe_layer, pipe_past)
            pipe_columns = pipe_layer[0]
            for network, length in zip(
                pipe_columns["network"].to_pylist(), pipe_columns["length_m"].to_pylist(), strict=True
            ):
                lengths[network] += length
            node_layer, level_sensors = networks.nodes(district, frame, ni, nj, rng(4))
            writers["nodes"].write(*node_layer)
            writers["sensors"].write(*gas_sensors)
            writers["sensors"].write(*level_sensors)
            parks_typ = np.where(np.arange(len(typ)) < reserve, -1, typ)
            writers["parks"].write(*amenities.parks(district, frame, bi, bj, parks_typ))
            exits, stops = amenities.transit(district, frame, ni, nj, edges, rng(5))
            writers["metro_exits"].write(*exits)
            writers["bus_stops"].write(*stops)
            write("poles", *amenities.poles(district, frame, edges, rng(6)))
            write("chargers", *amenities.chargers(district, frame, bi, bj, typ, rng(7)))
            first_building = first_lift = 0
            for chunk, start in enumerate(range(0, len(bi), CHUNK_BLOCKS)):
                part = slice(start, start + CHUNK_BLOCKS)
                b_layer, (lift_layer, lift_past), sensor_layer, ages = _buildings_chunk(
                    district,
                    frame,
                    bi[part],
                    bj[part],
                    typ[part],
                    limit[part],
                    first_building,
                    first_lift,
                    rng(100 + chunk),
                )
                writers["buildings"].write(*b_layer)
                write("lifts", lift_layer, lift_past)
                writers["sensors"].write(*sensor_layer)
                first_building += len(b_layer[1])
                first_lift += len(lift_layer[1])
                summary.lifts_older_than_15_years += ages[0]
                summary.lifts_without_date += ages[1]
                if progress is not None:
                    progress(len(b_layer[1]))
    summary.layers = {name: w.rows for name, w in writers.items()}
    summary.history = past.rows()
    summary.mains_km = {k: round(v / 1000, 1) for k, v in lengths.items()}
    if towers:
        # ifcopenshell loads only when towers are asked for
        from cim.synth.towers import write_tower_plots, write_towers

        summary.towers = [p.name for p in write_towers(out, sites, seed=seed)]
        write_tower_plots(out, sites, seed=seed)
        summary.layers["tower_plots"] = len(sites)
    if landmarks:
        from cim.synth.landmarks import write_landmarks

        summary.landmarks = [p.name for p in write_landmarks(out)]
    _write_manifest(out, summary)
    return summary


def _layouts(
    centres: np.ndarray, buildings: int, reserve: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Each district's blocks (nearest its centre first), their typologies and how many buildings each gets.

    Buildings are shared by the districts' weights; a district whose part of the city is full passes the rest to
    the others in proportion to their room."""
    candidates = []
    for index, district in enumerate(DISTRICTS):
        frame = frame_of(district, (float(centres[index, 0]), float(centres[index, 1])))
        bi, bj = candidate_blocks(frame, index, centres, MAX_RADIUS)
        bi, bj = _dry_blocks(frame, bi, bj)
        typ = typologies(district.profile, len(bi), np.random.default_rng([seed, index, 1]))
        if index == 0:
            typ[:reserve] = Typology.PARK
        candidates.append((bi, bj, typ))
    room = np.array([int(PLOTS[typ].sum()) for _, _, typ in candidates])
    if room.sum() < buildings:
        raise InvalidInput(f"--buildings {buildings:,}", f"the districts have room for {int(room.sum()):,} at most")
    counts = np.minimum(np.array(split_buildings(buildings)), room)
    while counts.sum() < buildings:
        spare = room - counts
        share = np.floor(spare / spare.sum() * (buildings - counts.sum())).astype(int)
        share[np.argmax(spare)] += buildings - counts.sum() - share.sum()
        counts = np.minimum(counts + share, room)
    layouts = []
    for index, (bi, bj, typ) in enumerate(candidates):
        count, keep = int(counts[index]), (reserve if index == 0 else 0)
        total = np.cumsum(PLOTS[typ])
        used = max(int(np.searchsorted(total, count)) + 1 if count else 0, keep)
        limit = PLOTS[typ[:used]].copy()
        if count:
            limit[used - 1] -= int(total[used - 1] - count)
        layouts.append((bi[:used], bj[:used], typ[:used], limit))
    return layouts


def _dry_blocks(frame: networks.Frame, bi: np.ndarray, bj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blocks whose cell, grown by :data:`CLEARANCE_M`, touches neither water nor a landmark's plot, in
    their order; the district takes the next ones in place of those dropped, so it keeps its building count."""
    cells = cell_polygons(frame, bi, bj, CLEARANCE_M)
    wet = water.in_water(cells)
    tree = shapely.STRtree(cells)
    for plot in landmark_plots():
        wet[tree.query(plot, predicate="intersects")] = True
    return bi[~wet], bj[~wet]


def _tower_sites(frame: networks.Frame, bi: np.ndarray, bj: np.ndarray, rotation: float) -> list[TowerSite]:
    u = (np.repeat(bi, 4) + np.tile([0.3, 0.7, 0.3, 0.7], len(bi))) * PITCH_X
    v = (np.repeat(bj, 4) + np.tile([0.3, 0.3, 0.7, 0.7], len(bj))) * PITCH_Y
    lon, lat = to_lonlat(*frame.to_world(u, v))
    return [TowerSite(float(a), float(b), rotation) for a, b in zip(lon, lat, strict=True)]


def _buildings_chunk(
    district: District,
    frame: networks.Frame,
    bi: np.ndarray,
    bj: np.ndarray,
    typ: np.ndarray,
    limit: np.ndarray,
    first_building: int,
    first_lift: int,
    rng: np.random.Generator,
) -> tuple[Layer, tuple[Layer, Past], Layer, tuple[int, int]]:
    fp = footprints(bi, bj, typ, limit, rng)
    attrs = attributes(fp.typology, district.profile, rng)
    n = len(fp.typology)
    bids = ids(f"B-{district.code}-", first_building, n)
    label = pick(tuple(t.name.replace("_", "-").title() for t in Typology), fp.typology)
    columns = {
        "bid": bids,
        "name": join(f"{district.name} ", label, " ", pc.utf8_slice_codeunits(bids, 6)),
        "district": np.full(n, district.name),
        "use": pick(USES, attrs.use),
        "shape": fp.shape,
        "storeys": attrs.storeys,
        "height_m": attrs.height_m,
        "year_built": attrs.year_built,
        "lifts": attrs.lifts,
    }
    world = to_world(fp.geometry, frame)
    ax, ay = frame.to_world(fp.anchor_u, fp.anchor_v)
    lift_layer, sensor_layer, lift_past = lifts(
        building_ids=bids,
        lift_counts=attrs.lifts,
        storeys=attrs.storeys,
        year_built=attrs.year_built,
        typology=fp.typology,
        x=ax,
        y=ay,
        first_id=first_lift,
        district_code=district.code,
        rng=rng,
    )
    years = lift_layer[0]["install_year"]
    known = np.asarray(years.fill_null(REFERENCE_YEAR).to_numpy(zero_copy_only=False))
    ages = (int(np.sum(REFERENCE_YEAR - known > 15)), int(years.null_count))
    sensor_layer[0]["district"] = np.full(len(sensor_layer[1]), district.name)
    return (columns, lonlat_wkb(world)), (lift_layer, lift_past), sensor_layer, ages


def _write_manifest(out: Path, summary: SynthSummary) -> None:
    manifest = {
        "generator": GENERATOR_VERSION,
        "seed": summary.seed,
        "buildings": summary.buildings,
        "layers": {
            name: {"file": f"{name}.parquet", "mapping": mapping_file(name), "rows": rows}
            for name, rows in summary.layers.items()
        },
        "towers": summary.towers,
        "landmarks": summary.landmarks,
        "history": history_manifest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
