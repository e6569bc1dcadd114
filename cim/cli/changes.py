"""``cim changes``: what changed in the city between two days — the changed assets, or with ``--by`` their counts
and km per group — as ``GET /changes`` and ``/changes/summary`` answer (the same JSON under ``--json``). It asks the
running server when ``--server`` names one or a ``cim serve`` holds the DuckDB store, else opens the store here."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cim.cli.options import (
    JsonOption,
    ServerOption,
    StoreOption,
    ask_server,
    console,
    open_existing_store,
    print_json,
    reading_server,
)

#: The column headings, Chinese and English.
_HEADINGS = {
    "kind": "kind 类型",
    "network": "network 管网",
    "district": "district 区",
    "change": "change 变化",
}
_CHANGES_ZH = {"added": "新增", "removed": "移除", "renewed": "更新改造", "changed": "变更"}


def changes(
    start: Annotated[str, typer.Option("--from", help="the first day included, YYYY-MM-DD")],
    end: Annotated[str | None, typer.Option("--to", help="the last day included, YYYY-MM-DD (default today)")] = None,
    by: Annotated[
        str | None,
        typer.Option(help="sum counts and km per group of these keys instead: kind, network, district, change"),
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="only assets of this kind (repeat it, or a comma list)")
    ] = None,
    limit: Annotated[int, typer.Option(help="changed assets listed (1-10,000)")] = 100,
    offset: Annotated[int, typer.Option(help="changed assets skipped, in id order")] = 0,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed between two days, both included: assets added, removed, renewed or changed, with the changed
    fields before and after and their district; with --by, counts and km per group (as GET /changes and
    /changes/summary)."""
    from cim.queries.changes import change_summary_json, parse_by, parse_days, parse_kinds
    from cim.queries.changes import changes as changed_assets

    first, last = parse_days(start, end)
    kinds = parse_kinds(kind)
    keys = parse_by(by) if by is not None else None
    asked: dict[str, Any] = {"from": start, "to": end, "kind": ",".join(kinds) if kinds else None}
    result: Any
    if (remote := reading_server(store, server)) is not None:
        if keys is not None:
            result = json.loads(ask_server(remote, "/changes/summary", params={**asked, "by": ",".join(keys)}))
        else:
            result = json.loads(ask_server(remote, "/changes", params={**asked, "limit": limit, "offset": offset}))
    else:
        with open_existing_store(store) as opened:
            if keys is not None:
                result = change_summary_json(opened, start=first, end=last, by=keys, kinds=kinds)
            else:
                result = changed_assets(opened, start=first, end=last, kinds=kinds, limit=limit, offset=offset)
    if as_json:
        print_json(result)
    elif keys is not None:
        _print_summary(result)
    else:
        _print_changes(result)


def _print_summary(result: dict[str, Any]) -> None:
    keys = result["by"]
    table = Table(
        *(_HEADINGS[k] for k in keys),
        "count 数量",
        "km 公里",
        title=f"what changed 变化汇总 {result['from']} – {result['to']}",
    )
    for group in result["groups"]:
        labels = [_label(group, k) for k in keys]
        table.add_row(*labels, f"{group['count']:,}", _km(group["length_km"]))
    everything = result["total"]
    table.add_row("total 合计", *[""] * (len(keys) - 1), f"{everything['count']:,}", _km(everything["length_km"]))
    console.print(table)


def _print_changes(result: dict[str, Any]) -> None:
    table = Table(
        "asset 资产",
        "kind 类型",
        "name 名称",
        "change 变化",
        "district 区",
        "fields: before → after 字段",
        title=f"what changed 变化 {result['from']} – {result['to']}",
    )
    for item in result["changes"]:
        district = " ".join(part for part in (item["district_zh"], item["district"]) if part) or "-"
        fields = "; ".join(
            f"{field}: {_value(item['before'].get(field))} → {_value(item['after'].get(field))}"
            if field != "geom"
            else "geom (shape)"
            for field in item["fields"]
        )
        change = f"{item['change']} {_CHANGES_ZH.get(item['change'], '')}".strip()
        table.add_row(item["id"], item["kind"], item["name"] or "", change, district, fields)
    console.print(table)
    shown, matched = result["numberReturned"], result["numberMatched"]
    more = f"; the next page: --offset {result['next_offset']}" if result["next_offset"] is not None else ""
    console.print(f"{shown:,} of {matched:,} changed assets 共 {matched:,} 项变化{more}")


def _label(group: dict[str, Any], key: str) -> str:
    value = group["key"].get(key)
    if value is None:
        return "-"
    if key == "change":
        return f"{value} {_CHANGES_ZH.get(value, '')}".strip()
    name = group.get("names", {}).get(key)
    return f"{value} {name['zh']}" if name and name["zh"] else str(value)


def _km(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}"


def _value(value: Any) -> str:
    return "-" if value is None else str(value)[:60]
