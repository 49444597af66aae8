"""What the reliability tests share: raw HTTP responses, paced senders, the health check."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from fakeforum import FakeForumServer

from ..helpers import read_to_close, wait_for

NORMAL = b"GET /api/subjects/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Response:
    """One HTTP response cut out of a byte stream."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        """Whether the response says the server closes the connection after it."""
        return self.headers.get("connection", "").lower() == "close"


def parse_responses(data: bytes, *, head_only: Iterable[int] = ()) -> list[Response]:
    """Every complete response in ``data``, in order (each framed by its Content-Length).

    ``head_only`` lists the positions of answers to HEAD requests (headers, no body). Trailing
    bytes that do not make a whole response fail the call: a server must never send them.
    """
    skip_body = set(head_only)
    responses: list[Response] = []
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"an incomplete response head at the end: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if len(responses) in skip_body else int(headers.get("content-length", "0"))
        assert len(rest) >= length, f"a body cut short: {len(rest)} of {length} bytes"
        responses.append(Response(status, headers, rest[:length]))
        rest = rest[length:]
    return responses


def read_one(sock: socket.socket, *, head_only: bool = False) -> Response:
    """Read exactly one response from a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if head_only:
        length = 0
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection inside a body"
        body += chunk
    assert len(body) == length, "the server sent more than one response's worth of bytes"
    return parse_responses(head + b"\r\n\r\n" + body, head_only=[0] if head_only else [])[0]


class Dribbler:
    """Sends bytes to sockets a few at a time from a background thread, paced by Event.wait.

    Every ``interval`` seconds each socket gets its next ``step`` bytes, until every payload is
    sent, the server stops reading (the send fails), or :meth:`stop` is called. Use it as a
    context manager so that the thread always ends.
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        payload: bytes,
        *,
        step: int = 1,
        interval: float = 0.02,
    ) -> None:
        self.sockets = sockets
        self.payload = payload
        self.step = step
        self.interval = interval
        self.stopped = threading.Event()
        self.failed_sends = 0
        self.thread = threading.Thread(target=self._run, name="dribbler", daemon=True)

    def _run(self) -> None:
        live = dict.fromkeys(self.sockets, 0)
        while live and not self.stopped.is_set():
            for sock, sent in list(live.items()):
                try:
                    sock.sendall(self.payload[sent : sent + self.step])
                except OSError:  # the server answered and closed: this one is done
                    self.failed_sends += 1
                    del live[sock]
                    continue
                live[sock] = sent + self.step
                if live[sock] >= len(self.payload):
                    del live[sock]
            self.stopped.wait(self.interval)

    def __enter__(self) -> Dribbler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending and wait for the thread to end."""
        self.stopped.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the dribbler thread did not stop"


def assert_healthy(server: FakeForumServer) -> None:
    """The server still serves, nothing it received is stuck in flight, and it never
    answered 500 or raised: what every reliability test checks after its abuse."""
    __tracebackhide__ = True
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(NORMAL)
        responses = parse_responses(read_to_close(sock))
    assert [r.status for r in responses] == [200], "a normal request after the test failed"
    wait_for(lambda: server.stats.in_flight == 0)
    stats = server.stats
    assert 500 not in stats.by_status, f"the server answered 500: {stats.by_status}"
    assert stats.errors == 0
    assert not server.errors, server.errors
