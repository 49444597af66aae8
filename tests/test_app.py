"""The forum's HTTP surface, through a real server and a real client."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests

from fakeforum import FakeForumServer, Forum, create_app
from fakeforum.app import MAX_LIMIT, PAGE_SIZE


@pytest.fixture(scope="module", params=["thread", "process"])
def _module_server(request: pytest.FixtureRequest) -> Iterator[FakeForumServer]:
    with FakeForumServer(mode=request.param) as srv:
        yield srv


@pytest.fixture
def server(_module_server: FakeForumServer) -> FakeForumServer:
    """The forum in each mode, reset before each test (starting one is the slow part)."""
    _module_server.reset()
    return _module_server


def get(server: FakeForumServer, path: str, **kwargs: object) -> requests.Response:
    return requests.get(server.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_index_lists_the_boards(server: FakeForumServer) -> None:
    response = get(server, "/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert re.findall(r'href="/boards/([^"]+)"', response.text) == ["board-1", "board-2", "board-3"]


def test_board_pages_paginate_with_link_rel_next(server: FakeForumServer) -> None:
    ids = server.forum.subject_ids("board-1")
    seen: list[int] = []
    path: str | None = "/boards/board-1"
    pages = 0
    while path is not None:
        response = get(server, path)
        assert response.status_code == 200
        seen += [int(i) for i in re.findall(r'class="subject" data-id="(\d+)"', response.text)]
        match = re.search(r'<link rel="next" href="([^"]+)">', response.text)
        path = match.group(1).replace("&amp;", "&") if match else None
        pages += 1
    assert seen == ids
    assert pages == -(-len(ids) // PAGE_SIZE)


def test_subject_page_shows_replies_twenty_a_page(server: FakeForumServer) -> None:
    subject_id = 1
    for k in range(25):
        server.post_reply(subject_id, f"reply {k}")
    subject = server.forum.subject(subject_id)
    assert subject is not None
    first = get(server, f"/subjects/{subject_id}")
    assert first.status_code == 200
    shown = [int(i) for i in re.findall(r'class="reply" id="r\d+" data-id="(\d+)"', first.text)]
    assert shown == [r.id for r in subject.replies[:PAGE_SIZE]]
    assert f'<link rel="next" href="/subjects/{subject_id}?page=2">' in first.text
    assert f'href="/subjects/{subject_id}.atom"' in first.text
    last_page = -(-len(subject.replies) // PAGE_SIZE)
    last = get(server, f"/subjects/{subject_id}?page={last_page}")
    assert 'rel="next"' not in last.text
    assert 'rel="prev"' in last.text


def test_atom_feed_is_valid_xml_with_the_newest_replies(server: FakeForumServer) -> None:
    reply = server.post_reply(2, "fresh <news> & more", author="grace")
    response = get(server, "/subjects/2.atom")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ET.fromstring(response.content)
    entries = feed.findall("a:entry", ns)
    assert entries[0].findtext("a:content", namespaces=ns) == "fresh <news> & more"
    assert entries[0].findtext("a:id", namespaces=ns).endswith(f"#r{reply.id}")  # type: ignore[union-attr]


def test_api_subjects_pages_through_every_subject(server: FakeForumServer) -> None:
    url: str | None = server.url + "/api/subjects?per_page=30"
    ids: list[int] = []
    while url is not None:
        body = requests.get(url, timeout=10).json()
        assert set(body) >= {"subjects", "page", "per_page", "total", "next"}
        assert body["total"] == 100
        ids += [s["id"] for s in body["subjects"]]
        url = body["next"]
    assert ids == server.forum.subject_ids()


def test_api_subject_fields_are_the_contract(server: FakeForumServer) -> None:
    subject = server.forum.subject(5)
    assert subject is not None
    body = get(server, "/api/subjects/5").json()
    assert {
        k: body[k] for k in ("id", "title", "board", "reply_count", "last_reply_id", "url")
    } == {
        "id": 5,
        "title": subject.title,
        "board": subject.board,
        "reply_count": len(subject.replies),
        "last_reply_id": subject.last_reply_id,
        "url": f"{server.url}/api/subjects/5",
    }
    assert body["url"] == server.subject_urls()[4]


def test_api_replies_since_gives_only_newer_replies(server: FakeForumServer) -> None:
    first = get(server, "/api/subjects/7/replies").json()
    assert first["subject_id"] == 7
    since = first["last_reply_id"]
    posted = [server.post_reply(7, f"new {k}") for k in range(3)]
    server.post_reply(8, "elsewhere")
    body = get(server, f"/api/subjects/7/replies?since={since}").json()
    assert [r["id"] for r in body["replies"]] == [r.id for r in posted]
    assert set(body["replies"][0]) >= {"id", "author", "body", "created_at"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["replies"][0]["created_at"])
    assert body["last_reply_id"] == posted[-1].id
    limited = get(server, f"/api/subjects/7/replies?since={since}&limit=2").json()
    assert [r["id"] for r in limited["replies"]] == [posted[0].id, posted[1].id]
    assert limited["has_more"] is True


@pytest.mark.parametrize(
    "path",
    ["/api/subjects/3", "/api/subjects/3/replies?since=1", "/subjects/3", "/subjects/3.atom"],
)
def test_conditional_requests_answer_304_until_a_reply_arrives(
    server: FakeForumServer, path: str
) -> None:
    first = get(server, path)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"')  # strong: a weak one starts with W/
    not_modified = get(server, path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert get(server, path, headers={"If-Modified-Since": modified}).status_code == 304
    server.post_reply(3, "news")
    assert get(server, path, headers={"If-None-Match": etag}).status_code == 200
    # Even posted within the same second, Last-Modified moves on.
    assert get(server, path, headers={"If-Modified-Since": modified}).status_code == 200


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/subjects?page=0", "page"),
        ("/api/subjects?page=abc", "page"),
        ("/api/subjects?per_page=1000", "per_page"),
        ("/api/subjects/3/replies?since=-1", "since"),
        ("/api/subjects/3/replies?since=1e3", "since"),
        (f"/api/subjects/3/replies?limit={MAX_LIMIT + 1}", "limit"),
        ("/api/subjects/3/replies?limit=%EF%BC%93", "limit"),  # a full-width digit
    ],
)
def test_malformed_parameters_are_400_naming_the_parameter(
    server: FakeForumServer, path: str, parameter: str
) -> None:
    response = get(server, path)
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == parameter
    assert f"'{parameter}'" in body["message"]


def test_html_routes_answer_errors_in_html(server: FakeForumServer) -> None:
    response = get(server, "/boards/board-1?page=x")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Parameter &#x27;page&#x27;" in response.text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/subjects/999", "No subject with id 999."),
        ("/api/subjects/999/replies", "No subject with id 999."),
        ("/api/nothing", "No page at '/api/nothing'."),
    ],
)
def test_unknown_things_are_404_with_a_json_reason(
    server: FakeForumServer, path: str, message: str
) -> None:
    response = get(server, path)
    assert response.status_code == 404
    assert response.json()["message"] == message


def test_unknown_html_pages_are_404(server: FakeForumServer) -> None:
    assert get(server, "/subjects/999").status_code == 404
    assert get(server, "/boards/nope").status_code == 404
    assert get(server, "/subjects/1?page=99").status_code == 404


def test_wrong_method_is_405_naming_the_allowed_ones(server: FakeForumServer) -> None:
    response = requests.post(server.url + "/api/subjects/1", timeout=10)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert "use GET, HEAD" in response.json()["message"]


def test_head_has_the_headers_and_no_body(server: FakeForumServer) -> None:
    full = get(server, "/api/subjects/1")
    head = requests.head(server.url + "/api/subjects/1", timeout=10)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(full.content))


def test_user_content_is_escaped_in_html(server: FakeForumServer) -> None:
    server.post_reply(
        4, '<script>alert(1)</script>"><img src=x onerror=alert(2)>', author="<b>x</b>"
    )
    page = get(server, "/subjects/4?page=1")
    subject = server.forum.subject(4)
    assert subject is not None
    last = -(-len(subject.replies) // PAGE_SIZE)
    text = get(server, f"/subjects/4?page={last}").text + page.text
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text


def test_the_app_is_a_plain_wsgi_callable() -> None:
    from werkzeug.test import Client

    client = Client(create_app(Forum.generate(seed=1, subjects=2)))
    response = client.get("/api/subjects")
    assert response.status_code == 200
    assert response.json["total"] == 2  # type: ignore[index]
