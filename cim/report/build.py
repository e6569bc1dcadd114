"""Write the annual check-up: the data (:mod:`cim.report.checkup`), its charts and maps, a picture of the model,
then ``checkup-<year>.html`` and ``checkup-<year>.pdf`` into a folder (each written to a temporary name and moved
into place, so a reader never sees half a report).

>>> report_names(2026)
('checkup-2026.html', 'checkup-2026.pdf')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cim.cases.reading import CITY_ZONE
from cim.errors import CimError, InvalidInput
from cim.model import Kind
from cim.report import charts, html, pdf
from cim.report.checkup import checkup
from cim.store import AssetQuery, Store
from cim.store.assessment import assess
from cim.store.catalogue import assets_version

log = logging.getLogger(__name__)
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()
#: The model's picture: pixels.
PICTURE_SIZE = (1000, 620)
#: Signs with a trend chart and signs with a map.
TREND_SIGNS = ("old_lifts", "old_gas_mains_km", "old_water_mains_km", "stops_near_metro", "chargers", "poles")
#: District outlines on the maps are simplified to this many degrees (~100 m: a map is ~60 km across).
SIMPLIFY_DEG = 0.001
MAP_SIGNS = ("old_lifts_share", "old_gas_mains_km", "stops_near_metro", "homes_near_park")


def report_names(year: int) -> tuple[str, str]:
    return f"checkup-{year}.html", f"checkup-{year}.pdf"


def write_checkup(
    store: Store,
    *,
    year: int,
    out: Path,
    targets: Path | None = None,
    targets_scale: float | None = None,
    picture: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write the check-up of ``year`` into the folder ``out`` (made when missing); what was written and the
    seconds each step took."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if targets is not None and not targets.is_file():
        raise InvalidInput(f"targets {targets}", "is not a file")
    data = checkup(store, year, targets=targets, targets_scale=targets_scale, now=now)  # refusals before any file
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"out {out}", f"cannot be made: {exc.strerror}") from None
    seconds["data"] = time.perf_counter() - started
    tick = time.perf_counter()
    figures = _figures(store, data)
    seconds["charts"] = time.perf_counter() - tick
    tick = time.perf_counter()
    image = _picture(store, data) if picture else None
    seconds["picture"] = time.perf_counter() - tick
    tick = time.perf_counter()
    page = html.page(data, charts={k: charts.svg(f) for k, f in figures.items()}, picture=image)
    document = pdf.document(data, images={k: charts.png(f) for k, f in figures.items()}, picture=image)
    seconds["write"] = time.perf_counter() - tick
    html_name, pdf_name = report_names(year)
    _write(out / html_name, page.encode())
    _write(out / pdf_name, document)
    seconds["total"] = time.perf_counter() - started
    return {
        "year": year,
        "as_of": data["as_of"],
        "html": str(out / html_name),
        "pdf": str(out / pdf_name),
        "districts": len(data["districts"]),
        "years": data["years"],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def cached_checkup(
    store: Store, *, year: int, out: Path, targets: Path | None = None, targets_scale: float | None = None
) -> tuple[Path, Path]:
    """The HTML and PDF of ``year``'s check-up in ``out``, written again only when the model, the year's cases or
    the day changed since they were (a stamp beside them says what they were written from). One build at a time
    per folder: requests arriving during it wait and then find the report fresh."""
    html_path, pdf_path = (out / name for name in report_names(year))
    stamp_path = out / f".checkup-{year}.stamp"
    with _lock_for(out):
        stamp = report_stamp(store, year, targets=targets) + f":{targets_scale}"
        try:
            fresh = stamp_path.read_text() == stamp and html_path.is_file() and pdf_path.is_file()
        except OSError:
            fresh = False
        if not fresh:
            write_checkup(store, year=year, out=out, targets=targets, targets_scale=targets_scale)
            _write(stamp_path, stamp.encode())
    return html_path, pdf_path


def report_stamp(store: Store, year: int, *, targets: Path | None = None) -> str:
    """What a check-up is computed from: the model's version, today, the year's cases (their city figures) and the
    target file's modification time."""
    start = datetime(year, 1, 1, tzinfo=CITY_ZONE)
    cases = assess(store, level="city", start=start, end=start.replace(year=year + 1))
    mtime = targets.stat().st_mtime_ns if targets is not None and targets.is_file() else None
    text = json.dumps([assets_version(store), datetime.now(UTC).date().isoformat(), cases, mtime], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _lock_for(folder: Path) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(str(folder.resolve()), threading.Lock())


def _figures(store: Store, data: dict[str, Any]) -> dict[str, Any]:
    """The trend charts (the city) and maps (the districts) by name: ``trend:<sign>``, ``map:<sign>``,
    ``map:on_time_rate``."""
    years, year = data["years"], str(data["year"])
    signs = {s["id"]: s for s in data["signs"]}
    figures: dict[str, Any] = {}
    for key in TREND_SIGNS:
        s = signs[key]
        values = [data["city_trend"][y].get(key) for y in years]
        figures[f"trend:{key}"] = charts.trend(
            years, {"全市 City": values}, title=f"{s['zh']}  {s['en']}", unit=s["unit"]
        )
    shapes = {str(a.props.get("code") or a.id.removeprefix("area:")): a.geom.simplify(SIMPLIFY_DEG) for a in
              store.find_assets(AssetQuery(kinds=(Kind.DISTRICT,))) if a.geom is not None}  # fmt: skip
    labels = {d["code"]: d["name"] or d["code"] for d in data["districts"]}
    for key in MAP_SIGNS:
        s = signs[key]
        by_district = {code: v.get(key) for code, v in data["vitals"][year].items()}
        figures[f"map:{key}"] = charts.district_map(
            shapes,
            by_district,
            labels,
            title=f"{s['zh']}  {s['en']} ({year})",
            unit=s["unit"],
            better=s["better"] or "lower",
        )
    rates = {r["code"]: None if r["on_time_rate"] is None else round(100 * r["on_time_rate"], 1)
             for r in data["cases"]["districts"]}  # fmt: skip
    if rates:
        figures["map:on_time_rate"] = charts.district_map(
            shapes, rates, labels, title=f"案件按时处置率  Cases handled on time ({year})", unit="%"
        )
    return figures


def _picture(store: Store, data: dict[str, Any]) -> bytes | None:
    """An off-screen rendering of the tallest building in its surroundings (:mod:`cim.render`), or None when
    this machine cannot render or the model has no building."""
    from cim.render import open_meshes_for, render_asset

    buildings = store.find_assets(AssetQuery(kinds=(Kind.BUILDING,)))
    tallest = max(buildings, key=lambda a: (a.z_max or 0.0, a.id), default=None)
    if tallest is None:
        return None
    meshes = open_meshes_for(store)
    try:
        image = render_asset(store, meshes, tallest.id, width=PICTURE_SIZE[0], height=PICTURE_SIZE[1])
    except CimError as exc:  # RenderUnavailable above all: the report goes out without the picture
        log.warning("check-up picture: %s", exc)
        return None
    finally:
        if meshes is not None:
            meshes.close()
    data["picture_caption"] = (
        f"最高建筑及其周边 The tallest building and its surroundings: {tallest.name or tallest.id}"
    )
    return image


def _write(path: Path, content: bytes) -> None:
    """``content`` into ``path`` through a temporary file in the same folder, moved into place."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(temp, 0o644)  # served as it is: readable like any file written by the command
        os.replace(temp, path)
    except OSError as exc:
        raise InvalidInput(f"out {path.parent}", f"cannot be written: {exc.strerror}") from None
