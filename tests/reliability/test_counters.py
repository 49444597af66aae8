"""The counters are exact under concurrency, in both modes.

64 threads released together by a barrier hammer the server through their own keep-alive
connections, with scripted faults among their requests; every count the server keeps must
equal what the clients themselves saw, request for request. Then a known concurrency is forced
(N requests held in flight by a hang fault, sent at once through a barrier) and the server's
peak must be exactly N.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from fakeforum import FakeForumServer
from fakeforum.server import Mode

from ..helpers import wait_for
from .support import assert_healthy

THREADS = 64
EACH = 60
PATHS = [
    "/api/subjects/1",  # 200
    "/api/subjects/2/replies",  # 200
    "/subjects/3",  # 200, HTML
    "/api/subjects/999",  # 404
    "/api/subjects?page=x",  # 400
    "/api/subjects/7",  # scripted: 503 a hundred times, then 200
    "/api/subjects/8",  # scripted: 429 a hundred times, then 200
    "/api/subjects/9",  # scripted: reset fifty times, then 200
]


class CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts the TCP connections it opens."""

    connects = 0

    def connect(self) -> None:
        self.connects += 1
        super().connect()


@pytest.fixture
def hammered(mode: Mode) -> Iterator[FakeForumServer]:
    """A server in each mode with a journal big enough to keep every request of the test."""
    with FakeForumServer(mode=mode, journal_size=THREADS * EACH + 1000) as server:
        yield server


def test_counters_equal_what_64_threads_saw(hammered: FakeForumServer) -> None:
    server = hammered
    server.set_latency("5ms")
    server.fail_next("/api/subjects/7", kind="status", status=503, times=100)
    server.fail_next("/api/subjects/8", kind="429", times=100)
    server.fail_next("/api/subjects/9", kind="reset", times=50)
    start = threading.Barrier(THREADS)
    seen: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    connects = [0] * THREADS

    def hammer(worker: int) -> None:
        connection = CountingConnection(server.host, server.port, timeout=60)
        try:
            start.wait()
            for k in range(EACH):
                try:
                    connection.request("GET", PATHS[(worker + k) % len(PATHS)])
                    response = connection.getresponse()
                    response.read()
                except ConnectionError as error:
                    seen[worker][type(error).__name__] += 1
                    connection.close()  # the next request reconnects
                    continue
                seen[worker][str(response.status)] += 1
        finally:
            connection.close()
            connects[worker] = connection.connects

    snapshots: list[int] = []
    torn: list[str] = []
    finished = threading.Event()

    def read_stats() -> None:
        # Every snapshot is whole: each request received is in flight or done on a route.
        # (A snapshot a millisecond: reading flat out would starve the server of the GIL.)
        while not finished.wait(0.001):
            stats = server.stats
            done = sum(r.count for r in stats.by_route.values())
            if stats.requests != stats.in_flight + done or stats.peak_in_flight < stats.in_flight:
                torn.append(f"{stats}")
            snapshots.append(stats.in_flight)

    threads = [
        threading.Thread(target=hammer, args=(w,), name=f"hammer-{w}") for w in range(THREADS)
    ]
    reader = threading.Thread(target=read_stats, name="stats-reader")
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    finished.set()
    reader.join(timeout=30)
    assert not any(thread.is_alive() for thread in [*threads, reader])
    assert not torn, f"{len(torn)} of {len(snapshots)} snapshots were torn, e.g. {torn[0]}"

    total = sum(seen, Counter())
    sent = THREADS * EACH
    assert sum(total.values()) == sent
    wait_for(lambda: server.stats.in_flight == 0)
    stats = server.stats
    print(
        f"\ncounters [{server.mode}]: {sent} requests from {THREADS} threads; clients saw "
        f"{dict(sorted(total.items()))}; server: requests {stats.requests}, by_status "
        f"{dict(sorted(stats.by_status.items()))}, faults {dict(stats.faults)}, connections "
        f"{stats.connections_opened} (clients opened {sum(connects)}), peak in flight "
        f"{stats.peak_in_flight}; {len(snapshots)} snapshots read meanwhile, all whole"
    )
    assert stats.requests == sent
    assert stats.by_status == {int(k): v for k, v in total.items() if k.isdigit()}
    assert stats.faults == {"status": 100, "429": 100, "reset": 50}
    assert total["ConnectionResetError"] == 50
    assert stats.connections_opened == sum(connects)
    assert stats.connections_open == 0
    # The 5 ms of latency makes the threads' requests overlap at the server.
    assert 2 <= stats.peak_in_flight <= THREADS
    assert max(snapshots) <= stats.peak_in_flight
    assert stats.errors == 0
    assert sum(r.count for r in stats.by_route.values()) == sent
    journal = server.journal
    assert len(journal) == sent
    assert Counter(e.fault for e in journal if e.fault) == Counter(stats.faults)
    assert_healthy(server)


@pytest.mark.parametrize("n", [1, 64, 300])
def test_peak_in_flight_is_exactly_the_forced_concurrency(
    hammered: FakeForumServer, n: int
) -> None:
    server = hammered
    server.set_faults([{"route": "/api/subjects/42", "kind": "hang", "p": 1.0}])
    sockets = [socket.create_connection((server.host, server.port), timeout=30) for _ in range(n)]
    start = threading.Barrier(n)

    def send(sock: socket.socket) -> None:
        start.wait()
        sock.sendall(b"GET /api/subjects/42 HTTP/1.1\r\nHost: t\r\n\r\n")

    senders = [threading.Thread(target=send, args=(s,), name="sender") for s in sockets]
    try:
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=30)
        wait_for(lambda: server.stats.in_flight == n)
        stats = server.stats
        assert (stats.in_flight, stats.peak_in_flight, stats.requests) == (n, n, n)
        assert stats.faults == {"hang": n}
        # A reset of the counters keeps what is true now: n in flight, so the peak is n.
        server.reset_stats()
        after = server.stats
        assert (after.requests, after.in_flight, after.peak_in_flight) == (0, n, n)
        # A normal request on top: n + 1 at once at most, and it is answered.
        server.set_faults(None)
        assert_healthy_with_peak(server, n)
    finally:
        for sock in sockets:
            sock.close()
    wait_for(lambda: server.stats.in_flight == 0)
    assert server.stats.peak_in_flight in (n, n + 1)
    journal = [e for e in server.journal if e.path == "/api/subjects/42"]
    assert len(journal) == n
    assert {(e.fault, e.status) for e in journal} == {("hang", None)}
    server.set_faults(None)


def assert_healthy_with_peak(server: FakeForumServer, n: int) -> None:
    """A normal request is answered while n hang; the peak counts it with them."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/subjects/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert server.stats.peak_in_flight == n + 1
