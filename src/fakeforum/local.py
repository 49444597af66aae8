"""The server itself: an asyncio event loop in a background thread owning every connection.

``LocalServer`` is what ``FakeForumServer(mode="thread")`` drives directly and what the child
process of ``mode="process"`` runs; the admin API calls into it on the loop thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not builtin on 3.10
from typing import Any, Literal, TypeVar

from .activity import Activity
from .app import create_app
from .core import Core, Limits, Schedule, ServerError
from .errors import FakeForumError
from .faults import Fault
from .journal import Journal, JournalEntry
from .model import Forum, Reply
from .stats import Stats

__all__ = ["LocalServer"]

_SWEEP_INTERVAL = (0.01, 1.0)  # bounds, seconds, of how often timeouts are checked
LoopKind = Literal["auto", "asyncio", "uvloop"]
T = TypeVar("T")


class LocalServer:
    """Serves one forum from an event loop in a background thread of this process."""

    def __init__(
        self,
        forum: Forum,
        *,
        host: str,
        port: int,
        schedule: Schedule,
        limits: Limits,
        backlog: int,
        journal_size: int,
        log: Callable[[str], None] | None,
        loop: LoopKind,
        admin: bool,
        admin_token: str | None,
        activity: float | None,
    ) -> None:
        from .admin import AdminApp

        app = create_app(forum)
        self.forum = forum
        self._pristine = forum.snapshot()
        self._initial = (schedule, activity)
        self.core = Core(
            app=app,
            route_for=app.route_for,
            admin_app=AdminApp(self, token=admin_token) if admin else None,
            schedule=schedule,
            limits=limits,
            journal=Journal(journal_size),
            host=host,
            port=port,
            log=log,
        )
        self.host = host
        self._requested_port = port
        self._requested_backlog = backlog
        self._loop_kind = loop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._startup_error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._activity: Activity | None = None
        self._activity_timer: asyncio.TimerHandle | None = None
        self._activity_rate = activity
        self._final_cpu = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind, listen and serve; raises FakeForumError on a busy port."""
        self._sock = self._listen()
        # If port was 0, this records the port the kernel picked.
        self.core.port = self._sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"fakeforum:{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise FakeForumError(
                f"The server on port {self.port} could not start: {self._startup_error}"
            ) from self._startup_error
        if self._activity_rate is not None:
            self.set_activity(self._activity_rate)

    def stop(self) -> None:
        """Close every connection and the listening socket; join the loop thread."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or stopping is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise FakeForumError("stop() was called from the server's own thread.")
        loop.call_soon_threadsafe(_set_result, stopping)
        thread.join()

    def _listen(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise FakeForumError(f"Cannot listen on host {self.host!r}: {exc}.") from exc
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            # Lets a restarted server take a port still in TIME_WAIT; Linux still refuses a
            # port that another socket is listening on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise FakeForumError(
                    f"Port {self._requested_port} on {self.host} is already in use; stop what "
                    f"is listening there or pass port=0 to get a free port."
                ) from exc
            raise FakeForumError(
                f"Cannot listen on {self.host}:{self._requested_port}: {exc.strerror}."
            ) from exc
        return sock

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop_kind != "asyncio":
            try:
                import uvloop
            except ImportError:
                if self._loop_kind == "uvloop":
                    raise FakeForumError(
                        "loop='uvloop' needs uvloop installed: pip install 'poolcheck[fast]'."
                    ) from None
            else:
                loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
                return loop
        return asyncio.new_event_loop()

    def _run(self, ready: threading.Event) -> None:
        try:
            loop = self._loop = self._new_loop()
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            return
        try:
            loop.run_until_complete(self._serve(ready))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self._final_cpu = time.thread_time()
            loop.close()
            if self._sock is not None:
                self._sock.close()

    async def _serve(self, ready: threading.Event) -> None:
        from .protocol import Connection

        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        sock = self._sock
        try:
            if sock is None:
                raise FakeForumError("The listening socket was closed before the loop started.")
            server = await loop.create_server(
                lambda: Connection(self.core), sock=sock, backlog=self.backlog
            )
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            return
        limits = self.core.limits
        interval = min(limits.idle_timeout, limits.header_timeout) / 4
        interval = min(max(interval, _SWEEP_INTERVAL[0]), _SWEEP_INTERVAL[1])
        sweeper = loop.create_task(_every(interval, self._sweep))
        ready.set()
        try:
            await self._stopping
        finally:
            server.close()
            sweeper.cancel()
            self._cancel_activity()
            for connection in list(self.core.connections):
                connection.shutdown()
            # Two turns of the loop let the transports flush and report connection_lost.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for connection in list(self.core.connections):
                connection.abort()
            await asyncio.sleep(0)

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.core.connections):
            connection.check_timeouts(now)

    # -- what the front and the admin API use --------------------------------------------

    @property
    def port(self) -> int:
        return self.core.port

    @property
    def backlog(self) -> int:
        return min(self._requested_backlog, _somaxconn())

    def stats(self) -> Stats:
        return dataclasses.replace(self.core.counters.snapshot(), cpu_time=self.cpu_time())

    def cpu_time(self) -> float:
        """CPU seconds the event-loop thread has used (0.0 before it starts)."""
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return self._final_cpu
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (AttributeError, OSError):  # no per-thread clocks here: the whole process's
            return time.process_time()

    def reset_stats(self) -> None:
        self.core.counters.reset()

    def config(self) -> dict[str, Any]:
        rate = self._activity.rate if self._activity is not None else None
        return {**self.core.schedule.as_dict(), "activity": rate}

    def configure(self, **settings: Any) -> None:
        """Validate every setting first; put them in force together, or change nothing.

        The settings are those of :meth:`Schedule.replace`: latency, bandwidth, faults, seed.
        """
        unknown = set(settings) - {"latency", "bandwidth", "faults", "seed"}
        if unknown:
            raise FakeForumError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        schedule = self.core.schedule.replace(**settings)
        self.on_loop(lambda: self.core.reschedule(schedule))

    def fail_next(self, rule: Mapping[str, Any]) -> None:
        fault = Fault.from_dict(rule, where="fail_next")
        # On the loop thread, where scripted rules are spent: no count is lost in between.
        self.on_loop(lambda: self.core.schedule.faults.add_scripted(fault))

    def reset(self) -> None:
        def reset() -> None:
            self.forum.restore(self._pristine)
            schedule, activity = self._initial
            self.core.reschedule(schedule)
            self.core.counters.reset()
            self.core.journal.clear()
            self.set_activity(activity)

        self.on_loop(reset)

    def on_loop(self, action: Callable[[], T]) -> T:
        """Run ``action`` on the loop thread and return its result (here, if not serving)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or threading.current_thread() is thread:
            return action()
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(action())
            except BaseException as exc:
                done.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop has closed: nothing else runs, do it here
            return action()
        while True:
            try:
                return done.result(timeout=0.1)
            except FutureTimeout:
                if not thread.is_alive() and not done.done():
                    return action()

    def journal(self, limit: int | None = None, since: float | None = None) -> list[JournalEntry]:
        return self.core.journal.entries(limit, since)

    def errors(self) -> list[ServerError]:
        return list(self.core.errors)

    def post_replies(self, per_subject: int) -> list[Reply]:
        return [
            self.forum.post_reply(subject_id, f"Reply {k + 1} posted by the test.", author="test")
            for subject_id in self.forum.subject_ids()
            for k in range(per_subject)
        ]

    def set_activity(self, rate: float | None) -> None:
        """Post seeded replies at ``rate`` per second (None stops); from any thread."""
        self._activity_rate = rate
        if self._loop is not None:
            self.on_loop(lambda: self._start_activity(rate))

    def _start_activity(self, rate: float | None) -> None:
        self._cancel_activity()
        if rate is None:
            self._activity = None
            return
        self._activity = Activity(self.forum, rate, self.core.schedule.seed)
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        activity, loop = self._activity, self._loop
        if activity is not None and loop is not None:
            self._activity_timer = loop.call_later(activity.interval, self._tick)

    def _tick(self) -> None:
        if self._activity is not None:
            self._activity.tick()
            self._schedule_tick()

    def _cancel_activity(self) -> None:
        if self._activity_timer is not None:
            self._activity_timer.cancel()
            self._activity_timer = None


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _every(interval: float, action: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(interval)
        action()


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return socket.SOMAXCONN
