"""Run a method of many subjects under a pool, and record what each task did and when."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing.pool import ThreadPool
from typing import TYPE_CHECKING, Any, Literal

from . import races
from .errors import PoolcheckError
from .snapshot import snapshot

if TYPE_CHECKING:
    from fakeforum import FakeForumServer

    from .report import Report

__all__ = ["POOLS", "Method", "PoolKind", "TaskRecord", "run"]

PoolKind = Literal["threadpool", "executor", "process", "sequential"]
POOLS: tuple[PoolKind, ...] = ("threadpool", "executor", "process", "sequential")
Method = str | Callable[[Any], object]
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class TaskRecord:
    """One subject's task: which thread (or process) ran it, when, and how it ended.

    ``start`` and ``end`` are ``time.monotonic()`` seconds, comparable with fakeforum's journal.
    """

    index: int
    thread: str
    start: float
    end: float
    error: str | None = None
    traceback: str | None = None

    @property
    def duration(self) -> float:
        """Seconds the task took."""
        return self.end - self.start

    @property
    def ok(self) -> bool:
        """True when the task raised nothing."""
        return self.error is None


def run(
    subjects: Sequence[Any],
    method: Method = "update",
    *,
    workers: int = 16,
    pool: PoolKind = "threadpool",
    server: FakeForumServer | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Report:
    """Call ``method`` on every subject under a pool of ``workers``; return a Report.

    ``method`` is the name of a method (``"update"``) or a callable taking one subject.
    ``pool`` is ``"threadpool"`` (multiprocessing.pool.ThreadPool), ``"executor"``
    (ThreadPoolExecutor), ``"process"`` (multiprocessing.Pool: for contrast — workers mutate
    pickled copies) or ``"sequential"``. The first wave of tasks starts together, released by a
    barrier once every worker is ready. With ``server`` (a FakeForumServer), the report holds
    the server's counters for this run only. A run longer than ``timeout`` seconds fails with
    every thread's stack.
    """
    from .report import Report, server_window

    subjects = list(subjects)
    call, name = _resolve(method, pool)
    _check_settings(workers, pool, timeout)
    before = [snapshot(s) for s in subjects]
    stats_before = server.stats if server is not None else None
    cpu_before = time.process_time()
    server_cpu_before = _server_cpu(server)
    records, start, end, start_method = _RUNNERS[pool](subjects, call, workers, timeout)
    # A released worker may read the clock before the releasing thread does.
    start = min([start, *(r.start for r in records)])
    cpu = time.process_time() - cpu_before - (_server_cpu(server) - server_cpu_before)
    window = server_window(server, stats_before, start, end) if server is not None else None
    return Report(
        subjects=subjects,
        method=name,
        pool=pool,
        workers=workers,
        tasks=sorted(records, key=lambda r: r.index),
        start=start,
        end=end,
        cpu_time=max(cpu, 0.0),
        server=window[0] if window else None,
        journal=window[1] if window else [],
        snapshots=before,
        start_method=start_method,
    )


# -- the pools -------------------------------------------------------------------------------

Runner = Callable[
    [list[Any], Callable[[Any], object], int, "float | None"],
    tuple[list[TaskRecord], float, float, str | None],
]


def _run_sequential(
    subjects: list[Any],
    call: Callable[[Any], object],
    workers: int,
    timeout: float | None,
) -> tuple[list[TaskRecord], float, float, str | None]:
    start = time.monotonic()
    records = [_task(i, s, call) for i, s in enumerate(subjects)]
    return records, start, time.monotonic(), None


def _run_threads(
    subjects: list[Any],
    call: Callable[[Any], object],
    workers: int,
    timeout: float | None,
    kind: PoolKind,
) -> tuple[list[TaskRecord], float, float, str | None]:
    first_wave = min(workers, len(subjects))
    barrier = threading.Barrier(first_wave + 1)

    def task(index: int) -> TaskRecord:
        if index < first_wave:
            # Each of the first tasks holds its worker until all are ready, so they really
            # start together (a worker blocked here cannot take a second task).
            barrier.wait()
        return _task(index, subjects[index], call)

    if kind == "threadpool":
        with ThreadPool(workers) as thread_pool:
            pending = thread_pool.map_async(task, range(len(subjects)), chunksize=1)
            start = _release(barrier, first_wave)
            records = _wait(lambda t: pending.get(t), timeout, start)
            end = time.monotonic()
            thread_pool.close()
            thread_pool.join()
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="poolcheck") as executor:
            futures = [executor.submit(task, i) for i in range(len(subjects))]
            start = _release(barrier, first_wave)
            records = _wait(lambda t: [f.result(t) for f in futures], timeout, start)
            end = time.monotonic()
    return records, start, end, None


def _release(barrier: threading.Barrier, first_wave: int) -> float:
    if first_wave:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            raise PoolcheckError(
                f"The pool did not start {first_wave} workers within 30 s; is the machine "
                f"out of threads?"
            ) from None
    return time.monotonic()


def _wait(
    get: Callable[[float | None], list[TaskRecord]], timeout: float | None, start: float
) -> list[TaskRecord]:
    try:
        return get(timeout)
    except (TimeoutError, multiprocessing.TimeoutError):
        from .report import thread_stacks

        detector = races.active()
        cycle = detector.wait_cycle() if detector is not None else []
        deadlock = (
            "Threads wait on each other's locks, a deadlock: " + "; ".join(cycle) + ".\n"
            if cycle
            else ""
        )
        raise PoolcheckError(
            f"The run did not finish within {timeout} s (timeout=); a task is stuck. "
            f"{deadlock}Every thread's stack, to see where:\n{thread_stacks()}"
        ) from None


def _run_process(
    subjects: list[Any],
    call: Callable[[Any], object],
    workers: int,
    timeout: float | None,
) -> tuple[list[TaskRecord], float, float, str | None]:
    # forkserver: workers fork from a clean single-threaded server process, so nothing this
    # process holds (a lock taken by another thread, a tracer's state) is inherited half-way;
    # plain fork hung here in a long test session, spawn pays an interpreter per worker.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    work = [(i, s, call) for i, s in enumerate(subjects)]
    try:
        with context.Pool(workers) as process_pool:
            process_pool.map(_noop, range(workers))  # workers up before the clock starts
            start = time.monotonic()
            pending = process_pool.map_async(_process_task, work, chunksize=1)
            records = _wait(lambda t: pending.get(t), timeout, start)
            end = time.monotonic()
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        if "pickle" not in str(exc).lower():
            raise
        raise PoolcheckError(
            f"pool='process' sends each subject to a worker process by pickling it, and that "
            f"failed: {exc}. Subjects must be picklable, and their class importable by name."
        ) from exc
    return records, start, end, method


_RUNNERS: dict[PoolKind, Runner] = {
    "sequential": _run_sequential,
    "threadpool": partial(_run_threads, kind="threadpool"),
    "executor": partial(_run_threads, kind="executor"),
    "process": _run_process,
}


# -- one task --------------------------------------------------------------------------------


def _task(index: int, subject: Any, call: Callable[[Any], object]) -> TaskRecord:
    detector = races.active()
    if detector is not None:
        detector.task_started()
    thread = threading.current_thread().name
    start = time.monotonic()
    try:
        call(subject)
    except Exception as exc:
        end = time.monotonic()
        return TaskRecord(
            index, thread, start, end, f"{type(exc).__name__}: {exc}", traceback.format_exc()
        )
    return TaskRecord(index, thread, start, time.monotonic())


def _process_task(item: tuple[int, Any, Callable[[Any], object]]) -> TaskRecord:
    index, subject, call = item
    record = _task(index, subject, call)
    return TaskRecord(
        record.index, f"pid {os.getpid()}", record.start, record.end, record.error, record.traceback
    )


def _noop(_: int) -> None:
    return None


class _CallMethod:
    """``subject.<name>()``, as a picklable callable (a lambda would not cross to a process)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, subject: Any) -> object:
        return getattr(subject, self.name)()

    def __repr__(self) -> str:
        return f".{self.name}()"


def _resolve(method: Method, pool: PoolKind) -> tuple[Callable[[Any], object], str]:
    if isinstance(method, str):
        if not method.isidentifier():
            raise PoolcheckError(f"method {method!r} is not a method name such as 'update'.")
        return _CallMethod(method), method
    if not callable(method):
        raise PoolcheckError(
            f"method must be a method name such as 'update' or a callable taking one subject, "
            f"not {method!r}."
        )
    name = getattr(method, "__qualname__", repr(method))
    if pool == "process":
        try:
            pickle.dumps(method)
        except Exception:
            raise PoolcheckError(
                f"pool='process' sends the method to worker processes by pickling it, and "
                f"{name!r} cannot be pickled (a lambda or a function defined inside another "
                f"cannot). Pass the method's name instead: run(subjects, 'update', "
                f"pool='process'), or a function defined at module level."
            ) from None
    return method, name


def _check_settings(workers: int, pool: str, timeout: float | None) -> None:
    if pool not in POOLS:
        raise PoolcheckError(f"pool={pool!r} is not one of {', '.join(POOLS)}.")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PoolcheckError(f"workers must be a whole number of at least 1, not {workers!r}.")
    if timeout is not None and not timeout > 0:
        raise PoolcheckError(
            f"timeout must be a positive number of seconds or None, not {timeout!r}."
        )


def _server_cpu(server: FakeForumServer | None) -> float:
    if server is None or server.mode != "thread":
        return 0.0  # a server in another process costs this one nothing
    return server.cpu_time
