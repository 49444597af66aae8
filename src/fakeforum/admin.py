"""The admin API under ``/_fakeforum/``: counters, settings, content, journal, dashboard.

It is a werkzeug app like the forum, called inline on the server's loop thread, so everything
it touches is consistent with the requests being served. Its own requests are not counted,
delayed, faulted or journaled. Process mode drives its child server through this API.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import BadRequest, HTTPException, NotFound, Unauthorized
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .activity import parse_rate
from .core import ADMIN_PREFIX
from .dashboard import DASHBOARD_HTML
from .errors import FakeForumError
from .journal import chrome_trace

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .local import LocalServer

__all__ = ["AdminApp"]

_CONFIG_KEYS = {"latency", "bandwidth", "faults", "seed", "activity"}
# A config is a few levels deep (config → faults → rule → value); far deeper is an attack.
_MAX_DEPTH = 16


@lru_cache(maxsize=1)
def _rules() -> Map:
    # Compiled once: compiling a Map costs milliseconds, and servers start per test.
    def rule(path: str, endpoint: str, *methods: str) -> Rule:
        return Rule(ADMIN_PREFIX + path, endpoint=endpoint, methods=list(methods))

    return Map(
        [
            rule("/", "dashboard", "GET"),
            rule("/stats", "stats", "GET"),
            rule("/stats/reset", "stats_reset", "POST"),
            rule("/config", "config", "GET", "PUT"),
            rule("/faults/next", "fail_next", "POST"),
            rule("/reset", "reset", "POST"),
            rule("/forum", "forum", "GET"),
            rule("/subjects/<int:subject_id>", "subject", "GET"),
            rule("/subjects/<int:subject_id>/replies", "post_reply", "POST"),
            rule("/replies", "post_replies", "POST"),
            rule("/journal", "journal", "GET"),
            rule("/trace", "trace", "GET"),
            rule("/errors", "errors", "GET"),
        ],
        strict_slashes=False,
    )


class AdminApp:
    """The admin API of one LocalServer; with ``token`` set, every route requires it."""

    def __init__(self, server: LocalServer, *, token: str | None) -> None:
        self.server = server
        self.token = token
        self._adapter = _rules().bind("fakeforum")
        self._views: dict[str, Callable[[Request, Mapping[str, Any]], Response]] = {
            str(r.endpoint): getattr(self, f"view_{r.endpoint}")
            for r in self._adapter.map.iter_rules()
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            self._authorize(request)
            endpoint, args = self._adapter.match(request.path, request.method)
            response = self._views[str(endpoint)](request, args)
        except HTTPException as exc:
            response = _json(
                {"error": exc.name, "status": exc.code, "message": exc.description},
                status=exc.code or 500,
            )
            for name, value in exc.get_headers():
                if name.lower() != "content-type":
                    response.headers[name] = value
        except FakeForumError as exc:
            response = _json({"error": "Bad Request", "status": 400, "message": str(exc)}, 400)
        response.headers["Cache-Control"] = "no-store"
        return response(environ, start_response)

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("Authorization", "")
        # The scheme is case-insensitive (RFC 9110 §11.1).
        scheme, _, credentials = given.partition(" ")
        given = credentials if scheme.lower() == "bearer" else request.args.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise _Unauthorized(
                "The admin API needs the token given with --admin-token: send "
                "'Authorization: Bearer <token>' (or ?token=<token> in a browser)."
            )

    # -- views ----------------------------------------------------------------------------

    def view_dashboard(self, request: Request, args: Mapping[str, Any]) -> Response:
        return Response(DASHBOARD_HTML, mimetype="text/html")

    def view_stats(self, request: Request, args: Mapping[str, Any]) -> Response:
        return _json(self.server.stats().as_dict())

    def view_stats_reset(self, request: Request, args: Mapping[str, Any]) -> Response:
        self.server.reset_stats()
        return _json(self.server.stats().as_dict())

    def view_config(self, request: Request, args: Mapping[str, Any]) -> Response:
        if request.method == "PUT":
            body = _body(request)
            unknown = sorted(set(body) - _CONFIG_KEYS)
            if unknown:
                raise BadRequest(
                    f"Unknown config key(s) {', '.join(map(repr, unknown))}; the keys are "
                    f"{', '.join(sorted(_CONFIG_KEYS))}."
                )
            rate = body.get("activity")
            rate = parse_rate(rate) if rate is not None else None  # checked before anything
            self.server.configure(**{k: v for k, v in body.items() if k != "activity"})
            if "activity" in body:
                self.server.set_activity(rate)
        return _json(self.server.config())

    def view_fail_next(self, request: Request, args: Mapping[str, Any]) -> Response:
        body = _body(request)
        body.setdefault("times", 1)
        self.server.fail_next(body)
        return _json(self.server.config())

    def view_reset(self, request: Request, args: Mapping[str, Any]) -> Response:
        self.server.reset()
        return _json(self.server.config())

    def view_forum(self, request: Request, args: Mapping[str, Any]) -> Response:
        forum = self.server.forum
        return _json(
            {
                "boards": [{"slug": b.slug, "name": b.name} for b in forum.boards()],
                "subject_ids": forum.subject_ids(request.args.get("board")),
                "last_reply_id": forum.last_reply_id,
                "version": forum.version,
            }
        )

    def view_subject(self, request: Request, args: Mapping[str, Any]) -> Response:
        subject = self.server.forum.subject(args["subject_id"])
        if subject is None:
            raise NotFound(f"No subject with id {args['subject_id']}.")
        return _json(
            {
                "id": subject.id,
                "board": subject.board,
                "title": subject.title,
                "created_at": subject.created_at,
                "modified": subject.modified,
                "replies": [_reply(r) for r in subject.replies],
            }
        )

    def view_post_reply(self, request: Request, args: Mapping[str, Any]) -> Response:
        body = _body(request)
        text, author = body.get("body", ""), body.get("author", "anonymous")
        if not isinstance(text, str) or not isinstance(author, str):
            raise BadRequest("'body' and 'author' must be strings.")
        reply = self.server.forum.post_reply(args["subject_id"], text, author=author)
        return _json(_reply(reply), status=201)

    def view_post_replies(self, request: Request, args: Mapping[str, Any]) -> Response:
        per_subject = _body(request).get("per_subject", 1)
        if not isinstance(per_subject, int) or isinstance(per_subject, bool) or per_subject < 0:
            raise BadRequest("'per_subject' must be a whole number, 0 or more.")
        replies = self.server.post_replies(per_subject)
        return _json({"replies": [_reply(r) for r in replies]}, status=201)

    def view_journal(self, request: Request, args: Mapping[str, Any]) -> Response:
        limit = request.args.get("limit")
        if limit is not None and not (limit.isascii() and limit.isdigit()):
            raise BadRequest(f"Parameter 'limit' is {limit!r}; it must be a whole number.")
        since = request.args.get("since")
        try:
            start = float(since) if since is not None else None
        except ValueError:
            raise BadRequest(
                f"Parameter 'since' is {since!r}; it must be a time.monotonic() value."
            ) from None
        entries = self.server.journal(int(limit) if limit is not None else None, start)
        return _json({"entries": [e.as_dict() for e in entries]})

    def view_trace(self, request: Request, args: Mapping[str, Any]) -> Response:
        return _json(chrome_trace(self.server.journal()))

    def view_errors(self, request: Request, args: Mapping[str, Any]) -> Response:
        return _json(
            {
                "errors": [
                    {
                        "method": e.method,
                        "target": e.target,
                        "type": type(e.exception).__name__,
                        "message": str(e.exception),
                        "traceback": e.traceback,
                    }
                    for e in self.server.errors()
                ]
            }
        )


class _Unauthorized(Unauthorized):
    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), ("WWW-Authenticate", "Bearer")]


def _body(request: Request) -> dict[str, Any]:
    too_deep = f"The request body is JSON nested more than {_MAX_DEPTH} levels deep."
    try:
        body = json.loads(request.get_data() or b"{}")
    except RecursionError:  # a body of "[[[[..." within the size limit
        raise BadRequest(too_deep) from None
    except ValueError as exc:
        raise BadRequest(f"The request body is not JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if _deeper_than(body, _MAX_DEPTH):
        # Error messages show the values they refuse, and repr() of a value nested a thousand
        # deep raises RecursionError: refuse such bodies before anything looks inside.
        raise BadRequest(too_deep)
    return body


def _deeper_than(value: Any, depth: int) -> bool:
    level = [value]
    for _ in range(depth):
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


def _reply(reply: Any) -> dict[str, Any]:
    return {
        "id": reply.id,
        "subject_id": reply.subject_id,
        "author": reply.author,
        "body": reply.body,
        "created_at": reply.created_at,
    }


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")
