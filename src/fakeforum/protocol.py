"""HTTP/1.1 over asyncio: one protocol object per connection, httptools for the framing.

Everything here runs on the server's event-loop thread. A connection answers its requests in
order (pipelining included). Each request waits its injected latency as a loop timer, then
either suffers its injected fault or is answered by the WSGI app, called inline; the body is
paced when a bandwidth is set.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_to_bytes

import httptools

from .app import ROUTE_KEY
from .core import ADMIN_PREFIX, Core, ServerError
from .faults import Fault

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["Connection"]

SERVER_HEADER = "fakeforum"
MALFORMED_ROUTE = "(malformed)"
_NO_BODY_STATUS = frozenset({204, 304})
# Pipelined requests beyond this many waiting stop the reading until the queue drains.
_MAX_QUEUED = 32
# After rejecting a request, discard what the client still sends for at most this long.
_LINGER = 2.0
# Reads are parsed in slices of at most this many bytes (see data_received).
_FEED_SLICE = 4096
# A paced body is written in slices this many seconds apart.
_PACE_TICK = 0.02
_LINGER_RESET = struct.pack("ii", 1, 0)

Answer = tuple[str, list[tuple[str, str]], bytes]


class _Request:
    __slots__ = (
        "admin",
        "body",
        "connection",
        "delay",
        "error",
        "fault",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query",
        "received",
        "url",
        "version",
        "wall_received",
    )

    def __init__(self, connection: int) -> None:
        self.connection = connection
        self.received = time.monotonic()
        self.wall_received = time.time()
        self.url = b""
        self.path = "/"
        self.query = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.method = "GET"
        self.version = "1.1"
        self.keep_alive = False
        self.error: tuple[int, str] | None = None
        self.admin = False
        self.delay = 0.0
        self.fault: Fault | None = None


class _Reject(Exception):
    """Raised from a parser callback to stop parsing; the status and reason ride along."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, honours keep-alive."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.id = core.next_connection_id
        core.next_connection_id += 1
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.queue: deque[_Request] = deque()
        self.parsing: _Request | None = None  # the request whose bytes are arriving
        self.in_headers = False
        self.header_bytes = 0
        self.body_bytes = 0
        self.serving: _Request | None = None  # the request waiting for or getting its answer
        self.timer: asyncio.TimerHandle | None = None
        self.last_activity = time.monotonic()
        self.closed = False
        self.reading_paused = False
        self.writing_paused = False
        self.rejected = False
        self.counted = False

    # -- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small responses must not wait for Nagle's algorithm behind the client's ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        self.core.connections.add(self)
        self.counted = False  # counted as opened at its first forum request

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        # Requests received but never answered leave flight unanswered.
        for request in [self.serving, *self.queue]:
            if request is not None and not request.admin:
                self.core.record(request, self._route(request), None)
        self.serving = None
        self.queue.clear()
        self.core.connections.discard(self)
        if self.counted:
            self.core.counters.connection_closed()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.rejected:
            return  # after a malformed request nothing on this connection can be trusted
        self.last_activity = time.monotonic()
        # httptools buffers an unfinished header whole and says nothing until it ends, so the
        # bytes of a header still arriving are counted here, a slice at a time: a request
        # whose headers exceed the limit is refused within one slice of it, however the
        # bytes were split into reads.
        for start in range(0, len(data), _FEED_SLICE):
            piece = data[start : start + _FEED_SLICE] if len(data) > _FEED_SLICE else data
            continuing = self.in_headers
            if not self._feed(piece):
                break
            if continuing and self.in_headers:
                self.header_bytes += len(piece)
                if self.header_bytes > self.core.limits.max_header_size:
                    self._reject(431, "The request's headers are larger than the server accepts.")
                    break
        self._pump()

    def _feed(self, data: bytes) -> bool:
        """Parse bytes; False once the connection can take no more of them."""
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                if isinstance(cause, _Reject):
                    self._reject(cause.status, cause.reason)
                else:
                    self._reject(400, f"Malformed request: {exc}.")
                return False
            except httptools.HttpParserUpgrade as exc:
                # An Upgrade (h2c, websocket) is never taken up: the request is answered
                # normally, without a 101, so the connection stays HTTP/1.1 (RFC 9110, 7.8)
                # and the bytes after the request are the next requests. httptools stops at
                # the upgrade point, ready to go on; feed it the rest.
                offset = int(exc.args[0])
                data = data[offset:]
                if data and offset:
                    continue
            except httptools.HttpParserError as exc:
                self._reject(400, f"Malformed request: {exc}.")
                return False
            return True

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = _Request(self.id)
        self.in_headers = True
        self.header_bytes = 0
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.headers.append((name, value))
        self._count_header(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        request = self.parsing
        assert request is not None
        self.in_headers = False
        request.method = self.parser.get_method().decode("ascii", "replace")
        request.version = self.parser.get_http_version()
        request.keep_alive = bool(self.parser.should_keep_alive())
        hosts = [v for n, v in request.headers if n.lower() == b"host"]
        if len(hosts) > 1 or (not hosts and request.version == "1.1"):
            raise _Reject(400, "An HTTP/1.1 request needs exactly one Host header.")
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"content-length":
                if not value.strip().isdigit():
                    raise _Reject(400, "The Content-Length header is not a number.")
                if int(value) > self.core.limits.max_body_size:
                    raise _Reject(413, "The request body is larger than the server accepts.")
            elif lower == b"expect" and value.lower() == b"100-continue" and self.transport:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        assert self.parsing is not None
        self.body_bytes += len(body)
        if self.body_bytes > self.core.limits.max_body_size:
            raise _Reject(413, "The request body is larger than the server accepts.")
        self.parsing.body.append(body)

    def on_message_complete(self) -> None:
        request = self.parsing
        assert request is not None
        try:
            url = httptools.parse_url(request.url)
        except httptools.HttpParserInvalidURLError:
            raise _Reject(400, "The request target is not a valid URL path.") from None
        request.path = unquote_to_bytes(url.path or b"/").decode("latin-1")
        request.query = (url.query or b"").decode("latin-1")
        request.admin = self.core.admin_app is not None and (
            request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/")
        )
        self.parsing = None
        self.queue.append(request)
        if not request.admin:  # the dashboard's polling must not show in what it shows
            self._count_request()
        if len(self.queue) >= _MAX_QUEUED and self.transport and not self.reading_paused:
            self._stop_reading()

    def _count_request(self) -> None:
        if not self.counted:
            # A connection counts once it carries a forum request: the admin API's own
            # connections (process mode, the dashboard) must not show in connections_opened.
            self.counted = True
            self.core.counters.connection_opened()
        self.core.counters.request_received()

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > self.core.limits.max_header_size:
            raise _Reject(431, "The request's headers are larger than the server accepts.")

    # -- answering ------------------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        """Queue an error answer behind the requests already received, then close."""
        request = self.parsing or _Request(self.id)
        self.parsing = None
        self.in_headers = False
        request.error = (status, reason)
        request.keep_alive = False
        request.admin = False
        self.rejected = True
        self.queue.append(request)
        self._count_request()

    def _stop_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _pump(self) -> None:
        """Start answering the next request, unless one is being answered already."""
        while self.queue and self.serving is None and not self.closed and not self.writing_paused:
            request = self.queue.popleft()
            self.serving = request
            if self.reading_paused and len(self.queue) < _MAX_QUEUED // 4 and not self.rejected:
                self.reading_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            if not request.error and not request.admin:
                request.delay, request.fault = self.core.plan(request.path)
                if request.delay > 0:
                    loop = asyncio.get_running_loop()
                    self.timer = loop.call_later(request.delay, self._answer_later)
                    return
            self._answer(request)

    def _answer_later(self) -> None:
        self.timer = None
        if self.serving is not None:
            self._answer(self.serving)
            self._pump()

    def _answer(self, request: _Request) -> None:
        transport = self.transport
        assert transport is not None
        fault = request.fault
        kind = fault.kind if fault is not None else None
        if kind == "hang":
            return  # in flight until the client gives up or the server stops
        if kind in ("reset", "empty"):
            self._drop(request, reset=kind == "reset")
            return
        if request.error:
            route = MALFORMED_ROUTE
            status, headers, body = _plain_error(*request.error)
        elif fault is not None and kind in ("status", "429"):
            route = self._route(request)
            status, headers, body = _fault_answer(fault, request)
        else:
            app = self.core.admin_app if request.admin else self.core.app
            assert app is not None  # admin requests exist only with an admin app
            status, headers, body, route = self._call_app(app, request)
        status_code = int(status[:3])
        if request.method == "HEAD":
            body = b""  # the headers, Content-Length included, as for GET; never a body
        keep_alive = request.keep_alive and kind != "truncate"
        head = self._head(request, status, status_code, headers, body, keep_alive)
        if kind == "truncate":
            # The declared Content-Length stays; half the body arrives; the connection closes.
            transport.write(head + body[: len(body) // 2])
            self._finish(request, route, status_code, keep_alive=False)
            return
        rate = fault.bandwidth if fault is not None and kind == "slow_body" else None
        if rate is None and not request.admin:
            rate = self.core.schedule.bandwidth
        if rate is not None and body:
            transport.write(head)
            self._pace(memoryview(body), rate, request, route, status_code, keep_alive)
            return
        transport.write(head + body)
        self._finish(request, route, status_code, keep_alive)

    def _head(
        self,
        request: _Request,
        status: str,
        status_code: int,
        headers: list[tuple[str, str]],
        body: bytes,
        keep_alive: bool,
    ) -> bytes:
        head = [f"HTTP/1.1 {status}\r\n"]
        has_length = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                has_length = True
            elif lower == "connection":
                continue  # the server alone decides whether the connection stays open
            head.append(f"{name}: {value}\r\n")
        if not has_length and status_code not in _NO_BODY_STATUS and status_code >= 200:
            head.append(f"Content-Length: {len(body)}\r\n")
        head.append(f"Date: {self.core.date()}\r\nServer: {SERVER_HEADER}\r\n")
        if not keep_alive:
            head.append("Connection: close\r\n")
        elif request.version == "1.0":
            head.append("Connection: keep-alive\r\n")
        head.append("\r\n")
        return "".join(head).encode("latin-1")

    def _pace(
        self,
        rest: memoryview,
        rate: float,
        request: _Request,
        route: str,
        status: int,
        keep_alive: bool,
    ) -> None:
        """Write the body a slice per tick, so that it arrives at ``rate`` bytes a second."""
        self.timer = None
        if self.closed or self.transport is None:
            return
        size = max(1, int(rate * _PACE_TICK))
        self.transport.write(bytes(rest[:size]))
        rest = rest[size:]
        if rest:
            self.timer = asyncio.get_running_loop().call_later(
                _PACE_TICK, self._pace, rest, rate, request, route, status, keep_alive
            )
            return
        self._finish(request, route, status, keep_alive)
        self._pump()

    def _finish(self, request: _Request, route: str, status: int, keep_alive: bool) -> None:
        self.serving = None
        self.last_activity = time.monotonic()
        if not request.admin:
            self.core.record(request, route, status)
        transport = self.transport
        if keep_alive or transport is None:
            return
        self._drop_queued()
        if self.rejected and transport.can_write_eof():
            # Lingering close, as nginx does: a client still sending its oversized request
            # would turn an immediate close into a reset that destroys the error response.
            # Half-close, discard what still arrives, close when the client does or later.
            transport.write_eof()
            if self.reading_paused:
                self.reading_paused = False
                transport.resume_reading()
            self.timer = asyncio.get_running_loop().call_later(_LINGER, transport.close)
        else:
            transport.close()

    def _drop(self, request: _Request, *, reset: bool) -> None:
        """End the connection with no response: a reset (RST) or a plain close (FIN)."""
        self.serving = None
        self.core.record(request, self._route(request), None)
        self._drop_queued()
        transport = self.transport
        assert transport is not None
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        else:
            transport.close()

    def _drop_queued(self) -> None:
        """The connection closes after the answer being sent: requests pipelined behind it
        were received and counted, and will never be answered, so they leave flight now."""
        for request in self.queue:
            if not request.admin:
                self.core.record(request, self._route(request), None)
        self.queue.clear()

    def _route(self, request: _Request) -> str:
        if request.error:
            return MALFORMED_ROUTE
        return self.core.route_for(request.path, request.method)

    def _call_app(
        self, app: WSGIApplication, request: _Request
    ) -> tuple[str, list[tuple[str, str]], bytes, str]:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append

        environ = self._environ(request)
        try:
            result = app(environ, start_response)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("The WSGI app returned without calling start_response.")
        except Exception as exc:
            self.core.counters.error()
            self.core.errors.append(
                ServerError(
                    request.method, request.url.decode("latin-1"), exc, traceback.format_exc()
                )
            )
            reason = (
                f"The fakeforum app raised {type(exc).__name__}: {exc}. This is a bug in the "
                f"server, not in your client; it is re-raised when the server stops."
            )
            return (*_plain_error(500, reason), str(environ.get(ROUTE_KEY, MALFORMED_ROUTE)))
        body = b"".join(written) + b"".join(chunks)
        return started[0], started[1], body, str(environ.get(ROUTE_KEY, "(other)"))

    def _environ(self, request: _Request) -> dict[str, Any]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query,
            "SERVER_NAME": self.core.host,
            "SERVER_PORT": str(self.core.port),
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "REMOTE_ADDR": self.peer[0],
            "REMOTE_PORT": str(self.peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b"".join(request.body)),
            # The body is whole and de-chunked: without this, werkzeug reads a chunked body
            # (no Content-Length) as empty.
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "fakeforum.connection_id": self.id,
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper()
            value = raw_value.decode("latin-1")
            if "_" in name:
                continue  # as nginx does: HTTP_X_A would be ambiguous between X-A and X_A
            key = name.replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    # -- closing --------------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Close when idle too long; answer 408 when headers dribble in too slowly."""
        limits = self.core.limits
        if self.closed or self.serving is not None or self.queue:
            return
        if self.in_headers and self.parsing is not None:
            # Timed from the request's first byte: a client dribbling a byte a second is slow.
            if now - self.parsing.received > limits.header_timeout:
                self._reject(408, "The request's headers took too long to arrive.")
                self._pump()
        elif now - self.last_activity > limits.idle_timeout and self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Close now, for the server's stop: pending answers are dropped."""
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, discarding anything not yet sent."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _plain_error(status: int, reason: str) -> Answer:
    """An error the server answers itself, before or instead of the app, as JSON."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps({"error": phrase, "status": status, "message": reason}).encode()
    return f"{status} {phrase}", [("Content-Type", "application/json")], body


def _fault_answer(fault: Fault, request: _Request) -> Answer:
    if fault.kind == "429":
        status, headers, body = _plain_error(
            429, f"Injected fault: too many requests; retry after {fault.retry_after} s."
        )
        return status, [*headers, ("Retry-After", str(fault.retry_after))], body
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Injected Fault"
    body = json.dumps(
        {
            "error": phrase,
            "status": fault.status,
            "message": f"Injected fault: status {fault.status} on {request.path}.",
        }
    ).encode()
    return f"{fault.status} {phrase}", [("Content-Type", "application/json")], body
