"""``cim indicators``, ``cim render`` and ``cim query ...``: asking the city model, with the same JSON as the HTTP API
under ``--json``.

Each asks the running server when ``--server`` names one or a ``cim serve`` holds the DuckDB store (its HTTP API:
``/indicators``, ``/queries/...``, ``/assets/{id}/preview.png``), else opens the store here, which must exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from cim.cli.options import (
    AsOfOption,
    JsonOption,
    ServerOption,
    StoreOption,
    as_of_day,
    ask_server,
    console,
    open_existing_store,
    print_json,
    reading_server,
)
from cim.errors import InvalidInput
from cim.model import parse_kind

if TYPE_CHECKING:
    from cim.queries.aggregates import GroupOut

query_app = typer.Typer(help="Ask the city model: old lifts, buried pipes, assets within a distance.")


def indicators(
    store: StoreOption = None, server: ServerOption = None, as_of: AsOfOption = None, as_json: JsonOption = False
) -> None:
    """The city vital signs: old lifts, old buried mains, homes near parks, stops near metro exits, live state."""
    from cim.queries.indicators import vital_signs
    from cim.queries.params import model_as_of

    day = as_of_day(as_of)
    result: Any
    if (remote := reading_server(store, server)) is not None:
        result = json.loads(ask_server(remote, "/indicators", params={"as_of": day}))
    else:
        with open_existing_store(store) as opened:
            result = vital_signs(model_as_of(opened, day), as_of=day)
    if as_json:
        print_json(result)
        return
    table = Table("indicator", "value", "of", title=f"city vital signs as of {result['as_of']}")
    for item in result["indicators"]:
        value = "-" if item["value"] is None else f"{item['value']:,} {item['unit']}"
        table.add_row(item["label"], value, "" if item["total"] is None else f"{item['total']:,}")
    console.print(table)


def render(
    asset_id: Annotated[str, typer.Argument(help="The asset to draw.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    store: StoreOption = None,
    width: Annotated[int, typer.Option(help="Width in pixels (64…2048).")] = 800,
    height: Annotated[int, typer.Option(help="Height in pixels (64…2048).")] = 600,
    server: ServerOption = None,
) -> None:
    """Draw an asset and its surroundings to a PNG, off-screen (no display needed)."""
    from cim.render import open_meshes_for, render_asset

    if (remote := reading_server(store, server)) is not None:
        size = {"width": width, "height": height}
        png = ask_server(remote, f"/assets/{quote(asset_id, safe='')}/preview.png", params=size)
    else:
        with open_existing_store(store) as opened:
            meshes = open_meshes_for(opened)
            try:
                png = render_asset(opened, meshes, asset_id, width=width, height=height)
            finally:
                if meshes is not None:
                    meshes.close()
    out.write_bytes(png)
    console.print(f"wrote {out} ({width}×{height}, {len(png):,} bytes)")


@query_app.command("old-lifts")
def old_lifts_command(
    store: StoreOption = None,
    years: Annotated[float, typer.Option(help="a lift older than this many years is old")] = 15,
    as_of: AsOfOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Buildings with lifts older than N years; lifts with no install date listed apart."""
    from cim.queries import old_lifts
    from cim.queries.params import model_as_of

    day = as_of_day(as_of)
    result: Any
    if (remote := reading_server(store, server)) is not None:
        result = json.loads(ask_server(remote, "/queries/old-lifts", params={"years": years, "as_of": day}))
    else:
        with open_existing_store(store) as opened:
            result = old_lifts(model_as_of(opened, day), years=years, as_of=day)
    if as_json:
        print_json(result)
        return
    table = Table("building", "name", "lifts older than " + f"{years:g} years")
    for b in result["buildings"]:
        table.add_row(
            b["id"], b["name"] or "", ", ".join(f"{lift['id']} ({lift['age_years']} y)" for lift in b["lifts"])
        )
    console.print(table)
    console.print(
        f"lifts of unknown age: {len(result['unknown_age'])}; old lifts under no building: "
        f"{len(result['without_building'])}"
    )


@query_app.command("buried-pipes")
def buried_pipes_command(
    store: StoreOption = None,
    network: Annotated[str | None, typer.Option(help="gas, water, drainage, sewer … (all when omitted)")] = None,
    area: Annotated[Path | None, typer.Option(help="GeoJSON file with the polygon")] = None,
    bbox: Annotated[str | None, typer.Option(help="west,south,east,north instead of --area")] = None,
    older_than: Annotated[float | None, typer.Option("--older-than", help="installed more than N years ago")] = None,
    deeper_than: Annotated[float | None, typer.Option("--deeper-than", help="depth greater than D m")] = None,
    as_of: AsOfOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Below-ground pipes inside an area, with their length inside it."""
    from cim.queries import buried_pipes
    from cim.queries.params import bbox_area, model_as_of, parse_area, parse_bbox

    if (area is None) == (bbox is None):
        raise InvalidInput("buried-pipes options", "give exactly one of --area FILE.geojson or --bbox W,S,E,N")
    area_json: Any = None
    if area is not None:
        try:
            area_json = json.loads(area.read_text(encoding="utf-8"))
            polygon = parse_area(area_json)
        except OSError as exc:
            raise InvalidInput(f"area file {area}", f"cannot be read: {exc.strerror}") from None
        except ValueError as exc:
            raise InvalidInput(f"area file {area}", f"is not JSON: {exc}") from None
    else:
        assert bbox is not None
        polygon = bbox_area(parse_bbox(bbox))
    day = as_of_day(as_of)
    result: Any
    if (remote := reading_server(store, server)) is not None:
        filters = {"network": network, "older_than": older_than, "deeper_than": deeper_than, "as_of": day}
        if area_json is None:
            result = json.loads(ask_server(remote, "/queries/buried-pipes", params={"bbox": bbox, **filters}))
        else:
            result = json.loads(ask_server(remote, "/queries/buried-pipes", params=filters, body=area_json))
    else:
        with open_existing_store(store) as opened:
            result = buried_pipes(
                model_as_of(opened, day),
                area=polygon,
                network=network,
                older_than=older_than,
                deeper_than=deeper_than,
                as_of=day,
            )
    if as_json:
        print_json(result)
        return
    table = Table("pipe", "network", "installed", "depth m", "length in area m")
    for p in result["pipes"]:
        table.add_row(
            p["id"], p["network"] or "", p["install_date"] or "?", str(p["depth_m"]), f"{p['length_in_area_m']:,.1f}"
        )
    console.print(table)
    console.print(f"total length in area: {result['total_length_m']:,.1f} m")


@query_app.command("within-distance")
def within_distance_command(
    kind: Annotated[str, typer.Option(help="the assets to list, e.g. building")],
    near: Annotated[str, typer.Option(help="the kind they must be near, e.g. park")],
    distance: Annotated[float, typer.Option(help="metres")],
    store: StoreOption = None,
    bbox: Annotated[str | None, typer.Option(help="only assets of --kind inside west,south,east,north")] = None,
    beyond: Annotated[bool, typer.Option("--beyond", help="list those with none that near instead")] = False,
    as_of: AsOfOption = None,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Assets of one kind within (or, with --beyond, farther than) D metres of assets of another kind."""
    from cim.queries import within_distance
    from cim.queries.params import model_as_of, parse_bbox

    kinds, box = (parse_kind(kind), parse_kind(near)), parse_bbox(bbox) if bbox else None
    day = as_of_day(as_of)
    result: Any
    if (remote := reading_server(store, server)) is not None:
        asked = {"kind": kinds[0].value, "near": kinds[1].value, "distance": distance, "bbox": bbox, "beyond": beyond}
        result = json.loads(ask_server(remote, "/queries/within-distance", params={**asked, "as_of": day}))
    else:
        with open_existing_store(store) as opened:
            view = model_as_of(opened, day)
            result = within_distance(
                view, kind=kinds[0], near_kind=kinds[1], distance_m=distance, bbox=box, beyond=beyond
            )
    if as_json:
        print_json(result)
        return
    table = Table(kind, "name", f"nearest {near}", "distance m")
    for a in result["assets"]:
        table.add_row(
            a["id"], a["name"] or "", a["near_id"] or "-", "-" if a["distance_m"] is None else f"{a['distance_m']:,.1f}"
        )
    console.print(table)
    console.print(
        f"{len(result['assets'])} {kind} assets {'beyond' if beyond else 'within'} {distance:g} m of a {near}"
    )


@query_app.command("aggregate")
def aggregate_command(
    kind: Annotated[str, typer.Argument(help="the collection (asset kind), e.g. pipe")],
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by", help="1-3 of kind, status, network, material, age_band, district, street, grid_cell"
        ),
    ],
    store: StoreOption = None,
    server: ServerOption = None,
    as_of: AsOfOption = None,
    bbox: Annotated[str | None, typer.Option(help="only assets inside west,south,east,north")] = None,
    as_json: JsonOption = False,
) -> None:
    """Counts, lengths (m) and areas (m²) of one kind's assets, grouped: as GET /collections/{kind}/aggregate."""
    from cim.queries.aggregates import aggregate_json, parse_group_by
    from cim.queries.params import model_as_of, parse_bbox

    day = as_of_day(as_of)
    if (remote := reading_server(store, server)) is not None:
        path = f"/collections/{quote(kind, safe='')}/aggregate"
        result = json.loads(ask_server(remote, path, params={"group_by": group_by, "as_of": day, "bbox": bbox}))
    else:
        with open_existing_store(store) as opened:
            result = aggregate_json(
                model_as_of(opened, day),
                kind=parse_kind(kind),
                group_by=parse_group_by(group_by),
                as_of=day,
                bbox=parse_bbox(bbox) if bbox else None,
            )
    if as_json:
        print_json(result)
        return
    keys = result["group_by"]
    table = Table(*keys, "count", "length m", "area m²", title=f"{kind} as of {result['as_of']}")
    rows = [([_labelled(g, k) for k in keys], g["count"], g["length_m"], g["area_m2"]) for g in result["groups"]]
    everything = result["total"]
    rows.append(
        (["total", *[""] * (len(keys) - 1)], everything["count"], everything["length_m"], everything["area_m2"])
    )
    for labels, count, metres, square_metres in rows:
        table.add_row(*labels, f"{count:,}", *("-" if m is None else f"{m:,.1f}" for m in (metres, square_metres)))
    console.print(table)


def _labelled(group: GroupOut, key: str) -> str:
    """A group's value of ``key``, with its area's Chinese name when it has one."""
    code = group["key"].get(key)
    name = group.get("names", {}).get(key)
    if code is None:
        return "-"
    return f"{code} {name['zh']}" if name and name["zh"] else code
