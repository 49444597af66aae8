"""The journal of requests and its Chrome trace export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from fakeforum import FakeForumServer
from fakeforum.server import Mode


def test_entries_describe_each_request(any_server: FakeForumServer) -> None:
    any_server.set_latency({"/api/subjects/*": "30ms"})
    before = time.monotonic()
    with requests.Session() as session:
        session.get(any_server.url + "/api/subjects/2?x=1", timeout=10)
        session.get(any_server.url + "/nope", timeout=10)
    entries = any_server.journal
    assert [(e.method, e.target, e.path, e.status) for e in entries] == [
        ("GET", "/api/subjects/2?x=1", "/api/subjects/2", 200),
        ("GET", "/nope", "/nope", 404),
    ]
    first = entries[0]
    assert first.route == "/api/subjects/<int:subject_id>"
    assert first.delay == 0.03
    assert first.fault is None
    # Monotonic clocks agree across processes on Linux: comparable with the client's.
    assert before <= first.start < first.end
    assert first.end - first.start >= 0.03
    assert first.wall_end - first.wall_start == pytest.approx(first.end - first.start, abs=1e-6)
    assert entries[0].connection == entries[1].connection  # one keep-alive connection
    assert entries[1].id == entries[0].id + 1
    assert first.thread.startswith("fakeforum:")


def test_the_journal_is_a_bounded_ring(mode: Mode) -> None:
    with FakeForumServer(mode=mode, journal_size=5) as server, requests.Session() as session:
        for k in range(1, 9):
            session.get(f"{server.url}/api/subjects/{k}", timeout=10)
        assert [e.path for e in server.journal] == [f"/api/subjects/{k}" for k in range(4, 9)]


def test_admin_requests_are_not_journaled_or_counted(any_server: FakeForumServer) -> None:
    requests.get(any_server.url + "/api/subjects/1", timeout=10)
    for _ in range(3):
        requests.get(any_server.admin_url + "/stats", timeout=10)
    assert len(any_server.journal) == 1
    assert any_server.stats.requests == 1


def test_trace_has_one_track_per_connection(any_server: FakeForumServer, tmp_path: Path) -> None:
    any_server.set_latency("5ms")
    for _ in range(2):
        with requests.Session() as session:
            session.get(any_server.url + "/api/subjects/1", timeout=10)
            session.get(any_server.url + "/api/subjects/2", timeout=10)
    trace = json.loads(any_server.write_trace(tmp_path / "t.json").read_text())
    events = trace["traceEvents"]
    requests_ = [e for e in events if e["cat" if "cat" in e else "ph"] == "request"]
    assert len(requests_) == 4
    assert len({e["tid"] for e in requests_}) == 2
    names = [e for e in events if e["ph"] == "M"]
    assert sorted(e["args"]["name"] for e in names) == sorted(
        f"connection {tid}" for tid in {e["tid"] for e in requests_}
    )
    latency = [e for e in events if e.get("cat") == "injected"]
    assert len(latency) == 4
    assert all(e["dur"] == 5000 for e in latency)
    assert all(e["ph"] == "X" and e["dur"] >= 5000 for e in requests_)
    assert requests_[0]["ts"] == 0


def test_an_empty_trace() -> None:
    with FakeForumServer() as server:
        assert server.trace() == {"traceEvents": [], "displayTimeUnit": "ms"}
