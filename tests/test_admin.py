"""The admin API under /_fakeforum/, driven with a real client."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from fakeforum import FakeForumError, FakeForumServer


def admin(server: FakeForumServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.admin_url + path, timeout=10, **kwargs)


def test_stats_and_stats_reset(any_server: FakeForumServer) -> None:
    requests.get(any_server.url + "/api/subjects/1", timeout=10)
    stats = admin(any_server, "GET", "/stats").json()
    assert stats["requests"] == 1
    assert stats["by_status"] == {"200": 1}
    assert admin(any_server, "POST", "/stats/reset").json()["requests"] == 0
    assert any_server.stats.requests == 0


def test_config_get_and_put(any_server: FakeForumServer) -> None:
    config = admin(any_server, "GET", "/config").json()
    assert config == {"latency": {}, "bandwidth": None, "faults": [], "seed": 0, "activity": None}
    new = {
        "latency": {"/api/*": "20ms..40ms"},
        "faults": [{"route": "/boards/*", "kind": "status", "status": 503, "p": 0.5}],
        "seed": 9,
    }
    answer = admin(any_server, "PUT", "/config", json=new).json()
    assert answer["latency"] == {"/api/*": "20ms..40ms"}
    assert answer["faults"] == new["faults"]
    assert answer["seed"] == 9
    assert any_server.latency == {"/api/*": "20ms..40ms"}
    assert any_server.seed == 9
    # Keys left out stay as they are.
    assert admin(any_server, "PUT", "/config", json={"seed": 1}).json()["latency"] == {
        "/api/*": "20ms..40ms"
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"latency": "50"}, "'50' has no unit"),
        ({"latency": {"/api/*": "5ms"}, "faults": [{"kind": "boom"}]}, "'kind' must be one of"),
        ({"seed": "x"}, "A seed must be a whole number"),
        ({"latnecy": "5ms"}, "Unknown config key(s) 'latnecy'"),
        ({"activity": "fast"}, "Activity rate 'fast' is not valid"),
        ({"bandwidth": "-1B/s"}, "Bandwidth '-1B/s' is not valid"),
    ],
)
def test_invalid_config_is_400_with_the_reason_and_changes_nothing(
    any_server: FakeForumServer, body: dict[str, Any], message: str
) -> None:
    before = admin(any_server, "GET", "/config").json()
    response = admin(any_server, "PUT", "/config", json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert admin(any_server, "GET", "/config").json() == before


def test_a_body_that_is_not_json_is_400(server: FakeForumServer) -> None:
    response = admin(server, "PUT", "/config", data=b"{not json")
    assert response.status_code == 400
    assert "not JSON" in response.json()["message"]
    response = admin(server, "PUT", "/config", json=[1, 2])
    assert response.json()["message"] == "The request body must be a JSON object."


def test_post_a_reply_and_see_it_on_the_public_api(any_server: FakeForumServer) -> None:
    response = admin(
        any_server, "POST", "/subjects/4/replies", json={"body": "hi", "author": "ada"}
    )
    assert response.status_code == 201
    reply = response.json()
    assert (reply["subject_id"], reply["body"], reply["author"]) == (4, "hi", "ada")
    public = requests.get(
        f"{any_server.url}/api/subjects/4/replies?since={reply['id'] - 1}", timeout=10
    ).json()
    assert [r["id"] for r in public["replies"]] == [reply["id"]]
    assert admin(any_server, "POST", "/subjects/999/replies", json={}).status_code == 400


def test_bulk_replies_and_reset(any_server: FakeForumServer) -> None:
    before = admin(any_server, "GET", "/forum").json()["last_reply_id"]
    posted = admin(any_server, "POST", "/replies", json={"per_subject": 2}).json()["replies"]
    assert len(posted) == 200
    any_server.set_latency("1ms")
    admin(any_server, "POST", "/reset")
    assert admin(any_server, "GET", "/forum").json()["last_reply_id"] == before
    assert any_server.latency == {}


def test_forum_and_subject_views(any_server: FakeForumServer) -> None:
    forum = admin(any_server, "GET", "/forum").json()
    assert forum["subject_ids"] == list(range(1, 101))
    assert [b["slug"] for b in forum["boards"]] == ["board-1", "board-2", "board-3"]
    board = admin(any_server, "GET", "/forum?board=board-2").json()["subject_ids"]
    assert board == list(range(2, 101, 3))
    subject = admin(any_server, "GET", "/subjects/3").json()
    assert subject["id"] == 3
    assert admin(any_server, "GET", "/subjects/1000").status_code == 404


def test_journal_trace_and_errors_routes(any_server: FakeForumServer) -> None:
    for k in range(3):
        requests.get(f"{any_server.url}/api/subjects/{k + 1}", timeout=10)
    entries = admin(any_server, "GET", "/journal?limit=2").json()["entries"]
    assert [e["path"] for e in entries] == ["/api/subjects/2", "/api/subjects/3"]
    assert admin(any_server, "GET", "/journal?limit=x").status_code == 400
    trace = admin(any_server, "GET", "/trace").json()
    assert len([e for e in trace["traceEvents"] if e["ph"] == "X"]) == 3
    assert admin(any_server, "GET", "/errors").json() == {"errors": []}


def test_fail_next_route(any_server: FakeForumServer) -> None:
    admin(any_server, "POST", "/faults/next", json={"route": "/", "kind": "status", "status": 418})
    assert requests.get(any_server.url + "/", timeout=10).status_code == 418


def test_unknown_admin_routes_and_methods(server: FakeForumServer) -> None:
    assert admin(server, "GET", "/nothing").status_code == 404
    response = admin(server, "DELETE", "/stats")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_dashboard_is_html(server: FakeForumServer) -> None:
    response = admin(server, "GET", "/")
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'id="peak_in_flight"' in response.text


def test_a_token_guards_every_admin_route() -> None:
    with FakeForumServer(admin_token="s3cret") as server:
        for method, path in [
            ("GET", "/"),
            ("GET", "/stats"),
            ("PUT", "/config"),
            ("POST", "/reset"),
            ("GET", "/journal"),
            ("GET", "/trace"),
            ("POST", "/replies"),
        ]:
            refused = admin(server, method, path, json={})
            assert refused.status_code == 401, path
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert "--admin-token" in refused.json()["message"]
        wrong = admin(server, "GET", "/stats", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = admin(server, "GET", "/stats", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert admin(server, "GET", "/stats?token=s3cret").status_code == 200
        # The forum itself needs no token.
        assert requests.get(server.url + "/api/subjects/1", timeout=10).status_code == 200


def test_process_mode_uses_the_token_itself() -> None:
    with FakeForumServer(mode="process", admin_token="t0k") as server:
        requests.get(server.url + "/", timeout=10)
        assert server.stats.requests == 1
        assert admin(server, "GET", "/stats").status_code == 401


def test_off_loopback_needs_a_token_or_no_admin() -> None:
    with pytest.raises(FakeForumError, match="give admin_token"):
        FakeForumServer(host="0.0.0.0")
    FakeForumServer(host="0.0.0.0", admin_token="t")  # built, never started
    FakeForumServer(host="0.0.0.0", admin=False)


def test_admin_off_serves_no_admin_routes() -> None:
    with FakeForumServer(admin=False) as server:
        assert requests.get(server.admin_url + "/stats", timeout=10).status_code == 404
