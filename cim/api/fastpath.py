"""The HTTP protocol ``cim serve`` and ``cim demo`` give uvicorn (on uvloop): uvicorn's httptools protocol, with
cached tiles answered in the protocol itself, before any ASGI.

Why: through FastAPI the ``/tiles`` route reached 4–8% of nginx's GET throughput on the same files, and a raw ASGI
middleware answering cached tiles in front of FastAPI 25–45% (uvicorn's task and ASGI messages per request cost
more than the answer); here a cached tile costs a ``stat`` and one write: 50–90% (bench/api_bench.py --tiles-only).

The answer is the route's (:func:`cim.api.tiles.answer`, with the headers prepared when the file was read). A request
goes the normal way to the app when the file is not cached for that exact path or changed on disk (the route checks
the path and reads it), for any other method, behind a pipelined request still being answered, while the client is
not reading (write buffer full), and when it has an ``Origin`` header (CORS is the app's middleware's job).
A tile answered here is not written to the access log: with uvicorn's access-log line per tile the server did a
third of the requests (64 KB glb: 13k against 30–42k a second). Refused paths and first reads are still logged.

This builds on uvicorn's ``HttpToolsProtocol`` internals (its parser callbacks, ``cycle``, ``pipeline``, ``flow``),
so pyproject.toml bounds uvicorn's version, and tests/api/test_tiles.py runs the tile tests against ``cim serve``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httptools
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cim.api.tiles import answer

PREFIX = b"/tiles/"


def tile_protocol(app: FastAPI) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, answering GET and HEAD of cached, unchanged tiles of ``app`` itself."""
    default_headers: list[tuple[bytes, bytes]] = []
    default_lines = b""

    class TileProtocol(HttpToolsProtocol):
        _answered = False  # this request was answered here: the parser's later callbacks have nothing to do

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._tiles = app.state.resources.tiles  # connections come after the app's startup

        def on_message_begin(self) -> None:
            self._answered = False
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            if (
                self.url.startswith(PREFIX)
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
                and not self.flow.write_paused
                and self._answer()
            ):
                return
            super().on_headers_complete()

        def _answer(self) -> bool:
            method = self.parser.get_method()
            if method not in (b"GET", b"HEAD") or self.parser.should_upgrade():
                return False
            for name, _ in self.headers:
                if name == b"origin":
                    return False
            try:
                path = httptools.parse_url(self.url).path.decode("ascii")
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
                return False
            if "%" in path:
                path = urllib.parse.unquote(path)  # as uvicorn decodes it for the app
            tile = self._tiles.fresh(path[len(PREFIX) :])
            if tile is None:
                return False
            reply = answer(tile, method.decode("ascii"), self.headers)
            keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() != "1.0"
            head = b"".join(
                (
                    STATUS_LINE[reply.status],
                    self._default_lines(),
                    reply.lines,
                    b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
                )
            )
            self.transport.writelines((head, reply.body))  # one writev where the loop has it (uvloop)
            self._answered = True
            if not keep_alive:
                self.transport.close()
            self.on_response_complete()  # what a finished cycle calls: count, keep-alive timer
            return True

        def _default_lines(self) -> bytes:
            """uvicorn's own headers (date, server) as lines; it replaces the list when the date changes."""
            nonlocal default_headers, default_lines
            if self.server_state.default_headers is not default_headers:
                default_headers = self.server_state.default_headers
                default_lines = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
            return default_lines

        def on_body(self, body: bytes) -> None:
            if not self._answered:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._answered:
                super().on_message_complete()

    return TileProtocol
