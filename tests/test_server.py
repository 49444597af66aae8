"""FakeForumServer's own promises: keep-alive, backlog, stop, limits, errors, counters."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from fakeforum import FakeForumError, FakeForumServer
from fakeforum.local import _somaxconn

from .helpers import open_socket_count, raw_exchange, read_to_close, status_of, wait_for

MakeServer = Callable[..., FakeForumServer]
GET = b"GET /api/subjects/1 HTTP/1.1\r\nHost: t\r\n\r\n"


# -- keep-alive ------------------------------------------------------------------------------


def test_a_session_sends_a_thousand_requests_on_one_connection(server: FakeForumServer) -> None:
    with requests.Session() as session:
        for k in range(1000):
            response = session.get(f"{server.url}/api/subjects/{1 + k % 100}", timeout=10)
            assert response.status_code == 200
    stats = server.stats
    assert stats.requests == 1000
    assert stats.connections_opened == 1


def test_connection_close_is_honoured(server: FakeForumServer) -> None:
    reply = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 200
    assert b"\r\nConnection: close\r\n" in reply  # and raw_exchange saw the server close


def test_http_10_closes_unless_asked_to_keep_alive(server: FakeForumServer) -> None:
    reply = raw_exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert status_of(reply) == 200
    assert b"\r\nConnection: close\r\n" in reply
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        for _ in range(2):  # the second request proves the connection stayed open
            sock.sendall(b"GET /api/subjects/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head = _read_response(sock)
            assert b"\r\nConnection: keep-alive\r\n" in head
    assert server.stats.connections_opened == 2


def test_pipelined_requests_are_answered_in_order(server: FakeForumServer) -> None:
    requests_ = (
        b"".join(f"GET /api/subjects/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in (3, 1, 2))
        + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    reply = raw_exchange(server, requests_)
    ids = [int(x) for x in __import__("re").findall(rb'\{"id":(\d+)', reply)]
    assert ids == [3, 1, 2]
    assert reply.count(b"HTTP/1.1 200 OK") == 4


def test_idle_keep_alive_connections_time_out(make_server: MakeServer) -> None:
    server = make_server(idle_timeout=0.2)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(GET)
        _read_response(sock)
        # The server closes the idle connection; recv returns b"" then (bounded by timeout=10).
        assert read_to_close(sock) == b""
    wait_for(lambda: server.stats.connections_open == 0)


# -- listening -------------------------------------------------------------------------------


def _listen_backlog(server: FakeForumServer) -> int:
    # For a listening socket Linux reports the accept queue's limit as tcpi_sacked (offset 28).
    sock = server._backend._sock  # type: ignore[attr-defined]
    assert sock is not None
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 28)[0])


def test_listen_backlog_is_4096_capped_by_the_kernel(make_server: MakeServer) -> None:
    server = make_server()
    assert server.backlog == min(4096, _somaxconn())
    assert _listen_backlog(server) == server.backlog
    small = make_server(backlog=16)
    assert _listen_backlog(small) == 16


def test_a_busy_port_is_an_error_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FakeForumError, match=f"Port {port} on 127.0.0.1 is already in use"):
            FakeForumServer(port=port).start()


def test_lifecycle_errors_are_sentences() -> None:
    server = FakeForumServer()
    with server, pytest.raises(FakeForumError, match="already running"):
        server.start()
    server.stop()  # idempotent
    with pytest.raises(FakeForumError, match="Cannot restart a FakeForumServer"):
        server.start()
    assert repr(server).endswith("stopped>")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "cluster"}, "mode='cluster' is not supported"),
        ({"idle_timeout": 0}, "idle_timeout must be a positive number"),
        ({"backlog": 0}, "backlog must be a whole number"),
        ({"latency": "50"}, "has no unit"),
        ({"loop": "trio"}, "loop='trio'"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(FakeForumError, match=message):
        FakeForumServer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_serve(loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    with FakeForumServer(loop=loop) as server:  # type: ignore[arg-type]
        assert requests.get(server.url + "/api/subjects/1", timeout=10).status_code == 200


# -- stopping --------------------------------------------------------------------------------


def test_stop_does_not_wait_for_delayed_requests_and_leaves_nothing_behind() -> None:
    sockets_before = open_socket_count()
    threads_before = set(threading.enumerate())
    server = FakeForumServer(latency="30s").start()
    waiting = 200
    clients = [socket.create_connection((server.host, server.port)) for _ in range(waiting + 20)]
    try:
        for sock in clients[:waiting]:
            sock.sendall(GET)
        for sock in clients[waiting:]:
            sock.sendall(b"GET /api/subjects/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        # The last 20 get no special treatment: they wait in latency too, like the 200.
        wait_for(lambda: server.stats.in_flight == waiting + 20)
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        # The requests wait 30 s; stopping must not wait for them (the 50 ms target is
        # measured in benchmarks/lifecycle.py, not asserted on a shared machine).
        assert took < 3.0
        for sock in clients:
            sock.settimeout(10)
            assert read_to_close(sock) == b""  # a clean close, no half answer
    finally:
        for sock in clients:
            sock.close()
    assert set(threading.enumerate()) == threads_before
    assert open_socket_count() == sockets_before


def test_stop_closes_idle_keep_alive_connections(server: FakeForumServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(GET)
        _read_response(sock)
        server.stop()
        assert read_to_close(sock) == b""


# -- errors inside the app -------------------------------------------------------------------


def test_an_app_exception_is_a_500_and_is_raised_at_stop(server: FakeForumServer) -> None:
    server.forum.subject = _broken
    response = requests.get(server.url + "/api/subjects/1", timeout=10)
    assert response.status_code == 500
    assert "ZeroDivisionError" in response.json()["message"]
    assert len(server.errors) == 1
    with pytest.raises(FakeForumError, match="raised ZeroDivisionError while serving GET /api/su"):
        server.stop()
    server.stop()  # reported once


def _broken(subject_id: int) -> None:
    raise ZeroDivisionError("deliberate")


def test_an_app_exception_is_noted_on_the_test_failure() -> None:
    with pytest.raises(KeyError) as info, FakeForumServer() as server:  # noqa: PT012
        server.forum.subject = _broken
        requests.get(server.url + "/api/subjects/1", timeout=10)
        raise KeyError("the test's own failure")
    assert "ZeroDivisionError" in "".join(getattr(info.value, "__notes__", []))


# -- limits and malformed input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", 413),
        (b"GET http://[::1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(
    server: FakeForumServer, payload: bytes, status: int
) -> None:
    reply = raw_exchange(server, payload)
    assert status_of(reply) == status
    assert b"\r\nConnection: close\r\n" in reply
    assert requests.get(server.url + "/", timeout=10).status_code == 200
    assert 500 not in server.stats.by_status


def test_a_header_dribbled_across_many_reads_is_still_bounded(server: FakeForumServer) -> None:
    parts = [b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: "] + [b"b" * 4096] * 16
    assert status_of(raw_exchange(server, parts)) == 431


def test_an_endless_header_in_one_write_is_refused_without_waiting(
    server: FakeForumServer,
) -> None:
    # No end of headers ever comes: the server must not wait for the header timeout.
    payload = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"b" * 65_536
    assert status_of(raw_exchange(server, payload, timeout=5)) == 431


def test_a_chunked_body_over_the_limit_is_413(make_server: MakeServer) -> None:
    server = make_server(max_body_size=1000)
    head = b"POST /api/subjects HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    assert status_of(raw_exchange(server, [head, chunk, chunk, b"0\r\n\r\n"])) == 413


def test_slow_headers_get_408(make_server: MakeServer) -> None:
    server = make_server(header_timeout=0.2)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost:")  # and nothing more
        assert status_of(read_to_close(sock)) == 408


def test_expect_100_continue_is_answered(server: FakeForumServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/subjects HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"{}")
        assert status_of(_read_response(sock)) == 405


# -- latency ---------------------------------------------------------------------------------


def test_route_latency_is_applied_per_route(make_server: MakeServer) -> None:
    server = make_server(latency={"/api/subjects/*/replies": "150ms"})
    with requests.Session() as session:
        slow = session.get(server.url + "/api/subjects/1/replies", timeout=10)
        session.get(server.url + "/api/subjects/1", timeout=10)
    assert slow.elapsed.total_seconds() >= 0.15
    routes = server.stats.by_route
    assert routes["/api/subjects/<int:subject_id>/replies"].p50 >= 0.15
    # The other route had no latency: measured, it is far below the injected one.
    assert (
        routes["/api/subjects/<int:subject_id>"].p50
        < routes["/api/subjects/<int:subject_id>/replies"].p50
    )


def test_set_latency_and_reset(server: FakeForumServer) -> None:
    server.set_latency("120ms")
    assert server.latency == {"*": "120ms"}
    assert requests.get(server.url + "/", timeout=10).elapsed.total_seconds() >= 0.12
    with pytest.raises(FakeForumError, match="has no unit"):
        server.set_latency("5")
    assert server.latency == {"*": "120ms"}  # unchanged by the bad call
    server.post_reply(1, "x")
    server.reset()
    assert server.latency == {}
    assert server.stats.requests == 0
    assert server.forum.last_reply_id == FakeForumServer().forum.last_reply_id


def test_bandwidth_paces_the_body(make_server: MakeServer) -> None:
    server = make_server(bandwidth="40KB/s")
    started = time.monotonic()
    response = requests.get(server.url + "/api/subjects?per_page=100", timeout=10)
    took = time.monotonic() - started
    size = len(response.content)
    assert size > 10_000
    assert response.json()["total"] == 100  # paced, not cut
    assert took >= size / 40_000 - 0.05  # one pacing tick of slack


# -- counters --------------------------------------------------------------------------------


def test_counters_are_exact_under_64_threads(server: FakeForumServer) -> None:
    threads, each = 64, 20
    barrier = threading.Barrier(threads)

    def hammer(worker: int) -> int:
        with requests.Session() as session:
            barrier.wait()
            for k in range(each):
                path = "/api/subjects/1" if k % 4 else "/api/subjects/9999"
                session.get(server.url + path, timeout=30)
        return worker

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(hammer, range(threads)))
    stats = server.stats
    assert stats.requests == threads * each
    assert stats.by_status == {200: threads * each * 3 // 4, 404: threads * each // 4}
    assert stats.in_flight == 0
    assert stats.connections_opened == threads
    assert 1 <= stats.peak_in_flight <= threads
    assert sum(r.count for r in stats.by_route.values()) == threads * each


def test_peak_in_flight_equals_a_forced_concurrency(make_server: MakeServer) -> None:
    server = make_server(latency="30s")
    n = 16
    clients = [socket.create_connection((server.host, server.port)) for _ in range(n)]
    try:
        for sock in clients:
            sock.sendall(GET)
        wait_for(lambda: server.stats.in_flight == n)
        assert server.stats.peak_in_flight == n
        server.reset_stats()
        after = server.stats
        assert (after.requests, after.in_flight, after.peak_in_flight) == (0, n, n)
    finally:
        for sock in clients:
            sock.close()


def test_stats_as_dict_is_json_ready(server: FakeForumServer) -> None:
    requests.get(server.url + "/api/subjects/1", timeout=10)
    data = server.stats.as_dict()
    assert data["by_status"] == {"200": 1}
    assert set(data) >= {
        "requests",
        "by_status",
        "faults",
        "in_flight",
        "peak_in_flight",
        "connections_opened",
        "by_route",
    }
    assert set(data["by_route"]["/api/subjects/<int:subject_id>"]) >= {"count", "p50", "p99"}


# -- conveniences ----------------------------------------------------------------------------


def test_forum_conveniences(server: FakeForumServer) -> None:
    assert server.subject_urls(2) == [
        f"{server.url}/api/subjects/1",
        f"{server.url}/api/subjects/2",
    ]
    assert len(server.subject_urls()) == 100
    before = server.reply_count(1)
    posted = server.post_replies(per_subject=2)
    assert len(posted) == 200
    assert server.reply_count(1) == before + 2
    with pytest.raises(FakeForumError, match="No subject with id 0"):
        server.reply_count(0)


def _read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
