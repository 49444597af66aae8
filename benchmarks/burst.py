"""A burst of N simultaneous GETs at 100 ms latency: fakeforum against werkzeug's threaded server.

A client in a separate process (stdlib only: a selector over raw non-blocking sockets) opens
one new connection per request, all N at once, each sending ``GET /api/subjects/<k>`` with
``Connection: close`` and reading to EOF. Three servers answer in turn, in this process:

- ``fakeforum``: ``FakeForumServer(latency="100ms")`` (its default listen backlog, 4096);
- ``werkzeug``: ``werkzeug.serving.make_server(..., threaded=True)`` with its defaults (listen
  backlog 128), serving a WSGI app that sleeps 100 ms and returns a small JSON body;
- ``werkzeug-4096``: the same, with a listen backlog of 4096.

Columns, in seconds unless said: ``wall`` is first connect → last full response as the client
saw it; ``p50``/``p99`` are per-request latencies (connect start → full response); ``>=1s``
counts requests that took a second or more; ``drops`` counts handshake packets the kernel
dropped because the listen queue was full, retries included (``ListenOverflows`` in
/proc/net/netstat, machine-wide; "-" where unavailable): a dropped SYN is retried after 1 s,
then 2 s more, then 4 s more, which is where werkzeug's seconds go (its slow requests without
drops waited for the GIL among a thousand threads). ``spread`` (first → last connect started)
and ``cli cpu`` (the client process's CPU) show whether the client kept up: with 2 cores, a
client using as much CPU as the wall time would be the bottleneck. ``srv cpu`` is this
process's CPU over the burst, i.e. the server's. ``errors`` counts failed requests by cause.

Each run prints its rows and the ratios werkzeug wall / fakeforum wall (peers measured in the
same run); the summary gives medians over ``--runs``. Targets, at N=1000: fakeforum wall
≤ 0.5 s and werkzeug (default) ≥ 4x fakeforum's wall. werkzeug's per-request log lines are
silenced (logger level WARNING) so that 1,000 lines of stderr neither clutter the output nor
slow it down. Run: ``python benchmarks/burst.py [--n 256 1000] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from _common import ClientRun, median, raise_open_file_limit, run_client, verdict
from werkzeug.serving import ThreadedWSGIServer, make_server

from fakeforum import FakeForumServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

COLUMNS = (
    ("wall", 8),
    ("p50", 8),
    ("p99", 8),
    (">=1s", 6),
    ("drops", 6),
    ("spread", 8),
    ("cli cpu", 8),
    ("srv cpu", 8),
)
LoopKind = Literal["auto", "asyncio", "uvloop"]
HOST = "127.0.0.1"
LATENCY = 0.1
TARGET_N = 1000
TARGET_WALL = 0.5
TARGET_RATIO = 4.0
FIGURES = ("wall", "p99", "slow", "drops")  # the medians the summary shows
BODY = b'{"id":1,"title":"Subject one","board":"board-1","reply_count":2}'


def slow_json_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app standing in for fakeforum: 100 ms of latency, then a small JSON body."""
    time.sleep(LATENCY)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    start_response("200 OK", headers)
    return [BODY]


class DeepBacklogWSGIServer(ThreadedWSGIServer):
    """werkzeug's threaded server with a listen backlog of 4096.

    A subclass is the only clean way: ``request_queue_size = LISTEN_QUEUE`` is evaluated when
    werkzeug defines BaseWSGIServer, so patching ``werkzeug.serving.LISTEN_QUEUE`` later
    changes nothing, and make_server() takes no backlog argument.
    """

    request_queue_size = 4096


@contextmanager
def werkzeug_server(*, deep_backlog: bool) -> Iterator[int]:
    """Serve slow_json_app on an ephemeral port; yield the port. On exit, stop serve_forever,
    close the socket and join every request thread, so the next server starts on a quiet box."""
    before = set(threading.enumerate())
    server = (
        DeepBacklogWSGIServer(HOST, 0, slow_json_app)
        if deep_backlog
        else make_server(HOST, 0, slow_json_app, threaded=True)
    )
    serving = threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True)
    serving.start()
    try:
        yield server.port
    finally:
        server.shutdown()  # returns once serve_forever has (it polls every 0.5 s)
        serving.join()
        server.server_close()
        # Request threads are daemons, which server_close() does not join; join them here.
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=10)


@contextmanager
def fakeforum_server(loop: LoopKind) -> Iterator[int]:
    """A FakeForumServer with 100 ms latency on an ephemeral port; yield the port."""
    with FakeForumServer(host=HOST, latency="100ms", loop=loop) as server:
        yield server.port


@dataclass(frozen=True)
class Burst:
    """One burst against one server, as the client measured it."""

    wall: float
    p50: float
    p99: float
    slow: int
    drops: int | None
    errors: dict[str, int]
    spread: float
    client_cpu: float
    server_cpu: float

    @classmethod
    def from_client(cls, run: ClientRun, drops: int | None) -> Burst:
        """Summarise the client's report (latencies are sorted, successful requests only)."""
        latencies: list[float] = run.data["latencies"] or [float("nan")]
        return cls(
            wall=run.data["wall"],
            p50=latencies[len(latencies) // 2],
            p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            slow=sum(latency >= 1.0 for latency in latencies),
            drops=drops,
            errors=run.data["errors"],
            spread=run.data["start_spread"],
            client_cpu=run.data["client_cpu"],
            server_cpu=run.cpu,
        )

    def row(self, name: str) -> str:
        """One line of the per-run table."""
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "0"
        return (
            f"  {name:<14}{self.wall:>8.3f}{self.p50:>8.3f}{self.p99:>8.3f}{self.slow:>6}"
            f"{'-' if self.drops is None else self.drops:>6}"
            f"{self.spread:>8.3f}{self.client_cpu:>8.3f}{self.server_cpu:>8.3f}  {errors}"
        )


HEADER = (
    f"  {'server':<14}" + "".join(f"{column:>{width}}" for column, width in COLUMNS) + "  errors"
)


def measure(server: Callable[[], AbstractContextManager[int]], n: int, timeout: float) -> Burst:
    """Start a server, send it one burst of n requests from a client process, stop it."""
    with server() as port:
        options = {"host": HOST, "port": port, "n": n, "timeout": timeout}
        overflows = listen_overflows()
        run = run_client("burst", options, timeout=timeout + 30)
        after = listen_overflows()
    drops = None if overflows is None or after is None else after - overflows
    return Burst.from_client(run, drops)


def listen_overflows() -> int | None:
    """The kernel's count of SYNs dropped on full listen queues (Linux), or None."""
    try:
        with open("/proc/net/netstat") as netstat:
            names, values = (line.split() for line in netstat if line.startswith("TcpExt:"))
        return int(dict(zip(names, values, strict=True))["ListenOverflows"])
    except (OSError, ValueError, KeyError):
        return None


def ratios_line(bursts: dict[str, Burst]) -> str:
    """The same-run ratios of werkzeug's wall times to fakeforum's."""
    base = bursts["fakeforum"].wall
    return (
        f"wall ratios: werkzeug/fakeforum {bursts['werkzeug'].wall / base:.1f}x, "
        f"werkzeug-4096/fakeforum {bursts['werkzeug-4096'].wall / base:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[256, 1000], help="burst sizes")
    parser.add_argument("--runs", type=int, default=3, help="runs; the summary takes medians")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="client-side limit per burst, seconds"
    )
    parser.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="fakeforum's loop"
    )
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    limit = raise_open_file_limit()
    print(f"open files limit {limit}; fakeforum loop={args.loop}; {args.runs} runs")

    servers: dict[str, Callable[[], AbstractContextManager[int]]] = {
        "fakeforum": lambda: fakeforum_server(args.loop),
        "werkzeug": lambda: werkzeug_server(deep_backlog=False),
        "werkzeug-4096": lambda: werkzeug_server(deep_backlog=True),
    }
    results: dict[int, list[dict[str, Burst]]] = {n: [] for n in args.n}
    for run in range(1, args.runs + 1):
        for n in args.n:
            print(f"\nrun {run}/{args.runs}, N={n} (seconds)\n{HEADER}")
            bursts: dict[str, Burst] = {}
            for name, server in servers.items():
                bursts[name] = measure(server, n, args.timeout)
                print(bursts[name].row(name))
            results[n].append(bursts)
            print("  " + ratios_line(bursts))

    print(f"\nmedians of {args.runs} runs (the ratio is the median of the per-run ratios)")
    for n, runs in results.items():
        print(f"  N={n:<12}{'wall':>8}{'p99':>8}{'>=1s':>6}{'drops':>6}  wall / fakeforum")
        for name in servers:
            figures = [median([getattr(burst[name], f) for burst in runs]) for f in FIGURES]
            ratio = median([burst[name].wall / burst["fakeforum"].wall for burst in runs])
            print(
                f"  {name:<14}{figures[0]:>8.3f}{figures[1]:>8.3f}{figures[2]:>6g}"
                f"{figures[3]:>6g}  {ratio:.1f}x"
            )
        if n == TARGET_N:
            wall = median([burst["fakeforum"].wall for burst in runs])
            ratio = median([burst["werkzeug"].wall / burst["fakeforum"].wall for burst in runs])
            print(
                f"  targets: fakeforum wall <= {TARGET_WALL} s: {wall:.3f} s, "
                f"{verdict(wall <= TARGET_WALL)}; werkzeug / fakeforum >= {TARGET_RATIO:g}x: "
                f"{ratio:.1f}x, {verdict(ratio >= TARGET_RATIO)}"
            )


if __name__ == "__main__":
    main()
