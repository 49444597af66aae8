"""Helpers shared by the tests: raw HTTP over sockets, counting open sockets."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from fakeforum import FakeForumServer


def open_socket_count() -> int:
    """How many sockets this process has open (Linux: links in /proc/self/fd)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass  # the fd of the listing itself, closed meanwhile
    return count


def raw_exchange(
    server: FakeForumServer, payload: bytes | list[bytes], *, timeout: float = 10.0
) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        try:
            for part in [payload] if isinstance(payload, bytes) else payload:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and stopped reading; its answer is still there
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (bounded by the socket's timeout)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP response."""
    return int(response.split(b" ", 2)[1])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until condition() holds, checking as the server runs; fail after timeout."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        event.wait(0.005)
