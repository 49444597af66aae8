"""The forum as a plain werkzeug WSGI application: HTML for scrapers, JSON for API clients.

``create_app(forum)`` returns a WSGI callable that any WSGI server can host. FakeForumServer
calls it inline on its event loop and adds latency and faults around it; the app itself knows
nothing of either.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.http import http_date, is_resource_modified
from werkzeug.routing import IntegerConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from .model import Forum, Reply, Subject

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ROUTE_KEY", "ForumApp", "create_app"]

# The app records the matched rule here so that the server can count requests per route
# (``/api/subjects/<int:subject_id>``) rather than per URL, without matching twice.
ROUTE_KEY = "fakeforum.route"
UNMATCHED_ROUTE = "(no route)"
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_MAX_MATCHES = 65_536
_GET = ["GET"]  # werkzeug adds HEAD to every GET rule and answers it without a body

PAGE_SIZE = 20
MAX_PER_PAGE = 100
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadParameter(HTTPException):
    """A query parameter that is missing its form; the body names it."""

    code = 400

    def __init__(self, parameter: str, value: str, expected: str) -> None:
        super().__init__(f"Parameter {parameter!r} is {value!r}; it must be {expected}.")
        self.parameter = parameter


class ForumApp:
    """The WSGI application over one Forum. Create it with :func:`create_app`."""

    def __init__(self, forum: Forum) -> None:
        self.forum = forum
        self.url_map = _url_map()
        self._views: dict[str, Callable[..., Response]] = {
            rule.endpoint: getattr(self, f"view_{rule.endpoint}")
            for rule in self.url_map.iter_rules()
        }
        # Binding to each request's environ costs more than the rest of a request together;
        # with no host matching and no redirects, one adapter serves every request.
        self._adapter = self.url_map.bind("fakeforum")
        self._matches: dict[tuple[str, str], tuple[Rule, Mapping[str, Any]] | HTTPException] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        match = self._match(request.path, request.method)
        if isinstance(match, HTTPException):
            environ[ROUTE_KEY] = UNMATCHED_ROUTE
            response = self._error(request, match)
        else:
            rule, args = match
            environ[ROUTE_KEY] = rule.rule
            try:
                response = self._views[str(rule.endpoint)](request, **args)
            except HTTPException as exc:
                response = self._error(request, exc)
        # Every response here is built whole, with its Content-Length, and a 304 is stripped by
        # _conditional; werkzeug's generic WSGI finishing (get_wsgi_headers: redirects,
        # streaming, ...) would cost a fifth of a request for nothing.
        start_response(response.status, response.headers.to_wsgi_list())
        return [] if request.method == "HEAD" else [response.get_data()]

    def route_for(self, path: str, method: str = "GET") -> str:
        """The route pattern a request would match (for counting answers the app never gave)."""
        match = self._match(path, method)
        return UNMATCHED_ROUTE if isinstance(match, HTTPException) else str(match[0].rule)

    def _match(self, path: str, method: str) -> tuple[Rule, Mapping[str, Any]] | HTTPException:
        # Matching is a pure function of (path, method), and werkzeug's matcher costs more
        # than the rest of a small request: clients poll the same URLs, so remember.
        key = (path, method)
        known = self._matches.get(key)
        if known is not None:
            return known
        match: tuple[Rule, Mapping[str, Any]] | HTTPException
        try:
            match = self._adapter.match(path, method, return_rule=True)
        except HTTPException as exc:
            match = exc
        if len(self._matches) >= _MAX_MATCHES:
            self._matches.clear()
        self._matches[key] = match
        return match

    # -- HTML ---------------------------------------------------------------------------------

    def view_index(self, request: Request) -> Response:
        items = "".join(
            f'<li><a href="/boards/{escape(b.slug)}">{escape(b.name)}</a> '
            f"({len(self.forum.subject_ids(b.slug))} subjects)</li>"
            for b in self.forum.boards()
        )
        return _html("Boards", f'<h1>Boards</h1><ul class="boards">{items}</ul>')

    def view_board(self, request: Request, slug: str) -> Response:
        board = self.forum.board(slug)
        if board is None:
            raise NotFound(f"No board {slug!r}.")
        ids = self.forum.subject_ids(slug)
        page = _int_param(request, "page", 1, minimum=1)
        chunk, last_page = _page(ids, page, PAGE_SIZE, request)
        rows = []
        for subject_id in chunk:
            subject = self.forum.subject(subject_id)
            if subject is not None:
                rows.append(
                    f'<li class="subject" data-id="{subject.id}"><a href="/subjects/{subject.id}">'
                    f"{escape(subject.title)}</a> ({len(subject.replies)} replies)</li>"
                )
        nav = _nav(request, page, last_page)
        return _html(
            board.name,
            f'<h1>{escape(board.name)}</h1><ul class="subjects">{"".join(rows)}</ul>{nav[1]}',
            head=nav[0],
        )

    def view_subject_html(self, request: Request, subject_id: int) -> Response:
        subject = self._subject(subject_id)
        page = _int_param(request, "page", 1, minimum=1)
        chunk, last_page = _page(subject.replies, page, PAGE_SIZE, request)
        rows = "".join(
            f'<article class="reply" id="r{r.id}" data-id="{r.id}">'
            f'<p class="author">{escape(r.author)}</p><time datetime="{_iso(r.created_at)}">'
            f'{_iso(r.created_at)}</time><div class="body">{escape(r.body)}</div></article>'
            for r in chunk
        )
        nav = _nav(request, page, last_page)
        head = (
            f'{nav[0]}<link rel="alternate" type="application/atom+xml" '
            f'href="/subjects/{subject.id}.atom">'
        )
        body = (
            f'<h1>{escape(subject.title)}</h1><p>Board: <a href="/boards/{escape(subject.board)}">'
            f"{escape(subject.board)}</a></p>{rows}{nav[1]}"
        )
        return self._conditional(request, _html(subject.title, body, head=head), subject)

    def view_subject_atom(self, request: Request, subject_id: int) -> Response:
        subject = self._subject(subject_id)
        base = _root(request)
        entries = "".join(
            f"<entry><id>{base}/subjects/{subject.id}#r{r.id}</id>"
            f"<title>Reply {r.id} by {escape(r.author)}</title>"
            f"<author><name>{escape(r.author)}</name></author>"
            f"<updated>{_iso(r.created_at)}</updated>"
            f'<link href="{base}/subjects/{subject.id}#r{r.id}"/>'
            f'<content type="text">{escape(r.body)}</content></entry>'
            for r in reversed(subject.replies[-PAGE_SIZE:])
        )
        updated = _iso(subject.replies[-1].created_at if subject.replies else subject.created_at)
        feed = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>{base}/subjects/{subject.id}</id><title>{escape(subject.title)}</title>"
            f"<updated>{updated}</updated>"
            f'<link rel="self" href="{base}/subjects/{subject.id}.atom"/>'
            f'<link rel="alternate" href="{base}/subjects/{subject.id}"/>{entries}</feed>'
        )
        response = Response(feed, mimetype="application/atom+xml")
        return self._conditional(request, response, subject)

    # -- JSON ---------------------------------------------------------------------------------

    def view_api_boards(self, request: Request) -> Response:
        boards = [
            {"slug": b.slug, "name": b.name, "subject_count": len(self.forum.subject_ids(b.slug))}
            for b in self.forum.boards()
        ]
        return _json({"boards": boards})

    def view_api_subjects(self, request: Request) -> Response:
        page = _int_param(request, "page", 1, minimum=1)
        per_page = _int_param(request, "per_page", PAGE_SIZE, minimum=1, maximum=MAX_PER_PAGE)
        ids = self.forum.subject_ids()
        start = (page - 1) * per_page
        subjects = [self.forum.subject(i) for i in ids[start : start + per_page]]
        more = start + per_page < len(ids)
        return _json(
            {
                "subjects": [_subject_json(request, s) for s in subjects if s is not None],
                "page": page,
                "per_page": per_page,
                "total": len(ids),
                "next": _url(request, page=page + 1, per_page=per_page) if more else None,
            }
        )

    def view_api_subject(self, request: Request, subject_id: int) -> Response:
        subject = self._subject(subject_id)
        return self._conditional(request, _json(_subject_json(request, subject)), subject)

    def view_api_replies(self, request: Request, subject_id: int) -> Response:
        since = _int_param(request, "since", 0, minimum=0)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        subject = self._subject(subject_id)
        result = self.forum.replies_since(subject_id, since, limit + 1)
        replies, last_id = result if result is not None else ([], 0)
        payload = {
            "subject_id": subject_id,
            "replies": [_reply_json(r) for r in replies[:limit]],
            "last_reply_id": last_id,
            "has_more": len(replies) > limit,
        }
        return self._conditional(request, _json(payload), subject)

    # -- helpers ------------------------------------------------------------------------------

    def _subject(self, subject_id: int) -> Subject:
        subject = self.forum.subject(subject_id)
        if subject is None:
            raise NotFound(f"No subject with id {subject_id}.")
        return subject

    def _conditional(self, request: Request, response: Response, subject: Subject) -> Response:
        # A strong ETag from the representation's own bytes can never disagree with the body.
        body = response.get_data()
        etag = hashlib.blake2b(body, digest_size=12).hexdigest()
        headers = response.headers
        headers["ETag"] = f'"{etag}"'
        headers["Last-Modified"] = _http_date(subject.modified)
        environ = request.environ
        conditional = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ
        if conditional and not is_resource_modified(
            environ,
            etag=etag,
            last_modified=datetime.fromtimestamp(subject.modified, tz=timezone.utc),
            ignore_if_range=True,
        ):
            response.status_code = 304
            response.set_data(b"")
            del response.headers["Content-Type"]
            response.headers.pop("Content-Length", None)
        return response

    def _error(self, request: Request, exc: HTTPException) -> Response:
        code = exc.code or 500
        message = exc.description or exc.name
        if isinstance(exc, NotFound) and exc.description == NotFound.description:
            message = f"No page at {request.path!r}."
        headers = exc.get_headers()
        if isinstance(exc, MethodNotAllowed):
            allowed = sorted(exc.valid_methods or ())
            message = (
                f"{request.method} is not allowed on {request.path!r}; use {', '.join(allowed)}."
            )
        if request.path.startswith("/api/"):
            body: dict[str, Any] = {"error": exc.name, "status": code, "message": message}
            if isinstance(exc, BadParameter):
                body["parameter"] = exc.parameter
            response = _json(body, status=code)
        else:
            response = _html(
                exc.name, f"<h1>{code} {escape(exc.name)}</h1><p>{escape(message)}</p>"
            )
            response.status_code = code
        for name, value in headers:
            if name.lower() != "content-type":
                response.headers[name] = value
        return response


class _AsciiIntegerConverter(IntegerConverter):
    r"""``<int:...>`` for ASCII digits only.

    werkzeug's ``\d+`` also matches other scripts' digits, and int() reads them: a full-width
    ``/api/subjects/\uff13`` served subject 3. Ids in URLs are ASCII, as in query parameters
    (see _int_param).
    """

    regex = "[0-9]+"


@lru_cache(maxsize=1)
def _url_map() -> Map:
    # Compiling the matcher costs milliseconds; the rules never change, so every app shares it.
    return Map(
        [
            Rule("/", endpoint="index", methods=_GET),
            Rule("/boards/<slug>", endpoint="board", methods=_GET),
            Rule("/subjects/<int:subject_id>", endpoint="subject_html", methods=_GET),
            Rule("/subjects/<int:subject_id>.atom", endpoint="subject_atom", methods=_GET),
            Rule("/api/boards", endpoint="api_boards", methods=_GET),
            Rule("/api/subjects", endpoint="api_subjects", methods=_GET),
            Rule("/api/subjects/<int:subject_id>", endpoint="api_subject", methods=_GET),
            Rule("/api/subjects/<int:subject_id>/replies", endpoint="api_replies", methods=_GET),
        ],
        strict_slashes=False,
        merge_slashes=False,
        converters={"int": _AsciiIntegerConverter},
    )


def create_app(forum: Forum | None = None) -> ForumApp:
    """The forum as a WSGI application (a generated one with seed 0 when none is given)."""
    return ForumApp(forum if forum is not None else Forum.generate())


def _int_param(
    request: Request, name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    bound = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    expected = f"a whole number {bound}"
    # str.isdigit accepts other scripts' digits and int() accepts '1_000'; a URL wants ASCII.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadParameter(name, raw, expected)
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise BadParameter(name, raw, expected)
    return value


def _page(items: list[Any], page: int, size: int, request: Request) -> tuple[list[Any], int]:
    last_page = max(1, math.ceil(len(items) / size))
    if page > last_page:
        raise NotFound(f"Page {page} of {request.path!r} is past its last page, {last_page}.")
    return items[(page - 1) * size : page * size], last_page


def _nav(request: Request, page: int, last_page: int) -> tuple[str, str]:
    """The <head> links and the visible navigation for a paginated HTML page."""
    head, links = [], []
    if page > 1:
        href = escape(_url(request, page=page - 1, relative=True))
        head.append(f'<link rel="prev" href="{href}">')
        links.append(f'<a rel="prev" href="{href}">previous</a>')
    if page < last_page:
        href = escape(_url(request, page=page + 1, relative=True))
        head.append(f'<link rel="next" href="{href}">')
        links.append(f'<a rel="next" href="{href}">next</a>')
    nav = f'<nav class="pages">Page {page} of {last_page} {" ".join(links)}</nav>'
    return "".join(head), nav


def _url(request: Request, *, relative: bool = False, **params: int) -> str:
    args = {k: v for k, v in request.args.items() if k not in params}
    args.update({k: str(v) for k, v in params.items()})
    base = request.path if relative else request.base_url
    return f"{base}?{urlencode(args)}"


def _root(request: Request) -> str:
    """The scheme and authority that clients used, for absolute URLs in JSON and feeds.

    werkzeug's ``host_url`` does IDNA decoding and trusted-host checks that cost more than the
    rest of a JSON request; a test server only needs the Host header, kept when it is plain.
    """
    environ = request.environ
    host = environ.get("HTTP_HOST", "")
    if not _PLAIN_HOST.fullmatch(host):
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"


def _subject_json(request: Request, subject: Subject) -> dict[str, Any]:
    root = _root(request)
    return {
        "id": subject.id,
        "title": subject.title,
        "board": subject.board,
        "reply_count": len(subject.replies),
        "last_reply_id": subject.last_reply_id,
        "url": f"{root}/api/subjects/{subject.id}",
        "html_url": f"{root}/subjects/{subject.id}",
    }


def _reply_json(reply: Reply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "author": reply.author,
        "body": reply.body,
        "created_at": _iso(reply.created_at),
    }


@lru_cache(maxsize=65_536)
def _http_date(timestamp: int) -> str:
    return http_date(datetime.fromtimestamp(timestamp, tz=timezone.utc))


@lru_cache(maxsize=65_536)
def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def _html(title: str, body: str, *, head: str = "") -> Response:
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{head}</head><body>{body}</body></html>"
    )
    return Response(page, mimetype="text/html")
