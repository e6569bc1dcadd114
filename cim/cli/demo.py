"""``cim demo``: from nothing to a living city twin in the browser with one command.

It runs the demo pipeline (generating the city the first time, skipping what has not changed after), then serves
the viewer, the API and live sensor state on one port, while a simulator feeds the sensors: through the MQTT broker
when one answers, else straight into the server's HTTP ingest path. Their faults become cases (machine dispatch),
which simulated units and a simulated command centre take round the loop over the HTTP API
(:mod:`cim.cases.simulate_units`): accepted, handled (some late, some returned), verified and closed.

The simulator runs time ``--speedup`` times faster (default 60: a simulated hour each real minute), so ten minutes
of demo live through ten hours of a city's day — a few lift faults, the cooking peaks in the gas pressure, and the
river series' flood (replayed from the morning before it) rising in the drainage chambers after about six minutes.
Fault *rates* are the real ones (see :mod:`cim.iot.simulate`); only the clock is compressed.

The server's write token (``CIM_WRITE_TOKEN`` if set, else a new random one) is written to a file only its owner
may read (mode 0600), next to the demo's store, and the demo prints where it is and how to send a reading.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cim.cli.options import err_console
from cim.cli.pipeline import run_with_progress
from cim.errors import InvalidInput
from cim.pipeline.model import load_pipeline

if TYPE_CHECKING:
    from cim.iot.sensors import Sensor

DEMO_PIPELINE = Path("pipelines/shanghai-demo.toml")
DEMO_SPEEDUP = 60.0
TOKEN_FILE = "demo-write-token"


def demo(
    pipeline: Annotated[Path, typer.Option(help="the pipeline to run")] = DEMO_PIPELINE,
    host: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on")] = 8000,
    broker: Annotated[str, typer.Option(help="MQTT broker the simulator publishes to")] = "mqtt://127.0.0.1:1883",
    rate: Annotated[float, typer.Option(help="simulated readings a second, over all sensors")] = 100.0,
    speedup: Annotated[
        float, typer.Option(help="simulated seconds per real second (60: an hour a minute; 1: real time)")
    ] = DEMO_SPEEDUP,
    prepare_only: Annotated[
        bool, typer.Option("--prepare-only", help="run the pipeline, then stop instead of serving")
    ] = False,
) -> None:
    """Build the Shanghai demo city (or reuse it), serve it with live sensors, print the URL."""
    from cim.api.serve import check_port_free

    if not prepare_only:
        check_port_free(host, port)  # before minutes of work, not after
    loaded = load_pipeline(pipeline)
    if loaded.tiles is None:
        raise InvalidInput(f"pipeline {pipeline}", "names no tiles folder (tiles = ...) to serve")
    summary = run_with_progress(loaded)
    for failed in (s for s in summary.sources if not s.ok):
        err_console.print(f"[yellow]warning:[/] {failed.error}", highlight=False)
    err_console.print(
        f"city ready in {summary.seconds:.1f} s: "
        + ", ".join(f"{s.type} {Path(s.path).name}" for s in summary.sources if not s.skipped and s.ok)
        or "nothing changed"
    )
    if prepare_only:
        return
    import uvloop

    # uvicorn stops gracefully on Ctrl-C, then raises the signal again for whoever had it before; with Python's
    # default handler that is a KeyboardInterrupt through the event loop, and uvicorn logs the lifespan task it
    # cancels as an error with a traceback. The demo has nothing left to do by then: take the signal quietly.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        targets = None if loaded.targets is None else (loaded.resolve(loaded.targets.file), loaded.targets.scale)
        uvloop.run(_serve(loaded.store, Path(loaded.tiles), host, port, broker, rate, speedup, targets))
    finally:
        signal.signal(signal.SIGINT, previous)


async def _serve(
    store: str,
    tiles: Path,
    host: str,
    port: int,
    broker: str,
    rate: float,
    speedup: float,
    targets: tuple[Path, float | None] | None = None,
) -> None:
    import uvicorn

    from cim.api import create_app
    from cim.api.serve import uvicorn_options
    from cim.iot.mqtt import parse_mqtt_url
    from cim.settings import AppSettings, MqttSettings, ServerSettings, StoreSettings

    broker_up = _answers(*parse_mqtt_url(broker))
    token = os.environ.get("CIM_WRITE_TOKEN") or secrets.token_urlsafe(16)
    token_file = write_token_file(token_folder(store), token)
    settings = AppSettings(
        store=StoreSettings(store=store),
        server=ServerSettings(
            host=host,
            port=port,
            tiles_dir=tiles.parent,
            write_token=token,
            targets_file=None if targets is None else targets[0],
            targets_scale=None if targets is None else targets[1],
        ),
        mqtt=MqttSettings(url=broker if broker_up else None),
        live=True,
        viewer=True,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(app, settings.server)))
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.1)
    if serving.done():
        await serving
        return
    feeding = asyncio.create_task(_simulate(app, store, broker if broker_up else None, rate, speedup))
    working = asyncio.create_task(_work_cases(app, f"http://{host}:{port}", settings.server.write_token or ""))
    via = (
        f"the MQTT broker at {broker}"
        if broker_up
        else "the HTTP ingest path (no MQTT broker answers at " + broker + ")"
    )
    err_console.print(
        f"[bold green]serving at http://{host}:{port}/[/]  (sensors simulated through {via}, time ×{speedup:g}; "
        "Ctrl-C stops)"
    )
    example = _example_sensor(app.state.resources.iot.sensors)
    err_console.print(ingest_help(token_file, f"http://{host}:{port}", broker, example), highlight=False, markup=False)
    try:
        await serving
    finally:
        feeding.cancel()
        working.cancel()


async def _simulate(app: object, store: str, broker: str | None, rate: float, speedup: float) -> None:
    from cim.iot.simulate import simulate, simulate_in_process
    from cim.store import open_store

    try:
        if broker is None:
            await simulate_in_process(app.state.resources.iot, rate=rate, speedup=speedup)  # type: ignore[attr-defined]
            return
        with open_store(store) as own:
            await simulate(broker=broker, store=own, rate=rate, speedup=speedup)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the city keeps being served; say why it stopped moving
        err_console.print(f"[yellow]warning:[/] the sensor simulator stopped: {exc}", highlight=False)


async def _work_cases(app: object, base_url: str, centre_token: str) -> None:
    """Simulated units and command centre take the cases round the loop over the HTTP API, each unit with a token
    of its own (issued now; only their hashes are stored)."""
    from cim.cases.simulate_units import UnitSimulator

    cases = app.state.resources.cases  # type: ignore[attr-defined]
    try:
        tokens = {unit_id: await cases.issue_unit_token(unit_id) for unit_id in cases.units}
        if not tokens:
            err_console.print("[yellow]warning:[/] no units declared: cases wait for the command centre")
            return
        await UnitSimulator(base_url, centre_token=centre_token, unit_tokens=tokens).run()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the city keeps being served; say why its cases stopped moving
        err_console.print(f"[yellow]warning:[/] the unit simulator stopped: {exc}", highlight=False)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def token_folder(store: str) -> Path:
    """Where the demo keeps its write token: next to a DuckDB store, else in ``$XDG_RUNTIME_DIR`` (private to the
    user), else ``~/.cache/cim``."""
    if "://" not in store:
        return Path(store).resolve().parent
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "cim" if runtime else Path.home() / ".cache" / "cim"


def write_token_file(folder: Path, token: str) -> Path:
    """Write ``token`` to ``folder``/demo-write-token readable and writable by its owner only (0600), created so
    from the start (never world-readable for a moment) and tightened if it was there before."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKEN_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, (token + "\n").encode())
    finally:
        os.close(descriptor)
    return path


def ingest_help(token_file: Path, base_url: str, broker: str, sensor: tuple[str, float, str]) -> str:
    """How to send a reading to the demo by HTTP and by MQTT, with the token read from its file."""
    from cim.iot.mqtt import parse_mqtt_url

    sensor_id, value, unit = sensor
    host, port = parse_mqtt_url(broker)
    reading = f'{{"value": {value:g}, "unit": "{unit}"}}'
    return (
        f"write token: {token_file} (readable only by you)\n"
        f"  send a reading over HTTP:\n"
        f'    curl -X POST {base_url}/iot/readings -H "Authorization: Bearer $(cat {token_file})" '
        f'-H \'Content-Type: application/json\' -d \'{{"sensor_id": "{sensor_id}", "value": {value:g}, '
        f'"unit": "{unit}"}}\'\n'
        f"  or over MQTT (topic cim/<sensor-id>/state):\n"
        f"    mosquitto_pub -h {host} -p {port} -t cim/{sensor_id}/state -m '{reading}'"
    )


def _example_sensor(sensors: dict[str, Sensor]) -> tuple[str, float, str]:
    """A low-pressure gas sensor to show in the examples (its nominal pressure), else any sensor with a unit."""
    with_unit = sorted((s for s in sensors.values() if s.unit), key=lambda s: (s.unit != "kPa", s.id))
    for s in with_unit:
        nominal = getattr(s, "nominal", None)
        if nominal is not None:
            return s.id, nominal, s.unit or ""
    return ("<sensor-id>", 2.4, "kPa") if not with_unit else (with_unit[0].id, 1.0, with_unit[0].unit or "")
