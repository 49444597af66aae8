"""Process mode: the server runs in a child process and is driven through its admin API.

The child is ``python -m fakeforum.child``: it reads its settings (a pickle) from its stdin,
prints ``{"port": ...}`` once serving, and stops when its stdin closes — which the kernel does
when this process dies, however it dies — or when its parent process changes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import pickle
import select
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from .core import ServerError
from .errors import FakeForumError
from .journal import JournalEntry
from .model import Board, Forum, Reply, Subject
from .stats import RouteStats, Stats

__all__ = ["RemoteError", "RemoteForum", "RemoteServer"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class RemoteError(Exception):
    """An exception raised in the child process, known by its type name and message."""


class RemoteServer:
    """Runs a LocalServer in a child process; same methods, over the admin API."""

    def __init__(self, forum: Forum, settings: dict[str, Any]) -> None:
        self._payload = pickle.dumps({"forum": forum, **settings})
        self._host = str(settings["host"])
        self._token: str | None = settings["admin_token"]
        self._process: subprocess.Popen[bytes] | None = None
        self._port = int(settings["port"])
        self._backlog = int(settings["backlog"])
        self._final_errors: list[ServerError] | None = None
        self.forum = RemoteForum(self)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "fakeforum.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._process = process
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(self._payload)
            process.stdin.flush()
        except BrokenPipeError:
            pass  # the child died at once; its exit status tells below
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
        line = process.stdout.readline() if ready else b""
        try:
            message = json.loads(line)
        except ValueError:
            message = {}
        if "port" not in message:
            self._kill()
            reason = message.get("error") or (
                f"it exited with status {process.returncode}" if line == b"" else line.decode()
            )
            raise FakeForumError(f"The fakeforum child process could not start: {reason}")
        self._port = int(message["port"])
        self._backlog = int(message["backlog"])

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            self._final_errors = self.errors()
        except FakeForumError:
            self._final_errors = []
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()  # the child's signal to stop
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
        if process.stdout is not None:
            process.stdout.close()
        self._process = None

    def _kill(self) -> None:
        process = self._process
        if process is not None:
            process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()

    # -- the admin API --------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API call; JSON in, JSON out; a 4xx becomes a FakeForumError."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, "/_fakeforum" + path, body=payload, headers=headers)
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise FakeForumError(
                f"The fakeforum child process did not answer {method} {path}: {exc}."
            ) from exc
        finally:
            connection.close()
        if response.status >= 400:
            raise FakeForumError(str(data.get("message", data)))
        return data

    @property
    def port(self) -> int:
        return self._port

    @property
    def backlog(self) -> int:
        return self._backlog

    def stats(self) -> Stats:
        return stats_from_dict(self.call("GET", "/stats"))

    def reset_stats(self) -> None:
        self.call("POST", "/stats/reset")

    def config(self) -> dict[str, Any]:
        return dict(self.call("GET", "/config"))

    def configure(self, **settings: Any) -> None:
        self.call("PUT", "/config", settings)

    def fail_next(self, rule: Mapping[str, Any]) -> None:
        self.call("POST", "/faults/next", dict(rule))

    def reset(self) -> None:
        self.call("POST", "/reset")

    def journal(self, limit: int | None = None, since: float | None = None) -> list[JournalEntry]:
        params = {k: v for k, v in (("limit", limit), ("since", since)) if v is not None}
        query = "?" + "&".join(f"{k}={v!r}" for k, v in params.items()) if params else ""
        return [JournalEntry(**e) for e in self.call("GET", "/journal" + query)["entries"]]

    def errors(self) -> list[ServerError]:
        if self._process is None:
            return list(self._final_errors or [])
        return [
            ServerError(
                e["method"],
                e["target"],
                RemoteError(f"{e['type']}: {e['message']}"),
                e["traceback"],
            )
            for e in self.call("GET", "/errors")["errors"]
        ]

    def set_activity(self, rate: float | None) -> None:
        self.call("PUT", "/config", {"activity": rate})

    def post_replies(self, per_subject: int) -> list[Reply]:
        data = self.call("POST", "/replies", {"per_subject": per_subject})
        return [_reply(r) for r in data["replies"]]


class RemoteForum:
    """The reading and posting methods of Forum, for a forum served by a child process."""

    def __init__(self, server: RemoteServer) -> None:
        self._server = server

    def subject_ids(self, board: str | None = None) -> list[int]:
        """Ids of all subjects (or of one board's), in creation order."""
        query = "" if board is None else f"?board={board}"
        return list(self._server.call("GET", "/forum" + query)["subject_ids"])

    def boards(self) -> list[Board]:
        """All boards in the order they were added."""
        return [Board(b["slug"], b["name"]) for b in self._server.call("GET", "/forum")["boards"]]

    def subject(self, subject_id: int) -> Subject | None:
        """A copy of one subject with its replies, or None."""
        try:
            data = self._server.call("GET", f"/subjects/{int(subject_id)}")
        except FakeForumError:
            return None
        return Subject(
            data["id"],
            data["board"],
            data["title"],
            data["created_at"],
            [_reply(r) for r in data["replies"]],
            data["modified"],
        )

    def post_reply(self, subject_id: int, body: str = "", *, author: str = "anonymous") -> Reply:
        """Add a reply now and return it."""
        data = self._server.call(
            "POST", f"/subjects/{int(subject_id)}/replies", {"body": body, "author": author}
        )
        return _reply(data)

    @property
    def last_reply_id(self) -> int:
        """The greatest reply id given so far."""
        return int(self._server.call("GET", "/forum")["last_reply_id"])

    @property
    def version(self) -> int:
        """A number that grows with every change."""
        return int(self._server.call("GET", "/forum")["version"])

    def __len__(self) -> int:
        return len(self.subject_ids())


def stats_from_dict(data: dict[str, Any]) -> Stats:
    """Rebuild a Stats snapshot from its ``as_dict()`` form."""
    return Stats(
        requests=data["requests"],
        by_status={int(k): v for k, v in data["by_status"].items()},
        faults=dict(data["faults"]),
        in_flight=data["in_flight"],
        peak_in_flight=data["peak_in_flight"],
        connections_opened=data["connections_opened"],
        connections_open=data["connections_open"],
        by_route={k: RouteStats(**v) for k, v in data["by_route"].items()},
        errors=data["errors"],
        cpu_time=data.get("cpu_time", 0.0),
    )


def _reply(data: dict[str, Any]) -> Reply:
    return Reply(data["id"], data["subject_id"], data["author"], data["body"], data["created_at"])
