"""The pytest plugin, tested as users meet it: a test file, a pytest run, its output."""

from __future__ import annotations

import json
import os
import sys

import pytest

CRAWLER = """
import json, threading, urllib.request

class Subject:
    def __init__(self, url):
        self.url = url
        self.last_reply_id = 0
        self.replies = []

    def update(self):
        with urllib.request.urlopen(f"{self.url}/replies?since={self.last_reply_id}") as r:
            data = json.loads(r.read())
        self.replies += data["replies"]
        self.last_reply_id = data["last_reply_id"]

_lock = threading.Lock()

class LockedSubject(Subject):
    def update(self):
        with _lock:
            super().update()
"""

USER_TEST = """
import pytest
from crawler import Subject, LockedSubject

@pytest.mark.fakeforum(latency="100ms")
@pytest.mark.parametrize("kind", [Subject, LockedSubject])
def test_crawler(fakeforum, poolcheck, kind):
    subjects = [kind(url) for url in fakeforum.subject_urls(32)]
    fakeforum.post_replies(per_subject=3)
    report = poolcheck.run(subjects, "update", workers=16)
    report.assert_no_errors()
    report.assert_mutations_visible()
    report.assert_concurrency(at_least=16)
    report.assert_speedup(at_least=4)
"""


@pytest.fixture
def crawler(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(crawler=CRAWLER)
    pytester.syspathinsert()
    return pytester


def test_the_users_test_passes_for_the_good_crawler_and_teaches_for_the_broken(
    crawler: pytest.Pytester,
) -> None:
    crawler.makepyfile(test_user=USER_TEST)
    result = crawler.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ConcurrencyError: At most 1 requests in flight at the server; 16 asked for*",
            "*a lock held around the HTTP call*",
            "*server in flight*",
            "*= poolcheck runs =*",
            "test_user.py::test_crawler?Subject?*threadpool*16*32*passed",
            "test_user.py::test_crawler?LockedSubject?*threadpool*16*32*failed",
        ]
    )


def test_the_header_shows_the_flags_to_replay(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--fakeforum-seed=42")
    result.stdout.fnmatch_lines(["poolcheck: --fakeforum-seed=42 --fakeforum-mode=thread"])


def test_no_runs_no_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    assert "poolcheck runs" not in result.stdout.str()


def test_the_fixture_is_reset_per_test_and_the_marker_applies(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, urllib.request

        def test_first(fakeforum):
            fakeforum.post_reply(1, "dirty")
            fakeforum.set_latency("1s")
            urllib.request.urlopen(fakeforum.url + "/").read()

        def test_second_sees_a_clean_server(fakeforum):
            assert fakeforum.latency == {}
            assert fakeforum.stats.requests == 0
            assert "dirty" not in [r.body for r in fakeforum.forum.subject(1).replies]

        @pytest.mark.fakeforum(latency={"/api/*": "20ms"}, subjects=7, seed=3,
                               faults=[{"kind": "status", "status": 503, "p": 1.0}])
        def test_marker(fakeforum):
            assert fakeforum.latency == {"/api/*": "20ms"}
            assert len(fakeforum.forum) == 7
            assert fakeforum.seed == 3
            assert fakeforum.faults[0]["status"] == 503
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("args", "ini", "marker", "expected"),
    [
        ([], "", "", 0),
        ([], "fakeforum_seed = 3", "", 3),
        (["--fakeforum-seed=5"], "fakeforum_seed = 3", "", 5),
        (["--fakeforum-seed=5"], "fakeforum_seed = 3", "@pytest.mark.fakeforum(seed=7)", 7),
    ],
)
def test_precedence_is_marker_cli_ini_default(
    pytester: pytest.Pytester, args: list[str], ini: str, marker: str, expected: int
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        f"""
        import pytest

        {marker}
        def test_seed(fakeforum):
            assert fakeforum.seed == {expected}
        """
    )
    pytester.runpytest(*args).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "marker", "message"),
    [
        (
            ["--fakeforum-mode=bogus"],
            "",
            "",
            "Invalid fakeforum mode 'bogus' from --fakeforum-mode",
        ),
        ([], "fakeforum_seed = x", "", "Invalid fakeforum seed 'x' from the fakeforum_seed ini"),
        (
            [],
            "",
            "@pytest.mark.fakeforum(mode='fork')",
            "Invalid fakeforum mode 'fork' from the fakeforum marker",
        ),
        ([], "", "@pytest.mark.fakeforum(latency='50')", "'50' has no unit"),
        (
            [],
            "",
            "@pytest.mark.fakeforum(latnecy='50ms')",
            "Unknown fakeforum marker argument(s): ['latnecy']",
        ),
        ([], "", "@pytest.mark.poolcheck(pool='fork')", "Invalid pool 'fork' from the poolcheck"),
        ([], "", "@pytest.mark.poolcheck(workers=0)", "Invalid poolcheck workers 0 from the"),
    ],
)
def test_invalid_settings_name_their_source(
    pytester: pytest.Pytester, args: list[str], ini: str, marker: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        f"""
        import pytest

        {marker}
        def test_it(fakeforum, poolcheck):
            pass
        """
    )
    result = pytester.runpytest(*args)
    assert result.ret != 0
    assert message in result.stdout.str() + result.stderr.str()


def test_markers_are_registered_with_their_signatures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.fakeforum(latency=None, faults=None, bandwidth=None, seed=None, *",
            "@pytest.mark.poolcheck(workers=16, pool='threadpool', rounds=None, seed=None)*",
        ]
    )


def test_fixtures_have_docstrings(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "fakeforum -- *",
            "    A running fakeforum server, reset for this test*",
            "fakeforum_factory -- *",
            "poolcheck -- *",
        ]
    )


def test_server_errors_fail_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import urllib.request, urllib.error

        def test_it(fakeforum):
            fakeforum.forum.subject = lambda i: 1 / 0
            try:
                urllib.request.urlopen(fakeforum.url + "/api/subjects/1")
            except urllib.error.HTTPError as exc:
                assert exc.code == 500
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*FakeForumError: The forum app raised ZeroDivisionError*"])


def test_factory_and_trace_dir(crawler: pytest.Pytester) -> None:
    crawler.makepyfile(
        """
        from crawler import Subject

        def test_it(fakeforum_factory, poolcheck):
            other = fakeforum_factory(latency="5ms", mode="thread")
            assert other.url != poolcheck.server.url
            poolcheck.run([Subject(u) for u in poolcheck.server.subject_urls(4)], workers=2)
        """
    )
    trace_dir = crawler.path / "traces"
    crawler.runpytest(f"--poolcheck-trace-dir={trace_dir}").assert_outcomes(passed=1)
    (trace,) = trace_dir.iterdir()
    events = json.loads(trace.read_text())["traceEvents"]
    assert len([e for e in events if e["ph"] == "X"]) == 4


def test_process_mode_from_the_command_line(crawler: pytest.Pytester) -> None:
    crawler.makepyfile(
        """
        def test_it(fakeforum):
            assert fakeforum.mode == "process"
        """
    )
    crawler.runpytest("--fakeforum-mode=process").assert_outcomes(passed=1)


def test_works_under_xdist_and_pytest_timeout(crawler: pytest.Pytester) -> None:
    crawler.makepyfile(test_user=USER_TEST.replace("[Subject, LockedSubject]", "[Subject] * 3"))
    env_path = os.pathsep.join([str(crawler.path), *sys.path])
    crawler._monkeypatch.setenv("PYTHONPATH", env_path)  # the workers import crawler.py
    result = crawler.runpytest_subprocess("-p", "xdist", "-n", "2", "--timeout=120")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*= poolcheck runs =*"])
    assert result.stdout.str().count("threadpool") == 3


def test_stress_and_race_detector_on_the_fixture(crawler: pytest.Pytester) -> None:
    crawler.makepyfile(
        """
        import threading
        import pytest
        from crawler import Subject

        class Store:
            def __init__(self):
                self.count = 0

        class Counting(Subject):
            def __init__(self, url, store):
                super().__init__(url)
                self.store = store

            def update(self):
                super().update()
                self.store.count += 1

        def make(server):
            store = Store()
            return [Counting(u, store) for u in server.subject_urls(8)]

        @pytest.mark.poolcheck(rounds=3, workers=4)
        def test_stress(fakeforum, poolcheck):
            result = poolcheck.stress(lambda: make(fakeforum))
            assert result.rounds == 3
            assert result.workers == 4
            assert result.seed == 9

        def test_races(fakeforum, poolcheck):
            with poolcheck.race_detector(watch=[Store]) as races:
                poolcheck.run(make(fakeforum), workers=4)
            races.assert_none()
        """
    )
    result = crawler.runpytest("--fakeforum-seed=9", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*RacesFound: 1 race(s) found:*", "*lost update: Store.count*"])
