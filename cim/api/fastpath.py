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

The protocol also refuses a request head (request line and headers) over :data:`MAX_HEAD_BYTES` with 431 before
the app sees it: httptools has no limit of its own (a 16 MB header was read, kept and handed to the app).

This builds on uvicorn's ``HttpToolsProtocol`` internals (its parser callbacks, ``cycle``, ``pipeline``, ``flow``),
so pyproject.toml bounds uvicorn's version, and tests/api/test_tiles.py runs the tile tests against ``cim serve``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import httptools
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cim.api.tiles import answer

PREFIX = b"/tiles/"
#: The largest request head (request line and headers) read; browsers send a few KB, nginx allows 32 KB.
MAX_HEAD_BYTES = 64 * 1024


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit (the 431 is already written)."""


def _refusal(status: int, what: str, why: str) -> bytes:
    body = json.dumps({"code": "RequestTooLarge", "description": f"{what} — {why}", "what": what, "why": why})
    return b"".join(
        (
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body.encode(),
        )
    )


def tile_protocol(app: FastAPI, *, max_head_bytes: int = MAX_HEAD_BYTES) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, answering GET and HEAD of cached, unchanged tiles of ``app`` itself and
    refusing a request head over ``max_head_bytes`` with 431."""
    default_headers: list[tuple[bytes, bytes]] = []
    default_lines = b""

    class TileProtocol(HttpToolsProtocol):
        _answered = False  # this request was answered here: the parser's later callbacks have nothing to do
        _in_head = True  # reading a request line or headers (the parser holds what is not yet a whole header)
        _head_bytes = 0  # bytes received since the head began (an upper bound of the head's size)
        _header_bytes = 0  # bytes of the request line and whole headers parsed so far
        _refused = False  # a 431 was sent: the connection is closing, nothing more is read

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._tiles = app.state.resources.tiles  # connections come after the app's startup

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # still in the head after all of this: a header of its own over the limit is being sent
            if self._in_head and self._head_bytes > max_head_bytes and not self._refused:
                self._refuse()

        def send_400_response(self, msg: str) -> None:
            if not self._refused:  # a parser error raised by _refuse: the 431 is the answer
                super().send_400_response(msg)

        def _refuse(self) -> None:
            self._refused = True
            self.transport.write(
                _refusal(431, "request head", f"is over {max_head_bytes:,} bytes (request line and headers)")
            )
            self.transport.close()

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > max_head_bytes:
                self._refuse()
                raise _HeadTooLarge

        def on_message_begin(self) -> None:
            self._answered = False
            self._in_head = True
            self._header_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
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
            self._in_head, self._head_bytes = True, 0  # a next request on this connection starts its head
            if not self._answered:
                super().on_message_complete()

    return TileProtocol
