"""HTML pages of features for people in a browser: a collection's page of items, and one item. Chinese first,
English beside it; no script and nothing loaded from elsewhere (the server is used offline). Every value from the
store is escaped (:func:`html.escape`) and every id in a link is percent-encoded, so a name like ``<script>`` is shown,
never run.

The viewer (``/``) takes a camera, not an asset: an item's page links to ``/?cam=<lon>,<lat>,<height>`` above it.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

import shapely
from fastapi import Request
from starlette.datastructures import URL

_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:1.5rem;color:#1b1f24}
h1{font-size:1.4rem} table{border-collapse:collapse;font-size:.9rem} nav a{margin-right:1rem}
th,td{border:1px solid #ccd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5} td.num{text-align:right} .en{color:#667;font-weight:normal}
"""
#: Link relations of a page's body shown as navigation, in this order.
_NAVIGATION = {"prev": "上一页 <span class=en>Previous</span>", "next": "下一页 <span class=en>Next</span>"}
#: Camera height above an item the viewer link opens at, in metres.
VIEW_HEIGHT_M = 600


def features_page(*, request: Request, title: str, body: dict[str, Any]) -> str:
    """A collection's page of features: a table of their properties, each id linking to the item's page, and the
    previous and next pages from the body's ``links``."""
    features = body.get("features") or []
    names: dict[str, None] = {}
    for item in features:
        names.update(dict.fromkeys(item.get("properties") or {}))
    item_base = request.url.path.rstrip("/") if request.url.path.rstrip("/").endswith("/items") else None
    rows = []
    for item in features:
        properties = item.get("properties") or {}
        ident = _text(item.get("id"))
        if item_base is not None and item.get("id") is not None:
            ident = f'<a href="{escape(item_base + "/" + quote(str(item["id"]), safe=""))}?f=html">{ident}</a>'
        cells = "".join(_cell(properties.get(name)) for name in names)
        rows.append(f"<tr><td>{ident}</td>{cells}</tr>")
    header = "".join(f"<th>{escape(name)}</th>" for name in names)
    count = len(features)
    matched = body.get("numberMatched")
    summary = f"本页 {count} 个要素 <span class=en>{count} features on this page</span>"
    if isinstance(matched, int):
        summary += f" · 共 {matched} 个 <span class=en>{matched} in all</span>"
    links = [_html_link(link, rel) for rel in _NAVIGATION for link in body.get("links") or [] if link.get("rel") == rel]
    json_link = _html_href(str(request.url.include_query_params(f="geojson")))
    csv_link = _html_href(str(request.url.include_query_params(f="csv")))
    content = f"""
<p>{summary}</p>
<nav>{"".join(links)}<a href="{json_link}">GeoJSON</a><a href="{csv_link}">CSV</a></nav>
<table>
<thead><tr><th>id</th>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>"""
    return _page(title, content)


def feature_page(*, request: Request, title: str, body: dict[str, Any]) -> str:
    """One feature's page: its properties, and links to its collection, its GeoJSON and the 3D viewer above it."""
    properties = body.get("properties") or {}
    rows = "".join(f"<tr><th>{escape(name)}</th>{_cell(value)}</tr>" for name, value in properties.items())
    root = str(request.base_url).rstrip("/")
    path = request.url.path.rstrip("/")
    collection = path.rsplit("/items/", 1)[0] if "/items/" in path else None
    links = []
    if collection is not None:
        links.append(f'<a href="{escape(collection)}/items?f=html">集合 <span class=en>Collection</span></a>')
    links.append(f'<a href="{_html_href(str(request.url.include_query_params(f="geojson")))}">GeoJSON</a>')
    point = _point_of(body.get("geometry"))
    if point is not None:
        camera = f"{point[0]:.6f},{point[1]:.6f},{VIEW_HEIGHT_M}"
        links.append(f'<a href="{escape(root)}/?cam={camera}">三维查看 <span class=en>View in 3D</span></a>')
    geometry = body.get("geometry")
    shape = "无 none" if geometry is None else escape(str(geometry.get("type")))
    content = f"""
<p>id <code>{_text(body.get("id"))}</code> · 几何 <span class=en>geometry</span>: {shape}</p>
<nav>{"".join(links)}</nav>
<table><tbody>
{rows}
</tbody></table>"""
    return _page(title, content)


def _page(title: str, content: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} — CIM</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>{content}
</body>
</html>
"""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return escape(json.dumps(value, ensure_ascii=False))
    if isinstance(value, bool):
        return "是 true" if value else "否 false"
    return escape(str(value))


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f"<td class=num>{_text(value)}</td>" if numeric else f"<td>{_text(value)}</td>"


def _html_href(href: str) -> str:
    """A link the page may carry: http(s) or relative only (no ``javascript:``), escaped for an attribute."""
    scheme = URL(href).scheme
    return escape(href) if scheme in ("", "http", "https") else "#"


def _html_link(link: dict[str, Any], rel: str) -> str:
    """A navigation link of the body, kept in HTML (``f=html``)."""
    href = str(link.get("href") or "")
    if URL(href).scheme in ("", "http", "https") and href:
        href = str(URL(href).include_query_params(f="html"))
    return f'<a rel="{escape(rel)}" href="{_html_href(href)}">{_NAVIGATION[rel]}</a>'


def _point_of(geometry: Any) -> tuple[float, float] | None:
    """A lon/lat point on ``geometry`` (a GeoJSON dict), or None."""
    if not isinstance(geometry, dict):
        return None
    try:
        shape = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.GEOSException, ValueError, TypeError):
        return None
    if shape is None or shape.is_empty:
        return None
    point = shape.point_on_surface()
    return float(point.x), float(point.y)
