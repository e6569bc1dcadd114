"""``cim cases …`` and ``cim report cases``: the case loop from a terminal, with the HTTP API's JSON under ``--json``.

When a server holds the store (or ``--server`` names one), the commands go through its HTTP API, so a DuckDB store
busy with ``cim serve`` is never opened twice and every change takes the server's one path (dispatch, live push).
Otherwise they open the store here. Writes need ``CIM_WRITE_TOKEN`` (the command centre) or, for a unit's own
actions, ``--token`` with the unit's token.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cim.cli.options import JsonOption, ServerOption, StoreOption, console, print_json, store_url
from cim.errors import InvalidInput

cases_app = typer.Typer(help="Cases: report problems, list them, act on them, check their logs. 案件")
report_app = typer.Typer(help="Reports: how fast and how well each area and unit closes its cases. 考核")

TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="CIM_UNIT_TOKEN", show_default=False, help="a unit's token [env: CIM_UNIT_TOKEN]"),
]


def _server(store: str | None, server: str | None) -> Any:
    from cim.api.client import find_server

    return find_server(store_url(store), server=server, token=os.environ.get("CIM_WRITE_TOKEN"))


def _http(server: Any, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
    """One call to the server's API; its error answer becomes the same one-line error as a local failure."""
    import httpx

    from cim.api.client import RemoteError

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.request(method, f"{server.url}{path}", headers=headers, timeout=60.0, **kwargs)
    except httpx.HTTPError as exc:
        raise RemoteError(f"server {server.url}", f"does not answer: {exc}") from None
    body = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
    if answer.status_code >= 400:
        raise RemoteError(str(body.get("what", path)), str(body.get("why", f"HTTP {answer.status_code}")))
    return body


def _local(store: str | None, work: Any) -> Any:
    """Run ``work(service)`` on a case service over the store opened here: no background loops and no recovery of
    alerts without a case (machine dispatch is the server's)."""
    from cim.cases import CaseService
    from cim.store import open_store

    async def run() -> Any:
        with open_store(store_url(store)) as opened:
            service = CaseService(opened)
            await service.start(background=False, recover=False)
            try:
                return await work(service)
            finally:
                await service.stop()

    return asyncio.run(run())


@cases_app.command("list")
def list_command(
    state: Annotated[str | None, typer.Option(help="states, comma-separated")] = None,
    category: Annotated[str | None, typer.Option(help="categories, comma-separated")] = None,
    area: Annotated[str | None, typer.Option(help="an area code at any level")] = None,
    unit: Annotated[str | None, typer.Option(help="the responsible unit")] = None,
    overdue: Annotated[bool | None, typer.Option("--overdue/--on-time", help="only overdue (or on-time) ones")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cases newest first."""
    params = {"state": state, "category": category, "area": area, "unit": unit, "limit": limit}
    if overdue is not None:
        params["overdue"] = str(overdue).lower()
    params = {k: v for k, v in params.items() if v is not None}
    remote = _server(store, server)
    if remote is not None:
        result = _http(remote, "GET", "/cases", params=params)
    else:
        from cim.api.case_json import feature_collection
        from cim.api.cases import case_filter

        async def work(service: Any) -> Any:
            found, matched = await service.list(case_filter(params, now=datetime.now(UTC)))
            return feature_collection(found, matched=matched, units=service.units, now=datetime.now(UTC))

        result = _local(store, work)
    if as_json:
        print_json(result)
        return
    table = Table("case", "category", "state", "severity", "unit", "district", "reported", "deadline", title="cases")
    for feature in result["features"]:
        p = feature["properties"]
        late = " [red]overdue[/]" if p["overdue"] else ""
        table.add_row(
            p["id"], f"{p['category_zh']} {p['category']}", p["state"], p["severity"], p["unit_id"] or "-",
            p["district"] or "-", p["reported_at"][:19], p["deadline"][:19] + late,
        )  # fmt: skip
    console.print(table)
    console.print(f"{result['numberReturned']} of {result.get('numberMatched', '?')} matching")


@cases_app.command("show")
def show_command(
    case_id: Annotated[str, typer.Argument(help="the case")],
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """One case with its timeline."""
    remote = _server(store, server)
    if remote is not None:
        result = _http(remote, "GET", f"/cases/{case_id}")
    else:
        from cim.api.cases import detail_json

        result = _local(store, lambda service: detail_json(service, case_id))
    if as_json:
        print_json(result)
        return
    p = result["properties"]
    console.print(
        f"[bold]{p['id']}[/] {p['category_zh']} {p['category_en']} — {p['state']} ({p['severity']}), "
        f"unit {p['unit_id'] or '-'}, {p['district'] or '-'}/{p['street'] or '-'}/{p['grid_cell'] or '-'}, "
        f"deadline {p['deadline'][:19]}{' overdue' if p['overdue'] else ''}"
    )
    table = Table("#", "at", "action", "state", "actor", "note")
    for e in result["timeline"]:
        table.add_row(str(e["seq"]), e["at"][:19], e["action"], e["to_state"], e["actor"], e["note"])
    console.print(table)
    console.print("next: " + (", ".join(p["allowed_actions"]) or "nothing (closed)"))


def _photo(path: Path) -> dict[str, str]:
    try:
        return {"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()}
    except OSError as exc:
        raise InvalidInput(f"photo {path}", f"cannot be read: {exc.strerror}") from None


@cases_app.command("report")
def report_command(
    category: Annotated[str, typer.Option(help="category id or code (cim cases categories)")],
    lon: Annotated[float | None, typer.Option(help="where: longitude")] = None,
    lat: Annotated[float | None, typer.Option(help="where: latitude")] = None,
    asset: Annotated[str | None, typer.Option(help="where: the asset it is at")] = None,
    severity: Annotated[str, typer.Option(help="normal, urgent or critical")] = "normal",
    source: Annotated[str, typer.Option(help="hotline, inspector, manual or rule")] = "manual",
    title: Annotated[str, typer.Option(help="a short title")] = "",
    description: Annotated[str, typer.Option(help="what was seen")] = "",
    reporter: Annotated[str | None, typer.Option(help="who reported it")] = None,
    photo: Annotated[list[Path] | None, typer.Option(help="a photo (JPEG/PNG/WebP); repeatable")] = None,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report a problem: it is located, filed and dispatched to the responsible unit."""
    body: dict[str, Any] = {
        "category": category, "severity": severity, "source": source, "lon": lon, "lat": lat, "asset_id": asset,
        "title": title, "description": description, "reporter": reporter,
        "photos": [_photo(p) for p in photo or []],
    }  # fmt: skip
    remote = _server(store, server)
    if remote is not None:
        result = _http(remote, "POST", "/cases", token=remote.token, json=body)
        case_id = result["id"]
    else:
        from cim.api.cases import report_arguments
        from cim.cases import CaseDraft

        async def work(service: Any) -> Any:
            case, _ = await service.report(CaseDraft(**report_arguments(body)), actor=reporter or "command-centre")
            return case.id

        case_id = _local(store, work)
    if as_json:
        show_command(case_id, store=store, server=server, as_json=True)
        return
    console.print(f"reported case {case_id}")
    show_command(case_id, store=store, server=server)


@cases_app.command("act")
def act_command(
    case_id: Annotated[str, typer.Argument(help="the case")],
    action: Annotated[str, typer.Argument(help="file, dispatch, accept, return, handle, verify, reject, close, …")],
    note: Annotated[str, typer.Option(help="why (needed for return, reject, reopen, dismiss)")] = "",
    actor: Annotated[str | None, typer.Option(help="who acts")] = None,
    unit: Annotated[str | None, typer.Option(help="dispatch: the unit to send it to")] = None,
    version: Annotated[int | None, typer.Option(help="the version you read; refused if it changed")] = None,
    photo: Annotated[list[Path] | None, typer.Option(help="a photo; repeatable")] = None,
    token: TokenOption = None,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """One step of a case's loop, as the command centre (CIM_WRITE_TOKEN) or as a unit (--token)."""
    body: dict[str, Any] = {"action": action, "note": note, "actor": actor, "version": version, "unit": unit}
    body["photos"] = [_photo(p) for p in photo or []]
    remote = _server(store, server)
    if remote is not None:
        _http(remote, "POST", f"/cases/{case_id}/transitions", token=token or remote.token, json=body)
    else:
        from cim.api.cases import act_arguments

        async def work(service: Any) -> Any:
            unit_of_token = await service.unit_for_token(token) if token else None
            if token and unit_of_token is None:
                raise InvalidInput("--token", "is not a unit's token")
            who = None if unit_of_token is None else unit_of_token.id
            return await service.act(case_id, **act_arguments(body, actor=who or "command-centre", unit_id=who))

        _local(store, work)
    show_command(case_id, store=store, server=server, as_json=as_json)


@cases_app.command("units")
def units_command(store: StoreOption = None, server: ServerOption = None, as_json: JsonOption = False) -> None:
    """The responsible units and what each answers for."""
    remote = _server(store, server)
    if remote is not None:
        result = _http(remote, "GET", "/cases/units")
    else:

        async def work(service: Any) -> Any:
            return [u.to_dict() for u in sorted(service.units.values(), key=lambda u: u.id)]

        result = _local(store, work)
    if as_json:
        print_json(result)
        return
    table = Table("unit", "name", "level", "categories", "areas", "reports to", title="units 责任单位")
    for u in result:
        areas = ", ".join(u["areas"][:4]) + (" …" if len(u["areas"]) > 4 else "")
        table.add_row(u["id"], u["name"], u["level"] or "-", ", ".join(u["categories"]), areas, u["reports_to"] or "-")
    console.print(table)


@cases_app.command("token")
def token_command(
    unit: Annotated[str, typer.Argument(help="the unit")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new API token for a unit (the old one stops working). Printed once; only its hash is kept."""

    async def work(service: Any) -> Any:
        return await service.issue_unit_token(unit)

    token = _local(store, work)
    if as_json:
        print_json({"unit": unit, "token": token})
    else:
        console.print(f"token of unit {unit} (shown once): {token}")


@cases_app.command("verify")
def verify_command(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Check every case's log: steps numbered without a gap, each chained to the one before by its hash."""

    async def work(service: Any) -> Any:
        return await service.verify_logs()

    checked, broken = _local(store, work)
    if as_json:
        print_json({"checked": checked, "broken": broken})
    else:
        console.print(f"{checked:,} case logs checked; {len(broken)} broken")
        for case_id, why in broken.items():
            console.print(f"  [red]{case_id}[/]: {why}")
    if broken:
        raise typer.Exit(1)


@report_app.command("cases")
def report_cases(
    period: Annotated[
        str | None, typer.Option(help="a month (2026-11) or a day (2026-11-03); default this month")
    ] = None,
    level: Annotated[str, typer.Option(help="grid_cell, street, district, city or unit")] = "district",
    parent: Annotated[str | None, typer.Option(help="drill down: only this area's children")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="also write the table as CSV here")] = None,
    store: StoreOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Assessment per area or unit: opened, dispatched by machine, handled on time, closed, reopened, and how long
    dispatch, handling and closing took (mean and p90)."""
    from cim.cases.reading import CITY_ZONE

    period = period or datetime.now(CITY_ZONE).strftime("%Y-%m")
    remote = _server(store, server)
    params = {"level": level, "period": period, **({"parent": parent} if parent else {})}
    if remote is not None:
        result = _http(remote, "GET", "/indicators/cases", params=params)
    else:
        from cim.cases.reading import period_bounds

        start, end = period_bounds(period)

        async def work(service: Any) -> Any:
            rows = await service.assess(level=level, start=start, end=end, parent=parent)
            return {"level": level, "start": start.isoformat(), "end": end.isoformat(), "parent": parent, "rows": rows}

        result = _local(store, work)
    rows = result["rows"]
    if csv_path is not None:
        _write_csv(csv_path, rows)
    if as_json:
        print_json(result)
        return
    table = Table(
        level, "opened", "by machine", "handled", "on time", "closed", "reopened", "overdue open",
        "dispatch p90", "handle p90", "close p90", title=f"cases {period} by {level} 案件考核",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            f"{r.get('name') or ''} {r['code']}".strip(), str(r["opened"]), _share(r.get("machine_share")),
            str(r["handled"]), _share(r.get("on_time_rate")), str(r["closed"]), str(r["reopened"]),
            str(r["overdue_open"]), _duration(r.get("dispatch_p90_s")), _duration(r.get("handle_p90_s")),
            _duration(r.get("close_p90_s")),
        )  # fmt: skip
    console.print(table)
    if csv_path is not None:
        console.print(f"wrote {csv_path}")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0]) if rows else ["code"]
    try:
        with path.open("w", newline="", encoding="utf-8-sig") as f:  # with a BOM: Excel opens Chinese names right
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise InvalidInput(f"--csv {path}", f"cannot be written: {exc.strerror}") from None
