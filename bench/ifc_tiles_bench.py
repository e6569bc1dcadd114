"""The same IFC files through ``cim ingest`` + ``cim build`` and through ``py3dtiles convert``, side by side.

Issue 24's targets, per file: our wall time ≤ 0.8× py3dtiles', our tile bytes ≤ 1.0× theirs, with our metadata
kept. Each run is a fresh process as a user starts it (our CLI: ``python -m cim`` from this checkout, or ``--cim``;
theirs: the ``py3dtiles`` of the peer venv, ``bench/peers/README.md``), into a fresh store and a fresh output folder.
A first round per file is a warm-up (file cache, ``.pyc``) and decides whether the file needs ``--place`` (a file
with no georeference of its own: placed at Shanghai, as the README's example); then ``--rounds`` timed rounds
alternate which side runs first, and the median is printed.

What is counted: the bytes a 3D Tiles client fetches (every tileset JSON and tile content reachable from the root
tileset.json, implicit-tiling subtrees and contents by their folder; not our ``build.json`` manifest or ``.state``);
vertices and triangles from the glTF accessors of every tile (py3dtiles 12 writes b3dm: the glb inside it is read);
the metadata each side carries (our EXT_structural_metadata classes and properties; their b3dm batch table keys and
the ``extras`` of their tileset nodes).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/ifc_tiles_bench.py            # every file, 3 rounds
    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/ifc_tiles_bench.py --rounds 5 --file duplex.ifc --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IFC_DIR = ROOT.parent / "shared" / "data" / "ifc"
PY3DTILES = Path("/work/peers/py3dtiles-venv/bin/py3dtiles")
#: Where a file with no georeference of its own is put (lon, lat, height): Lujiazui, as the demo city.
PLACE = "121.5,31.24,0"
TARGET_TIME, TARGET_BYTES = 0.8, 1.0
TILE_SUFFIXES = (".glb", ".b3dm", ".pnts", ".i3dm", ".cmpt", ".subtree", ".json")


@dataclass
class Side:
    """One side's figures for one file."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system seconds of the run's processes (all of them)
    parts: dict[str, list[float]] = field(default_factory=dict)  # ours: ingest and build apart
    error: str | None = None
    bytes: int = 0
    files: int = 0
    vertices: int = 0
    triangles: int = 0
    metadata: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def _children_cpu() -> float:
    """CPU seconds (user + system) of every process this one ran so far, and of theirs once reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    # run in a temp folder: `python -m cim` from a checkout's folder would import that checkout, not PYTHONPATH's
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=False)
    return time.perf_counter() - started, done


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return text[-1][:300] if text else f"exit status {done.returncode}"


class Ours:
    def __init__(self, cim: list[str]) -> None:
        self.cim = cim
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(self, ifc: Path, work: Path, place: str | None) -> tuple[dict[str, float], str | None, Path]:
        store, out = work / "city.duckdb", work / "tiles"
        ingest = [
            *self.cim,
            "ingest",
            str(ifc),
            "--store",
            str(store),
            "--json",
            *(["--place", place] if place else []),
        ]
        ingest_s, done = _run(ingest, self.env)
        if done.returncode != 0:
            return {"ingest": ingest_s}, _ingest_error(done), out
        build_s, done = _run([*self.cim, "build", "--out", str(out), "--store", str(store), "--json"], self.env)
        error = None if done.returncode == 0 else _last_line(done)
        return {"ingest": ingest_s, "build": build_s}, error, out


def _ingest_error(done: subprocess.CompletedProcess[str]) -> str:
    try:
        files = json.loads(done.stdout.strip().splitlines()[-1])["files"]
        return str(files[0]["error"])
    except (ValueError, KeyError, IndexError):
        return _last_line(done)


class Theirs:
    def __init__(self, py3dtiles: Path) -> None:
        self.py3dtiles = py3dtiles

    def run(self, ifc: Path, work: Path) -> tuple[float, str | None, Path]:
        out = work / "3dtiles"
        seconds, done = _run([str(self.py3dtiles), "convert", str(ifc), "--out", str(out), "--overwrite"])
        return seconds, None if done.returncode == 0 else _last_line(done), out


# --- what a client fetches ---


def tile_files(folder: Path) -> list[Path]:
    """The tileset JSONs and tile contents reachable from ``folder``/tileset.json (implicit tiling: every content
    and subtree file in the folder of its templates)."""
    found: list[Path] = []
    seen: set[Path] = set()

    def visit(tileset: Path) -> None:
        if tileset in seen or not tileset.is_file():
            return
        seen.add(tileset)
        found.append(tileset)
        base = tileset.parent

        def walk(tile: dict[str, Any]) -> None:
            contents = [tile["content"]] if "content" in tile else list(tile.get("contents", []))
            implicit = tile.get("implicitTiling")
            for content in contents:
                uri = content.get("uri") or content.get("url")
                if not uri:
                    continue
                if implicit or "{" in uri:
                    found.extend(_templated(base, uri))
                elif uri.endswith(".json"):
                    visit((base / uri).resolve())
                else:
                    found.append((base / uri).resolve())
            if implicit:
                found.extend(_templated(base, implicit["subtrees"]["uri"]))
            for child in tile.get("children", []):
                walk(child)

        walk(json.loads(tileset.read_text())["root"])

    visit((folder / "tileset.json").resolve())
    return sorted(set(found))


def _templated(base: Path, template: str) -> list[Path]:
    folder = base / template.split("{")[0]
    folder = folder if folder.is_dir() else folder.parent
    suffix = Path(template).suffix
    return [p.resolve() for p in folder.rglob(f"*{suffix}") if p.is_file()]


def glb_of(data: bytes) -> bytes:
    """The binary glTF of a tile: itself, or the one inside a b3dm (28-byte header, feature and batch tables)."""
    if data[:4] == b"b3dm":
        ft_json, ft_bin, bt_json, bt_bin = struct.unpack_from("<4I", data, 12)
        return data[28 + ft_json + ft_bin + bt_json + bt_bin :]
    return data


def b3dm_batch_keys(data: bytes) -> tuple[int, list[str]]:
    """BATCH_LENGTH and the batch table's property names of a b3dm."""
    ft_json, ft_bin, bt_json, _ = struct.unpack_from("<4I", data, 12)
    feature_table = json.loads(data[28 : 28 + ft_json] or b"{}")
    start = 28 + ft_json + ft_bin
    batch_table = json.loads(data[start : start + bt_json] or b"{}")
    return int(feature_table.get("BATCH_LENGTH", 0)), sorted(batch_table)


def gltf_json(glb: bytes) -> dict[str, Any]:
    magic, _, _ = struct.unpack_from("<4sII", glb, 0)
    if magic != b"glTF":
        raise ValueError("not a binary glTF")
    length, kind = struct.unpack_from("<I4s", glb, 12)
    assert kind == b"JSON"
    return dict(json.loads(glb[20 : 20 + length]))


def vertices_triangles(gltf: dict[str, Any]) -> tuple[int, int]:
    """Vertices and triangles of every mesh a node draws (accessor counts: compressed buffers need no decoding)."""
    accessors, meshes = gltf.get("accessors", []), gltf.get("meshes", [])
    drawn = [node["mesh"] for node in gltf.get("nodes", []) if "mesh" in node] or range(len(meshes))
    vertices = triangles = 0
    for mesh in drawn:
        for primitive in meshes[mesh]["primitives"]:
            count = accessors[primitive["attributes"]["POSITION"]]["count"]
            vertices += count
            if primitive.get("mode", 4) == 4:
                indexed = primitive.get("indices")
                triangles += (accessors[indexed]["count"] if indexed is not None else count) // 3
    return vertices, triangles


def measure_output(side: Side, folder: Path, ours: bool) -> None:
    files = tile_files(folder)
    side.files, side.bytes = len(files), sum(p.stat().st_size for p in files)
    classes: dict[str, set[str]] = {}
    features = 0
    batch_keys: set[str] = set()
    for path in files:
        if path.suffix == ".json":
            continue
        data = path.read_bytes()
        gltf = gltf_json(glb_of(data))
        v, t = vertices_triangles(gltf)
        side.vertices += v
        side.triangles += t
        metadata = gltf.get("extensions", {}).get("EXT_structural_metadata", {})
        for name, cls in metadata.get("schema", {}).get("classes", {}).items():
            classes.setdefault(name, set()).update(cls.get("properties", {}))
        features += sum(table.get("count", 0) for table in metadata.get("propertyTables", []))
        if data[:4] == b"b3dm":
            length, keys = b3dm_batch_keys(data)
            features += length
            batch_keys.update(keys)
    if ours:
        listed = "; ".join(f"{name}: {', '.join(sorted(props))}" for name, props in sorted(classes.items()))
        side.metadata = f"EXT_structural_metadata, {features} features — {listed or 'no class'}"
    else:
        extras = _extras_keys(folder / "tileset.json")
        side.metadata = (
            f"b3dm batch table, {features} features — {', '.join(sorted(batch_keys)) or 'no property'}; "
            f"tileset extras: {', '.join(sorted(extras)) or 'none'}"
        )


def _extras_keys(tileset: Path) -> set[str]:
    keys: set[str] = set()

    def walk(tile: dict[str, Any]) -> None:
        for value in tile.get("extras", {}).get("properties", {}).values():
            if isinstance(value, dict):
                keys.update(value)
        for child in tile.get("children", []):
            walk(child)

    if tileset.is_file():
        walk(json.loads(tileset.read_text())["root"])
    return keys


# --- the run ---


def bench_file(ifc: Path, ours: Ours, theirs: Theirs, rounds: int) -> tuple[Side, Side, str | None]:
    mine, peer = Side(), Side()
    with tempfile.TemporaryDirectory(prefix="ifc-bench-") as tmp:
        work = Path(tmp)
        # warm-up: is a placement needed? (a file with no georeference of its own)
        place = None
        _, error, _ = ours.run(ifc, _fresh(work / "warm-ours"), None)
        if error and "--place" in error:
            place = PLACE
            _, error, _ = ours.run(ifc, _fresh(work / "warm-ours"), place)
        mine.error = error
        _, peer.error, _ = theirs.run(ifc, _fresh(work / "warm-theirs"))
        last_ours = last_theirs = None
        for round_ in range(rounds):
            order = ("ours", "theirs") if round_ % 2 == 0 else ("theirs", "ours")
            for who in order:
                cpu = _children_cpu()
                if who == "ours" and mine.error is None:
                    parts, mine.error, last_ours = ours.run(ifc, _fresh(work / f"ours-{round_}"), place)
                    mine.seconds.append(sum(parts.values()))
                    mine.cpu.append(_children_cpu() - cpu)
                    for name, seconds in parts.items():
                        mine.parts.setdefault(name, []).append(seconds)
                elif who == "theirs" and peer.error is None:
                    seconds, peer.error, last_theirs = theirs.run(ifc, _fresh(work / f"theirs-{round_}"))
                    peer.seconds.append(seconds)
                    peer.cpu.append(_children_cpu() - cpu)
        if mine.error is None and last_ours is not None:
            measure_output(mine, last_ours, ours=True)
        if peer.error is None and last_theirs is not None:
            measure_output(peer, last_theirs, ours=False)
    return mine, peer, place


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per file (median; default 3)")
    parser.add_argument("--file", action="append", help="only these files of the IFC folder (repeatable)")
    parser.add_argument("--ifc-dir", type=Path, default=IFC_DIR)
    parser.add_argument("--py3dtiles", type=Path, default=PY3DTILES)
    parser.add_argument("--cim", default=f"{sys.executable} -m cim", help="our CLI (default: python -m cim here)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file instead of the table")
    args = parser.parse_args()
    files = sorted(args.ifc_dir.glob("*.ifc"))
    if args.file:
        files = [f for f in files if f.name in set(args.file)]
    ours, theirs = Ours(args.cim.split()), Theirs(args.py3dtiles)
    print(f"# {len(files)} IFC files, {args.rounds} rounds, cim: {args.cim}, peer: {args.py3dtiles}", file=sys.stderr)
    rows = []
    for ifc in files:
        mine, peer, place = bench_file(ifc, ours, theirs, args.rounds)
        row = {
            "file": ifc.name,
            "place": place,
            "ours": {
                **_figures(mine),
                "ingest_s": _median(mine.parts.get("ingest")),
                "build_s": _median(mine.parts.get("build")),
            },
            "theirs": _figures(peer),
            "time_ratio": round(mine.median / peer.median, 3) if mine.seconds and peer.seconds else None,
            "bytes_ratio": round(mine.bytes / peer.bytes, 3) if mine.bytes and peer.bytes else None,
        }
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            _print_row(row)
    if not args.json:
        _print_summary(rows)


def _median(values: list[float] | None) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _figures(side: Side) -> dict[str, Any]:
    return {
        "seconds": _median(side.seconds),
        "rounds": [round(s, 3) for s in side.seconds],
        "cpu_s": _median(side.cpu),
        "error": side.error,
        "bytes": side.bytes,
        "files": side.files,
        "vertices": side.vertices,
        "triangles": side.triangles,
        "metadata": side.metadata,
    }


def _print_row(row: dict[str, Any]) -> None:
    ours, theirs = row["ours"], row["theirs"]
    print(f"\n{row['file']}" + (f"  (no georeference: --place {row['place']})" if row["place"] else ""))
    for name, side in (("cim", ours), ("py3dtiles", theirs)):
        if side["error"]:
            print(f"  {name:10} FAILED: {side['error']}")
            continue
        extra = f" (ingest {ours['ingest_s']:.2f} + build {ours['build_s']:.2f})" if name == "cim" else ""
        print(f"  {name:10} {side['seconds']:6.2f} s wall{extra}, {side['cpu_s']:.2f} s CPU")
        print(
            f"  {'':10} {side['bytes']:>10,} B in {side['files']} files  "
            f"{side['vertices']:>8,} vertices {side['triangles']:>8,} triangles"
        )
        print(f"  {'':10} metadata: {side['metadata']}")
    if row["time_ratio"] is not None:
        time_ok = "ok" if row["time_ratio"] <= TARGET_TIME else "MISSED"
        bytes_ok = "ok" if (row["bytes_ratio"] or 9) <= TARGET_BYTES else "MISSED"
        print(
            f"  ratio      time {row['time_ratio']:.2f} (target ≤ {TARGET_TIME}: {time_ok})   "
            f"bytes {row['bytes_ratio']:.2f} (target ≤ {TARGET_BYTES}: {bytes_ok})"
        )


def _print_summary(rows: list[dict[str, Any]]) -> None:
    print("\nfile                                  cim s  py3dtiles s  time×   cim B       py3dtiles B  bytes×")
    for r in rows:
        o, t = r["ours"], r["theirs"]
        cim_s = f"{o['seconds']:.2f}" if o["seconds"] is not None else "fail"
        peer_s = f"{t['seconds']:.2f}" if t["seconds"] is not None else "fail"
        print(
            f"{r['file'][:36]:36} {cim_s:>6} {peer_s:>12} {_opt(r['time_ratio']):>6} {o['bytes']:>11,} "
            f"{t['bytes']:>13,} {_opt(r['bytes_ratio']):>7}"
        )


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
