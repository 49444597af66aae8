"""How long a FakeForumServer takes to start and stop, against pytest-httpserver in one run.

Prints, as medians over ``--repeat`` cycles: construct + start + stop of an idle server (target
≤ 10 ms), and ``stop()`` with 200 requests waiting in 30 s of injected latency plus 50 idle
keep-alive connections (target < 50 ms), and the start of a process-mode server (target
< 0.5 s). pytest-httpserver's start + stop is measured in the
same run for comparison (its stop joins werkzeug's serve_forever, which polls every 0.5 s).
Run: ``python benchmarks/lifecycle.py``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable

from pytest_httpserver import HTTPServer

from fakeforum import FakeForumServer

GET = b"GET /api/subjects/1 HTTP/1.1\r\nHost: bench\r\n\r\n"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def fakeforum_cycle() -> None:
    FakeForumServer().start().stop()


def process_cycle() -> float:
    """Start of a process-mode server: until it answers; its stop is returned apart."""
    server = FakeForumServer(mode="process")
    started = time.perf_counter()
    server.start()
    took = time.perf_counter() - started
    server.stop()
    return took


def phs_cycle() -> None:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    server.stop()


def loaded_stop(waiting: int, idle: int) -> float:
    server = FakeForumServer(latency="30s").start()
    clients = [socket.create_connection((server.host, server.port)) for _ in range(waiting + idle)]
    try:
        for sock in clients[:waiting]:
            sock.sendall(GET)
        deadline = time.monotonic() + 10
        while server.stats.in_flight < waiting and time.monotonic() < deadline:
            time.sleep(0.001)
        return timed(server.stop)
    finally:
        for sock in clients:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--phs-repeat", type=int, default=5, help="PHS cycles (each ~0.5 s)")
    args = parser.parse_args()
    fakeforum_cycle()  # imports and caches warm
    idle = [timed(fakeforum_cycle) for _ in range(args.repeat)]
    loaded = [loaded_stop(200, 50) for _ in range(max(3, args.repeat // 10))]
    phs = [timed(phs_cycle) for _ in range(args.phs_repeat)]
    process = [process_cycle() for _ in range(5)]
    ms = 1000.0
    print(
        f"fakeforum construct+start+stop: median {statistics.median(idle) * ms:.2f} ms "
        f"(p90 {sorted(idle)[int(len(idle) * 0.9)] * ms:.2f} ms; target <= 10 ms)"
    )
    print(
        f"fakeforum stop with 200 delayed requests + 50 idle connections: median "
        f"{statistics.median(loaded) * ms:.2f} ms (max {max(loaded) * ms:.2f} ms; target < 50 ms)"
    )
    print(
        f"fakeforum mode='process' start (child up and serving): median "
        f"{statistics.median(process) * ms:.0f} ms (max {max(process) * ms:.0f} ms; "
        f"target < 500 ms)"
    )
    print(f"pytest-httpserver start+stop: median {statistics.median(phs) * ms:.1f} ms")
    print(
        f"ratio PHS / fakeforum start+stop: {statistics.median(phs) / statistics.median(idle):.0f}x"
    )


if __name__ == "__main__":
    main()
