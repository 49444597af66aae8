"""The soak test's client: a separate process keeping many keep-alive connections busy.

``test_soak.py`` runs it as ``python soak_client.py OPTIONS_JSON``. It reads one command a line
on stdin — ``{"start": R, "count": N, "timeout": S}`` — sends requests R to R+N-1 and answers
with one JSON line: the outcome of each request, in order. Request ``r`` asks for
``urls[r % len(urls)]`` with ``?r=<r>`` appended, so that the server's journal names it and
the test can check every request against the entry the server wrote for it. EOF on stdin ends
it, after one last line with its totals.

One selector over plain non-blocking sockets, standard library only (see benchmarks/_common.py):
a few microseconds of CPU per request, in a process of its own, so the client is neither the
bottleneck nor sharing a GIL with a server running in the test's process.

Outcomes: ``ok`` (200 and the body byte-for-byte the reference one), ``s<code>`` (another
status, complete), ``reset`` (connection reset before any byte of the answer), ``empty``
(closed before any byte), ``truncate`` (closed inside the declared body). Anything else names
what went wrong and is always a failure: ``body`` (a 200 whose body is not the reference),
``429-without-retry-after``, ``partial-head``, ``reset-after-data``, ``extra-bytes``,
``no-length``, ``timeout``, ``connect:<errno>``, ``send:<error>``, ``recv:<error>``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import resource
import selectors
import socket
import sys
import time
from collections import deque
from typing import Any

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def digest(body: bytes) -> str:
    """The fingerprint a body is compared by (the test computes its references the same way)."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


class _Connection:
    """One keep-alive connection and the request it is carrying, if any."""

    __slots__ = (
        "body_start",
        "buf",
        "close_after",
        "connecting",
        "length",
        "out",
        "registered",
        "retry_after",
        "rid",
        "sent_at",
        "sock",
        "status",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.registered = False
        self.connecting = False
        self.rid = -1
        self.out = b""
        self.buf = bytearray()
        self.body_start = -1
        self.status = 0
        self.length = -1
        self.retry_after = False
        self.close_after = False
        self.sent_at = 0.0


class SoakClient:
    """Sends rounds of requests over a fixed number of keep-alive connections."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.address = (str(options["host"]), int(options["port"]))
        self.host_header = f"{self.address[0]}:{self.address[1]}"
        self.urls: list[str] = list(options["urls"])
        self.expected: list[str] = list(options["expected"])
        self.connections = [_Connection() for _ in range(int(options["connections"]))]
        self.selector = selectors.DefaultSelector()
        self.connects = 0
        self.latencies: list[float] = []

    # -- one round ------------------------------------------------------------------------

    def run_round(self, start: int, count: int, timeout: float) -> list[str]:
        """Send requests start..start+count-1, as many at once as there are connections."""
        outcomes = [""] * count
        todo = deque(range(start, start + count))
        busy = 0
        for connection in self.connections:
            if not todo:
                break
            self._begin(connection, todo.popleft())
            busy += 1
        deadline = time.monotonic() + timeout
        while busy:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, events in self.selector.select(remaining):
                connection = key.data
                outcome = self._step(connection, events)
                if outcome is None:
                    continue
                outcomes[connection.rid - start] = outcome
                self.latencies.append(time.monotonic() - connection.sent_at)
                connection.rid = -1
                if todo:
                    self._begin(connection, todo.popleft())
                else:
                    busy -= 1
                    self._unregister(connection)
        for connection in self.connections:
            if connection.rid >= 0:  # still waiting when the round's time ran out
                outcomes[connection.rid - start] = "timeout"
                connection.rid = -1
                self._close(connection)
        return outcomes

    def _begin(self, connection: _Connection, rid: int) -> None:
        url = self.urls[rid % len(self.urls)]
        connection.rid = rid
        connection.out = f"GET {url}?r={rid} HTTP/1.1\r\nHost: {self.host_header}\r\n\r\n".encode()
        connection.buf = bytearray()
        connection.body_start = -1
        connection.length = -1
        connection.retry_after = False
        connection.close_after = False
        connection.sent_at = time.monotonic()
        if connection.sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.sock = sock
            connection.connecting = True
            self.connects += 1
            sock.connect_ex(self.address)  # EINPROGRESS; the outcome shows as writability
            self._register(connection, WRITE)
            return
        self._register(connection, WRITE)

    def _step(self, connection: _Connection, events: int) -> str | None:
        """Advance one connection on a selector event; the request's outcome once it ends."""
        sock = connection.sock
        assert sock is not None
        if events & WRITE:
            if connection.connecting:
                connection.connecting = False
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    return self._fail(connection, f"connect:{errno.errorcode.get(code, code)}")
            try:
                sent = sock.send(connection.out)
            except OSError as error:
                return self._fail(connection, f"send:{type(error).__name__}")
            connection.out = connection.out[sent:]
            if not connection.out:
                self._register(connection, READ)
            return None
        try:
            chunk = sock.recv(262_144)
        except ConnectionResetError:
            return self._fail(connection, "reset-after-data" if connection.buf else "reset")
        except OSError as error:
            return self._fail(connection, f"recv:{type(error).__name__}")
        if not chunk:
            if not connection.buf:
                return self._fail(connection, "empty")
            return self._fail(
                connection, "truncate" if connection.body_start >= 0 else "partial-head"
            )
        buf = connection.buf
        buf += chunk
        if connection.body_start < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self._parse_head(connection, bytes(buf[:end]))
            connection.body_start = end + 4
            if connection.length < 0:
                return self._fail(connection, "no-length")
        received = len(buf) - connection.body_start
        if received < connection.length:
            return None
        if received > connection.length:
            return self._fail(connection, "extra-bytes")
        outcome = self._judge(connection)
        if connection.close_after:
            self._close(connection)
        return outcome

    def _parse_head(self, connection: _Connection, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        connection.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                connection.length = int(value.strip())
            elif name == b"retry-after":
                connection.retry_after = True
            elif name == b"connection" and value.strip().lower() == b"close":
                connection.close_after = True

    def _judge(self, connection: _Connection) -> str:
        status = connection.status
        if status == 200:
            body = bytes(connection.buf[connection.body_start :])
            expected = self.expected[connection.rid % len(self.urls)]
            return "ok" if digest(body) == expected else "body"
        if status == 429 and not connection.retry_after:
            return "429-without-retry-after"
        return f"s{status}"

    def _fail(self, connection: _Connection, outcome: str) -> str:
        self._close(connection)
        return outcome

    # -- selector bookkeeping -------------------------------------------------------------

    def _register(self, connection: _Connection, events: int) -> None:
        assert connection.sock is not None
        if connection.registered:
            self.selector.modify(connection.sock, events, connection)
        else:
            self.selector.register(connection.sock, events, connection)
            connection.registered = True

    def _unregister(self, connection: _Connection) -> None:
        if connection.registered and connection.sock is not None:
            self.selector.unregister(connection.sock)
        connection.registered = False

    def _close(self, connection: _Connection) -> None:
        self._unregister(connection)
        if connection.sock is not None:
            connection.sock.close()
            connection.sock = None
        connection.connecting = False

    def close(self) -> None:
        """Close every connection."""
        for connection in self.connections:
            self._close(connection)
        self.selector.close()

    def totals(self) -> dict[str, Any]:
        """Connections opened, latency percentiles (seconds) and this process's CPU seconds."""
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "connects": self.connects,
            "requests": len(ordered),
            "p50": pick(0.5),
            "p99": pick(0.99),
            "max": ordered[-1] if ordered else 0.0,
            "cpu": usage.ru_utime + usage.ru_stime,
        }


def main(argv: list[str]) -> int:
    """Serve the test's commands until stdin closes."""
    options = json.loads(argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # one descriptor per connection; the default soft limit may be low
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    client = SoakClient(options)
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            outcomes = client.run_round(command["start"], command["count"], command["timeout"])
            print(json.dumps({"outcomes": outcomes}), flush=True)
    finally:
        client.close()
    print(json.dumps(client.totals()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
