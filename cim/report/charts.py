"""The check-up's charts and maps, drawn by matplotlib (Agg, no display) with a CJK font found on the machine: a
trend of one sign over the years, and a map of the districts coloured by a value. Each figure is written as inline
SVG (the HTML) and PNG (the PDF), so neither needs the network.

The font: :func:`cjk_font` asks fontconfig (``fc-list :lang=zh``) for a font covering Chinese, as Debian's
``fonts-wqy-microhei`` or ``fonts-noto-cjk`` install (``scripts/env.sh`` installs the first when none is there).
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cim.errors import CimError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from shapely.geometry.base import BaseGeometry

#: Fonts looked for when fontconfig is not there, in this order.
KNOWN_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
#: Resolution of the PDF's charts (a chart half a landscape A4 page wide: ~1,100 pixels).
PNG_DPI = 150
#: Chart colours: one per line of a trend, the city's first.
PALETTE = ("#1f4e79", "#c0504d", "#4f9a55", "#8064a2", "#d08a2c", "#4bacc6")


class NoCjkFont(CimError):
    """No font on this machine draws Chinese: install Debian's fonts-wqy-microhei (scripts/env.sh does)."""


@functools.cache
def cjk_font() -> Path:
    """A font file that covers Chinese, or :class:`NoCjkFont`."""
    if shutil.which("fc-list"):
        out = subprocess.run(
            ["fc-list", "--format", "%{file}\n", ":lang=zh"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        files = sorted({line.strip() for line in out.splitlines() if re.search(r"\.(ttc|ttf|otf)$", line.strip())})
        preferred = [f for f in files if "microhei" in f.lower() or "notosanscjk" in f.lower().replace("-", "")]
        if preferred or files:
            return Path((preferred or files)[0])
    for known in KNOWN_FONTS:
        if Path(known).is_file():
            return Path(known)
    raise NoCjkFont("font", "no font on this machine draws Chinese: install fonts-wqy-microhei")


@functools.cache
def _font_family() -> str:
    from matplotlib import font_manager

    path = cjk_font()
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    matplotlib.rcParams["font.family"] = [_font_family(), "DejaVu Sans"]
    matplotlib.rcParams["svg.fonttype"] = "path"  # glyphs as outlines: the page needs no font of its own
    matplotlib.rcParams["axes.unicode_minus"] = False
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def trend(years: Sequence[str], series: Mapping[str, Sequence[float | int | None]], *, title: str, unit: str) -> Figure:
    """A line per series over ``years`` (None leaves a gap)."""
    fig = _figure(5.2, 2.6)
    ax = fig.add_subplot()
    for i, (label, values) in enumerate(series.items()):
        points = [(y, v) for y, v in zip(years, values, strict=True) if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", color=PALETTE[i % len(PALETTE)], label=label, linewidth=2 if i == 0 else 1.2)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    return fig


def district_map(
    shapes: Mapping[str, BaseGeometry],
    values: Mapping[str, float | int | None],
    labels: Mapping[str, str],
    *,
    title: str,
    unit: str,
    better: str = "higher",
) -> Figure:
    """The districts (``shapes`` by code) coloured by ``values`` (grey where None), each labelled; green is good."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot()
    known = [float(v) for v in values.values() if v is not None]
    norm = Normalize(min(known, default=0.0), max(known, default=1.0) if known and max(known) > min(known) else 1.0)
    cmap = colormaps["RdYlGn" if better != "lower" else "RdYlGn_r"]
    for code, geom in shapes.items():
        value = values.get(code)
        colour: Any = "#dddddd" if value is None else cmap(norm(float(value)))
        for polygon in getattr(geom, "geoms", [geom]):
            if polygon.geom_type != "Polygon":
                continue
            rings = [
                np.asarray(polygon.exterior.coords)[:, :2],
                *(np.asarray(r.coords)[:, :2] for r in polygon.interiors),
            ]
            verts = np.concatenate(rings)
            codes = np.concatenate(
                [[MplPath.MOVETO, *[MplPath.LINETO] * (len(r) - 2), MplPath.CLOSEPOLY] for r in rings]
            )
            ax.add_patch(PathPatch(MplPath(verts, codes), facecolor=colour, edgecolor="white", linewidth=0.6))
        point = geom.representative_point()
        text = labels.get(code, code) + ("" if value is None else f"\n{_number(value)}")
        ax.annotate(text, (point.x, point.y), ha="center", va="center", fontsize=6)
    ax.autoscale_view()
    ax.set_aspect(1 / np.cos(np.radians(31.2)))
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6, label=unit)
    return fig


def svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element to inline in a page (no XML header, no fixed size in points)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"', r'\1 style="max-width:100%;height:auto"', text, count=1)


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


def _number(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
