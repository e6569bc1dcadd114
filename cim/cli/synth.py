"""``cim synth`` and ``cim simulate``: a made-up city at Shanghai's real places, and its sensors' readings."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, date, datetime
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
    if result.history:
        days = list(result.history)
        layers = ", ".join(result.history[days[0]])
        console.print(f"past: {len(days)} yearly states ({days[0]} … {days[-1]}) of {layers} in {out / 'history'}")
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
    speedup: Annotated[
        float,
        typer.Option(
            help="simulated seconds per real second: faults, repairs, daily curves and the river run this "
            "much faster (60: an hour a minute); readings keep real time stamps"
        ),
    ] = 1.0,
    series_start: Annotated[
        datetime | None,
        typer.Option(
            "--series-start",
            help="the river series' moment the water levels start at (UTC) [default: 2011-08-27T08:00, the morning "
            "before its record flood]",
        ),
    ] = None,
    meters: Annotated[
        int,
        typer.Option(
            "--meters",
            help="instead: generate a day of 15-minute smart gas meter readings for this many meters (no broker)",
        ),
    ] = 0,
    day: Annotated[
        datetime | None, typer.Option("--day", help="with --meters: the day (Shanghai) [default: today]")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="with --meters: write the readings to this Parquet file")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish believable sensor readings (real USGS river series as water levels, lift status, gas pressure by
    pressure class); or, with --meters N, generate a day of smart gas meter readings for a bench."""
    import asyncio

    from cim.iot.simulate import declare_demo_sensors
    from cim.iot.simulate import simulate as run_simulation
    from cim.settings import MqttSettings

    if meters:
        _meter_day(meters, (day or datetime.now()).date(), seed, out, as_json)
        return
    url = broker or MqttSettings().url or "mqtt://127.0.0.1:1883"
    start = series_start.replace(tzinfo=UTC) if series_start and series_start.tzinfo is None else series_start
    with open_store(store_url(store)) as opened:
        if demo_sensors:
            declare_demo_sensors(opened, per_kind=demo_sensors)
        if not as_json:
            console.print(f"publishing {rate:g} readings/s to {url}, time ×{speedup:g} (Ctrl-C stops)")
        try:
            summary = asyncio.run(
                run_simulation(
                    broker=url,
                    store=opened,
                    rate=rate,
                    duration=duration,
                    seed=seed,
                    speedup=speedup,
                    series_start=start,
                )
            )
        except KeyboardInterrupt:
            raise typer.Abort() from None
    result = {"broker": url, "sensors": summary.sensors, "published": summary.published, "seconds": summary.seconds}
    if as_json:
        print_json(result)
    else:
        console.print(f"published {summary.published:,} readings in {summary.seconds:.1f} s for {summary.sensors}")


def _meter_day(meters: int, day: date, seed: int, out: Path | None, as_json: bool) -> None:
    """Generate (and with ``out`` write) a day of meter readings; report rows and speed."""
    import pyarrow.parquet as pq

    from cim.iot.meters import READING_SCHEMA, meter_day

    started = time.perf_counter()
    rows = 0
    writer = pq.ParquetWriter(out, READING_SCHEMA) if out is not None else None
    try:
        for table in meter_day(meters, day, seed=seed):
            rows += table.num_rows
            if writer is not None:
                writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    seconds = round(time.perf_counter() - started, 3)
    result = {"meters": meters, "day": day.isoformat(), "readings": rows, "seconds": seconds, "out": str(out or "")}
    if as_json:
        print_json(result)
    else:
        where = f" into {out}" if out else ""
        console.print(f"{rows:,} meter readings for {meters:,} meters on {day}{where} in {seconds:.1f} s")
