"""Shutdown under load, in both modes: stop() with 500 requests in flight and 200 idle
keep-alive connections returns at once, every client sees a clean close, and nothing is left:
no thread, no socket, no file descriptor, no child process.

The 100 ms target is measured and printed, not asserted (a shared CI machine may stall for
longer); the assertion is a wide bound that only a stop() waiting on its requests would miss.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from fakeforum import FakeForumServer
from fakeforum.server import Mode

from ..helpers import open_socket_count, wait_for
from .support import read_one

IN_FLIGHT = 500
IDLE = 200


def fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def how_it_ended(sock: socket.socket) -> str:
    """'eof' for a clean close with nothing more sent, else what happened instead."""
    sock.settimeout(10)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "still open"
    return "eof" if data == b"" else f"{len(data)} bytes"


@pytest.mark.timeout(180)
def test_stop_with_requests_in_flight_and_idle_connections(mode: Mode) -> None:
    # The first uvloop loop in a process opens libuv's process-wide signal pipe (two fds, kept
    # for the process's life): a server started and stopped first makes the counts comparable.
    FakeForumServer().start().stop()
    threads_before = set(threading.enumerate())
    fds_before = fd_count()
    sockets_before = open_socket_count()
    server = FakeForumServer(
        mode=mode,
        latency={"/api/subjects/*": "30s"},
        faults=[{"route": "/subjects/*", "kind": "hang", "p": 1.0}],
    ).start()
    child = server._backend._process if mode == "process" else None  # type: ignore[attr-defined]
    clients: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            clients.append(sock)
            sock.sendall(b"GET /api/boards HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_one(sock).status == 200  # answered; the connection stays open, idle
        for k in range(IN_FLIGHT):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            clients.append(sock)
            # Half wait in 30 s of latency, half hang until the server stops.
            path = f"/api/subjects/{1 + k % 100}" if k % 2 else f"/subjects/{1 + k % 100}"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        wait_for(lambda: server.stats.in_flight == IN_FLIGHT, timeout=60)
        stats = server.stats
        assert stats.connections_open == IN_FLIGHT + IDLE
        assert stats.faults == {"hang": IN_FLIGHT // 2}

        started = time.perf_counter()
        server.stop()
        took = time.perf_counter() - started

        endings = [how_it_ended(sock) for sock in clients]
    finally:
        for sock in clients:
            sock.close()
        server.stop()
    threads_after = set(threading.enumerate())
    fds_after, sockets_after = fd_count(), open_socket_count()
    print(
        f"\nstop [{mode}] with {IN_FLIGHT} requests in flight (latency and hang) and {IDLE} idle "
        f"keep-alive connections: {took * 1000:.1f} ms (target < 100 ms); clients saw "
        f"{ {e: endings.count(e) for e in sorted(set(endings))} }; threads {len(threads_after)} "
        f"(before {len(threads_before)}), fds {fds_after} (before {fds_before}), sockets "
        f"{sockets_after} (before {sockets_before})"
    )
    assert took < 2.0, f"stop() took {took:.2f} s with requests in flight"
    assert endings == ["eof"] * len(clients), "a client saw something other than a clean close"
    assert threads_after == threads_before
    assert fds_after == fds_before
    assert sockets_after == sockets_before
    if child is not None:
        assert child.returncode is not None, "the child process outlived stop()"
