"""FakeForumServer: the forum over real HTTP, in a background thread of the calling process."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Literal

from .app import create_app
from .errors import FakeForumError
from .latency import LatencyRules, LatencySpec, parse_bandwidth
from .model import Forum, Reply
from .protocol import Connection, Core, Limits, ServerError
from .stats import Counters, Stats

__all__ = ["FakeForumServer"]

LatencyArg = LatencySpec | Mapping[str, LatencySpec] | None

_SWEEP_INTERVAL = (0.01, 1.0)  # bounds, seconds, of how often timeouts are checked


class FakeForumServer:
    """A fake web forum served over real HTTP on a real socket.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with FakeForumServer(latency="50ms", seed=1) as server:
            requests.get(server.url + "/api/subjects/1")
            assert server.stats.requests == 1

    One asyncio event loop in a background thread owns every connection; latency is a timer on
    that loop, so a thousand delayed requests cost no thread each. ``stop()`` closes every
    connection at once and re-raises, as a FakeForumError, any exception the forum app raised
    while serving, so that a server bug never hides behind a 500.

    ``forum`` defaults to ``Forum.generate(seed=seed)``. ``latency`` is a spec such as ``"50ms"``
    or per-route rules ``{"/api/*": "20ms..80ms", "*": "5ms"}``; ``bandwidth`` (``"100KB/s"``)
    paces response bodies. ``port=0`` picks a free port (see :attr:`url`). ``backlog`` is the
    listen queue (the kernel caps it at ``net.core.somaxconn``).
    """

    def __init__(
        self,
        forum: Forum | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: LatencyArg = None,
        bandwidth: str | float | None = None,
        seed: int = 0,
        mode: Literal["thread"] = "thread",
        backlog: int = 4096,
        idle_timeout: float = 15.0,
        header_timeout: float = 10.0,
        max_header_size: int = 16 * 1024,
        max_body_size: int = 1024 * 1024,
        log: Callable[[str], None] | None = None,
        loop: Literal["auto", "asyncio", "uvloop"] = "auto",
    ) -> None:
        if mode != "thread":
            raise FakeForumError(
                f"mode={mode!r} is not supported; FakeForumServer serves with mode='thread'."
            )
        if loop not in ("auto", "asyncio", "uvloop"):
            raise FakeForumError(f"loop={loop!r} is not one of 'auto', 'asyncio', 'uvloop'.")
        for name, value in (("idle_timeout", idle_timeout), ("header_timeout", header_timeout)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise FakeForumError(f"{name} must be a positive number of seconds, not {value!r}.")
        for name, value in (
            ("backlog", backlog),
            ("max_header_size", max_header_size),
            ("max_body_size", max_body_size),
            ("port", port + 1),
        ):
            if not isinstance(value, int) or value < 1:
                raise FakeForumError(f"{name} must be a whole number of at least 1, not {value!r}.")
        self._forum = forum if forum is not None else Forum.generate(seed=seed)
        self._pristine = self._forum.snapshot()
        self._initial_latency = latency
        self._initial_bandwidth = bandwidth
        self._seed = seed
        self._core = Core(
            app=create_app(self._forum),
            counters=Counters(),
            latency=LatencyRules(latency, seed=seed),
            limits=Limits(
                max_header_size, max_body_size, float(idle_timeout), float(header_timeout)
            ),
            host=host,
            port=port,
            bandwidth=parse_bandwidth(bandwidth),
            log=log,
        )
        self._host = host
        self._requested_port = port
        self._requested_backlog = backlog
        self._loop_kind = loop
        self._state: Literal["new", "running", "stopped"] = "new"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._startup_error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._reported = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeForumServer:
        """Bind, listen and start serving; returns self. Raises FakeForumError on a busy port."""
        if self._state == "running":
            raise FakeForumError("This FakeForumServer is already running.")
        if self._state == "stopped":
            raise FakeForumError(
                "Cannot restart a FakeForumServer once it has been stopped; create a new one."
            )
        self._sock = self._listen()
        # If port was 0, this records the port the kernel picked.
        self._core.port = self._sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"fakeforum:{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._state = "stopped"
            raise FakeForumError(
                f"The server on port {self.port} could not start: {self._startup_error}"
            ) from self._startup_error
        self._state = "running"
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; join the server thread.

        Idempotent. Requests waiting in injected latency are dropped (their clients see the
        connection close). Raises FakeForumError if the app raised while serving.
        """
        if self._state == "running":
            self._state = "stopped"
            loop, stopping, thread = self._loop, self._stopping, self._thread
            if loop is None or stopping is None or thread is None:
                raise FakeForumError("The server's loop never started; nothing to stop.")
            if threading.current_thread() is thread:
                raise FakeForumError("stop() was called from the server's own thread.")
            loop.call_soon_threadsafe(_set_result, stopping)
            thread.join()
        self.raise_errors()

    def __enter__(self) -> FakeForumServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
            return
        # The body's own exception matters more; server errors still show, as a note.
        try:
            self.stop()
        except FakeForumError as server_error:
            if hasattr(exc, "add_note"):
                exc.add_note(str(server_error))

    def raise_errors(self) -> None:
        """Raise FakeForumError for exceptions the app raised since the last call, if any."""
        errors = self._core.errors[self._reported :]
        if not errors:
            return
        self._reported += len(errors)
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise FakeForumError(
            f"The forum app raised {type(first.exception).__name__} while serving "
            f"{first.method} {first.target}{more}; the client got a 500. Traceback:\n"
            f"{first.traceback}"
        ) from first.exception

    def _listen(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self._host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise FakeForumError(f"Cannot listen on host {self._host!r}: {exc}.") from exc
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
                    f"Port {self._requested_port} on {self._host} is already in use; stop what "
                    f"is listening there or pass port=0 to get a free port."
                ) from exc
            raise FakeForumError(
                f"Cannot listen on {self._host}:{self._requested_port}: {exc.strerror}."
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
            loop.close()
            if self._sock is not None:
                self._sock.close()

    async def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        sock = self._sock
        try:
            if sock is None:
                raise FakeForumError("The listening socket was closed before the loop started.")
            server = await loop.create_server(
                lambda: Connection(self._core), sock=sock, backlog=self.backlog
            )
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            return
        limits = self._core.limits
        interval = min(
            max(min(limits.idle_timeout, limits.header_timeout) / 4, _SWEEP_INTERVAL[0]),
            _SWEEP_INTERVAL[1],
        )
        sweeper = loop.create_task(_every(interval, self._core.sweep))
        ready.set()
        try:
            await self._stopping
        finally:
            server.close()
            sweeper.cancel()
            for connection in list(self._core.connections):
                connection.shutdown()
            # Two turns of the loop let the transports flush and report connection_lost.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for connection in list(self._core.connections):
                connection.abort()
            await asyncio.sleep(0)

    # -- addresses and settings -----------------------------------------------------------

    @property
    def host(self) -> str:
        """The host the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (the kernel's pick once started with port=0)."""
        return self._core.port

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def backlog(self) -> int:
        """The listen backlog in force: the one asked for, capped by the kernel's somaxconn."""
        return min(self._requested_backlog, _somaxconn())

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._state == "running"

    @property
    def seed(self) -> int:
        """The seed of the content and of the latency schedule."""
        return self._seed

    @property
    def forum(self) -> Forum:
        """The forum being served; changes to it show in the very next response."""
        return self._forum

    @property
    def latency(self) -> dict[str, str]:
        """The latency rules in force as ``{glob: spec}``."""
        return self._core.latency.as_specs()

    @property
    def errors(self) -> list[ServerError]:
        """Every exception the app raised while serving, oldest first."""
        return list(self._core.errors)

    def set_latency(self, latency: LatencyArg, *, bandwidth: str | float | None = None) -> None:
        """Replace the latency rules (and bandwidth); takes effect for the next request.

        Invalid specs raise FakeForumError and change nothing. The latency schedule starts
        over: the n-th request to each path from now on waits what it would in a new server.
        """
        rules = LatencyRules(latency, seed=self._seed)
        rate = parse_bandwidth(bandwidth)
        # Two reference swaps, each atomic; the loop thread reads them once per request.
        self._core.latency = rules
        self._core.bandwidth = rate

    def reset(self) -> None:
        """Back to how the server was built: content, latency, bandwidth and counters."""
        self._forum.restore(self._pristine)
        self.set_latency(self._initial_latency, bandwidth=self._initial_bandwidth)
        self.reset_stats()

    # -- counters -------------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`fakeforum.Stats`)."""
        return self._core.counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters (requests in flight and connections open stay as they are)."""
        self._core.counters.reset()

    # -- forum conveniences ---------------------------------------------------------------

    def subject_urls(self, n: int | None = None) -> list[str]:
        """The JSON API URL of each subject (``<url>/api/subjects/<id>``), all or the first n."""
        ids = self._forum.subject_ids()
        return [f"{self.url}/api/subjects/{i}" for i in (ids if n is None else ids[:n])]

    def post_reply(self, subject_id: int, body: str = "", *, author: str = "anonymous") -> Reply:
        """Add a reply to a subject now (see :meth:`Forum.post_reply`)."""
        return self._forum.post_reply(subject_id, body, author=author)

    def post_replies(self, per_subject: int = 1) -> list[Reply]:
        """Add ``per_subject`` replies to every subject; returns them in posting order."""
        if not isinstance(per_subject, int) or per_subject < 0:
            raise FakeForumError(f"per_subject must be a whole number ≥ 0, not {per_subject!r}.")
        return [
            self._forum.post_reply(subject_id, f"Reply {k + 1} posted by the test.", author="test")
            for subject_id in self._forum.subject_ids()
            for k in range(per_subject)
        ]

    def reply_count(self, subject_id: int) -> int:
        """How many replies a subject has now."""
        subject = self._forum.subject(subject_id)
        if subject is None:
            raise FakeForumError(f"No subject with id {subject_id!r}.")
        return len(subject.replies)

    def __repr__(self) -> str:
        return f"<FakeForumServer {self.url} {self._state}>"


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
