"""What a run did, and the assertions on it; each failure says what, where and what to do."""

from __future__ import annotations

import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConcurrencyError, MutationsNotVisible, SpeedupError, TaskErrors
from .snapshot import changed_attributes, snapshot

if TYPE_CHECKING:
    from fakeforum import FakeForumServer, Stats
    from fakeforum.journal import JournalEntry

    from .runner import TaskRecord

__all__ = ["Report", "peak_overlap", "server_window", "thread_stacks"]

K = TypeVar("K")

# Shown in failures: enough subjects to see the pattern, not a wall of text.
_SHOW = 5


@dataclass
class Report:
    """The result of :func:`poolcheck.run`.

    ``tasks`` holds one :class:`TaskRecord` per subject (in subject order); ``server`` the
    fakeforum counters for this run only (None without a server); ``journal`` the server's
    requests during the run; ``cpu_time`` the CPU the run cost this process (an in-process
    server's own CPU excluded).
    """

    subjects: list[Any]
    method: str
    pool: str
    workers: int
    tasks: list[TaskRecord]
    start: float
    end: float
    cpu_time: float
    server: Stats | None = None
    journal: list[JournalEntry] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list, repr=False)
    start_method: str | None = None

    # -- figures --------------------------------------------------------------------------

    @property
    def wall_time(self) -> float:
        """Seconds from the start of the first wave of tasks to the end of the last task."""
        return self.end - self.start

    @property
    def errors(self) -> list[TaskRecord]:
        """The tasks that raised."""
        return [t for t in self.tasks if not t.ok]

    @property
    def task_time(self) -> float:
        """The sum of every task's duration: what a sequential run would roughly take."""
        return sum(t.duration for t in self.tasks)

    @property
    def speedup(self) -> float:
        """Work / wall time: how many tasks' worth of work overlapped, on average.

        Work is Σ task time. Tasks that wait for each other (a lock held around the request)
        inflate it, so with a server attached work is capped by what the server and this
        process really did: Σ request time at the server + this process's CPU time.
        """
        if self.wall_time <= 0:
            return 0.0
        work = self.task_time
        if self.journal:
            work = min(work, sum(e.end - e.start for e in self.journal) + self.cpu_time)
        return work / self.wall_time

    @property
    def effective_workers(self) -> int:
        """The workers that could be busy at once: ``min(workers, tasks)``."""
        return max(1, min(self.workers, len(self.tasks))) if self.pool != "sequential" else 1

    @property
    def efficiency(self) -> float:
        """Speed-up / effective workers: 1.0 means every worker was always busy."""
        return self.speedup / self.effective_workers

    @property
    def cpu_ceiling(self) -> float:
        """Σ task time / CPU time: the best speed-up one GIL allows for this much CPU."""
        return self.task_time / self.cpu_time if self.cpu_time > 0 else float("inf")

    @property
    def cpu_busy(self) -> float:
        """CPU time / wall time: near 1.0, this process's one GIL was busy all the run."""
        return self.cpu_time / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def peak_concurrency(self) -> int:
        """The most tasks that ran at once, seen from the client."""
        return peak_overlap([(t.start, t.end) for t in self.tasks])

    @property
    def server_peak_concurrency(self) -> int | None:
        """The most requests the server had in flight at once during the run, if attached."""
        return None if self.server is None else self.server.peak_in_flight

    def changed(self) -> list[bool]:
        """For each subject, whether the caller's object differs from before the run."""
        return [
            bool(changed_attributes(before, snapshot(subject)))
            for before, subject in zip(self.snapshots, self.subjects, strict=True)
        ]

    # -- assertions -----------------------------------------------------------------------

    def assert_no_errors(self) -> Report:
        """Fail, listing each failing subject with its traceback, if any task raised."""
        __tracebackhide__ = True
        failed = self.errors
        if failed:
            kinds = Counter(t.error.split(":")[0] for t in failed if t.error)
            lines = [
                f"{len(failed)} of {len(self.tasks)} tasks raised "
                f"({', '.join(f'{n}x {k}' for k, n in kinds.most_common())}) under "
                f"{self._setup()}.",
            ]
            for task in failed[:_SHOW]:
                lines.append(
                    f"\n--- subject {task.index} ({self._describe(task.index)}) on "
                    f"{task.thread}:\n{task.traceback}"
                )
            if len(failed) > _SHOW:
                lines.append(f"... and {len(failed) - _SHOW} more failing subjects.")
            raise TaskErrors("\n".join(lines))
        return self

    def assert_mutations_visible(self, check: Callable[[Any], bool] | None = None) -> Report:
        """Fail unless every subject, as the caller holds it, shows the run's changes.

        Without ``check``: each subject's state (attributes, and the contents of plain
        containers) must differ from a snapshot taken before the run. With ``check``: the
        predicate must hold for every subject.
        """
        __tracebackhide__ = True
        if check is None:
            stale = [i for i, changed in enumerate(self.changed()) if not changed]
            what = "unchanged in the caller after the run"
        else:
            stale = [i for i, s in enumerate(self.subjects) if not check(s)]
            what = f"failing the check {getattr(check, '__qualname__', check)!r}"
        if not stale:
            return self
        shown = ", ".join(f"{i} ({self._describe(i)})" for i in stale[:_SHOW])
        more = f" and {len(stale) - _SHOW} more" if len(stale) > _SHOW else ""
        lines = [
            f"{len(stale)} of {len(self.subjects)} subjects {what}: {shown}{more}.",
            f"The run: {self._setup()}.",
        ]
        if self.pool == "process":
            lines += [
                "",
                "This is what pool='process' does: multiprocessing.Pool pickles each subject,",
                "each worker process updates its own copy, and the copies are thrown away. The",
                "caller's objects never see the update. Threads share memory, so use a thread",
                "pool — multiprocessing.pool.ThreadPool(16).map(lambda s: s.update(), subjects)",
                "— or have the workers return the new state and assign it in the caller.",
            ]
        elif self.errors:
            lines.append(f"{len(self.errors)} tasks raised; see assert_no_errors() first.")
        else:
            lines.append(
                "The tasks ran without raising, so update() did not change these objects: does "
                "it assign to a copy, a local variable, or state shared between subjects?"
            )
        raise MutationsNotVisible("\n".join(lines))

    def assert_speedup(self, at_least: float) -> Report:
        """Fail if Σ task time / wall time is below ``at_least``; the message says why."""
        __tracebackhide__ = True
        if self.speedup < at_least:
            raise SpeedupError(
                f"Speed-up {self.speedup:.2f}x is below the {at_least:g}x asked for "
                f"({self._setup()}; wall {self.wall_time * 1000:.0f} ms for "
                f"{self.task_time * 1000:.0f} ms of tasks).\n{self._diagnosis()}"
            )
        return self

    def assert_efficiency(self, at_least: float) -> Report:
        """Fail if speed-up / effective workers is below ``at_least`` (0 to 1)."""
        __tracebackhide__ = True
        if self.efficiency < at_least:
            raise SpeedupError(
                f"Efficiency {self.efficiency:.2f} is below the {at_least:g} asked for: "
                f"speed-up {self.speedup:.2f}x with {self.effective_workers} workers "
                f"({self._setup()}).\n{self._diagnosis()}"
            )
        return self

    def assert_concurrency(self, at_least: int) -> Report:
        """Fail if fewer than ``at_least`` requests (server attached) or tasks ran at once."""
        __tracebackhide__ = True
        peak = self.server_peak_concurrency
        where = "requests in flight at the server"
        if peak is None:
            peak, where = self.peak_concurrency, "tasks running at once"
        if peak < at_least:
            raise ConcurrencyError(
                f"At most {peak} {where}; {at_least} asked for ({self._setup()}).\n"
                f"{self._diagnosis()}\n\n{self.timeline()}"
            )
        return self

    # -- explaining -----------------------------------------------------------------------

    def _setup(self) -> str:
        pool = {
            "threadpool": "ThreadPool",
            "executor": "ThreadPoolExecutor",
            "process": "multiprocessing.Pool",
            "sequential": "a plain loop",
        }[self.pool]
        workers = "" if self.pool == "sequential" else f"({self.workers})"
        return f"{len(self.tasks)} x .{self.method}() under {pool}{workers}"

    def _describe(self, index: int) -> str:
        text = repr(self.subjects[index])
        return text if len(text) <= 80 else text[:77] + "..."

    def _diagnosis(self) -> str:
        """Why the run did not overlap: the GIL, the server, or something serialising."""
        if self.pool == "sequential":
            return "A sequential run overlaps nothing: that is what it is for."
        if self.cpu_busy >= 0.7:
            return (
                f"The GIL limited this run: this process used {self.cpu_time * 1000:.0f} ms of "
                f"CPU in {self.wall_time * 1000:.0f} ms ({self.cpu_busy:.0%} busy), and Python "
                f"code runs on one core at a time however the waits overlap. More threads will "
                f"not help; less CPU per task will (a lighter client, less parsing), or "
                f"processes."
            )
        peak = self.server_peak_concurrency
        if peak is not None and peak <= max(1, self.effective_workers // 2):
            conns = self.server.connections_opened if self.server is not None else 0
            return (
                f"The waits did not overlap: the server never had more than {peak} requests "
                f"in flight for {self.effective_workers} workers ({conns} connections opened). "
                f"Something serialises the requests — a lock held around the HTTP call, a "
                f"connection pool smaller than the thread count (requests' default is 10), or "
                f"a loop that waits for each response in turn. The timeline shows which."
            )
        return (
            f"Peak {self.peak_concurrency} tasks at once of {self.effective_workers} workers; "
            f"CPU allowed up to {self.cpu_ceiling:.1f}x. The timeline below shows the gaps."
        )

    def timeline(self, width: int = 60) -> str:
        """A text timeline, one row per worker: ``█`` running a task, ``·`` idle.

        With a server attached, a last row shows its requests in flight per time slice
        (digits, ``+`` for ten or more), so a cap such as a pool of 10 shows at a glance.
        """
        span = max(self.wall_time, 1e-9)
        by_thread: dict[str, list[TaskRecord]] = {}
        for task in self.tasks:
            by_thread.setdefault(task.thread, []).append(task)
        label = max([len(name) for name in by_thread] + [len("server in flight")])
        lines = [f"{'':{label}}  0 ms{'':{width - 10}}{span * 1000:.0f} ms"]
        for name, tasks in sorted(by_thread.items()):
            row = ["·"] * width
            for task in tasks:
                first = min(int((task.start - self.start) / span * width), width - 1)
                last = int((task.end - self.start) / span * width)
                for i in range(max(first, 0), min(max(last, first + 1), width)):
                    row[i] = "█"
            lines.append(f"{name:{label}}  {''.join(row)}")
        if self.journal:
            row = []
            for i in range(width):
                t0 = self.start + span * i / width
                t1 = self.start + span * (i + 1) / width
                n = max(
                    (sum(1 for e in self.journal if e.start < t and e.end > t) for t in (t0, t1)),
                    default=0,
                )
                row.append("·" if n == 0 else str(n) if n < 10 else "+")
            lines.append(f"{'server in flight':{label}}  {''.join(row)}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """The run's figures as plain data (the plugin's summary table and user_properties)."""
        return {
            "method": self.method,
            "pool": self.pool,
            "workers": self.workers,
            "tasks": len(self.tasks),
            "errors": len(self.errors),
            "wall_time": self.wall_time,
            "speedup": self.speedup,
            "efficiency": self.efficiency,
            "peak_concurrency": self.peak_concurrency,
            "server_peak": self.server_peak_concurrency,
            "cpu_time": self.cpu_time,
        }

    def __str__(self) -> str:
        server = "" if self.server is None else f", server peak {self.server.peak_in_flight}"
        return (
            f"{self._setup()}: wall {self.wall_time * 1000:.0f} ms, speed-up "
            f"{self.speedup:.1f}x, efficiency {self.efficiency:.2f}, peak "
            f"{self.peak_concurrency} tasks at once{server}, {len(self.errors)} errors"
        )


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals that overlap at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def server_window(
    server: FakeForumServer, before: Stats | None, start: float, end: float
) -> tuple[Stats, list[JournalEntry]]:
    """The server's counters for this run: a delta of two snapshots, and from the journal
    (the requests that started during the run) the peak in flight and the per-route latency.
    """
    from fakeforum import Stats
    from fakeforum.stats import route_stats

    entries = [e for e in server.journal_since(start) if e.start <= end]
    after = server.stats
    base = before if before is not None else Stats()
    routes: dict[str, list[float]] = {}
    for entry in entries:
        routes.setdefault(entry.route, []).append(entry.end - entry.start)
    stats = Stats(
        requests=after.requests - base.requests,
        by_status=_minus(after.by_status, base.by_status),
        faults=_minus(after.faults, base.faults),
        in_flight=after.in_flight,
        peak_in_flight=peak_overlap([(e.start, e.end) for e in entries]),
        connections_opened=after.connections_opened - base.connections_opened,
        connections_open=after.connections_open,
        by_route={route: route_stats(samples) for route, samples in routes.items()},
        errors=after.errors - base.errors,
        cpu_time=after.cpu_time - base.cpu_time,
    )
    return stats, entries


def _minus(after: Mapping[K, int], before: Mapping[K, int]) -> dict[K, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) - before.get(k, 0)
    }


def thread_stacks() -> str:
    """Every thread's current stack, innermost call last."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame))
        parts.append(f"Thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)
