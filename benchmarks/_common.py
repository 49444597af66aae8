"""What burst.py and overhead.py share: the client process, its handshake, and small helpers.

Run as a script, this module *is* the client: ``python _common.py burst '{"n": 256, ...}'``. It
imports the standard library only, so it starts fast and stays light, and it runs in its own
process so that its CPU never counts as the server's. The handshake keeps interpreter start-up
and warm-up out of every measurement: the client prepares, prints ``ready``, waits for ``go`` on
stdin, does the timed work, and prints one line of JSON.
"""

from __future__ import annotations

import errno
import http.client
import json
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- both processes -----------------------------------------------------------------------


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (a burst needs a descriptor per
    connection on each side); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all of its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median(values: Sequence[float]) -> float:
    """The median (statistics.median, typed for floats)."""
    return float(statistics.median(values))


def verdict(met: bool) -> str:
    """How a figure reads against its target."""
    return "met" if met else "MISSED"


# -- the benchmark side -------------------------------------------------------------------


@dataclass(frozen=True)
class ClientRun:
    """What one client process reported, and what this process measured around it.

    ``wall`` and ``cpu`` span from sending ``go`` to reading the result: ``cpu`` is this
    process's CPU in that window, i.e. the servers running in its threads. ``probed`` is how
    much the ``probe`` given to run_client grew over the same window.
    """

    data: dict[str, Any]
    wall: float
    cpu: float
    probed: float


def run_client(
    kind: str,
    options: dict[str, Any],
    *,
    timeout: float,
    probe: Callable[[], float] = lambda: 0.0,
) -> ClientRun:
    """Start a client process of ``kind`` ("burst" or "keepalive"), let it run, return its report.

    ``probe`` is read just outside both ends of the timed window (so its own cost is not in
    ``cpu``). The client is killed after ``timeout`` seconds whatever it is doing, so a stuck
    server can slow a benchmark down but never hang it.
    """
    command = [sys.executable, str(Path(__file__).resolve()), kind, json.dumps(options)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Both are pipes, as asked for on the line above.
    assert process.stdin is not None
    assert process.stdout is not None
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        ready = process.stdout.readline()
        probe_started = probe()
        started_cpu, started = cpu_seconds(), time.perf_counter()
        if ready == "ready\n":
            process.stdin.write("go\n")
            process.stdin.flush()
        result = process.stdout.readline()
        wall, cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
        probed = probe() - probe_started
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if not result:
        raise RuntimeError(
            f"The {kind} client exited with code {process.returncode} without a result "
            f"(killed after {timeout:g} s if it took that long); its stderr is above. "
            f"Run it alone with: {' '.join(command[:3])} '{command[3]}' (then type go)."
        )
    return ClientRun(data=json.loads(result), wall=wall, cpu=cpu, probed=probed)


# -- the client side ----------------------------------------------------------------------


def _handshake() -> None:
    print("ready", flush=True)
    if sys.stdin.readline() != "go\n":
        raise SystemExit("The benchmark went away before saying go.")


def _status_of(response: bytes) -> int:
    # b"HTTP/1.1 200 OK\r\n..." -> 200; anything unreadable counts as status 0.
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _burst(host: str, port: int, n: int, timeout: float) -> dict[str, Any]:
    # One selector and plain non-blocking sockets: a few microseconds of client CPU per event,
    # about half what asyncio's sock_* calls cost, so the client stays out of the way.
    selector = selectors.DefaultSelector()
    starts, ends = [0.0] * n, [-1.0] * n
    socks: list[socket.socket] = []
    responses = [bytearray() for _ in range(n)]
    errors: Counter[str] = Counter()

    def fail(k: int, cause: str) -> None:
        selector.unregister(socks[k])
        socks[k].close()
        errors[cause] += 1

    # Every connection is started before any response is read: one burst, as the server sees it.
    for k in range(n):
        starts[k] = time.perf_counter()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(sock)
        sock.setblocking(False)
        sock.connect_ex((host, port))  # EINPROGRESS; the outcome shows as writability
        selector.register(sock, selectors.EVENT_WRITE, k)
    deadline = time.perf_counter() + timeout
    while selector.get_map() and time.perf_counter() < deadline:
        for key, events in selector.select(deadline - time.perf_counter()):
            k = key.data
            sock = socks[k]
            try:
                if events & selectors.EVENT_WRITE:
                    if code := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        fail(k, errno.errorcode.get(code, str(code)))
                        continue
                    sock.send(
                        f"GET /api/subjects/{k % 100 + 1} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "Connection: close\r\n\r\n".encode()
                    )
                    selector.modify(sock, selectors.EVENT_READ, k)
                    continue
                chunk = sock.recv(65536)
            except OSError as error:
                fail(k, type(error).__name__)
                continue
            if chunk:
                responses[k] += chunk
                continue
            ends[k] = time.perf_counter()
            selector.unregister(sock)
            sock.close()
            if (status := _status_of(bytes(responses[k]))) != 200:
                ends[k] = -1.0
                errors[f"status {status}"] += 1
    for key in list(selector.get_map().values()):
        fail(key.data, "timeout")
    first = starts[0]
    return {
        "latencies": sorted(
            end - start for start, end in zip(starts, ends, strict=True) if end >= 0
        ),
        "wall": max(ends) - first if max(ends) >= 0 else float("nan"),
        "start_spread": starts[-1] - first,
        "errors": dict(errors),
    }


def _client_burst(options: dict[str, Any]) -> dict[str, Any]:
    _handshake()
    started_cpu = cpu_seconds()
    report = _burst(options["host"], options["port"], options["n"], options["timeout"])
    return {**report, "client_cpu": cpu_seconds() - started_cpu}


class _CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts the TCP connections it opens (http.client reconnects by
    itself on the next request after a response that said ``Connection: close``)."""

    connects = 0

    def connect(self) -> None:
        self.connects += 1
        super().connect()


def _client_keepalive(options: dict[str, Any]) -> dict[str, Any]:
    host, port, path = options["host"], options["port"], options["path"]
    connections = [
        _CountingConnection(host, port, timeout=10) for _ in range(options["connections"])
    ]
    # One counter per connection: each is only ever touched by its own thread.
    errors: list[Counter[str]] = [Counter() for _ in connections]

    def send(connection: _CountingConnection, count: int, errors: Counter[str]) -> None:
        for _ in range(count):
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                errors[type(error).__name__] += 1
                connection.close()
                continue
            if response.status != 200:
                errors[f"status {response.status}"] += 1

    for connection in connections:
        send(connection, options["warmup"], Counter())
        connection.connects = 0
    share, extra = divmod(options["requests"], len(connections))
    threads = [
        threading.Thread(target=send, args=(connection, share + (i < extra), errors[i]))
        for i, connection in enumerate(connections)
    ]
    _handshake()
    started_cpu = cpu_seconds()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "connects": sum(connection.connects for connection in connections),
        "errors": dict(sum(errors, Counter())),
        "client_cpu": cpu_seconds() - started_cpu,
    }


def _client_main(argv: list[str]) -> None:
    kind, options = argv[1], json.loads(argv[2])
    raise_open_file_limit()
    clients = {"burst": _client_burst, "keepalive": _client_keepalive}
    print(json.dumps(clients[kind](options)), flush=True)


if __name__ == "__main__":
    _client_main(sys.argv)
