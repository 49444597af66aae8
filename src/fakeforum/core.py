"""What all connections of one server share: the app, the schedule, the counters, the journal.

The event-loop thread reads it for every request; other threads change the schedule only by
swapping whole objects (one reference assignment each), so no request ever sees half a change.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from .faults import Fault, FaultPlan
from .journal import Journal
from .latency import LatencyRules, LatencySpec, check_seed, parse_bandwidth
from .stats import Counters

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["Core", "Limits", "ServerError"]

ADMIN_PREFIX = "/_fakeforum"
# Per-path request numbers are kept for this many distinct paths; past it they start over, so
# a client walking millions of URLs cannot grow the server's memory without bound.
MAX_PATHS = 65_536

LatencyArg = LatencySpec | Mapping[str, LatencySpec] | None


@dataclass(frozen=True)
class Limits:
    """What one connection may send or cost before the server gives up on it."""

    max_header_size: int = 16 * 1024
    max_body_size: int = 1024 * 1024
    idle_timeout: float = 15.0
    header_timeout: float = 10.0


@dataclass(frozen=True)
class ServerError:
    """An exception raised by the app (or the server's own code) while serving a request."""

    method: str
    target: str
    exception: BaseException
    traceback: str

    def __str__(self) -> str:
        return f"{self.method} {self.target}: {self.exception!r}"


class RequestInfo(Protocol):
    """What the core needs to know of a finished request."""

    method: str
    url: bytes
    path: str
    received: float
    wall_received: float
    delay: float
    fault: Fault | None
    connection: int


class Unset(enum.Enum):
    """The type of UNSET: 'leave this setting as it is'."""

    UNSET = 0


UNSET = Unset.UNSET


@dataclass(frozen=True)
class Schedule:
    """Latency, bandwidth, faults and seed: replaced whole, never changed in place."""

    latency: LatencyRules
    bandwidth: float | None
    faults: FaultPlan
    seed: int

    def replace(
        self,
        *,
        latency: LatencyArg | Unset = UNSET,
        bandwidth: str | float | Unset | None = UNSET,
        faults: Iterable[Mapping[str, Any]] | Unset | None = UNSET,
        seed: int | Unset = UNSET,
    ) -> Schedule:
        """A new schedule with the given settings changed; raises FakeForumError, changing
        nothing, when any of them is invalid."""
        new_seed = self.seed if isinstance(seed, Unset) else check_seed(seed)
        rules = self.latency.rules if isinstance(latency, Unset) else latency
        plan = self.faults.rules() if isinstance(faults, Unset) else (faults or ())
        return Schedule(
            latency=LatencyRules(rules, seed=new_seed),
            bandwidth=self.bandwidth
            if isinstance(bandwidth, Unset)
            else parse_bandwidth(bandwidth),
            faults=FaultPlan(plan, seed=new_seed),
            seed=new_seed,
        )

    def as_dict(self) -> dict[str, Any]:
        """The settings as the admin API's config shows them."""
        return {
            "latency": self.latency.as_specs(),
            "bandwidth": self.bandwidth,
            "faults": self.faults.rules(),
            "seed": self.seed,
        }


EMPTY_SCHEDULE = Schedule(LatencyRules(None), None, FaultPlan(()), 0)


class Core:
    """The state one server's connections share."""

    def __init__(
        self,
        *,
        app: WSGIApplication,
        route_for: Callable[[str, str], str],
        admin_app: WSGIApplication | None,
        schedule: Schedule,
        limits: Limits,
        journal: Journal,
        host: str,
        port: int,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.route_for = route_for
        self.admin_app = admin_app
        self.schedule = schedule
        self.limits = limits
        self.journal = journal
        self.counters = Counters()
        self.host = host
        self.port = port
        self.log = log
        self.connections: set[Any] = set()
        self.errors: list[ServerError] = []
        self.next_connection_id = 1
        self._counts: dict[str, int] = {}
        self._date = (0, "")
        self._thread_name = ""

    def reschedule(self, schedule: Schedule) -> None:
        """Put a new schedule in force; every path's request count starts again from zero."""
        self.schedule = schedule
        self._counts = {}

    def plan(self, path: str) -> tuple[float, Fault | None]:
        """The injected delay and fault for the next request to ``path``; counts it."""
        schedule = self.schedule
        counts = self._counts
        n = counts.get(path, 0)
        if n == 0 and len(counts) >= MAX_PATHS:
            counts.clear()
        counts[path] = n + 1
        delay = schedule.latency.delay(path, n) if schedule.latency else 0.0
        fault = schedule.faults.decide(path, n) if schedule.faults else None
        if fault is not None:
            self.counters.fault(fault.kind)
        return delay, fault

    def record(self, request: RequestInfo, route: str, status: int | None) -> None:
        """A request left flight: count it, journal it, log it."""
        now = time.monotonic()
        self.counters.request_done(route, status, now - request.received)
        if not self._thread_name:
            self._thread_name = threading.current_thread().name
        target = request.url.decode("latin-1")
        fault = request.fault.kind if request.fault else None
        self.journal.add(
            request.connection,
            request.method,
            target,
            request.path,
            route,
            status,
            request.delay,
            fault,
            request.received,
            now,
            request.wall_received,
            request.wall_received + (now - request.received),
            self._thread_name,
        )
        if self.log is not None:
            fault = f" fault={request.fault.kind}" if request.fault else ""
            self.log(
                f"{request.method} {target} {status if status is not None else '-'} "
                f"{(now - request.received) * 1000:.1f}ms{fault}"
            )

    def date(self) -> str:
        """The Date header value, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]
