"""poolcheck.run and its report, against the examples and a real fakeforum."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from examples import crawler, locked_crawler, shared_session_crawler
from requests.adapters import HTTPAdapter

import poolcheck
from fakeforum import FakeForumServer
from poolcheck import (
    ConcurrencyError,
    MutationsNotVisible,
    PoolcheckError,
    SpeedupError,
    TaskErrors,
)


@pytest.fixture(scope="module")
def slow_forum() -> Iterator[FakeForumServer]:
    """A forum with 100 ms latency in its own process: waits dominate, the GIL is the client's."""
    with FakeForumServer(mode="process", latency="100ms") as server:
        yield server


@pytest.fixture
def forum(slow_forum: FakeForumServer) -> FakeForumServer:
    slow_forum.reset()
    slow_forum.post_replies(per_subject=3)
    return slow_forum


def subjects(server: FakeForumServer, n: int, kind: Any = crawler.Subject) -> list[Any]:
    return [kind(url) for url in server.subject_urls(n)]


def test_the_good_crawler_passes_every_check(forum: FakeForumServer) -> None:
    report = poolcheck.run(subjects(forum, 32), "update", workers=16, server=forum)
    report.assert_no_errors().assert_mutations_visible()
    report.assert_concurrency(at_least=16)
    report.assert_speedup(at_least=4)  # ~14x expected; a wide margin for a busy machine
    assert report.server is not None
    assert report.server.requests == 32
    assert report.server.by_status == {200: 32}
    assert len(report.tasks) == 32
    assert [t.index for t in report.tasks] == list(range(32))
    assert len({t.thread for t in report.tasks}) == 16
    assert all(len(s.replies) >= 3 for s in report.subjects)


@pytest.mark.parametrize("pool", ["threadpool", "executor"])
def test_both_thread_pools_share_memory(forum: FakeForumServer, pool: Any) -> None:
    report = poolcheck.run(subjects(forum, 16), "update", workers=8, pool=pool, server=forum)
    report.assert_mutations_visible(check=lambda s: s.last_reply_id > 0)
    assert report.peak_concurrency == 8


def test_the_server_figures_are_for_this_run_only(forum: FakeForumServer) -> None:
    poolcheck.run(subjects(forum, 10), "update", workers=5, server=forum)
    second = poolcheck.run(subjects(forum, 4), "update", workers=4, server=forum)
    assert second.server is not None
    assert second.server.requests == 4
    assert second.server.peak_in_flight == 4
    assert len(second.journal) == 4


def test_a_lock_around_the_request_is_caught(forum: FakeForumServer) -> None:
    report = poolcheck.run(
        subjects(forum, 8, locked_crawler.Subject), "update", workers=8, server=forum
    )
    report.assert_mutations_visible()  # correct, just slow
    with pytest.raises(ConcurrencyError) as info:
        report.assert_concurrency(at_least=4)
    message = str(info.value)
    assert "At most 1 requests in flight at the server; 4 asked for" in message
    assert "a lock held around the HTTP call" in message
    assert "server in flight" in message  # the timeline
    with pytest.raises(SpeedupError, match=r"Speed-up 1\.0"):
        report.assert_speedup(at_least=4)


def test_a_shared_session_churns_connections(forum: FakeForumServer) -> None:
    session = shared_session_crawler.session

    def opened_by_second_burst() -> int:
        for _ in range(2):
            report = poolcheck.run(
                subjects(forum, 32, shared_session_crawler.Subject),
                "update",
                workers=32,
                server=forum,
            )
        assert report.server is not None
        return report.server.connections_opened

    churn = opened_by_second_burst()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))  # the fix
    try:
        fixed = opened_by_second_burst()
    finally:
        session.mount("http://", HTTPAdapter())
    # 32 connections in use, 10 kept idle: each burst reopens the other 22.
    assert churn >= 15
    assert fixed <= 3


def test_process_pool_updates_copies_and_says_so(forum: FakeForumServer) -> None:
    report = poolcheck.run(subjects(forum, 8), "update", workers=4, pool="process", server=forum)
    report.assert_no_errors()
    assert report.server is not None
    assert report.server.requests == 8  # the work happened...
    with pytest.raises(MutationsNotVisible) as info:  # ...on copies
        report.assert_mutations_visible()
    message = str(info.value)
    assert message.startswith("8 of 8 subjects unchanged in the caller")
    assert "pickles each subject" in message
    assert "ThreadPool" in message


def test_a_lambda_cannot_go_to_a_process_pool() -> None:
    with pytest.raises(PoolcheckError, match=r"cannot be pickled .* Pass the method's name"):
        poolcheck.run([object()], lambda s: None, pool="process")


def test_sequential_has_no_speedup(forum: FakeForumServer) -> None:
    report = poolcheck.run(subjects(forum, 3), "update", pool="sequential", server=forum)
    assert report.peak_concurrency == 1
    assert report.speedup <= 1.01
    assert report.server is not None
    assert report.server.peak_in_flight == 1


class Flaky:
    def __init__(self, n: int) -> None:
        self.n = n
        self.done = False

    def update(self) -> None:
        if self.n % 3 == 0:
            raise ValueError(f"subject {self.n} is broken")
        self.done = True

    def __repr__(self) -> str:
        return f"<Flaky {self.n}>"


def test_errors_are_listed_with_their_tracebacks() -> None:
    report = poolcheck.run([Flaky(n) for n in range(7)], workers=4)
    assert [t.index for t in report.errors] == [0, 3, 6]
    with pytest.raises(TaskErrors) as info:
        report.assert_no_errors()
    message = str(info.value)
    assert message.startswith("3 of 7 tasks raised (3x ValueError) under 7 x .update() under")
    assert "--- subject 3 (<Flaky 3>)" in message
    assert "ValueError: subject 3 is broken" in message
    assert "line " in message  # a real traceback


def test_check_predicate(forum: FakeForumServer) -> None:
    report = poolcheck.run([Flaky(n) for n in range(1, 6)], workers=2)
    report.assert_mutations_visible(check=lambda s: s.done or s.n % 3 == 0)
    with pytest.raises(MutationsNotVisible, match="1 of 5 subjects failing the check"):
        report.assert_mutations_visible(check=lambda s: s.done)


class Callable_:
    def __init__(self) -> None:
        self.calls = 0


def test_method_may_be_a_callable() -> None:
    items = [Callable_() for _ in range(5)]
    report = poolcheck.run(items, lambda c: setattr(c, "calls", c.calls + 1), workers=3)
    assert [c.calls for c in items] == [1] * 5
    assert report.method == "test_method_may_be_a_callable.<locals>.<lambda>"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be a whole number of at least 1"),
        ({"pool": "greenlets"}, "pool='greenlets' is not one of threadpool"),
        ({"method": "not a name"}, "is not a method name"),
        ({"method": 42}, "method must be a method name"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_bad_arguments_are_sentences(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PoolcheckError, match=message):
        poolcheck.run([Flaky(1)], **kwargs)


class Stuck:
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def update(self) -> None:
        self.release.wait()


def test_a_stuck_run_fails_with_every_threads_stack() -> None:
    release = threading.Event()
    try:
        with pytest.raises(PoolcheckError) as info:
            poolcheck.run([Stuck(release)], workers=1, timeout=0.5)
    finally:
        release.set()  # let the stuck worker go, so no thread outlives the test
    message = str(info.value)
    assert "did not finish within 0.5 s" in message
    assert "in update" in message
    assert "self.release.wait()" in message


def test_the_timeline_shows_each_worker() -> None:
    report = poolcheck.run([Flaky(1), Flaky(2)], workers=2)
    lines = report.timeline(width=20).splitlines()
    assert len(lines) == 3
    assert all("█" in line for line in lines[1:])


class FetchThenParse(crawler.Subject):
    """Fetches (a wait, overlapped), then spends CPU in Python (which one GIL serialises)."""

    def update(self) -> None:
        super().update()
        sum(range(2_000_000))


def test_a_cpu_bound_client_is_diagnosed_as_gil_limited(forum: FakeForumServer) -> None:
    report = poolcheck.run(subjects(forum, 8, FetchThenParse), workers=8, server=forum)
    report.assert_concurrency(at_least=8)  # the requests did overlap...
    with pytest.raises(SpeedupError, match="The GIL limited this run") as info:
        report.assert_efficiency(at_least=0.9)  # ...the parsing could not
    assert "More threads will not help" in str(info.value)
    assert report.cpu_busy > 0.5
    assert "wall" in str(report)
