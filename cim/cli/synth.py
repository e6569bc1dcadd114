"""``cim synth`` and ``cim simulate``: a made-up city at Shanghai's real places, and its sensors' readings."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cim.cli.options import JsonOption, StoreOption, console, print_json, store_url
from cim.progress import progress_bars
from cim.store import open_store


def synth(
    out: Annotated[Path, typer.Option("--out", help="folder for the GeoParquet layers and IFC towers")],
    buildings: Annotated[int, typer.Option("--buildings", help="number of buildings (up to 5,000,000)")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="random seed: the same seed writes the same files")] = 0,
    towers: Annotated[int, typer.Option("--towers", help="detailed IFC towers to generate in Lujiazui")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Generate the demo city at Shanghai's real places: one GeoParquet file per layer, and IFC towers."""
    from cim.synth.generate import generate_city, mapping_file

    started = time.perf_counter()
    with progress_bars(quiet=as_json) as progress:
        task = progress.add_task("buildings", total=buildings)
        result = generate_city(
            out=out, buildings=buildings, seed=seed, towers=towers, progress=lambda n: progress.advance(task, n)
        )
    summary = {**asdict(result), "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        print_json(summary)
        return
    table = Table("layer", "features", "ingest with", title=f"demo city in {out}")
    for layer, rows in result.layers.items():
        table.add_row(layer, f"{rows:,}", f"cim ingest {out / layer}.parquet --map {mapping_file(layer)}")
    console.print(table)
    mains = ", ".join(f"{network} {km:,.1f} km" for network, km in result.mains_km.items())
    console.print(f"buried mains: {mains}", highlight=False)
    console.print(
        f"lifts older than 15 years: {result.lifts_older_than_15_years:,}; "
        f"without a date: {result.lifts_without_date:,}"
    )
    if result.towers:
        console.print(f"IFC towers: {', '.join(result.towers)}")
    console.print(f"generated in {summary['seconds']:.1f} s")


def simulate(
    broker: Annotated[
        str | None, typer.Option(help="MQTT broker URL [env: CIM_MQTT_URL; default mqtt://127.0.0.1:1883]")
    ] = None,
    store: StoreOption = None,
    rate: Annotated[float, typer.Option(help="readings a second, over all sensors")] = 10.0,
    duration: Annotated[float | None, typer.Option(help="seconds to run (default: until Ctrl-C)")] = None,
    demo_sensors: Annotated[
        int, typer.Option("--demo-sensors", help="first declare this many sensors of each kind (lift, gas, drainage)")
    ] = 0,
    seed: Annotated[int, typer.Option(help="random seed: the same seed replays the same readings")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Publish realistic sensor readings (real USGS river series as water levels, lift status, gas pressure)."""
    import asyncio

    from cim.iot.simulate import declare_demo_sensors
    from cim.iot.simulate import simulate as run_simulation
    from cim.settings import MqttSettings

    url = broker or MqttSettings().url or "mqtt://127.0.0.1:1883"
    with open_store(store_url(store)) as opened:
        if demo_sensors:
            declare_demo_sensors(opened, per_kind=demo_sensors)
        if not as_json:
            console.print(f"publishing {rate:g} readings/s to {url} (Ctrl-C stops)")
        try:
            summary = asyncio.run(run_simulation(broker=url, store=opened, rate=rate, duration=duration, seed=seed))
        except KeyboardInterrupt:
            raise typer.Abort() from None
    result = {"broker": url, "sensors": summary.sensors, "published": summary.published, "seconds": summary.seconds}
    if as_json:
        print_json(result)
    else:
        console.print(f"published {summary.published:,} readings in {summary.seconds:.1f} s for {summary.sensors}")
