"""Malformed and hostile HTTP over raw sockets, in both modes: a 4xx or a clean close, never a
500, a stuck request or a dead server.

tests/test_server.py covers the basic refusals in thread mode (garbage, no Host, a 20 KB
header, a huge Content-Length, a chunked body over the limit, one stalled header); this module
goes wider, runs everything against both modes, and checks after each case that the server
still serves and holds nothing in flight.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from fakeforum import FakeForumServer

from ..helpers import raw_exchange, read_to_close, wait_for
from .support import Dribbler, assert_healthy, parse_responses, read_one

HEADER_TIMEOUT = 0.3
H = b"Host: t\r\n"
CLOSE = b"Connection: close\r\n"


@pytest.fixture(scope="module", params=["thread", "process"])
def module_server(request: pytest.FixtureRequest) -> Iterator[FakeForumServer]:
    """One server per mode for the module (starting a child process is the slow part)."""
    with FakeForumServer(mode=request.param, header_timeout=HEADER_TIMEOUT) as server:
        yield server


@pytest.fixture
def server(module_server: FakeForumServer) -> FakeForumServer:
    """The module's server, reset: content, settings, counters and journal as built."""
    module_server.reset()
    return module_server


def get(path: str, *extra: bytes, version: bytes = b"1.1") -> bytes:
    return b"GET " + path.encode() + b" HTTP/" + version + b"\r\n" + H + b"".join(extra) + b"\r\n"


# Each case: the raw bytes of one connection's requests and the statuses allowed in answer.
# Where HTTP leaves a choice (HTTP/0.9, a leading empty line), the answers it allows are listed.
MALFORMED: dict[str, tuple[bytes, set[int]]] = {
    "TLS ClientHello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)), {400}),
    "binary junk": (b"\x00\x01\x02\x03\xff\r\n\r\n", {400}),
    "method only": (b"GET\r\n\r\n", {400}),
    "HTTP/0.9 request line": (b"GET /\r\n\r\n", {200, 400}),
    "token after the version": (b"GET / HTTP/1.1 x\r\n" + H + b"\r\n", {400}),
    "another protocol": (b"GET / FTP/1.1\r\n" + H + b"\r\n", {400}),
    "HTTP/9.9": (b"GET / HTTP/9.9\r\n" + H + b"\r\n", {400, 505}),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    "NUL in the method": (b"G\x00T / HTTP/1.1\r\n" + H + b"\r\n", {400}),
    "lower-case method": (b"get / HTTP/1.1\r\n" + H + b"\r\n", {400, 405}),
    "unknown method": (b"BREW / HTTP/1.1\r\n" + H + b"\r\n", {400, 405, 501}),
    "space in the target": (b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", {400}),
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: t\nConnection: close\n\n", {200, 400}),
    "header without a colon": (b"GET / HTTP/1.1\r\n" + H + b"Broken header\r\n\r\n", {400}),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", {400}),
    "obsolete line folding": (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n folded\r\n\r\n", {400}),
    "NUL in a header value": (b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", {400}),
    "non-token header name": (b"GET / HTTP/1.1\r\n" + H + b"\xff\xfe: a\r\n\r\n", {400}),
    "empty lines first": (b"\r\n\r\n" + get("/", CLOSE), {200, 400}),
    # Host
    "no Host": (b"GET / HTTP/1.1\r\n" + CLOSE + b"\r\n", {400}),
    "Host twice, two spellings": (b"GET / HTTP/1.1\r\nhost: t\r\nHOST: t\r\n\r\n", {400}),
    "Host twice, different": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    "absolute target, other host": (get("http://elsewhere.example/api/subjects/1", CLOSE), {200}),
    # 64 KB of headers, in each shape
    "64 KB request line": (get("/" + "a" * 65_536), {414, 431}),
    "64 KB header value": (get("/", b"X-Big: " + b"v" * 65_536 + b"\r\n"), {431}),
    "64 KB header name": (get("/", b"X" * 65_536 + b": v\r\n"), {431}),
    "64 KB in 2,000 headers": (
        get("/", *(b"X-%d: %s\r\n" % (i, b"v" * 24) for i in range(2_000))),
        {431},
    ),
    # Content-Length
    "negative Content-Length": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", {400}),
    "Content-Length list": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 2\r\n\r\nab", {400}),
    "two Content-Lengths": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        {400},
    ),
    "Content-Length with a sign": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +2\r\n\r\nab",
        {400},
    ),
    "Content-Length in hex": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x2\r\n\r\nab", {400}),
    "Content-Length overflowing 64 bits": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\nab",
        {400, 413},
    ),
    "Content-Length and chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        {400},
    ),
    # chunked bodies
    "chunked not last": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    "unknown transfer coding": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: foo\r\n\r\nab",
        {400, 501},
    ),
    "chunked twice": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "chunk size not hex": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        {400},
    ),
    "chunk size overflowing": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffffff\r\nab\r\n0\r\n\r\n",
        {400, 413},
    ),
    "negative chunk size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-2\r\nab\r\n0\r\n\r\n",
        {400},
    ),
    "chunk without its CRLF": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
        {400},
    ),
    "a body longer than its Content-Length": (
        # The extra bytes are the next "request": garbage, refused after the first answer.
        b"POST /api/subjects/1 HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\n{}GARBAGE\r\n\r\n",
        {405, 400},
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_requests_get_a_4xx_and_a_close(server: FakeForumServer, case: str) -> None:
    payload, allowed = MALFORMED[case]
    responses = parse_responses(raw_exchange(server, payload))  # read until the server closes
    assert responses, f"{case}: the server closed without an answer"
    assert {r.status for r in responses} <= allowed, f"{case}: {[r.status for r in responses]}"
    last = responses[-1]
    if last.status >= 400:
        assert last.closes, f"{case}: a {last.status} must say Connection: close"
        if last.headers.get("content-type") == "application/json":
            assert last.body.startswith(b'{"error"')
    assert_healthy(server)


# -- chunked bodies that are valid ---------------------------------------------------------


def test_a_valid_chunked_body_keeps_the_connection_in_step(server: FakeForumServer) -> None:
    # Chunk extensions and a trailer, then a second request on the same connection: the
    # body was consumed exactly, so the second request is read as a request.
    chunked = (
        b"POST /api/subjects/1 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    first, second = parse_responses(raw_exchange(server, chunked + get("/api/subjects/2", CLOSE)))
    assert (first.status, second.status) == (405, 200)
    assert b'"id":2' in second.body
    assert_healthy(server)


def test_a_chunked_admin_post_arrives_whole(server: FakeForumServer) -> None:
    body = b'{"body": "sent in chunks", "author": "chunky"}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
    )
    payload = (
        b"POST /_fakeforum/subjects/5/replies HTTP/1.1\r\n"
        + H
        + CLOSE
        + b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    [response] = parse_responses(raw_exchange(server, payload))
    assert response.status == 201
    subject = server.forum.subject(5)
    assert (subject.replies[-1].body, subject.replies[-1].author) == ("sent in chunks", "chunky")
    assert_healthy(server)


# -- slowloris ------------------------------------------------------------------------------


SLOW_HEADERS = b"GET /api/subjects/1 HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 2_000 + b"\r\n\r\n"


def test_slowloris_headers_get_408_and_a_close(server: FakeForumServer) -> None:
    # A byte every 20 ms keeps the connection busy, but the headers are timed from their
    # first byte: the server answers 408 after the header timeout and closes.
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        started = time.monotonic()
        with Dribbler([sock], SLOW_HEADERS, step=1, interval=0.02):
            data = read_to_close(sock)
            took = time.monotonic() - started
    [response] = parse_responses(data)
    assert response.status == 408
    assert response.closes
    assert HEADER_TIMEOUT <= took < 5.0  # wide: the sweep runs every header_timeout / 4
    assert_healthy(server)


def test_many_slowloris_connections_do_not_starve_normal_clients(
    server: FakeForumServer,
) -> None:
    slow = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(64)]
    try:
        with Dribbler(slow, SLOW_HEADERS, step=1, interval=0.01):
            # Meanwhile ordinary requests on one keep-alive connection are answered at once.
            with socket.create_connection((server.host, server.port), timeout=10) as sock:
                for k in range(50):
                    sock.sendall(get(f"/api/subjects/{k + 1}"))
                    response = read_one(sock)
                    assert response.status == 200
                    assert f'"id":{k + 1},'.encode() in response.body
            answers = [parse_responses(read_to_close(s)) for s in slow]
    finally:
        for sock in slow:
            sock.close()
    assert [[r.status for r in a] for a in answers] == [[408]] * len(slow)
    assert server.stats.by_status.get(408) == len(slow)
    assert_healthy(server)


def test_a_header_dribbled_past_64_kb_is_refused_by_size(server: FakeForumServer) -> None:
    payload = get("/", b"X-Big: " + b"v" * 65_536 + b"\r\n")
    # 2 KB a tick: the size limit (16 KiB, nine ticks in) must stop it, not the timeout.
    with (
        socket.create_connection((server.host, server.port), timeout=10) as sock,
        Dribbler([sock], payload, step=2048, interval=0.001),
    ):
        [response] = parse_responses(read_to_close(sock))
    assert response.status == 431
    assert_healthy(server)


# -- the client goes away early -------------------------------------------------------------


def _reset_close(sock: socket.socket) -> None:
    """Close with a TCP reset, as a killed client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /api/sub",
        b"GET /api/subjects/1 HTTP/1.1\r\nHost: t\r\nX-Half: ",
        b"POST /api/subjects/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789",
        b"POST /api/subjects/1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
    ids=["request line", "headers", "body", "chunked body"],
)
@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_leaving_mid_request_leaves_nothing_behind(
    server: FakeForumServer, partial: bytes, how: str
) -> None:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(get("/api/subjects/2") + partial)  # one whole request first, then a part
    assert read_one(sock).status == 200
    if how == "reset":
        _reset_close(sock)
    else:
        sock.close()
    wait_for(lambda: server.stats.connections_open == 0)
    assert server.stats.requests == 1  # the part never counts as a request
    assert [e.status for e in server.journal] == [200]
    assert_healthy(server)


@pytest.mark.parametrize("how", ["close", "reset", "half-close"])
def test_a_client_leaving_while_its_request_waits(server: FakeForumServer, how: str) -> None:
    server.set_latency({"/api/subjects/3": "30s"})
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(get("/api/subjects/3"))
    wait_for(lambda: server.stats.in_flight == 1)
    if how == "reset":
        _reset_close(sock)
    elif how == "close":
        sock.close()
    else:
        # A half-close: the server may still answer; this server drops the request. Either
        # way the client sees a clean end, and nothing stays in flight.
        sock.shutdown(socket.SHUT_WR)
        data = read_to_close(sock)
        sock.close()
        assert data == b"" or parse_responses(data)[0].status == 200
    wait_for(lambda: server.stats.in_flight == 0)
    [entry] = server.journal
    assert entry.path == "/api/subjects/3"
    assert entry.status is None  # left flight unanswered, and journaled so
    server.set_latency(None)
    assert_healthy(server)


def test_a_client_leaving_mid_response(server: FakeForumServer) -> None:
    # A paced 20 KB body: the client reads the head, then goes away with the rest unread.
    server.fail_next("/api/subjects", kind="slow_body", bandwidth="2KB/s")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(get("/api/subjects?per_page=100"))
    first = sock.recv(100)
    assert first.startswith(b"HTTP/1.1 200 OK")
    _reset_close(sock)
    wait_for(lambda: server.stats.in_flight == 0)
    [entry] = server.journal
    assert entry.fault == "slow_body"
    assert_healthy(server)


# -- pipelining ---------------------------------------------------------------------------


def test_a_hundred_pipelined_requests_are_answered_in_order(server: FakeForumServer) -> None:
    # More than the server queues (32): it must stop reading, answer, and read on.
    ids = [1 + (k * 37) % 100 for k in range(100)]
    payload = b"".join(get(f"/api/subjects/{i}") for i in ids[:-1])
    payload += get(f"/api/subjects/{ids[-1]}", CLOSE)
    responses = parse_responses(raw_exchange(server, payload))
    assert [r.status for r in responses] == [200] * 100
    got = [int(re.match(rb'\{"id":(\d+)', r.body).group(1)) for r in responses]  # type: ignore[union-attr]
    assert got == ids
    assert_healthy(server)


def test_pipelined_requests_keep_their_order_across_different_latencies(
    server: FakeForumServer,
) -> None:
    # The first waits longest: answering in arrival order of readiness would reorder them.
    server.set_latency({"/api/subjects/1": "150ms", "/api/subjects/2": "50ms", "*": "0"})
    payload = get("/api/subjects/1") + get("/api/subjects/2") + get("/api/subjects/3", CLOSE)
    responses = parse_responses(raw_exchange(server, payload))
    assert [re.match(rb'\{"id":(\d+)', r.body).group(1) for r in responses] == [  # type: ignore[union-attr]
        b"1",
        b"2",
        b"3",
    ]
    assert_healthy(server)


def test_pipelined_head_and_get_are_framed_apart(server: FakeForumServer) -> None:
    payload = b"HEAD /api/subjects/1 HTTP/1.1\r\n" + H + b"\r\n" + get("/api/subjects/1", CLOSE)
    head, full = parse_responses(raw_exchange(server, payload), head_only=[0])
    assert head.body == b""
    assert head.headers["content-length"] == str(len(full.body))
    assert_healthy(server)


def test_a_malformed_request_in_a_pipeline(server: FakeForumServer) -> None:
    good = get("/api/subjects/1")
    payload = good * 3 + b"NOT HTTP AT ALL\r\n\r\n" + good * 2
    responses = parse_responses(raw_exchange(server, payload))
    assert [r.status for r in responses] == [200, 200, 200, 400]
    assert responses[-1].closes
    assert server.stats.requests == 4
    assert_healthy(server)


@pytest.mark.parametrize(
    "first",
    [
        get("/api/subjects/1", CLOSE),
        get("/api/subjects/1", version=b"1.0"),
    ],
    ids=["Connection: close", "HTTP/1.0"],
)
def test_requests_pipelined_after_the_last_one_leave_flight(
    server: FakeForumServer, first: bytes
) -> None:
    # The server answers the first and closes; the two behind it were received and counted,
    # so they must leave flight too (unanswered), or in_flight stays up for ever.
    payload = first + get("/api/subjects/2") + get("/api/subjects/3")
    responses = parse_responses(raw_exchange(server, payload))
    assert [r.status for r in responses] == [200]
    assert responses[0].closes
    wait_for(lambda: server.stats.in_flight == 0)
    stats = server.stats
    assert stats.requests == len(server.journal)
    assert [e.status for e in server.journal][:1] == [200]
    assert_healthy(server)


@pytest.mark.parametrize("kind", ["truncate", "reset", "empty"])
def test_requests_pipelined_behind_a_closing_fault_leave_flight(
    server: FakeForumServer, kind: str
) -> None:
    server.fail_next("/api/subjects/1", kind=kind)
    payload = get("/api/subjects/1") + get("/api/subjects/2") + get("/api/subjects/3")
    raw_exchange(server, payload)
    wait_for(lambda: server.stats.in_flight == 0)
    assert server.stats.requests == len(server.journal) == 3
    assert [e.status for e in server.journal][1:] == [None, None]
    assert_healthy(server)


def test_a_declined_upgrade_keeps_the_connection_http_1_1(server: FakeForumServer) -> None:
    # h2c as curl --http2 sends it: the server does not switch protocols, so the requests
    # pipelined behind it are still HTTP/1.1 and must be answered.
    upgrade = get(
        "/api/subjects/1",
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n",
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    )
    payload = upgrade + get("/api/subjects/2") + get("/api/subjects/3", CLOSE)
    responses = parse_responses(raw_exchange(server, payload, timeout=5))
    assert [r.status for r in responses] == [200, 200, 200]
    assert_healthy(server)


def test_a_client_that_pipelines_without_reading(server: FakeForumServer) -> None:
    # 300 requests sent before reading a byte: the server must stop reading while answers
    # pile up, and read on as the client drains them; nothing lost, nothing reordered.
    count = 300
    payload = b"".join(get(f"/api/subjects/{1 + k % 100}") for k in range(count - 1))
    payload += get("/api/subjects/100", CLOSE)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,), name="pipeliner")
        sender.start()
        wait_for(lambda: server.stats.requests >= 32)
        data = read_to_close(sock)
        sender.join(timeout=10)
    responses = parse_responses(data)
    assert len(responses) == count
    assert {r.status for r in responses} == {200}
    assert_healthy(server)


# -- HTTP/1.0 -------------------------------------------------------------------------------


def test_http_10_without_keep_alive_is_answered_and_closed(server: FakeForumServer) -> None:
    [response] = parse_responses(raw_exchange(server, b"GET /api/subjects/4 HTTP/1.0\r\n\r\n"))
    assert response.status == 200
    assert response.closes
    assert b'"id":4' in response.body
    # A body on HTTP/1.0, framed by its Content-Length, to the admin API.
    body = b'{"body": "one-oh"}'
    post = b"POST /_fakeforum/subjects/4/replies HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    [posted] = parse_responses(raw_exchange(server, post))
    assert posted.status == 201
    assert posted.closes
    assert server.forum.subject(4).replies[-1].body == "one-oh"
    assert_healthy(server)


# -- all of it at once ----------------------------------------------------------------------


def test_malformed_traffic_under_load_never_disturbs_good_traffic(
    server: FakeForumServer,
) -> None:
    """Every malformed case three times over from 8 threads, 32 slowloris connections and
    a keep-alive client, at once: each abuser gets its 4xx, the good client every answer."""
    cases = list(MALFORMED.items()) * 3
    problems: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(9)

    def abuse(worker: int) -> None:
        start.wait()
        for name, (payload, allowed) in cases[worker::8]:
            statuses = [r.status for r in parse_responses(raw_exchange(server, payload))]
            if not statuses or not set(statuses) <= allowed:
                with lock:
                    problems.append(f"{name}: {statuses}")

    reference = {k: read_one_of(server, f"/api/subjects/{k}") for k in range(1, 11)}
    abusers = [threading.Thread(target=abuse, args=(w,), name=f"abuser-{w}") for w in range(8)]
    slow = [socket.create_connection((server.host, server.port), timeout=30) for _ in range(32)]
    try:
        with Dribbler(slow, SLOW_HEADERS, interval=0.01):
            for thread in abusers:
                thread.start()
            start.wait()
            with socket.create_connection((server.host, server.port), timeout=30) as sock:
                for k in range(300):
                    sock.sendall(get(f"/api/subjects/{1 + k % 10}"))
                    response = read_one(sock)
                    assert (response.status, response.body) == (200, reference[1 + k % 10])
            for thread in abusers:
                thread.join(timeout=60)
            slow_answers = [parse_responses(read_to_close(s)) for s in slow]
    finally:
        for sock in slow:
            sock.close()
    assert not any(t.is_alive() for t in abusers)
    assert not problems, problems
    assert [[r.status for r in a] for a in slow_answers] == [[408]] * len(slow)
    assert_healthy(server)


def read_one_of(server: FakeForumServer, path: str) -> bytes:
    """The body of one normal GET."""
    [response] = parse_responses(raw_exchange(server, get(path, CLOSE)))
    assert response.status == 200
    return response.body
