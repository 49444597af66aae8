"""FakeForumServer: the forum over real HTTP, in a thread of this process or in a child process."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from .activity import parse_rate
from .core import EMPTY_SCHEDULE, UNSET, LatencyArg, Limits, ServerError, Unset
from .errors import FakeForumError
from .journal import DEFAULT_SIZE, JournalEntry, chrome_trace
from .model import Forum, Reply
from .stats import Stats

__all__ = ["FakeForumServer"]

Mode = Literal["thread", "process"]


class Backend(Protocol):
    forum: Any

    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def port(self) -> int: ...
    @property
    def backlog(self) -> int: ...
    def stats(self) -> Stats: ...
    def reset_stats(self) -> None: ...
    def config(self) -> dict[str, Any]: ...
    def configure(self, **settings: Any) -> None: ...
    def fail_next(self, rule: Mapping[str, Any]) -> None: ...
    def reset(self) -> None: ...
    def journal(
        self, limit: int | None = None, since: float | None = None
    ) -> list[JournalEntry]: ...
    def errors(self) -> list[ServerError]: ...
    def set_activity(self, rate: float | None) -> None: ...
    def post_replies(self, per_subject: int) -> list[Reply]: ...


class FakeForumServer:
    """A fake web forum served over real HTTP on a real socket.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with FakeForumServer(latency="50ms", seed=1) as server:
            requests.get(server.url + "/api/subjects/1")
            assert server.stats.requests == 1

    One asyncio event loop owns every connection; latency is a timer on that loop, so a
    thousand delayed requests cost no thread each. ``mode="thread"`` runs the loop in a
    background thread of this process; ``mode="process"`` runs it in a child process (no GIL
    shared with the code under test) behind the same interface, driven through the admin API.
    ``stop()`` closes every connection at once and re-raises, as a FakeForumError, any
    exception the forum app raised while serving, so a server bug never hides behind a 500.

    ``forum`` defaults to ``Forum.generate(seed=seed)``. ``latency`` is a spec such as
    ``"50ms"`` or per-route rules ``{"/api/*": "20ms..80ms", "*": "5ms"}``; ``bandwidth``
    (``"100KB/s"``) paces response bodies; ``faults`` is a list of fault rules (see
    :meth:`set_faults`); ``activity`` (``"5/s"``) posts seeded replies continuously. ``port=0``
    picks a free port (see :attr:`url`). ``backlog`` is the listen queue (capped by the
    kernel's ``net.core.somaxconn``). Bound to an address other than loopback, the admin API
    needs ``admin_token`` (or ``admin=False``).
    """

    def __init__(
        self,
        forum: Forum | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: LatencyArg = None,
        bandwidth: str | float | None = None,
        faults: Iterable[Mapping[str, Any]] | None = None,
        seed: int = 0,
        mode: Mode = "thread",
        backlog: int = 4096,
        idle_timeout: float = 15.0,
        header_timeout: float = 10.0,
        max_header_size: int = 16 * 1024,
        max_body_size: int = 1024 * 1024,
        journal_size: int = DEFAULT_SIZE,
        activity: str | float | None = None,
        admin: bool = True,
        admin_token: str | None = None,
        log: Callable[[str], None] | None = None,
        loop: Literal["auto", "asyncio", "uvloop"] = "auto",
    ) -> None:
        if mode not in ("thread", "process"):
            raise FakeForumError(f"mode={mode!r} is not supported; use 'thread' or 'process'.")
        if loop not in ("auto", "asyncio", "uvloop"):
            raise FakeForumError(f"loop={loop!r} is not one of 'auto', 'asyncio', 'uvloop'.")
        for name, value in (("idle_timeout", idle_timeout), ("header_timeout", header_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise FakeForumError(f"{name} must be a positive number of seconds, not {value!r}.")
        for name, number in (
            ("backlog", backlog),
            ("max_header_size", max_header_size),
            ("max_body_size", max_body_size),
            ("journal_size", journal_size),
            ("port", port + 1 if isinstance(port, int) else port),
        ):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise FakeForumError(
                    f"{name} must be a whole number of at least 1, not {number!r}."
                )
        if admin_token is not None and (not isinstance(admin_token, str) or not admin_token):
            raise FakeForumError("admin_token must be a non-empty string.")
        if admin and admin_token is None and not _is_loopback(host):
            raise FakeForumError(
                f"Serving on {host} makes the admin API reachable from other machines; give "
                f"admin_token='...' (--admin-token) or turn it off with admin=False (--admin off)."
            )
        if mode == "process" and not admin:
            raise FakeForumError(
                "mode='process' drives its child through the admin API; "
                "it cannot run with admin=False."
            )
        if mode == "process" and log is not None:
            raise FakeForumError(
                "log= is a function of this process; mode='process' cannot "
                "call it. Use mode='thread' to log requests."
            )
        schedule = EMPTY_SCHEDULE.replace(
            latency=latency, bandwidth=bandwidth, faults=faults, seed=seed
        )
        rate = parse_rate(activity) if activity is not None else None
        if forum is None:
            forum = Forum.generate(seed=seed)
        self._host = host
        self._mode: Mode = mode
        self._state: Literal["new", "running", "stopped"] = "new"
        self._reported = 0
        settings: dict[str, Any] = {
            "host": host,
            "port": port,
            "schedule": schedule.as_dict(),
            "limits": Limits(
                max_header_size, max_body_size, float(idle_timeout), float(header_timeout)
            ),
            "backlog": backlog,
            "journal_size": journal_size,
            "loop": loop,
            "admin": admin,
            "admin_token": admin_token,
            "activity": rate,
        }
        self._backend: Backend
        if mode == "thread":
            from .local import LocalServer

            self._backend = LocalServer(
                forum, schedule=schedule, log=log, **_without(settings, "schedule")
            )
        else:
            from .remote import RemoteServer

            self._backend = RemoteServer(forum, settings)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeForumServer:
        """Bind, listen and start serving; returns self. Raises FakeForumError on a busy port."""
        if self._state == "running":
            raise FakeForumError("This FakeForumServer is already running.")
        if self._state == "stopped":
            raise FakeForumError(
                "Cannot restart a FakeForumServer once it has been stopped; create a new one."
            )
        try:
            self._backend.start()
        except BaseException:
            self._state = "stopped"
            raise
        self._state = "running"
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; end the server's thread or process.

        Idempotent. Requests waiting in injected latency or hanging are dropped (their clients
        see the connection close). Raises FakeForumError if the app raised while serving.
        """
        if self._state == "running":
            self._state = "stopped"
            self._backend.stop()
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
        errors = self._backend.errors()[self._reported :]
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

    # -- addresses and settings -----------------------------------------------------------

    @property
    def host(self) -> str:
        """The host the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (the kernel's pick once started with port=0)."""
        return self._backend.port

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin API's base URL (its dashboard is this page)."""
        return self.url + "/_fakeforum"

    @property
    def mode(self) -> Mode:
        """``"thread"`` or ``"process"``."""
        return self._mode

    @property
    def backlog(self) -> int:
        """The listen backlog in force: the one asked for, capped by the kernel's somaxconn."""
        return self._backend.backlog

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._state == "running"

    @property
    def seed(self) -> int:
        """The seed of the content, the latency schedule and the faults."""
        return int(self._backend.config()["seed"])

    @property
    def forum(self) -> Any:
        """The forum being served (in process mode, a view with the same reading methods);
        changes to it show in the very next response."""
        return self._backend.forum

    @property
    def latency(self) -> dict[str, str]:
        """The latency rules in force as ``{glob: spec}``."""
        return dict(self._backend.config()["latency"])

    @property
    def faults(self) -> list[dict[str, Any]]:
        """The fault rules in force (scripted ones with the count still to come)."""
        return list(self._backend.config()["faults"])

    @property
    def config(self) -> dict[str, Any]:
        """Latency, bandwidth, faults, seed and activity, as the admin API shows them."""
        return self._backend.config()

    @property
    def errors(self) -> list[ServerError]:
        """Every exception the app raised while serving, oldest first."""
        return self._backend.errors()

    def configure(
        self,
        *,
        latency: LatencyArg | Unset = UNSET,
        bandwidth: str | float | Unset | None = UNSET,
        faults: Iterable[Mapping[str, Any]] | Unset | None = UNSET,
        seed: int | Unset = UNSET,
    ) -> None:
        """Change any of latency, bandwidth, faults and seed at once, for the next request on.

        Every value is checked first: an invalid one raises FakeForumError and changes nothing.
        The schedule starts over: the n-th request to each path from now on meets the delay and
        fault it would meet in a new server with the same settings.
        """
        changes: dict[str, Any] = {
            k: v
            for k, v in (
                ("latency", latency),
                ("bandwidth", bandwidth),
                ("faults", faults),
                ("seed", seed),
            )
            if not isinstance(v, Unset)
        }
        # Checked here, in this process, so errors read the same in both modes.
        EMPTY_SCHEDULE.replace(**changes)
        self._backend.configure(**changes)

    def set_latency(self, latency: LatencyArg, *, bandwidth: str | float | None = None) -> None:
        """Replace the latency rules (and bandwidth); see :meth:`configure`."""
        self.configure(latency=latency, bandwidth=bandwidth)

    def set_faults(self, faults: Iterable[Mapping[str, Any]] | None) -> None:
        """Replace every fault rule; see ``fakeforum.faults`` for the rule fields.

        ``[{"route": "/api/subjects/*/replies", "kind": "status", "status": 503, "p": 0.1},
        {"route": "*", "kind": "429", "retry_after": 2, "p": 0.05}]``
        """
        self.configure(faults=faults)

    def fail_next(self, route: str = "*", *, kind: str, times: int = 1, **fields: Any) -> None:
        """Inject ``kind`` into the next ``times`` requests that ``route`` (a glob) matches.

        ``server.fail_next("/api/subjects/3/replies", kind="truncate", times=2)``. Scripted
        faults come before random ones and keep the request numbering as it is.
        """
        self._backend.fail_next({"route": route, "kind": kind, "times": times, **fields})

    def reset(self) -> None:
        """Back to how the server was built: content, latency, faults, counters, journal."""
        self._backend.reset()

    def start_activity(self, rate: str | float) -> None:
        """Post seeded replies at ``rate`` (``"5/s"``, ``"30/min"``, or per second)."""
        self._backend.set_activity(parse_rate(rate))

    def stop_activity(self) -> None:
        """Stop posting activity replies."""
        self._backend.set_activity(None)

    # -- counters and journal -------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`fakeforum.Stats`)."""
        return self._backend.stats()

    @property
    def cpu_time(self) -> float:
        """CPU seconds the server's event loop has used: in thread mode, CPU taken from the
        process under test (poolcheck subtracts it from the client's)."""
        return self._backend.stats().cpu_time

    def reset_stats(self) -> None:
        """Zero the counters (requests in flight and connections open stay as they are)."""
        self._backend.reset_stats()

    @property
    def journal(self) -> list[JournalEntry]:
        """The last requests (``journal_size`` of them), oldest first."""
        return self._backend.journal()

    def journal_since(self, start: float) -> list[JournalEntry]:
        """The requests that arrived at or after ``start`` (a ``time.monotonic()`` value)."""
        return self._backend.journal(since=start)

    def trace(self) -> dict[str, Any]:
        """The journal as Chrome trace JSON (load it in Perfetto): a track per connection."""
        return chrome_trace(self._backend.journal())

    def write_trace(self, path: str | Path) -> Path:
        """Write :meth:`trace` to ``path`` and return it."""
        target = Path(path)
        target.write_text(json.dumps(self.trace()))
        return target

    # -- forum conveniences ---------------------------------------------------------------

    def subject_urls(self, n: int | None = None) -> list[str]:
        """The JSON API URL of each subject (``<url>/api/subjects/<id>``), all or the first n."""
        ids = self.forum.subject_ids()
        return [f"{self.url}/api/subjects/{i}" for i in (ids if n is None else ids[:n])]

    def post_reply(self, subject_id: int, body: str = "", *, author: str = "anonymous") -> Reply:
        """Add a reply to a subject now (see :meth:`Forum.post_reply`)."""
        reply: Reply = self.forum.post_reply(subject_id, body, author=author)
        return reply

    def post_replies(self, per_subject: int = 1) -> list[Reply]:
        """Add ``per_subject`` replies to every subject; returns them in posting order."""
        if isinstance(per_subject, bool) or not isinstance(per_subject, int) or per_subject < 0:
            raise FakeForumError(f"per_subject must be a whole number ≥ 0, not {per_subject!r}.")
        return self._backend.post_replies(per_subject)

    def reply_count(self, subject_id: int) -> int:
        """How many replies a subject has now."""
        subject = self.forum.subject(subject_id)
        if subject is None:
            raise FakeForumError(f"No subject with id {subject_id!r}.")
        return len(subject.replies)

    def __repr__(self) -> str:
        return f"<FakeForumServer {self.url} {self._mode} {self._state}>"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without(settings: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in keys}
