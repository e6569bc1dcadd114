"""Where the MQTT broker is and who we are to it: the broker's address, credentials and TLS from the URL and the
settings; the client id of a serving process; the refusal an ingest raises when it cannot take more."""

from __future__ import annotations

import hashlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from cim.errors import InvalidInput, StoreUnavailable
from cim.iot.spool import redact
from cim.settings import MqttSettings


class Backpressure(StoreUnavailable):
    """The ingest cannot take more now (its backlog is full or its spool cannot be written): do not acknowledge."""


def client_id_for(store_url: str, *, port: int | None = None, host: str | None = None) -> str:
    """A client id unique to one serving process yet the same at each restart of it, so its persistent session
    resumes: the host name, the HTTP port and a digest of the store (``CIM_MQTT_CLIENT_ID`` overrides it).

    >>> client_id_for("data/city.duckdb", port=8000, host="ops-1")
    'cim-ops-1-8000-77e9975a'
    """
    digest = hashlib.sha256(redact(store_url).encode()).hexdigest()[:8]
    name = (host or socket.gethostname()).split(".")[0][:40]
    return f"cim-{name}-{port}-{digest}" if port is not None else f"cim-{name}-{digest}"


@dataclass(frozen=True, slots=True)
class Broker:
    """Where and how to connect: from the URL, with credentials and TLS from the settings when the URL has none."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    @classmethod
    def of(cls, url: str, settings: MqttSettings | None = None) -> Broker:
        """The broker of ``url``; a password in the URL is percent-decoded.

        >>> broker = Broker.of("mqtts://cim:p%40ss@broker")
        >>> broker.port, broker.tls, broker.password
        (8883, True, 'p@ss')
        """
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
            raise InvalidInput(
                f"MQTT URL {redact(url)!r}", "must read mqtt://[USER:PASSWORD@]HOST[:PORT] or mqtts://… (TLS)"
            )
        tls = parts.scheme in ("mqtts", "ssl")
        password = settings.password.get_secret_value() if settings and settings.password else None
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else (settings.username if settings else None),
            password=unquote(parts.password) if parts.password is not None else password,
            ca_file=str(settings.ca_file) if settings and settings.ca_file else None,
        )

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.tls:
            options["tls_context"] = ssl.create_default_context(cafile=self.ca_file)
        return options


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """(host, port) of ``mqtt://host[:port]``.

    >>> parse_mqtt_url("mqtt://127.0.0.1:1884")
    ('127.0.0.1', 1884)
    """
    broker = Broker.of(url)
    return broker.host, broker.port
