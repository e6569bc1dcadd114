"""The write-ahead spool and what rests on it: replay at start, refusal when full, the MQTT client's identity and
credentials (never shown)."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest

from cim.iot import IotService
from cim.iot.mqtt import client_id_for
from cim.iot.spool import Spool
from cim.model import Reading
from cim.settings import MqttSettings
from cim.store import open_store
from tests.faults import PrivateMosquitto
from tests.iot.conftest import TOKEN, declare_sensors, eventually, fast_options, iot_app, running, serve_iot
from tests.iot.test_ingest import publish

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_what_the_spool_holds_at_start_is_written_to_the_store(tmp_path: Path) -> None:
    """As after a crash: readings acknowledged but never flushed are in the spool; the next start stores them."""
    spool_path = tmp_path / "spool.sqlite"
    spool = Spool(spool_path)
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    spool.append([Reading(sensor_id="wl-1", time=t0.replace(second=s), value=float(s)) for s in range(5)])
    spool.close()
    with open_store(str(tmp_path / "city.duckdb")) as store:
        declare_sensors(store)
        async with running(store, spool=spool_path) as iot:
            assert iot.stats()["spool_depth"] == 0 and iot.stored == 5
            assert iot.latest["wl-1"].value == 4.0  # the replayed readings are the latest state
        assert [r.value for r in store.readings("wl-1", newest_first=False)] == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_a_post_past_the_backlog_bound_is_refused_with_503_and_nothing_is_dropped(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "city.duckdb")) as store:
        declare_sensors(store)
        async with running(store, max_backlog=15, flush_interval=60.0) as iot:
            app = iot_app()
            serve_iot(app, iot)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cim") as client:
                items = [{"sensor_id": "wl-1", "value": float(i)} for i in range(10)]
                assert (await client.post("/iot/readings", json=items, headers=AUTH)).status_code == 202
                assert iot.stats()["spool_depth"] == 10  # durable before the 202
                refused = await client.post("/iot/readings", json=items, headers=AUTH)
                assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
                assert iot.accepted == 10
                await iot.flush()
                assert (await client.post("/iot/readings", json=items, headers=AUTH)).status_code == 202
        assert len(store.readings("wl-1")) == 20


def test_the_default_client_id_is_stable_per_deployment_and_unique_across_them() -> None:
    one = client_id_for("data/city.duckdb", port=8000)
    assert one == client_id_for("data/city.duckdb", port=8000)
    assert one != client_id_for("data/city.duckdb", port=8001)
    assert one != client_id_for("data/other.duckdb", port=8000)
    assert "secret" not in client_id_for("postgresql://cim:secret@db/cim", port=8000)


@pytest.mark.mqtt
async def test_two_servers_on_one_broker_keep_their_sessions(tmp_path: Path) -> None:
    """Default client ids (no CIM_MQTT_CLIENT_ID): two servers of two stores stay connected side by side."""
    (tmp_path / "mqtt").mkdir()
    broker = PrivateMosquitto(tmp_path / "mqtt")
    broker.start()
    try:
        with open_store(str(tmp_path / "a.duckdb")) as a, open_store(str(tmp_path / "b.duckdb")) as b:
            declare_sensors(a)
            declare_sensors(b)
            async with running(a, broker.url, client_id=None) as one, running(b, broker.url, client_id=None) as two:
                assert one.mqtt_status and two.mqtt_status
                assert one.mqtt_status.client_id != two.mqtt_status.client_id
                await eventually(lambda: one.mqtt_status is not None and one.mqtt_status.connects >= 1)
                await asyncio.sleep(1.0)
                assert one.mqtt_status.disconnects == 0 and two.mqtt_status.disconnects == 0
    finally:
        broker.stop()


@pytest.mark.mqtt
async def test_the_server_logs_in_with_the_urls_credentials_and_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mqtt"
    folder.mkdir()
    passwords = folder / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "cim", "s3cret-pw"], check=True)
    broker = PrivateMosquitto(folder, extra=f"allow_anonymous false\npassword_file {passwords}\n")
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true\n", ""))
    broker.start()
    try:
        with open_store(str(tmp_path / "city.duckdb")) as store:
            declare_sensors(store)
            good = f"mqtt://cim:s3cret-pw@127.0.0.1:{broker.port}"
            async with running(store, good) as iot:
                stats = iot.stats()
                assert stats["mqtt"]["connected"] and "s3cret-pw" not in str(stats)
            bad = f"mqtt://cim:wrong-pw@127.0.0.1:{broker.port}"
            refused = IotService(
                store, MqttSettings(url=bad), options=fast_options(), spool_path=tmp_path / "bad.spool.sqlite"
            )
            await refused.start()
            try:
                await eventually(lambda: refused.mqtt_status is not None and refused.mqtt_status.last_error is not None)
                stats = refused.stats()
                assert not stats["mqtt"]["connected"] and "wrong-pw" not in str(stats)
            finally:
                await refused.stop()
    finally:
        broker.stop()
    assert "s3cret-pw" not in caplog.text and "wrong-pw" not in caplog.text


@pytest.mark.mqtt
async def test_mqtt_messages_past_the_backlog_bound_are_left_unacknowledged_with_the_broker(tmp_path: Path) -> None:
    """The service takes 40, refuses the next (no PUBACK, the connection dropped), reconnects once a flush made
    room, and the broker hands the rest over: all 100 arrive, none dropped."""
    (tmp_path / "mqtt").mkdir()
    broker = PrivateMosquitto(tmp_path / "mqtt", extra="max_queued_messages 0\n")
    broker.start()
    try:
        with open_store(str(tmp_path / "city.duckdb")) as store:
            declare_sensors(store)
            async with running(store, broker.url, max_backlog=40, flush_interval=60.0) as iot:
                await publish(broker.url, [("cim/wl-1/state", f'{{"value": {i}}}') for i in range(100)])
                await eventually(lambda: iot.mqtt_status is not None and iot.mqtt_status.refusals >= 1)
                assert iot.accepted <= 40 and iot.dropped.total() == 0
                for _ in range(100):
                    await iot.flush()
                    if {r.value for r in store.readings("wl-1")} >= {float(i) for i in range(100)}:
                        break
                    await asyncio.sleep(0.1)
                assert iot.dropped.total() == 0
            assert {r.value for r in store.readings("wl-1")} >= {float(i) for i in range(100)}
    finally:
        broker.stop()


@pytest.mark.mqtt
async def test_the_server_reads_from_a_tls_broker_with_a_private_ca(tmp_path: Path) -> None:
    """``mqtts://`` with ``CIM_MQTT_CA_FILE``: the broker's certificate is checked against that CA, and readings flow
    (over paho's own socket: TLS keeps its decrypted bytes, so no BufferedSocket there)."""
    folder = tmp_path / "mqtt"
    folder.mkdir()
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cim-test-ca"]
    subprocess.run([*openssl, "-keyout", str(ca_key), "-out", str(ca)], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out",
         str(csr)],
        check=True, capture_output=True,
    )  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "1", "-extfile", str(folder / "san.ext"), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    broker = PrivateMosquitto(folder, extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    try:
        with open_store(str(tmp_path / "city.duckdb")) as store:
            declare_sensors(store)
            settings = MqttSettings(url=f"mqtts://127.0.0.1:{broker.port}", ca_file=ca)
            service = IotService(store, settings, options=fast_options(), spool_path=tmp_path / "spool.sqlite")
            await service.start()
            try:
                await eventually(lambda: service.mqtt_status is not None and service.mqtt_status.connected)
                publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="tls-pub")
                publisher.tls_set(ca_certs=str(ca))
                publisher.connect("127.0.0.1", broker.port)
                publisher.loop_start()
                for i in range(20):
                    publisher.publish("cim/wl-1/state", f'{{"value": {i}}}', qos=1).wait_for_publish(5)
                publisher.loop_stop()
                publisher.disconnect()
                await eventually(lambda: service.accepted == 20)
            finally:
                await service.stop()
            assert len(store.readings("wl-1")) == 20
    finally:
        broker.stop()
