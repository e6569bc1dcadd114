"""IoT ingest benchmark: MQTT → latest state + stored history, next to a bare aiomqtt subscriber; and the
publish → WebSocket latency with many live clients.

    .venv/bin/python bench/iot_bench.py [--readings 200000] [--sensors 1000] [--store duckdb|postgis|URL]
                                        [--rate 5000] [--clients 20] [--seconds 10] [--runs 3]
    .venv/bin/python bench/iot_bench.py --only shared [--readings 200000] [--members 2] [--store URL]
    .venv/bin/python bench/iot_bench.py --only dedupe

Throughput is measured as a *drain*: the broker (a Mosquitto of the bench's own) first queues N QoS-1 readings for a
persistent session while its subscriber is offline; then the subscriber connects with that session and the clock
runs until it has them all — for the subscribers, until it received the last one; for the IoT service, until the last
one is committed to the store. Four subscribers face the same broker, each its own queue of N, one after the other
(so none competes with the publisher or another for the 2 cores), in ``--runs`` rounds; the medians are printed:

* ``mosquitto_sub`` (C, libmosquitto) — the reference for what this broker can hand over on this machine;
* a bare aiomqtt loop (``async for message in client.messages``), as the field would write it;
* aiomqtt extended as cim.iot.mqtt.IngestClient (buffered socket, PUBACKs gathered, direct delivery) with a
  callback that only counts;
* IotService → latest state + rules + history in the store (DuckDB by default), every reading committed to the
  write-ahead spool (SQLite, WAL) before its PUBACK;
* with ``--baseline DIR`` (e.g. a checkout of main), the IotService of that tree too, drained the same way in the
  same rounds, so before/after figures come from one run on the same load. Both services run in a child process
  each (``--role drain-service``), with the code of their tree.

``--only shared`` drains N readings into one PostGIS schema with one service process, then with ``--members``
processes sharing the subscription (``$share/bench/cim/+/state``: the broker deals the queue out to the members'
sessions), each in a child process; it prints the group's rate and where the machine's CPU went.

The load average (``uptime``) is printed before and after: other people's benchmarks share these cores.

Latency: the service and a uvicorn server run in this process; a child process publishes ``--rate`` readings a
second stamped with their send time and holds ``--clients`` WebSocket connections; each client records, for every
state it receives, now − the reading's time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

POSTGRES = os.environ.get("CIM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cim-bench-mqtt-"))
        self.port = free_port()
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            "max_inflight_messages 1000\nmax_queued_bytes 0\n" + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def register_session(port: int, client_id: str, topic: str = "cim/+/state") -> None:
    """A persistent session subscribed to ``topic`` (``$share/<group>/…`` for a member of a share group), offline
    from then on: the broker queues what is published for it."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as c:
        await c.subscribe(topic, qos=1)


def publish_bulk(port: int, n: int, sensors: int) -> float:
    """Publish n QoS-1 readings as fast as the broker acknowledges them (paho, its own thread); readings/s."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    first = datetime.now(UTC) - timedelta(hours=1)
    started = time.perf_counter()
    for start in range(0, n, 5000):  # in chunks, so paho's outgoing queue stays small
        infos = []
        for i in range(start, min(start + 5000, n)):
            # each reading its own time: a PostgreSQL store keeps one reading per sensor and time
            payload = f'{{"value": {i % 977 / 10}, "time": "{(first + timedelta(microseconds=i)).isoformat()}"}}'
            infos.append(client.publish(f"cim/s{i % sensors}/state", payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
    seconds = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return n / seconds


DRAIN_TIMEOUT = 300.0  # seconds: a drain that has not finished by then is reported as failed, never waited on forever


async def drain_bare(port: int, client_id: str, n: int) -> float:
    """A plain aiomqtt loop, as in aiomqtt's documentation."""
    received = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as c:
        started = time.perf_counter()
        async for message in c.messages:
            received += 1
            _ = message.payload
            if received == n:
                break
    return n / (time.perf_counter() - started)


async def drain_extended(port: int, client_id: str, n: int) -> float:
    """cim's IngestClient with a callback that only counts."""
    from cim.iot.mqtt import IngestClient, MqttStatus

    done = asyncio.Event()
    received = 0

    def count(topic: str, payload: bytes) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    status = MqttStatus(url="", topic="cim/+/state", client_id=client_id)
    async with IngestClient(
        "127.0.0.1", port, identifier=client_id, clean_session=False, on_message=count, status=status
    ):
        started = time.perf_counter()
        await done.wait()
    return n / (time.perf_counter() - started)


async def drain_mosquitto_sub(port: int, client_id: str, n: int) -> float:
    """The C client: ``mosquitto_sub -c -q 1 -C n`` exits after n messages (its connect time is on its clock)."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", client_id, "-c", "-q", "1",
        "-t", "cim/+/state", "-C", str(n), stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if await proc.wait() != 0:
        raise RuntimeError(f"mosquitto_sub exited with {proc.returncode}")
    return n / (time.perf_counter() - started)


def open_bench_store(kind: str, tmp: Path) -> object:
    from cim.store import open_store

    if kind == "duckdb":
        return open_store(str(tmp / f"bench-{time.monotonic_ns()}.duckdb"))
    if kind == "postgis":
        return open_store(POSTGRES.rsplit("/", 1)[0] + f"/cim_test?schema=bench_{os.getpid()}")
    return open_store(kind)


def declare(store: object, sensors: int) -> None:
    from cim.iot.sensors import sensor_asset
    from cim.model import AssetBatch

    assets = [
        sensor_asset(id=f"s{i}", parent_id=None, quantity="water_level", unit="m", thresholds={"above": 90.0})
        for i in range(sensors)
    ]
    store.upsert_assets(AssetBatch.from_assets(assets))  # type: ignore[attr-defined]


async def drain_service_in_child(
    code: Path, args: argparse.Namespace, port: int, client_id: str, *, share: list[str] | None = None
) -> dict[str, Any]:
    """``drain_service`` in a child process that imports ``cim`` from ``code``; its JSON result. ``share``: the
    arguments of a member of a share group (its group, its share of the readings, the store it shares)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--role", "drain-service", "--code", str(code), "--mqtt-port", str(port),
        "--client-id", client_id, "--readings", str(args.readings), "--sensors", str(args.sensors),
        "--store", args.store, *(share or []), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"drain-service in {code} exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def drain_service_role(args: argparse.Namespace) -> None:
    """In a child process: open a store, declare the sensors, drain the session into the service; print JSON."""
    tmp = Path(tempfile.mkdtemp(prefix="cim-bench-"))
    try:
        store = open_bench_store(args.store, tmp)
        if not args.share_group:  # a share group's store was prepared by the parent
            declare(store, args.sensors)
        n = args.expect or args.readings
        rate, stats, span = asyncio.run(
            drain_service(store, f"mqtt://127.0.0.1:{args.mqtt_port}", args.client_id, n, share_group=args.share_group)
        )
        rows = sum(len(store.readings(f"s{i}")) for i in range(0, args.sensors, max(args.sensors // 10, 1)))  # type: ignore[attr-defined]
        store.close()  # type: ignore[attr-defined]
        print(json.dumps({"rate": rate, "stats": stats, "rows": rows, "span": span}), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def drain_service(
    store: object, url: str, client_id: str, n: int, *, share_group: str | None = None
) -> tuple[float, dict[str, object], tuple[float, float]]:
    """(readings/s, the service's stats, (start, end) in Unix seconds) of draining n readings into the service."""
    from cim.iot import IotOptions, IotService
    from cim.settings import MqttSettings

    mqtt = MqttSettings(url=url, share_group=share_group)
    spool = Path(tempfile.mkdtemp(prefix="cim-bench-spool-")) / "spool.sqlite"
    service = IotService(store, mqtt, options=IotOptions(client_id=client_id), spool_path=spool)  # type: ignore[arg-type]
    await service.start()
    started, wall, cpu, machine = time.perf_counter(), time.time(), time.process_time(), busy_seconds()
    while service.stored < n:
        if time.perf_counter() - started > DRAIN_TIMEOUT:  # a child must not outlive the bench
            await service.stop()
            raise SystemExit(f"drained {service.stored:,} of {n:,} readings in {DRAIN_TIMEOUT:.0f} s")
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    stats = service.stats() | {"cpu_s": time.process_time() - cpu, "machine": [machine, busy_seconds()]}
    await service.stop()
    shutil.rmtree(spool.parent, ignore_errors=True)
    return n / seconds, stats, (wall, wall + seconds)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def throughput(args: argparse.Namespace) -> None:
    broker = Broker()
    tmp = Path(tempfile.mkdtemp(prefix="cim-bench-"))
    labels: tuple[str, ...] = (
        "mosquitto_sub (C)",
        "bare aiomqtt loop",
        "aiomqtt + cim IngestClient",
        "IotService → state + store",
    )
    if args.baseline:
        labels += ("IotService @ baseline",)
    rates: dict[str, list[float]] = {label: [] for label in labels}
    print(f"load before: {load()}", flush=True)
    try:
        for run in range(1, args.runs + 1):
            for label in labels:
                client_id = f"bench-{time.monotonic_ns()}"
                await register_session(broker.port, client_id)
                pub_rate = await asyncio.to_thread(publish_bulk, broker.port, args.readings, args.sensors)
                extra = ""
                if label.startswith("IotService"):
                    code = Path(args.baseline) if label.endswith("baseline") else ROOT
                    result = await asyncio.wait_for(
                        drain_service_in_child(code, args, broker.port, client_id), DRAIN_TIMEOUT
                    )
                    rate, stats = result["rate"], result["stats"]
                    extra = (
                        f"  (store {args.store}, flushes {stats['flushes']}, received {stats['received']:,}, "
                        f"dropped {stats['dropped_total']}, sampled rows {result['rows']:,})"
                    )
                else:
                    drain = {
                        "mosquitto_sub (C)": drain_mosquitto_sub,
                        "bare aiomqtt loop": drain_bare,
                        "aiomqtt + cim IngestClient": drain_extended,
                    }[label]
                    rate = await asyncio.wait_for(drain(broker.port, client_id, args.readings), DRAIN_TIMEOUT)
                rates[label].append(rate)
                print(
                    f"run {run}  {label:28s} {rate:>10,.0f} readings/s   (queued at {pub_rate:,.0f}/s){extra}",
                    flush=True,
                )
        print(f"load after:  {load()}", flush=True)
        medians = {label: statistics.median(values) for label, values in rates.items()}
        service = medians["IotService → state + store"]
        print(f"medians of {args.runs} runs of {args.readings:,} readings:", flush=True)
        for label, median in medians.items():
            share = "" if label.startswith("IotService") else f"   service = {service / median:.0%} of this"
            if label.endswith("baseline"):
                share = f"   service now = {service / median:.0%} of this"
            print(f"  {label:28s} {median:>10,.0f} readings/s{share}", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --- several processes sharing the subscription (PostGIS) ---
def busy_seconds() -> tuple[float, float, float, float]:
    """CPU seconds so far: (the machine busy, the machine in all — every core, from /proc/stat — every
    ``postgres`` process, every ``mosquitto`` process), the processes' from /proc/<pid>/stat. PostgreSQL's and
    Mosquitto's include other people's sessions and brokers on the machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    by_name = {"postgres": 0, "mosquitto": 0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name in by_name:
            by_name[name] += int(rest[11]) + int(rest[12])  # utime + stime
    return (sum(fields) - idle) / ticks, sum(fields) / ticks, by_name["postgres"] / ticks, by_name["mosquitto"] / ticks


# --- latency ---
async def clients_role(ws_url: str, seconds: float, clients: int, measuring: int) -> None:
    """In a child process: WebSocket clients; prints the latencies (now − reading time) as JSON."""
    import websockets

    latencies: list[float] = []
    warmup_until = time.time() + 2.0
    stop_at = time.time() + seconds + 2.0

    async def client(measure: bool) -> None:
        async with websockets.connect(ws_url, max_size=None, compression=None) as ws:
            while time.time() < stop_at:
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=max(stop_at - time.time(), 0.01))
                except TimeoutError:
                    break
                if not measure:
                    continue  # receives everything, as fast as a browser would; parsing is left to the measuring few
                now = time.time()
                message = json.loads(text)
                if message["type"] != "update" or now < warmup_until:
                    continue
                for state in message["states"]:
                    latencies.append(now - state["value"])

    await asyncio.gather(*(client(i < measuring) for i in range(clients)), return_exceptions=True)
    print(json.dumps({"latencies": latencies}))


def publisher_role(mqtt_port: int, rate: float, seconds: float, sensors: int, qos: int) -> None:
    """In another child process: publish ``rate`` readings a second whose value is their send time (Unix s)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-lat-pub")
    client.max_inflight_messages_set(2000)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    sent = 0
    started = time.time()
    while time.time() - started < seconds:
        due = int((time.time() - started) * rate) - sent
        for _ in range(due):
            client.publish(f"cim/s{sent % sensors}/state", f'{{"value": {time.time()}}}', qos=qos)
            sent += 1
        time.sleep(0.002)
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"sent": sent, "seconds": time.time() - started}))


async def latency(args: argparse.Namespace) -> None:
    import uvicorn
    from fastapi import FastAPI

    from cim.api.deps import Resources
    from cim.api.iot import router
    from cim.api.tilefiles import TileFiles
    from cim.iot import IotOptions, IotService
    from cim.settings import MqttSettings, ServerSettings

    broker = Broker()
    tmp = Path(tempfile.mkdtemp(prefix="cim-bench-"))
    store = open_bench_store(args.store, tmp)
    declare(store, args.sensors)
    port = free_port()
    service_box: list[IotService] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        service = IotService(store, MqttSettings(url=broker.url), options=IotOptions(client_id="bench-lat"))  # type: ignore[arg-type]
        await service.start()
        app.state.resources = Resources(settings=ServerSettings(), store=store, tiles=TileFiles(tmp), iot=service)
        service_box.append(service)
        yield
        await service.stop()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=False)
    )
    serve = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        while not (service_box and service_box[0].mqtt_status and service_box[0].mqtt_status.connected):
            await asyncio.sleep(0.05)
        clients = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "clients", "--ws", f"ws://127.0.0.1:{port}/iot/live",
            "--seconds", str(args.seconds), "--clients", str(args.clients),
            "--measure-clients", str(args.measure_clients), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(2.0)  # the clients connect and get their snapshot; the publisher starts with the warm-up
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "publisher", "--mqtt-port", str(broker.port), "--rate", str(args.rate),
            "--seconds", str(args.seconds + 1.0), "--sensors", str(args.sensors), "--pub-qos", str(args.pub_qos),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        published = json.loads((await publisher.communicate())[0])
        result = json.loads((await clients.communicate())[0])
        lat = sorted(result["latencies"])
        stats = service_box[0].stats()
        if not lat:
            print("latency: no update received")
            return
        p = lambda q: lat[min(int(q * len(lat)), len(lat) - 1)] * 1000  # noqa: E731
        print(
            f"publish (QoS {args.pub_qos}) → WebSocket at {args.rate:,.0f} readings/s "
            f"(sent {published['sent']:,} in {published['seconds']:.1f} s), "
            f"{args.clients} clients: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {lat[-1] * 1000:.0f} ms, "
            f"mean {statistics.fmean(lat) * 1000:.0f} ms over {len(lat):,} delivered states; "
            f"service accepted {stats['accepted']:,}, stored {stats['stored']:,}",
            flush=True,
        )
    finally:
        server.should_exit = True
        await serve
        store.close()  # type: ignore[attr-defined]
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--store", default="duckdb", help="duckdb, postgis, or a store URL")
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3, help="throughput rounds; medians are reported")
    parser.add_argument(
        "--only",
        choices=("throughput", "latency", "shared", "dedupe"),
        help="shared: one process against --members processes sharing the subscription, into PostGIS; dedupe: the "
        "cost of storing each PostGIS reading once",
    )
    parser.add_argument("--members", type=int, default=2, help="(shared) processes of the share group")
    parser.add_argument("--share-group", help="(drain-service) the share group of this member")
    parser.add_argument("--expect", type=int, help="(drain-service) readings this member drains, default --readings")
    parser.add_argument("--measure-clients", type=int, default=4, help="clients that parse and time every state")
    parser.add_argument("--pub-qos", type=int, default=0, choices=(0, 1), help="QoS of the latency publisher")
    parser.add_argument("--role", default="main")
    parser.add_argument("--ws")
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument("--baseline", help="a tree whose IotService is drained too (before/after in one run)")
    parser.add_argument("--code", help="(drain-service) the tree to import cim from")
    parser.add_argument("--client-id")
    args = parser.parse_args()
    if args.role == "drain-service":
        sys.path.insert(0, str(Path(args.code).resolve()))
        drain_service_role(args)
        return
    if args.role == "clients":
        asyncio.run(clients_role(args.ws, args.seconds, args.clients, args.measure_clients))
        return
    if args.role == "publisher":
        publisher_role(args.mqtt_port, args.rate, args.seconds, args.sensors, args.pub_qos)
        return
    print(f"cores: {os.cpu_count()}, readings: {args.readings:,}, sensors: {args.sensors:,}", flush=True)
    if args.only in (None, "throughput"):
        asyncio.run(throughput(args))
    if args.only in (None, "latency"):
        asyncio.run(latency(args))
    if args.only == "shared":
        from iot_share_bench import shared

        asyncio.run(shared(args))
    if args.only == "dedupe":
        from iot_share_bench import dedupe_cost

        dedupe_cost(args)


if __name__ == "__main__":
    main()
