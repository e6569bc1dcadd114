"""External tilesets mounted beside the city's own: a city's photogrammetry, a reality mesh, a neighbour's buildings.

A mount is checked (:mod:`cim.tiling.external_check`), then recorded in the built tiles' folder: the root
``tileset.json`` gets one child per mount — its ``content.uri`` is ``external/<name>/<entry>``, its bounding volume
holds the mounted root's after the mount's transform, the transform (an ENU frame at a ``place``, or a ``matrix``)
sits on that child, and ``extras`` carry the title the viewer lists it by. ``.mounts.json`` beside it (hidden: it
names server paths, and the tiles route never serves a hidden name) keeps each mount's folder or URL and the root as
the build wrote it, so that ``cim serve`` finds the mounts after a restart (:class:`cim.api.tilefiles.TileFiles`
serves ``external/<name>/…`` from them), a rebuild carries them into its new version (:func:`carry_mounts`: each
checked again, one that no longer passes left out and reported), and a changed set of mounts rewrites the root from
the built one.

>>> [round(v, 3) for v in place_matrix(0.0, 0.0, 0.0, 90.0)[:3]]  # heading 90°: the content's x (east) points south
[0.0, 0.0, -1.0]
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cim.errors import CimError, InvalidInput
from cim.geodesy import ecef_to_lonlat, enu_to_ecef_matrix, lonlat_to_ecef
from cim.tiling.external_check import FolderSource, TilesetSource, UrlSource, check_local_url, check_tileset

F64 = npt.NDArray[np.float64]
MOUNTS = ".mounts.json"
#: The folder, under the root tileset's, whose ``<name>/…`` paths are the mounted tilesets' files.
PREFIX = "external"
FORMAT = 1


@dataclass(frozen=True)
class MountSpec:
    """What to mount: a folder holding ``tileset.json`` (or a tileset JSON file) or a URL on this machine, an
    optional transform (column-major 4×4, as 3D Tiles) and the title the viewer lists it by."""

    name: str
    path: Path | None = None
    url: str | None = None
    matrix: tuple[float, ...] | None = None
    title: str | None = None
    title_zh: str | None = None


@dataclass
class MountSummary:
    mounted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mounted": self.mounted, "errors": self.errors}


def place_matrix(lon: float, lat: float, height: float, heading: float = 0.0) -> list[float]:
    """The column-major transform putting a tileset's local x/y/z (east, north, up) at ``lon``/``lat``/``height``
    (ellipsoidal metres), turned ``heading`` degrees clockwise from north, as a 3D Tiles ``transform``."""
    turn = math.radians(heading)
    rotation = np.eye(4)
    rotation[:2, :2] = [[math.cos(turn), math.sin(turn)], [-math.sin(turn), math.cos(turn)]]
    return [float(v) for v in (enu_to_ecef_matrix((lon, lat, height)) @ rotation).T.ravel()]


def source_of(spec: MountSpec) -> tuple[TilesetSource, str]:
    """The source to read the tileset from and the path of its root JSON inside it."""
    if spec.url is not None:
        url = check_local_url(spec.url, what=f'tileset "{spec.name}" url')
        folder, _, entry = url.partition("?")[0].rpartition("/")
        if not entry.endswith(".json"):
            folder, entry = url.partition("?")[0].rstrip("/"), "tileset.json"
        return UrlSource(folder + "/"), entry
    assert spec.path is not None
    if spec.path.is_file() and spec.path.suffix.lower() == ".json":
        return FolderSource(spec.path.parent), spec.path.name
    if not spec.path.is_dir():
        raise InvalidInput(f'tileset "{spec.name}" path', "is not a folder holding tileset.json (or a .json file)")
    return FolderSource(spec.path), "tileset.json"


def check_mount(spec: MountSpec) -> dict[str, Any]:
    """Check ``spec``'s tileset and return its record for ``.mounts.json`` (the root's child and ECEF corners)."""
    source, entry = source_of(spec)
    return _checked_record(spec, source, entry)


def recheck_mount(record: Any) -> dict[str, Any]:
    """Check a mount recorded in ``.mounts.json`` again, from the folder or URL it was mounted from, and return its
    record as the tileset is now (its bounding volume may have changed); InvalidInput, naming the mount, when it no
    longer passes — its folder deleted or moved, its tileset broken, its server gone."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise InvalidInput(f"tiles {MOUNTS}", "holds a mount record without a name")
    name: str = record["name"]
    child: dict[str, Any] = record["child"] if isinstance(record.get("child"), dict) else {}
    content = child.get("content")
    uri = str(content.get("uri", "")) if isinstance(content, dict) else ""
    entry = uri.removeprefix(f"{PREFIX}/{name}/") if uri.startswith(f"{PREFIX}/{name}/") else "tileset.json"
    transform = child.get("transform")
    if transform is not None and not (
        isinstance(transform, list) and len(transform) == 16 and all(isinstance(v, int | float) for v in transform)
    ):
        raise InvalidInput(f'tileset "{name}"', f"its record in {MOUNTS} has a transform that is not 16 numbers")
    spec = MountSpec(name, matrix=tuple(float(v) for v in transform) if transform is not None else None)
    source: TilesetSource
    if isinstance(record.get("url"), str):
        source = UrlSource(check_local_url(record["url"], what=f'tileset "{name}" url'))
    elif isinstance(record.get("folder"), str):
        folder = Path(record["folder"])
        if not folder.is_dir():
            raise InvalidInput(f'tileset "{name}" folder {folder}', "is gone (deleted or moved since it was mounted)")
        source = FolderSource(folder)
    else:
        raise InvalidInput(f'tileset "{name}"', f"its record in {MOUNTS} names neither a folder nor a URL")
    checked = _checked_record(spec, source, entry)
    checked["child"]["extras"] = child.get("extras") or checked["child"]["extras"]  # the title as it was given
    return checked


def _checked_record(spec: MountSpec, source: TilesetSource, entry: str) -> dict[str, Any]:
    doc = check_tileset(source, entry, name=spec.name)
    transform = np.asarray(spec.matrix, np.float64).reshape(4, 4).T if spec.matrix is not None else None
    volume, points = _child_volume(doc["root"], transform, f'tileset "{spec.name}" {entry} root.boundingVolume')
    child: dict[str, Any] = {
        "boundingVolume": volume,
        "geometricError": float(doc["geometricError"]),
        "refine": "ADD",
        "content": {"uri": f"{PREFIX}/{spec.name}/{entry}"},
        "extras": {"mount": spec.name, "title": spec.title or spec.name, "title_zh": spec.title_zh or spec.title},
    }
    if spec.matrix is not None:
        child["transform"] = [float(v) for v in spec.matrix]
    return {
        "name": spec.name,
        "folder": str(source.folder) if isinstance(source, FolderSource) else None,
        "url": source.base if isinstance(source, UrlSource) else None,
        "child": child,
        "corners": points.tolist(),
    }


def mount_tilesets(out: Path, specs: list[MountSpec], *, keep_others: bool = False) -> MountSummary:
    """Check every spec and mount the good ones beside the tiles built in ``out`` (e.g. ``tiles/city``); a broken
    one is reported (and unmounted if it was mounted). ``keep_others``: mounts not named in ``specs`` stay (``cim
    build --mount``); else ``specs`` is the whole set (a pipeline's ``[[tilesets]]``)."""
    folder = _built_folder(out)
    state = read_mounts(folder)
    built = state.get("built") or _strip(_read_json(folder / "tileset.json"))
    records = {m["name"]: m for m in state.get("mounts", [])} if keep_others else {}
    summary = MountSummary()
    for spec in specs:
        try:
            records[spec.name] = check_mount(spec)
            summary.mounted.append(spec.name)
        except CimError as exc:
            records.pop(spec.name, None)
            summary.errors.append(str(exc))
    _write(folder, built, list(records.values()))
    return summary


def carry_mounts(previous: Path | None, folder: Path) -> list[dict[str, str]]:
    """Mount what ``previous`` (the version a build replaces) had mounted beside the new build in ``folder``, each
    checked again (:func:`recheck_mount`). One that no longer passes is left out, so the new root names nothing that
    is not there, and the build goes on (the city's own tiles do not wait on a third party's): it is recorded under
    ``dropped`` in the new ``.mounts.json`` (:func:`dropped_mounts`: ``cim build`` warns of it and reports it) and
    returned, each as ``{"name", "why"}``."""
    if previous is None:
        return []
    mounts = read_mounts(previous).get("mounts") or []
    mounts = mounts if isinstance(mounts, list) else []
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, str]] = []
    for record in mounts:
        try:
            kept.append(recheck_mount(record))
        except CimError as exc:
            name = record.get("name") if isinstance(record, dict) else None
            dropped.append({"name": str(name or "?"), "why": str(exc)})
    if mounts:
        _write(folder, _read_json(folder / "tileset.json"), kept, dropped)
    return dropped


def dropped_mounts(folder: Path) -> list[dict[str, str]]:
    """The mounts the build in ``folder`` did not carry over from the version before it, each ``{"name", "why"}``
    (:func:`carry_mounts`); a later change of mounts clears them."""
    dropped = read_mounts(folder).get("dropped")
    if not isinstance(dropped, list):
        return []
    return [{"name": str(d.get("name")), "why": str(d.get("why"))} for d in dropped if isinstance(d, dict)]


def read_mounts(folder: Path) -> dict[str, Any]:
    """``.mounts.json`` of a tiles folder: ``{"built": root tileset as built, "mounts": [record, …]}`` (and
    ``"dropped"``: see :func:`dropped_mounts`) or {}."""
    try:
        state = json.loads((folder / MOUNTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("format") == FORMAT else {}


def _built_folder(out: Path) -> Path:
    if not (out / "tileset.json").is_file():
        raise InvalidInput(f"tiles {out}", "has no built tileset.json to mount tilesets beside; build the city first")
    return out.resolve()


def _write(
    folder: Path, built: dict[str, Any], mounts: list[dict[str, Any]], dropped: list[dict[str, str]] | None = None
) -> None:
    """Write ``.mounts.json`` then the root tileset (the one the viewer reads last), each atomically, and only when
    changed (an unchanged root keeps its ETag)."""
    state: dict[str, Any] = {"format": FORMAT, "built": built, "mounts": mounts}
    if dropped:
        state["dropped"] = dropped
    _replace(folder / MOUNTS, state)
    _replace(folder / "tileset.json", with_mounts(built, mounts))


def with_mounts(built: dict[str, Any], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The root tileset ``built`` with a child per mount, its bounding volume grown to hold them, its geometric
    error at least theirs."""
    root = copy.deepcopy(built)
    if not mounts:
        return root
    tile = root["root"]
    tile.setdefault("children", []).extend(m["child"] for m in mounts)
    corners = np.asarray([c for m in mounts for c in m["corners"]], np.float64)
    volume = tile["boundingVolume"]
    if "region" in volume:
        volume["region"] = _grown_region(volume["region"], corners)
    else:
        lo, hi = _ecef_bounds(volume)
        volume.clear()
        volume["box"] = _aabb(np.minimum(lo, corners.min(axis=0)), np.maximum(hi, corners.max(axis=0)))
    error = max([float(root["geometricError"]), *(float(m["child"]["geometricError"]) for m in mounts)])
    root["geometricError"] = tile["geometricError"] = error
    return root


def _child_volume(tile: dict[str, Any], transform: F64 | None, what: str) -> tuple[dict[str, Any], F64]:
    """The mount child's bounding volume (in its own frame, before its transform) and its corners in ECEF. Box,
    then region, then sphere, as CesiumJS prefers them when a tile gives several."""
    volume = tile["boundingVolume"]
    if "box" not in volume and "region" in volume:
        if transform is not None:
            raise InvalidInput(what, "is a region, which no transform moves (3D Tiles); mount it without place/matrix")
        return {"region": list(volume["region"])}, _region_corners(volume["region"])
    own = np.asarray(tile["transform"], np.float64).reshape(4, 4).T if "transform" in tile else np.eye(4)
    points = _box_corners(volume) @ own[:3, :3].T + own[:3, 3]
    world = points if transform is None else points @ transform[:3, :3].T + transform[:3, 3]
    return {"box": _aabb(points.min(axis=0), points.max(axis=0))}, world


def _box_corners(volume: dict[str, Any]) -> F64:
    if "box" in volume:
        box = np.asarray(volume["box"], np.float64)
        centre, axes = box[:3], box[3:].reshape(3, 3)
    else:
        sphere = np.asarray(volume["sphere"], np.float64)
        centre, axes = sphere[:3], np.eye(3) * sphere[3]
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
    return np.asarray(centre + signs @ axes, np.float64)


def _region_corners(region: list[float]) -> F64:
    west, south, east, north, low, high = region
    lons = np.degrees(np.linspace(west, east, 5))
    lats = np.degrees(np.linspace(south, north, 5))
    grid = np.array([(lo, la, h) for lo in lons for la in lats for h in (low, high)], np.float64)
    return np.asarray(lonlat_to_ecef(grid[:, 0], grid[:, 1], grid[:, 2]), np.float64)


def _ecef_bounds(volume: dict[str, Any]) -> tuple[F64, F64]:
    corners = _box_corners(volume)
    return corners.min(axis=0), corners.max(axis=0)


def _grown_region(region: list[float], corners: F64) -> list[float]:
    lonlat = ecef_to_lonlat(corners)
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    west, south, east, north, low, high = region
    return [
        float(min(west, lon.min())),
        float(min(south, lat.min())),
        float(max(east, lon.max())),
        float(max(north, lat.max())),
        float(min(low, lonlat[:, 2].min())),
        float(max(high, lonlat[:, 2].max())),
    ]


def _aabb(lo: F64, hi: F64) -> list[float]:
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 0.01)
    return [*map(float, centre), float(half[0]), 0.0, 0.0, 0.0, float(half[1]), 0.0, 0.0, 0.0, float(half[2])]


def _strip(root: dict[str, Any]) -> dict[str, Any]:
    """A root tileset without mount children (one written before ``.mounts.json`` was lost)."""
    children = root.get("root", {}).get("children")
    if isinstance(children, list):
        kept = [c for c in children if not str(c.get("content", {}).get("uri", "")).startswith(f"{PREFIX}/")]
        root["root"]["children"] = kept
    return root


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InvalidInput(f"tiles {path}", "cannot be read as JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"tiles {path}", "is not a tileset JSON object")
    return value


def _replace(path: Path, value: dict[str, Any]) -> None:
    data = json.dumps(value, separators=(",", ":")).encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
