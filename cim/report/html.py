"""The check-up as one HTML page that needs no network: inline CSS, charts and maps as inline SVG, the model's
picture as a data URL. Chinese first, English beside it.

Tables carry what a program needs to read them back: each section an ``id``, each table a ``data-table`` name, each
figure cell ``data-district`` (a code, ``city`` for the whole city) and ``data-metric`` (or ``data-year``), its
text the number as the data holds it (``-`` for none).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

CSS = """
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:0;
color:#1d2733;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid #1f4e79;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px} .en{color:#5a6675;font-weight:normal} .meta{color:#5a6675;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0 16px;width:100%}
th,td{border:1px solid #d7dce2;padding:3px 6px} th{background:#eef2f6;text-align:left} td.n{text-align:right}
tr.city td{font-weight:bold;background:#f7f9fb} .grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
figure{margin:0} figcaption{font-size:12px;color:#5a6675} nav a{margin-right:14px;font-size:13px}
.note{font-size:12.5px;color:#5a6675} .bad{color:#b03a2e} .good{color:#2e7d32} img{max-width:100%}
@media print{main{padding:0} h2{break-before:page}}
"""


def page(data: Mapping[str, Any], *, charts: Mapping[str, str], picture: bytes | None) -> str:
    """The report page of :func:`cim.report.checkup.checkup`'s ``data``, with ``charts`` (inline SVG by name:
    ``trend:<sign>``, ``map:<sign>``, ``map:on_time_rate``) and the model's ``picture`` (PNG) when there is one."""
    year = data["year"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{year} 年城市体检报告 · City check-up {year}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>上海市 {year} 年城市体检报告 <span class='en'>Shanghai city check-up {year}</span></h1>",
        f"<p class='meta'>截至 {data['as_of']}（as of）· 历史始于 {data['history_begins']}（history begins）· "
        f"生成于 {escape(data['computed_at'])}（computed at）</p>",
        "<nav>"
        + "".join(f"<a href='#{key}'>{zh} <span class='en'>{en}</span></a>" for key, zh, en in SECTIONS)
        + "</nav>",
        _vitals(data, charts),
        _changes(data),
        _targets(data),
        _cases(data, charts),
        _ranking(data),
        _pictures(data, charts, picture),
        "</main></body></html>",
    ]
    return "\n".join(parts)


SECTIONS = (
    ("vitals", "生命体征", "Vital signs"),
    ("changes", "年度变化", "What changed"),
    ("targets", "规划目标与进度", "Targets and progress"),
    ("cases", "案件与按时处置率", "Cases and on-time rate"),
    ("ranking", "最差与最好", "Worst and best"),
    ("pictures", "模型图像", "Pictures of the model"),
)


def _h2(key: str) -> str:
    zh, en = next((z, e) for k, z, e in SECTIONS if k == key)
    return f"<section id='{key}'><h2>{zh} <span class='en'>{en}</span></h2>"


def _vitals(data: Mapping[str, Any], charts: Mapping[str, str]) -> str:
    signs, years, year = data["signs"], data["years"], str(data["year"])
    out = [_h2("vitals")]
    out.append(f"<h3>全市 <span class='en'>The city, {years[0]}–{years[-1]}</span></h3>")
    head = ["指标 Sign", "单位 Unit", *years]
    rows = [
        (
            "city",
            [_label(s), s["unit"], *(_cell(data["city_trend"][y].get(s["id"]), "city", s["id"], y) for y in years)],
        )
        for s in signs
    ]
    out.append(_table("city-trend", head, rows, raw=True))
    out.append("<div class='grid'>")
    out += _figures(charts, [f"trend:{s['id']}" for s in signs])
    out.append("</div>")
    out.append(f"<h3>各区 {year} <span class='en'>Per district, as of {data['as_of']}</span></h3>")
    current = data["vitals"][year]
    head = ["区 District", *(_label(s) for s in signs)]
    rows = [
        (
            d["code"],
            [_district(d), *(_cell(current.get(d["code"], {}).get(s["id"]), d["code"], s["id"]) for s in signs)],
        )
        for d in data["districts"]
    ]
    rows.append(
        ("city", ["全市 City", *(_cell(data["city_trend"][year].get(s["id"]), "city", s["id"]) for s in signs)])
    )
    out.append(_table("district-vitals", head, rows, raw=True))
    out.append("<div class='grid'>")
    out += _figures(charts, [f"map:{s['id']}" for s in signs])
    out.append("</div>")
    for s in signs:
        out.append(f"<details><summary>{_label(s)} · 各区趋势 <span class='en'>per district over the years</span>"
                   "</summary>")  # fmt: skip
        rows = [
            (
                d["code"],
                [
                    _district(d),
                    *(_cell(data["vitals"][y].get(d["code"], {}).get(s["id"]), d["code"], s["id"], y) for y in years),
                ],
            )
            for d in data["districts"]
        ]
        out.append(_table(f"district-trend:{s['id']}", ["区 District", *years], rows, raw=True))
        out.append("</details>")
    return "\n".join(out) + "</section>"


def _changes(data: Mapping[str, Any]) -> str:
    metrics, changes = data["change_metrics"], data["changes"]
    out = [_h2("changes")]
    out.append(
        f"<p class='note'>{data['year']} 年内（至 {data['as_of']}）模型的变化，按资产现在所在的区统计。"
        "<span class='en'> What changed in the model during the year, by the district each asset is in now "
        "(/changes).</span></p>"
    )
    head = ["区 District", *(f"{_label(m)} ({m['unit']})" for m in metrics)]
    rows = [
        (d["code"], [_district(d), *(_cell(changes[d["code"]][m["id"]], d["code"], m["id"]) for m in metrics)])
        for d in data["districts"]
    ]
    rows.append(("city", ["全市 City", *(_cell(changes["city"][m["id"]], "city", m["id"]) for m in metrics)]))
    return "\n".join([*out, _table("district-changes", head, rows, raw=True), "</section>"])


def _targets(data: Mapping[str, Any]) -> str:
    out = [_h2("targets")]
    plan = data["targets"]
    if plan is None:
        out.append(
            "<p class='note'>未给出目标文件（--targets）。<span class='en'>No target file was given "
            "(--targets FILE).</span></p>"
        )
        return "\n".join(out) + "</section>"
    out.append(
        f"<p class='note'>{escape(plan['plan'])} <span class='en'>{escape(plan['plan_en'])}</span> · "
        f"基准日 baseline {plan['baseline']} · 期限 deadline {plan['deadline']} · 比例 scale {plan['scale']:g}</p>"
    )
    if not plan["targets"]:
        out.append(f"<p class='note'>{data['as_of']} 早于规划基准日。<span class='en'>Before the plan's baseline."
                   "</span></p>")  # fmt: skip
        return "\n".join(out) + "</section>"
    head = ["目标 Target", "基准 Baseline", "目标值 Target", "当前 Value", "进度 Progress", "所需速度 Pace needed/yr",
            "当前速度 Pace/yr", "预测 Forecast", "按期 On track"]  # fmt: skip
    rows = []
    for t in plan["targets"]:
        rows.append((t["id"], [
            _label({"zh": t["name"], "en": t["name_en"]}), _num(t.get("baseline_value")),
            f"{_num(t.get('target'))} {escape(str(t.get('unit') or ''))}", _cell(t.get("value"), "city", t["id"]),
            _percent(t.get("progress")), _num(t.get("pace_needed_per_year")), _num(t.get("pace_per_year")),
            _num(t.get("forecast")),
            "<span class='good'>是 yes</span>" if t.get("on_track") else "<span class='bad'>否 no</span>",
        ]))  # fmt: skip
    out.append(_table("targets", head, rows, raw=True))
    out.append("<details><summary>各区 <span class='en'>Per district</span></summary>")
    codes = {d["code"] for t in plan["targets"] for d in t["districts"]}
    values = {(t["id"], d["code"]): d.get("value") for t in plan["targets"] for d in t["districts"]}
    rows = [
        (
            d["code"],
            [_district(d), *(_cell(values.get((t["id"], d["code"])), d["code"], t["id"]) for t in plan["targets"])],
        )
        for d in data["districts"]
        if d["code"] in codes
    ]
    head = ["区 District", *(f"{escape(t['name'])} ({escape(t['unit'])})" for t in plan["targets"])]
    out.append(_table("target-districts", head, rows, raw=True))
    return "\n".join(out) + "</details></section>"


def _cases(data: Mapping[str, Any], charts: Mapping[str, str]) -> str:
    cases = data["cases"]
    names = {d["code"]: d for d in data["districts"]}
    out = [_h2("cases")]
    head = ["区 District", "受理 Opened", "处置 Handled", "按时处置 On time", "按时率 On-time rate", "结案 Closed",
            "超期未结 Overdue open"]  # fmt: skip
    figures = ("opened", "handled", "handled_on_time", "on_time_rate", "closed", "overdue_open")
    rows = []
    for row in [*cases["districts"], *([cases["city"]] if cases["city"] else [])]:
        code = "city" if row["level"] == "city" else row["code"]
        label = "全市 City" if code == "city" else _district(names.get(code, {"code": code, "name": row.get("name")}))
        rows.append((code, [label, *(_cell(row[f], code, f) for f in figures)]))
    if not rows:
        out.append(f"<p class='note'>{data['year']} 年无案件。<span class='en'>No case in the year.</span></p>")
    else:
        out.append(_table("district-cases", head, rows, raw=True))
    if "map:on_time_rate" in charts:
        out.append(f"<figure>{charts['map:on_time_rate']}</figure>")
    for key, zh, en in (("worst_streets", "按时率最低的街道", "Streets least on time"),
                        ("best_streets", "按时率最高的街道", "Streets most on time")):  # fmt: skip
        out.append(f"<h3>{zh} <span class='en'>{en} (≥ {cases['min_handled']} handled)</span></h3>")
        rows = [
            (r["code"], [f"{escape(str(r.get('name') or ''))} <span class='en'>{escape(str(r.get('name_en') or ''))}"
                         f"</span> {r['code']}", _cell(r["handled"], r["code"], "handled"),
                         _cell(r["on_time_rate"], r["code"], "on_time_rate")])
            for r in cases[key]
        ]  # fmt: skip
        out.append(_table(key, ["街道 Street", "处置 Handled", "按时率 On-time rate"], rows, raw=True))
    return "\n".join(out) + "</section>"


def _ranking(data: Mapping[str, Any]) -> str:
    out = [_h2("ranking")]
    head = ["指标 Sign", "最差 Worst", "最好 Best"]
    rows = []
    for r in data["ranking"]:
        worst, best = r["worst"], r["best"]
        rows.append((r["id"], [
            _label(r), f"{_district(worst)}: {_num(worst['value'])} {r['unit']}",
            f"{_district(best)}: {_num(best['value'])} {r['unit']}",
        ]))  # fmt: skip
    return "\n".join([*out, _table("ranking", head, rows, raw=True), "</section>"])


def _pictures(data: Mapping[str, Any], charts: Mapping[str, str], picture: bytes | None) -> str:
    out = [_h2("pictures")]
    if picture is not None:
        encoded = base64.b64encode(picture).decode()
        out.append(f"<figure><img alt='model' src='data:image/png;base64,{encoded}'>"
                   f"<figcaption>{escape(data.get('picture_caption') or '')}</figcaption></figure>")  # fmt: skip
    else:
        out.append(
            "<p class='note'>本机无法离屏渲染。<span class='en'>This machine cannot render off-screen.</span></p>"
        )
    return "\n".join(out) + "</section>"


def _figures(charts: Mapping[str, str], keys: Sequence[str]) -> list[str]:
    return [f"<figure>{charts[key]}</figure>" for key in keys if key in charts]


def _table(name: str, head: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]], *, raw: bool) -> str:
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(f"<tr data-district='{escape(code)}'{' class=city' if code == 'city' else ''}>"
                   + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
                   for code, row in rows)  # fmt: skip
    return f"<table data-table='{escape(name)}'><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any, district: str, metric: str, year: str | None = None) -> str:
    attrs = f" data-district='{escape(district)}' data-metric='{escape(metric)}'"
    if year is not None:
        attrs += f" data-year='{year}'"
    text = _percent(value, digits=1) if metric.endswith("_rate") else _num(value)
    return f"<td class='n'{attrs}>{text}</td>"


def _num(value: Any) -> str:
    """A figure as the data holds it: ``-`` for None, rates (0..1) kept as they are."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.0f}"
    return escape(str(value))


def _percent(value: Any, *, digits: int = 0) -> str:
    """A share (0..1) as a percentage: ``0.5`` → ``50%``."""
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"


def _label(m: Mapping[str, Any]) -> str:
    return f"{escape(m['zh'])} <span class='en'>{escape(m['en'])}</span>"


def _district(d: Mapping[str, Any]) -> str:
    return f"{escape(str(d.get('name') or d['code']))} <span class='en'>{escape(str(d.get('name_en') or ''))}</span>"
