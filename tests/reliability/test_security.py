"""Security, in both modes: the admin token on every admin route, body limits on every POST,
hostile content escaped wherever it is shown, and no file ever served from disk.

Traffic stays on loopback, so "off loopback" is tested as the server enforces it: with a token
set (the server then demands it on every admin request, wherever it listens), and by the
refusal to build a server on another address without one.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from fakeforum import FakeForumError, FakeForumServer
from fakeforum.admin import _rules
from fakeforum.dashboard import DASHBOARD_HTML
from fakeforum.server import Mode

from ..helpers import raw_exchange
from .support import assert_healthy, parse_responses

TOKEN = "s3cret-token-0123456789"
LIMIT = 1024


@pytest.fixture(scope="module", params=["thread", "process"])
def guarded(request: pytest.FixtureRequest) -> Iterator[FakeForumServer]:
    """A server per mode with an admin token and a 1 KiB body limit."""
    with FakeForumServer(mode=request.param, admin_token=TOKEN, max_body_size=LIMIT) as server:
        yield server


def admin_routes() -> list[tuple[str, str]]:
    """Every admin route and method the admin API has (read from its own URL map)."""
    routes = []
    for rule in _rules().iter_rules():
        path = str(rule.rule).replace("<int:subject_id>", "1")
        routes += [(method, path) for method in sorted(rule.methods or ())]
    return routes


def send(
    server: FakeForumServer, method: str, target: str, *, headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> requests.Response:  # fmt: skip
    return requests.request(
        method, server.url + target, headers=headers, data=body, timeout=10, allow_redirects=False
    )


def authorised(
    server: FakeForumServer, method: str, path: str, body: object = None
) -> requests.Response:
    return requests.request(
        method,
        server.url + path,
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


# -- the admin token -------------------------------------------------------------------------

WRONG_CREDENTIALS: list[tuple[dict[str, str], str]] = [
    ({}, ""),
    ({"Authorization": "Bearer wrong"}, ""),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, ""),  # a prefix of the token
    ({"Authorization": f"Bearer {TOKEN}x"}, ""),  # the token and more
    ({"Authorization": f"Basic {TOKEN}"}, ""),
    ({"Authorization": f"Token {TOKEN}"}, ""),
    ({"Authorization": "Bearer "}, ""),
    ({}, "?token="),
    ({}, "?token=wrong"),
    ({"Authorization": "Bearer wrong"}, f"?token={TOKEN}"),  # the header is the one read
]


@pytest.mark.parametrize(("method", "path"), admin_routes())
def test_every_admin_route_and_method_needs_the_token(
    guarded: FakeForumServer, method: str, path: str
) -> None:
    before = authorised(guarded, "GET", "/_fakeforum/config").json()
    replies = guarded.reply_count(1)
    for headers, query in WRONG_CREDENTIALS:
        body = b'{"per_subject": 1, "body": "x", "kind": "reset", "seed": 7}'
        refused = send(guarded, method, path + query, headers=headers, body=body)
        assert refused.status_code == 401, (method, path, headers, query)
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        if method != "HEAD":
            assert "--admin-token" in refused.json()["message"]
    # Refused means refused: nothing was changed by the attempts.
    assert authorised(guarded, "GET", "/_fakeforum/config").json() == before
    assert guarded.reply_count(1) == replies
    granted = send(guarded, method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert granted.status_code != 401
    guarded.reset()


@pytest.mark.parametrize(
    "path", ["/_fakeforum/nothing", "/_fakeforum/stats/", "/_fakeforum/../_fakeforum/stats"]
)
def test_unknown_admin_paths_are_refused_before_they_are_looked_up(
    guarded: FakeForumServer, path: str
) -> None:
    [response] = parse_responses(
        raw_exchange(
            guarded, f"DELETE {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
        )
    )
    assert response.status == 401


def test_the_forum_itself_needs_no_token(guarded: FakeForumServer) -> None:
    assert send(guarded, "GET", "/api/subjects/1").status_code == 200
    assert_healthy(guarded)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "10.1.2.3", "example.com"])
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_server_off_loopback_is_refused_without_a_token(host: str, mode: Mode) -> None:
    with pytest.raises(FakeForumError, match="give admin_token"):
        FakeForumServer(host=host, mode=mode)
    # With a token, or without the admin API, it may be built (not started: tests stay on
    # loopback).
    FakeForumServer(host=host, mode=mode, admin_token=TOKEN)
    FakeForumServer(host=host, admin=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    FakeForumServer(host=host)  # built, not started: ::1 may not exist here


# -- body size limits ------------------------------------------------------------------------


def _posts() -> list[tuple[str, str]]:
    posts = [(m, p) for m, p in admin_routes() if m in ("POST", "PUT")]
    return [*posts, ("POST", "/api/subjects/1"), ("POST", "/")]


@pytest.mark.parametrize(("method", "path"), _posts())
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_bodies_over_the_limit_are_413_and_change_nothing(
    guarded: FakeForumServer, method: str, path: str, framing: str
) -> None:
    before = authorised(guarded, "GET", "/_fakeforum/config").json()
    replies = guarded.reply_count(1)
    text = json.dumps({"body": "x" * (2 * LIMIT), "per_subject": 1, "kind": "reset"}).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
    if framing == "chunked":
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (200, text[i : i + 200]) for i in range(0, len(text), 200)
        )
        payload = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    else:
        payload = head + b"Content-Length: %d\r\n\r\n" % len(text) + text
    [response] = parse_responses(raw_exchange(guarded, payload))
    assert response.status == 413
    assert response.closes
    assert authorised(guarded, "GET", "/_fakeforum/config").json() == before
    assert guarded.reply_count(1) == replies
    assert_healthy(guarded)


def test_a_body_at_the_limit_is_read(guarded: FakeForumServer) -> None:
    text = '{"body": "%s"}'
    body = text % ("y" * (LIMIT - len(text) + 2))
    assert len(body) == LIMIT
    response = authorised(guarded, "POST", "/_fakeforum/subjects/2/replies", json.loads(body))
    assert response.status_code == 201
    assert response.json()["body"] == "y" * (LIMIT - len(text) + 2)
    guarded.reset()


# -- hostile content -------------------------------------------------------------------------

HOSTILE_BODY = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;</div>"
HOSTILE_AUTHOR = "\"><svg onload=alert(3)> ' onmouseover='alert(4)' <b>"


class Page(HTMLParser):
    """Every tag with its attributes, and the text of each reply's author and body."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.replies: dict[str, dict[str, str]] = {}
        self._reply: str | None = None
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        found = dict(attrs)
        if tag == "article" and found.get("class") == "reply":
            self._reply = str(found.get("id"))
            self.replies[self._reply] = {"author": "", "body": ""}
        elif self._reply and found.get("class") in ("author", "body"):
            self._field = str(found.get("class"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "div"):
            self._field = None
        elif tag == "article":
            self._reply = None

    def handle_data(self, data: str) -> None:
        if self._reply and self._field:
            self.replies[self._reply][self._field] += data


def parse_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def assert_no_injected_markup(page: Page) -> None:
    __tracebackhide__ = True
    for tag, attrs in page.tags:
        assert tag not in ("script", "img", "svg"), f"an injected <{tag}>"
        assert not [name for name, _ in attrs if name.startswith("on")], f"<{tag} {attrs}>"


def test_hostile_replies_are_escaped_in_html_and_atom(guarded: FakeForumServer) -> None:
    posted = authorised(
        guarded,
        "POST",
        "/_fakeforum/subjects/7/replies",
        {"body": HOSTILE_BODY, "author": HOSTILE_AUTHOR},
    )
    assert posted.status_code == 201
    reply_id = posted.json()["id"]
    last_page = -(-guarded.reply_count(7) // 20)
    html = send(guarded, "GET", f"/subjects/7?page={last_page}").text
    page = parse_page(html)
    assert_no_injected_markup(page)
    # Escaped once, not twice: a parser reads back exactly what was posted.
    assert page.replies[f"r{reply_id}"] == {"author": HOSTILE_AUTHOR, "body": HOSTILE_BODY}

    feed = send(guarded, "GET", "/subjects/7.atom")
    assert "<script" not in feed.text
    root = ET.fromstring(feed.content)  # still well-formed XML
    ns = {"a": "http://www.w3.org/2005/Atom"}
    [entry] = [
        e
        for e in root.findall("a:entry", ns)
        if e.findtext("a:id", "", ns).endswith(f"#r{reply_id}")
    ]
    assert entry.findtext("a:author/a:name", None, ns) == HOSTILE_AUTHOR
    assert entry.findtext("a:content", None, ns) == HOSTILE_BODY
    assert entry.findtext("a:title", None, ns) == f"Reply {reply_id} by {HOSTILE_AUTHOR}"

    # JSON carries it verbatim, as JSON, never as HTML.
    api = send(guarded, "GET", f"/api/subjects/7/replies?since={reply_id - 1}")
    assert api.headers["Content-Type"].startswith("application/json")
    assert api.json()["replies"][0]["body"] == HOSTILE_BODY
    guarded.reset()


@pytest.mark.parametrize(
    "target",
    [
        "/boards/board-1?page=1&%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E=%22%3E%3Cimg%20onerror%3Dx%3E",
        "/boards/board-1?page=2&x=%27%20onmouseover%3D%27alert(1)",
        "/boards/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/subjects/1?page=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/%22%3E%3Csvg%20onload%3Dalert(1)%3E",
    ],
)
def test_what_a_request_sends_is_escaped_when_a_page_shows_it(
    guarded: FakeForumServer, target: str
) -> None:
    # Query parameters come back in pagination links; paths and values in error pages.
    response = send(guarded, "GET", target)
    assert response.status_code in (200, 400, 404)
    assert response.headers["Content-Type"].startswith("text/html")
    assert_no_injected_markup(parse_page(response.text))
    assert "<script" not in response.text


def test_a_hostile_host_header_never_reaches_a_feed(guarded: FakeForumServer) -> None:
    payload = (
        b'GET /subjects/1.atom HTTP/1.1\r\nHost: "><script>alert(1)</script>\r\n'
        b"Connection: close\r\n\r\n"
    )
    [response] = parse_responses(raw_exchange(guarded, payload))
    assert response.status == 200
    assert b"<script" not in response.body
    ET.fromstring(response.body)


def test_the_dashboard_renders_journal_text_as_text() -> None:
    # Request targets are the client's to choose and the dashboard lists them: it must set
    # them as text, never parse them as HTML.
    script = DASHBOARD_HTML[DASHBOARD_HTML.index("<script>") :]
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


# -- no files from disk ----------------------------------------------------------------------

TRAVERSALS = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/subjects/..%2f..%2fetc%2fpasswd",
    "/_fakeforum/../../etc/passwd",
    "/_fakeforum/%2e%2e/%2e%2e/etc/passwd",
    "/api/subjects/1/../../../../etc/passwd",
    "/..%5c..%5cetc%5cpasswd",
    "/%252e%252e/%252e%252e/etc/passwd",
    "//etc/passwd",
    "/etc/passwd",
    "/proc/self/environ",
    "/README.md",
    "/pyproject.toml",
    "/src/fakeforum/app.py",
    "/static/../../../../etc/passwd",
    "http://127.0.0.1/../../etc/passwd",
    "http://localhost/etc/passwd",
    "file:///etc/passwd",
    "/.%00./etc/passwd",
    "/etc/passwd%00.html",
]


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file whose content must never appear in an answer."""
    path = tmp_path_factory.mktemp("canary") / "canary.txt"
    path.write_text("CANARY-6f1d0c9e: if you can read this, the server serves files\n")
    return path


@pytest.mark.parametrize("target", [*TRAVERSALS, "CANARY"])
def test_no_route_serves_a_file(guarded: FakeForumServer, canary: Path, target: str) -> None:
    if target == "CANARY":
        target = "/../../../../../../.." + str(canary)
    payload = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    [response] = parse_responses(raw_exchange(guarded, payload))
    secret_files = [canary.read_bytes(), Path("/etc/passwd").read_bytes()[:30], b"[build-system]"]
    assert response.status in (400, 401, 404), (target, response.status)
    for secret in secret_files:
        assert secret not in response.body, target
    assert not re.search(rb"root:.*:0:0:", response.body)
