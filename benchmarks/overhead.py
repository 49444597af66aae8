"""Server CPU per request: fakeforum against pytest-httpserver, zero latency, one client.

A client in a separate process (``http.client.HTTPConnection``, reused) sends ``--requests``
GETs for ``/api/subjects/3`` over ``--connections`` keep-alive connections (one thread each),
after a warm-up of ``--warmup`` requests per connection that is not measured. Both servers run
in threads of this process, one after the other, and serve the same 198-byte JSON body:

- ``fakeforum``: ``FakeForumServer()`` (latency 0), which keeps connections alive;
- ``pytest-httpserver``: ``HTTPServer(host="127.0.0.1", port=0)`` with the same body as a
  permanent ``expect_request`` handler. Its werkzeug dev server is single-threaded and speaks
  HTTP/1.0, so it closes the connection after every response and the client reconnects.

``cpu/req`` is this process's CPU time (user + system, every thread: the server) over the
timed window, divided by the number of requests: the cost the server adds to a test process
that runs it in a thread. Socket syscalls count in it, and so does the kernel's loopback work
done on the server's behalf. ``loop cpu/req`` is fakeforum's own figure for its event-loop
thread (``stats.cpu_time``); the two agree when nothing else in the process is busy. ``req/s``
is the request rate over the window's wall time (client and server share 2 cores, so it is
bounded by both). ``connects`` counts TCP connections the client opened in the window.

Each run prints both rows and the ratio fakeforum / pytest-httpserver of CPU per request
(target ≤ 0.5); the summary gives medians over ``--runs``. werkzeug's per-request log lines
(pytest-httpserver logs through it) are silenced, which makes pytest-httpserver cheaper, not
dearer. Run: ``python benchmarks/overhead.py [--requests 10000] [--connections 1]``.
"""

from __future__ import annotations

import argparse
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from _common import ClientRun, median, raise_open_file_limit, run_client, verdict
from pytest_httpserver import HTTPServer

from fakeforum import FakeForumServer

LoopKind = Literal["auto", "asyncio", "uvloop"]
HOST = "127.0.0.1"
PATH = "/api/subjects/3"
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Options:
    """What every measurement needs from the command line."""

    requests: int
    connections: int
    warmup: int
    timeout: float
    loop: LoopKind

    def client(self, port: int) -> dict[str, object]:
        """The keep-alive client's options against a server on ``port``."""
        return {
            "host": HOST,
            "port": port,
            "path": PATH,
            "requests": self.requests,
            "connections": self.connections,
            "warmup": self.warmup,
        }


@dataclass(frozen=True)
class Measurement:
    """One server's figures from one run."""

    cpu_per_request: float
    loop_cpu_per_request: float | None
    requests_per_second: float
    connects: int
    served: int
    errors: dict[str, int]

    @classmethod
    def from_client(cls, run: ClientRun, served: int, *, loop_cpu: bool) -> Measurement:
        """Combine the client's report, this process's CPU, and the server's own counters."""
        requests = served or 1
        return cls(
            cpu_per_request=run.cpu / requests,
            loop_cpu_per_request=run.probed / requests if loop_cpu else None,
            requests_per_second=served / run.wall,
            connects=run.data["connects"],
            served=served,
            errors=run.data["errors"],
        )

    def row(self, name: str) -> str:
        """One line of the per-run table (CPU in microseconds)."""
        loop = (
            "-" if self.loop_cpu_per_request is None else f"{self.loop_cpu_per_request * 1e6:.1f}"
        )
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "0"
        return (
            f"  {name:<19}{self.cpu_per_request * 1e6:>9.1f}{loop:>14}"
            f"{self.requests_per_second:>9.0f}{self.connects:>10}{self.served:>8}  {errors}"
        )


HEADER = (
    f"  {'server':<19}{'cpu/req':>9}{'loop cpu/req':>14}{'req/s':>9}{'connects':>10}"
    f"{'served':>8}  errors"
)


def subject_body(loop: LoopKind) -> bytes:
    """The JSON fakeforum serves for PATH, so that both servers send the very same bytes."""
    with (
        FakeForumServer(host=HOST, loop=loop) as server,
        urllib.request.urlopen(server.url + PATH) as response,
    ):
        body: bytes = response.read()
        return body


def measure_fakeforum(options: Options) -> Measurement:
    """Serve the client from a FakeForumServer; count what the server itself saw."""
    with FakeForumServer(host=HOST, loop=options.loop) as server:
        client = options.client(server.port)
        run = run_client(
            "keepalive", client, timeout=options.timeout, probe=lambda: server.cpu_time
        )
        # The warm-up is not in the timed window: take it off the server's count too.
        served = server.stats.requests - options.warmup * options.connections
    return Measurement.from_client(run, served, loop_cpu=True)


def measure_phs(options: Options, body: bytes) -> Measurement:
    """Serve the client from pytest-httpserver; its log counts the requests it answered."""
    server = HTTPServer(host=HOST, port=0)
    server.expect_request(PATH).respond_with_data(body, content_type="application/json")
    server.start()
    try:
        run = run_client("keepalive", options.client(server.port), timeout=options.timeout)
        # Re-raises, as an AssertionError, any request the handler did not match.
        server.check()
        served = len(server.log) - options.warmup * options.connections
    finally:
        server.clear()
        server.stop()
    return Measurement.from_client(run, served, loop_cpu=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="timed requests per server")
    parser.add_argument("--connections", type=int, default=1, help="client connections")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per connection")
    parser.add_argument("--runs", type=int, default=3, help="runs; the summary takes medians")
    parser.add_argument("--timeout", type=float, default=120.0, help="limit per client, seconds")
    parser.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="fakeforum's loop"
    )
    args = parser.parse_args()
    options = Options(args.requests, args.connections, args.warmup, args.timeout, args.loop)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    raise_open_file_limit()
    body = subject_body(options.loop)
    print(
        f"{options.requests} requests over {options.connections} connection(s), "
        f"{len(body)}-byte body, fakeforum loop={options.loop}; {args.runs} runs"
    )
    servers: dict[str, Callable[[], Measurement]] = {
        "fakeforum": lambda: measure_fakeforum(options),
        "pytest-httpserver": lambda: measure_phs(options, body),
    }
    ratios: list[float] = []
    results: dict[str, list[Measurement]] = {name: [] for name in servers}
    for run in range(1, args.runs + 1):
        print(f"\nrun {run}/{args.runs} (CPU in µs per request)\n{HEADER}")
        for name, measure in servers.items():
            results[name].append(measure())
            print(results[name][-1].row(name))
        ratios.append(
            results["fakeforum"][-1].cpu_per_request
            / results["pytest-httpserver"][-1].cpu_per_request
        )
        print(f"  cpu/req ratio fakeforum / pytest-httpserver: {ratios[-1]:.2f}")

    print(f"\nmedians of {args.runs} runs")
    for name, measurements in results.items():
        cpu = median([m.cpu_per_request for m in measurements]) * 1e6
        rate = median([m.requests_per_second for m in measurements])
        print(f"  {name:<19}{cpu:>7.1f} µs/request{rate:>9.0f} requests/s")
    ratio = median(ratios)
    print(
        f"  cpu/req ratio fakeforum / pytest-httpserver: {ratio:.2f} "
        f"(target <= {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)})"
    )


if __name__ == "__main__":
    main()
