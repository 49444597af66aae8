"""Each fault kind, as a real client experiences it, in both server modes."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any, cast

import pytest
import requests

from fakeforum import FakeForumError, FakeForumServer
from fakeforum.faults import FaultPlan, parse_fault_flag
from fakeforum.server import Mode

from .helpers import wait_for

URL = "/api/subjects/1"


def get(server: FakeForumServer, path: str = URL, **kwargs: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)


def test_status(any_server: FakeForumServer) -> None:
    any_server.fail_next(URL, kind="status", status=502)
    response = get(any_server)
    assert response.status_code == 502
    assert "Injected fault" in response.json()["message"]
    assert get(any_server).status_code == 200  # the next one is normal again


def test_429_with_retry_after(any_server: FakeForumServer) -> None:
    any_server.fail_next(URL, kind="429", retry_after=3)
    response = get(any_server)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"


def test_reset_is_a_connection_reset(any_server: FakeForumServer) -> None:
    any_server.fail_next(URL, kind="reset")
    with pytest.raises(requests.ConnectionError) as info:
        get(any_server)
    assert "reset" in str(info.value).lower()


def test_empty_closes_without_a_response(any_server: FakeForumServer) -> None:
    any_server.fail_next(URL, kind="empty")
    with pytest.raises(requests.ConnectionError, match="without response"):
        get(any_server)


def test_truncate_cuts_the_declared_body(any_server: FakeForumServer) -> None:
    any_server.fail_next(URL, kind="truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        get(any_server)


def test_hang_until_the_client_gives_up(any_server: FakeForumServer) -> None:
    any_server.fail_next(URL, kind="hang")
    with pytest.raises(requests.ReadTimeout):
        get(any_server, timeout=0.3)
    # The request stays in flight until the client's connection is gone, then it is dropped.
    wait_for(lambda: any_server.stats.in_flight == 0)
    assert any_server.journal[-1].fault == "hang"
    assert any_server.journal[-1].status is None


def test_hang_does_not_delay_stop(mode: Mode) -> None:
    server = FakeForumServer(mode=mode, faults=[{"kind": "hang"}]).start()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_for(lambda: server.stats.in_flight == 1)
        server.stop()
        assert sock.recv(100) == b""  # closed, no answer


def test_slow_body_paces_the_body(any_server: FakeForumServer) -> None:
    any_server.fail_next("/api/subjects", kind="slow_body", bandwidth="20KB/s")
    started = time.monotonic()
    response = get(any_server, "/api/subjects?per_page=50")
    took = time.monotonic() - started
    assert response.json()["total"] == 100  # whole, just slow
    assert took >= len(response.content) / 20_000 - 0.05  # one pacing tick of slack


def test_faults_are_counted_by_kind(any_server: FakeForumServer) -> None:
    for kind in ("status", "status", "empty"):
        any_server.fail_next(URL, kind=kind)
    for _ in range(3):
        with contextlib.suppress(requests.ConnectionError):
            get(any_server)
    assert dict(any_server.stats.faults) == {"status": 2, "empty": 1}


def test_scripted_faults_apply_exactly_times_then_stop(any_server: FakeForumServer) -> None:
    any_server.fail_next("/api/subjects/*", kind="status", status=503, times=2)
    assert any_server.faults == [
        {"route": "/api/subjects/*", "kind": "status", "times": 2, "status": 503}
    ]
    assert get(any_server, "/").status_code == 200  # another route: not spent
    codes = [get(any_server).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    assert any_server.faults == []


def test_scripted_faults_come_before_random_ones(any_server: FakeForumServer) -> None:
    any_server.set_faults([{"kind": "status", "status": 500, "p": 1.0}])
    any_server.fail_next(URL, kind="429")
    assert [get(any_server).status_code for _ in range(2)] == [429, 500]


def _fault_sequence(mode: Mode, seed: int) -> list[tuple[str, float, str | None]]:
    rules = [
        {"route": "/api/subjects/*", "kind": "status", "status": 503, "p": 0.3},
        {"route": "*", "kind": "429", "p": 0.2},
    ]
    latency = {"/api/subjects/1": "1ms..5ms"}
    with (
        FakeForumServer(mode=mode, faults=rules, seed=seed, latency=latency) as server,
        requests.Session() as s,
    ):
        for k in range(60):
            s.get(f"{server.url}/api/subjects/{1 + k % 3}", timeout=10)
        return [(e.path, e.delay, e.fault) for e in server.journal]


def test_the_same_seed_gives_the_same_faults_and_latency(mode: Mode) -> None:
    first = _fault_sequence(mode, seed=11)
    assert first == _fault_sequence(mode, seed=11)
    other = _fault_sequence(mode, seed=12)
    assert [f for *_, f in first] != [f for *_, f in other]
    assert [d for _, d, _ in first] != [d for _, d, _ in other]
    assert {d > 0 for p, d, _ in first if p == "/api/subjects/1"} == {True}
    kinds = [fault for *_, fault in first]
    # p=0.3 then p=0.2 of the rest: about 44 % faulted; a wide margin, 60 requests.
    assert 8 <= sum(k is not None for k in kinds) <= 45
    assert {"status", "429"} <= set(kinds)


def test_fault_probability_is_per_request() -> None:
    plan = FaultPlan([{"kind": "reset", "p": 0.25}], seed=3)
    hits = sum(plan.decide("/x", n) is not None for n in range(4000))
    assert 850 <= hits <= 1150


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "boom"}, "'kind' must be one of status, 429, reset"),
        ({"kind": "reset", "p": 1.5}, "'p' must be a probability"),
        ({"kind": "reset", "times": 0}, "'times' must be a whole number"),
        ({"kind": "reset", "p": 0.5, "times": 2}, "not both"),
        ({"kind": "status", "status": 99}, "'status' must be a status code"),
        ({"kind": "reset", "status": 503}, "'status' does not apply to kind 'reset'"),
        ({"kind": "429", "retry_after": -1}, "'retry_after' must be whole seconds"),
        ({"kind": "slow_body", "bandwidth": "fast"}, "Bandwidth 'fast' is not valid"),
        ({"kind": "reset", "rout": "/x"}, "unknown field(s) 'rout'"),
        ({"kind": "reset", "route": ""}, "'route' must be a non-empty glob"),
    ],
)
def test_bad_rules_are_refused_and_nothing_changes(
    server: FakeForumServer, rule: dict[str, Any], message: str
) -> None:
    server.set_faults([{"kind": "status", "p": 0.5}])
    before = server.faults
    with pytest.raises(FakeForumError, match=message.replace("(", r"\(").replace(")", r"\)")):
        server.set_faults([{"kind": "reset"}, rule])
    assert server.faults == before


def test_faults_must_be_a_list() -> None:
    with pytest.raises(FakeForumError, match="must be a list of rules"):
        FaultPlan(cast(Any, {"kind": "reset"}))


@pytest.mark.parametrize(
    ("flag", "rule"),
    [
        (
            "/api/*=status,status=503,p=0.1",
            {"route": "/api/*", "kind": "status", "status": 503, "p": 0.1},
        ),
        ("*=429,retry_after=2,p=0.05", {"route": "*", "kind": "429", "retry_after": 2, "p": 0.05}),
        ("/x=truncate,times=2", {"route": "/x", "kind": "truncate", "times": 2}),
        ("*=slow_body,bandwidth=1KB/s", {"route": "*", "kind": "slow_body", "bandwidth": "1KB/s"}),
    ],
)
def test_the_cli_fault_form(flag: str, rule: dict[str, Any]) -> None:
    assert parse_fault_flag(flag) == rule
    FaultPlan([rule])  # and it is a valid rule


@pytest.mark.parametrize("flag", ["reset", "=reset", "*=", "*=reset,p"])
def test_bad_cli_fault_forms(flag: str) -> None:
    with pytest.raises(FakeForumError, match="--fault"):
        parse_fault_flag(flag)
