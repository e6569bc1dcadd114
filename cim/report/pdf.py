"""The check-up as a PDF, written by fpdf2 (pure Python, no system library, no network) with the CJK font
:func:`cim.report.charts.cjk_font` finds, embedded as a subset so any reader shows and extracts the Chinese text.
A4 landscape: the tables are wide. The same sections, tables and figures as the HTML page, charts as PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from cim.report.charts import cjk_font
from cim.report.html import SECTIONS

FONT = "cjk"
_WIDTH = 277.0  # mm of A4 landscape between the margins


def document(data: Mapping[str, Any], *, images: Mapping[str, bytes], picture: bytes | None) -> bytes:
    """The PDF of :func:`cim.report.checkup.checkup`'s ``data``, with ``images`` (PNG by the HTML's chart names)."""
    from fpdf import FPDF

    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_margins(10, 10, 10)
    font = cjk_font()
    pdf.add_font(FONT, "", str(font), collection_font_number=0)
    pdf.set_title(f"City check-up {data['year']}")
    pdf.set_creator("cim")
    pdf.add_page()
    year = data["year"]
    pdf.set_font(FONT, size=20)
    pdf.cell(0, 12, f"上海市 {year} 年城市体检报告  Shanghai city check-up {year}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)
    pdf.cell(0, 6, f"截至 as of {data['as_of']} · 历史始于 history begins {data['history_begins']} · "
                   f"生成于 computed at {data['computed_at']}", new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    _vitals(pdf, data, images)
    _changes(pdf, data)
    _targets(pdf, data)
    _cases(pdf, data, images)
    _ranking(pdf, data)
    _heading(pdf, "pictures")
    if picture is not None:
        pdf.image(io.BytesIO(picture), w=180)
        pdf.set_font(FONT, size=8)
        pdf.cell(0, 5, str(data.get("picture_caption") or ""), new_x="LMARGIN", new_y="NEXT")
    else:
        _note(pdf, "本机无法离屏渲染。 This machine cannot render off-screen.")
    return bytes(pdf.output())


def _heading(pdf: Any, key: str, *, new_page: bool = True) -> None:
    zh, en = next((z, e) for k, z, e in SECTIONS if k == key)
    if new_page:
        pdf.add_page()
    pdf.set_font(FONT, size=15)
    pdf.cell(0, 10, f"{zh}  {en}", new_x="LMARGIN", new_y="NEXT")


def _sub(pdf: Any, text: str) -> None:
    pdf.set_font(FONT, size=11)
    pdf.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")


def _note(pdf: Any, text: str) -> None:
    pdf.set_font(FONT, size=8)
    pdf.multi_cell(0, 4.5, text, new_x="LMARGIN", new_y="NEXT", wrapmode="CHAR")


def _table(pdf: Any, head: Sequence[str], rows: Sequence[Sequence[str]], *, first: float = 42, size: float = 7) -> None:
    pdf.set_font(FONT, size=size)
    rest = (_WIDTH - first) / max(1, len(head) - 1)
    widths = (first, *[rest] * (len(head) - 1))
    aligns = ("LEFT", *["RIGHT"] * (len(head) - 1))
    from fpdf.fonts import FontFace

    plain = FontFace(emphasis="", fill_color=(238, 242, 246))  # the CJK font has no bold face
    with pdf.table(
        col_widths=widths, text_align=aligns, line_height=size * 0.6, width=_WIDTH, headings_style=plain
    ) as table:
        for row in [head, *rows]:
            cells = table.row()
            for value in row:
                cells.cell(value)
    pdf.ln(2)


def _images(pdf: Any, images: Mapping[str, bytes], keys: Sequence[str], *, per_row: int = 2) -> None:
    found = [images[k] for k in keys if k in images]
    width = _WIDTH / per_row - 4
    for start in range(0, len(found), per_row):
        row = found[start : start + per_row]
        if pdf.will_page_break(width * 0.75):
            pdf.add_page()
        y = pdf.get_y()
        heights = []
        for i, png in enumerate(row):
            info = pdf.image(io.BytesIO(png), x=10 + i * (width + 4), y=y, w=width)
            heights.append(info.rendered_height)
        pdf.set_y(y + max(heights) + 3)


def _vitals(pdf: Any, data: Mapping[str, Any], images: Mapping[str, bytes]) -> None:
    signs, years, year = data["signs"], data["years"], str(data["year"])
    _heading(pdf, "vitals", new_page=False)
    _sub(pdf, f"全市 The city, {years[0]}–{years[-1]}")
    rows = [[_label(s), s["unit"], *(_num(data["city_trend"][y].get(s["id"])) for y in years)] for s in signs]
    _table(pdf, ["指标 Sign", "单位 Unit", *years], rows, first=80)
    _images(pdf, images, [f"trend:{s['id']}" for s in signs], per_row=3)
    pdf.add_page()
    _sub(pdf, f"各区 Per district, as of {data['as_of']}")
    current = data["vitals"][year]
    rows = [[_district(d), *(_num(current.get(d["code"], {}).get(s["id"])) for s in signs)] for d in data["districts"]]
    rows.append(["全市 City", *(_num(data["city_trend"][year].get(s["id"])) for s in signs)])
    _table(pdf, ["区 District", *(f"{s['zh']} ({s['unit']})" for s in signs)], rows)
    _images(pdf, images, [f"map:{s['id']}" for s in signs], per_row=3)


def _changes(pdf: Any, data: Mapping[str, Any]) -> None:
    metrics, changes = data["change_metrics"], data["changes"]
    _heading(pdf, "changes")
    _note(pdf, f"{data['year']} 年内（至 {data['as_of']}）模型的变化，按资产现在所在的区统计。 What changed in the "
               "model during the year, by the district each asset is in now.")  # fmt: skip
    rows = [[_district(d), *(_num(changes[d["code"]][m["id"]]) for m in metrics)] for d in data["districts"]]
    rows.append(["全市 City", *(_num(changes["city"][m["id"]]) for m in metrics)])
    _table(pdf, ["区 District", *(f"{m['zh']} {m['en']} ({m['unit']})" for m in metrics)], rows)


def _targets(pdf: Any, data: Mapping[str, Any]) -> None:
    _heading(pdf, "targets")
    plan = data["targets"]
    if plan is None:
        _note(pdf, "未给出目标文件（--targets）。 No target file was given (--targets FILE).")
        return
    _note(pdf, f"{plan['plan']} {plan['plan_en']} · 基准日 baseline {plan['baseline']} · 期限 deadline "
               f"{plan['deadline']} · 比例 scale {plan['scale']:g}")  # fmt: skip
    if not plan["targets"]:
        _note(pdf, f"{data['as_of']} 早于规划基准日。 Before the plan's baseline.")
        return
    head = ["目标 Target", "基准 Baseline", "目标值 Target", "当前 Value", "进度 Progress", "所需速度 Pace needed/yr",
            "当前速度 Pace/yr", "预测 Forecast", "按期 On track"]  # fmt: skip
    rows = [[f"{t['name']} {t['name_en']}", _num(t.get("baseline_value")), f"{_num(t.get('target'))} {t['unit']}",
             _num(t.get("value")), _percent(t.get("progress")), _num(t.get("pace_needed_per_year")),
             _num(t.get("pace_per_year")), _num(t.get("forecast")), "是 yes" if t.get("on_track") else "否 no"]
            for t in plan["targets"]]  # fmt: skip
    _table(pdf, head, rows, first=90)


def _cases(pdf: Any, data: Mapping[str, Any], images: Mapping[str, bytes]) -> None:
    cases = data["cases"]
    names = {d["code"]: d for d in data["districts"]}
    _heading(pdf, "cases")
    figures = ("opened", "handled", "handled_on_time", "on_time_rate", "closed", "overdue_open")
    rows = []
    for row in [*cases["districts"], *([cases["city"]] if cases["city"] else [])]:
        label = "全市 City" if row["level"] == "city" else _district(names.get(row["code"], {"code": row["code"]}))
        rows.append([label, *(_percent(row[f], 1) if f.endswith("_rate") else _num(row[f]) for f in figures)])
    head = ["区 District", "受理 Opened", "处置 Handled", "按时处置 On time", "按时率 On-time rate", "结案 Closed",
            "超期未结 Overdue open"]  # fmt: skip
    if rows:
        _table(pdf, head, rows)
    else:
        _note(pdf, f"{data['year']} 年无案件。 No case in the year.")
    _images(pdf, images, ["map:on_time_rate"], per_row=2)
    for key, title in (("worst_streets", "按时率最低的街道 Streets least on time"),
                       ("best_streets", "按时率最高的街道 Streets most on time")):  # fmt: skip
        _sub(pdf, f"{title} (≥ {cases['min_handled']} handled)")
        rows = [[f"{r.get('name') or ''} {r.get('name_en') or ''} {r['code']}", _num(r["handled"]),
                 _percent(r["on_time_rate"], 1)] for r in cases[key]]  # fmt: skip
        if rows:
            _table(pdf, ["街道 Street", "处置 Handled", "按时率 On-time rate"], rows, first=120)


def _ranking(pdf: Any, data: Mapping[str, Any]) -> None:
    _heading(pdf, "ranking")
    rows = [[_label(r), f"{_district(r['worst'])}: {_num(r['worst']['value'])} {r['unit']}",
             f"{_district(r['best'])}: {_num(r['best']['value'])} {r['unit']}"] for r in data["ranking"]]  # fmt: skip
    _table(pdf, ["指标 Sign", "最差 Worst", "最好 Best"], rows, first=90, size=8)


def _label(m: Mapping[str, Any]) -> str:
    return f"{m['zh']} {m['en']}"


def _district(d: Mapping[str, Any]) -> str:
    return f"{d.get('name') or d['code']} {d.get('name_en') or ''}".strip()


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _percent(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"
