"""The private parts of paho-mqtt and aiomqtt that :mod:`cim.iot.mqtt` builds on (:class:`IngestClient`,
:class:`BufferedSocket`), checked without a broker: an upgrade that removes or changes one fails here, naming it and
the pinned release, rather than as a slow or lossy ingest.

paho's ``Client`` (``IngestClient._client``): the methods replaced (``_create_socket``, ``_packet_read``,
``_handle_publish``) or called (``_packet_handle``, ``_send_command_with_mid``), and the attributes read or set
(``_in_packet`` with its keys, ``_sock``, ``_protocol``, ``_manual_ack``, ``_msgtime_mutex``,
``_last_bytes_received``). aiomqtt's ``Client``: ``_client`` (its paho client), ``_on_message`` (the callback paho
calls, overridden) and its reader callback asking the socket's ``pending()``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.exception import MalformedPacket

from cim.iot.mqtt import IngestClient, MqttStatus
from tests.pins import broken

MODULE = "cim/iot/mqtt.py"

#: paho ``Client`` methods mqtt.py replaces or calls, with their parameters.
PAHO_METHODS = {
    "_create_socket": ["self"],
    "_packet_read": ["self"],
    "_handle_publish": ["self"],
    "_packet_handle": ["self"],
    "_send_command_with_mid": ["self", "command", "mid", "dup"],
}
#: paho ``Client`` attributes mqtt.py reads or sets.
PAHO_ATTRIBUTES = ("_in_packet", "_sock", "_protocol", "_manual_ack", "_msgtime_mutex", "_last_bytes_received")
#: The keys of paho's packet record, which ``cim.iot.mqtt._in_packet`` writes whole.
IN_PACKET_KEYS = {
    "command",
    "have_remaining",
    "remaining_count",
    "remaining_mult",
    "remaining_length",
    "packet",
    "to_process",
    "pos",
}


def paho_broken(what: str, why: str) -> str:
    return broken("paho-mqtt", MODULE, what, why)


def aiomqtt_broken(what: str, why: str) -> str:
    return broken("aiomqtt", MODULE, what, why)


@pytest.mark.parametrize("name", sorted(PAHO_METHODS))
def test_paho_client_keeps_the_private_methods_mqtt_replaces_or_calls(name: str) -> None:
    method = getattr(paho.Client, name, None)
    assert callable(method), paho_broken(f"paho.mqtt.client.Client.{name}", "is gone")
    parameters = list(inspect.signature(method).parameters)
    assert parameters == PAHO_METHODS[name], paho_broken(
        f"paho.mqtt.client.Client.{name}{inspect.signature(method)}",
        f"no longer takes ({', '.join(PAHO_METHODS[name])})",
    )


def test_paho_client_keeps_the_private_attributes_mqtt_reads_and_sets() -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    for name in PAHO_ATTRIBUTES:
        assert hasattr(client, name), paho_broken(f"paho.mqtt.client.Client().{name}", "is gone")
    keys = set(client._in_packet)
    assert keys == IN_PACKET_KEYS, paho_broken(
        "paho.mqtt.client.Client()._in_packet", f"has keys {sorted(keys)}, not {sorted(IN_PACKET_KEYS)}"
    )
    assert isinstance(client._manual_ack, bool), paho_broken("paho.mqtt.client.Client()._manual_ack", "is no bool")
    with client._msgtime_mutex:  # a lock mqtt.py takes around _last_bytes_received
        assert isinstance(client._last_bytes_received, float), paho_broken(
            "paho.mqtt.client.Client()._last_bytes_received", "is no float (paho.time_func())"
        )


def test_paho_publish_handler_still_honours_manual_ack() -> None:
    """``IngestClient._refuse`` sets ``_manual_ack`` so that paho's own PUBLISH path acknowledges nothing more."""
    source = inspect.getsource(paho.Client._handle_publish)
    assert "self._manual_ack" in source, paho_broken(
        "paho.mqtt.client.Client._handle_publish", "no longer checks self._manual_ack before acknowledging"
    )


def test_paho_keeps_the_public_names_mqtt_uses_with_them() -> None:
    expected: dict[str, Any] = {"PUBLISH": 0x30, "PUBACK": 0x40, "MQTTv5": 5}
    for name, value in expected.items():
        assert getattr(paho, name, None) == value, paho_broken(f"paho.mqtt.client.{name}", f"is not {value}")
    assert callable(getattr(paho, "time_func", None)), paho_broken("paho.mqtt.client.time_func", "is gone")
    for code in ("MQTT_ERR_SUCCESS", "MQTT_ERR_PROTOCOL"):
        assert hasattr(paho.MQTTErrorCode, code), paho_broken(f"paho.mqtt.client.MQTTErrorCode.{code}", "is gone")
    assert issubclass(MalformedPacket, Exception)


def test_aiomqtt_client_holds_paho_and_lets_the_subclass_take_its_callbacks() -> None:
    async def build() -> IngestClient:
        return IngestClient("127.0.0.1", on_message=lambda topic, payload: None, status=MqttStatus("", "", ""))

    client = asyncio.run(build())
    protocol = getattr(client, "_client", None)
    assert isinstance(protocol, paho.Client), aiomqtt_broken("aiomqtt.Client._client", "is not a paho client")
    assert getattr(protocol.on_message, "__func__", None) is IngestClient._on_message, aiomqtt_broken(
        "aiomqtt.Client._on_message", "is no longer the on_message callback it gives paho"
    )
    for name in ("_create_socket", "_packet_read", "_handle_publish"):  # replaced on paho's client
        assert name in vars(protocol), paho_broken(
            f"paho.mqtt.client.Client.{name}", "could not be replaced on the instance"
        )


def test_aiomqtt_reader_keeps_reading_while_the_socket_has_bytes_pending() -> None:
    """:class:`BufferedSocket` relies on this to parse a whole buffered read in one reader callback."""
    source = inspect.getsource(aiomqtt.Client._on_socket_open)
    assert ".pending()" in source, aiomqtt_broken(
        "aiomqtt.Client._on_socket_open", "no longer calls loop_read again while the socket's pending() is not zero"
    )
