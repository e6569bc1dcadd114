"""The parts of uvicorn's httptools protocol and of httptools that :mod:`cim.api.fastpath` builds on, checked
without a server: an upgrade that removes or changes one fails here, naming it and the pinned release, rather than
as a tile fast path that answers wrongly or not at all (tests/api/test_tiles.py checks the answers).

``TileProtocol`` subclasses ``HttpToolsProtocol``: it overrides its parser callbacks and ``data_received`` /
``send_400_response``, calls ``on_response_complete``, and reads ``url``, ``headers``, ``cycle.response_complete``,
``pipeline``, ``flow.write_paused``, ``parser``, ``transport`` and ``server_state.default_headers``; it writes status
lines from ``STATUS_LINE``.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any
from unittest import mock

import httptools
import pytest
from uvicorn import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from tests.pins import broken

MODULE = "cim/api/fastpath.py"

#: ``HttpToolsProtocol`` methods fastpath.py overrides or calls, with their parameters.
PROTOCOL_METHODS = {
    "data_received": ["self", "data"],
    "send_400_response": ["self", "msg"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
}
#: What fastpath.py reads of a connection's protocol during a request.
PROTOCOL_ATTRIBUTES = ("url", "headers", "cycle", "pipeline", "flow", "parser", "transport", "server_state")
#: What it asks uvicorn's httptools parser.
PARSER_METHODS = ("get_method", "should_upgrade", "should_keep_alive", "get_http_version")


def uvicorn_broken(what: str, why: str) -> str:
    return broken("uvicorn", MODULE, what, why)


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called: no request reaches an app here
    raise AssertionError("not called")


def protocol_in_a_request() -> HttpToolsProtocol:
    """A protocol on a fake connection, at the start of a request (as the parser leaves it for the callbacks)."""

    async def build() -> HttpToolsProtocol:
        protocol = HttpToolsProtocol(Config(_app, http="httptools"), ServerState(), {}, asyncio.get_running_loop())
        transport = mock.Mock(spec=asyncio.Transport)
        transport.get_extra_info.return_value = None
        protocol.connection_made(transport)
        protocol.on_message_begin()
        return protocol

    return asyncio.run(build())


@pytest.mark.parametrize("name", sorted(PROTOCOL_METHODS))
def test_httptools_protocol_keeps_the_methods_fastpath_overrides_or_calls(name: str) -> None:
    method = getattr(HttpToolsProtocol, name, None)
    where = f"uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.{name}"
    assert callable(method), uvicorn_broken(where, "is gone")
    parameters = list(inspect.signature(method).parameters)
    assert parameters == PROTOCOL_METHODS[name], uvicorn_broken(
        f"{where}{inspect.signature(method)}", f"no longer takes ({', '.join(PROTOCOL_METHODS[name])})"
    )


def test_httptools_protocol_keeps_the_state_fastpath_reads() -> None:
    protocol = protocol_in_a_request()
    where = "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"
    for name in PROTOCOL_ATTRIBUTES:
        assert hasattr(protocol, name), uvicorn_broken(f"{where}().{name}", "is gone")
    assert isinstance(protocol.url, bytes), uvicorn_broken(f"{where}().url", "is not bytes")
    assert isinstance(protocol.headers, list), uvicorn_broken(f"{where}().headers", "is not a list of pairs")
    assert isinstance(protocol.flow.write_paused, bool), uvicorn_broken(f"{where}().flow.write_paused", "is gone")
    assert isinstance(protocol.server_state.default_headers, list), uvicorn_broken(
        "uvicorn.server.ServerState.default_headers", "is not a list of header pairs"
    )
    for name in PARSER_METHODS:
        assert callable(getattr(protocol.parser, name, None)), uvicorn_broken(f"{where}().parser.{name}", "is gone")


def test_request_cycle_still_says_when_its_response_is_complete() -> None:
    source = inspect.getsource(RequestResponseCycle.__init__)
    assert "self.response_complete" in source, uvicorn_broken(
        "uvicorn.protocols.http.httptools_impl.RequestResponseCycle.response_complete", "is gone"
    )


def test_status_lines_and_url_parser_are_still_there() -> None:
    lines = getattr(httptools_impl, "STATUS_LINE", None)
    assert isinstance(lines, dict), uvicorn_broken("uvicorn.protocols.http.httptools_impl.STATUS_LINE", "is gone")
    for status in (200, 206, 304, 400, 404, 412, 416, 431):
        assert lines.get(status, b"").startswith(b"HTTP/1.1 %d " % status), uvicorn_broken(
            f"uvicorn.protocols.http.httptools_impl.STATUS_LINE[{status}]", "is not an HTTP/1.1 status line"
        )
    assert httptools.parse_url(b"/tiles/a%20b.glb?x=1").path == b"/tiles/a%20b.glb", broken(
        "httptools", MODULE, "httptools.parse_url", "no longer gives the path as bytes"
    )
    assert issubclass(httptools.HttpParserInvalidURLError, Exception)
