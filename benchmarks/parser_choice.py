"""Why fakeforum frames HTTP/1.1 with httptools rather than h11.

Parses one typical keep-alive GET and serialises a small response, N times, with each parser;
prints microseconds per request cycle and the ratio. Run: ``python benchmarks/parser_choice.py``.
Measured here: h11 ~155-175 us, httptools ~4 us (about 40x), against a per-request budget of a
few hundred microseconds for the whole server.
"""

from __future__ import annotations

import argparse
import statistics
import time

import h11
import httptools

REQUEST = (
    b"GET /api/subjects/3/replies?since=10 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"User-Agent: python-requests/2.32\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


def h11_cycles(n: int) -> None:
    connection = h11.Connection(h11.SERVER)
    for _ in range(n):
        connection.receive_data(REQUEST)
        connection.next_event()
        connection.next_event()
        connection.send(
            h11.Response(
                status_code=200,
                headers=[("content-length", "2"), ("content-type", "application/json")],
            )
        )
        connection.send(h11.Data(data=b"{}"))
        connection.send(h11.EndOfMessage())
        connection.start_next_cycle()


class _Callbacks:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def httptools_cycles(n: int) -> None:
    callbacks = _Callbacks()
    parser = httptools.HttpRequestParser(callbacks)
    for _ in range(n):
        callbacks.headers = []
        parser.feed_data(REQUEST)
        httptools.parse_url(callbacks.url)
        b"".join(
            [
                b"HTTP/1.1 200 OK\r\n",
                b"content-length: 2\r\ncontent-type: application/json\r\n\r\n",
                b"{}",
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"h11": [], "httptools": []}
    for run in range(args.runs):
        for name, cycles in (("h11", h11_cycles), ("httptools", httptools_cycles)):
            started = time.perf_counter()
            cycles(args.cycles)
            results[name].append((time.perf_counter() - started) / args.cycles * 1e6)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.1f} us" for k, v in results.items()))
    h11_us, fast_us = (statistics.median(results[k]) for k in ("h11", "httptools"))
    print(f"median: h11 {h11_us:.1f} us, httptools {fast_us:.1f} us, ratio {h11_us / fast_us:.0f}x")


if __name__ == "__main__":
    main()
