"""Counters of what the clients really did, exact under load.

The server updates them from its one event-loop thread; a lock makes every snapshot taken from
another thread consistent (a request is never half-counted).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counters", "RouteStats", "Stats"]

# Measured latencies kept per route for percentiles: the most recent ones, so a long manual
# session cannot grow the server's memory.
SAMPLES_PER_ROUTE = 10_000


@dataclass(frozen=True)
class RouteStats:
    """Requests answered on one route and their measured latency (seconds, received → sent).

    Percentiles are over the last 10,000 requests of the route.
    """

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, float]:
        """The fields as a plain dict (latencies in seconds)."""
        return {
            "count": self.count,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


@dataclass(frozen=True)
class Stats:
    """A snapshot of a server's counters.

    ``requests`` counts requests received; ``by_status`` counts responses sent, by status code;
    ``faults`` counts injected faults by kind; ``in_flight`` is how many requests are received
    and not yet answered now, ``peak_in_flight`` the most there ever were at once;
    ``connections_opened`` counts TCP connections accepted (keep-alive reuse keeps it low) and
    ``connections_open`` how many are open now; ``by_route`` maps each route pattern (such as
    ``/api/subjects/<int:subject_id>``) to its :class:`RouteStats`; ``errors`` counts exceptions
    the app raised; ``cpu_time`` is the CPU seconds the server's event loop has used since it
    started (not zeroed by ``reset_stats``).
    """

    requests: int = 0
    by_status: Mapping[int, int] = field(default_factory=dict)
    faults: Mapping[str, int] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    connections_opened: int = 0
    connections_open: int = 0
    by_route: Mapping[str, RouteStats] = field(default_factory=dict)
    errors: int = 0
    cpu_time: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-ready data (status codes become strings, as JSON keys must)."""
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "faults": dict(sorted(self.faults.items())),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "connections_opened": self.connections_opened,
            "connections_open": self.connections_open,
            "by_route": {k: v.as_dict() for k, v in sorted(self.by_route.items())},
            "errors": self.errors,
            "cpu_time": self.cpu_time,
        }


class _Route:
    __slots__ = ("count", "samples", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.samples: deque[float] = deque(maxlen=SAMPLES_PER_ROUTE)


class Counters:
    """The live, mutable counters behind :class:`Stats` snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero everything but what is true right now (requests in flight, connections open)."""
        with self._lock:
            self._requests = 0
            self._by_status: dict[int, int] = {}
            self._faults: dict[str, int] = {}
            self._in_flight = getattr(self, "_in_flight", 0)
            self._peak = self._in_flight
            self._opened = 0
            self._open = getattr(self, "_open", 0)
            self._routes: dict[str, _Route] = {}
            self._errors = 0

    def connection_opened(self) -> None:
        with self._lock:
            self._opened += 1
            self._open += 1

    def connection_closed(self) -> None:
        with self._lock:
            self._open -= 1

    def request_received(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            if self._in_flight > self._peak:
                self._peak = self._in_flight

    def request_done(self, route: str, status: int | None, seconds: float) -> None:
        """A request left flight: answered with ``status``, or dropped (None) by a fault."""
        with self._lock:
            self._in_flight -= 1
            if status is not None:
                self._by_status[status] = self._by_status.get(status, 0) + 1
            entry = self._routes.get(route)
            if entry is None:
                entry = self._routes[route] = _Route()
            entry.count += 1
            entry.total += seconds
            entry.samples.append(seconds)

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    def snapshot(self) -> Stats:
        """A consistent, immutable copy of the counters."""
        with self._lock:
            routes = {k: (v.count, v.total, list(v.samples)) for k, v in self._routes.items()}
            stats = Stats(
                requests=self._requests,
                by_status=dict(self._by_status),
                faults=dict(self._faults),
                in_flight=self._in_flight,
                peak_in_flight=self._peak,
                connections_opened=self._opened,
                connections_open=self._open,
                errors=self._errors,
            )
        # Sorting happens outside the lock so a snapshot never stalls the event loop.
        by_route = {
            name: route_stats(samples, count, total)
            for name, (count, total, samples) in routes.items()
        }
        return Stats(**{**stats.__dict__, "by_route": by_route})


def route_stats(
    samples: list[float], count: int | None = None, total: float | None = None
) -> RouteStats:
    """Percentiles of latency samples (sorted in place); count and total default to theirs."""
    count = len(samples) if count is None else count
    total = sum(samples) if total is None else total
    samples.sort()
    return RouteStats(
        count=count,
        p50=_percentile(samples, 0.50),
        p90=_percentile(samples, 0.90),
        p99=_percentile(samples, 0.99),
        max=samples[-1] if samples else 0.0,
        mean=total / count if count else 0.0,
    )


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted data (0.0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(round(q * len(ordered), 9)))
    return ordered[min(rank, len(ordered)) - 1]
