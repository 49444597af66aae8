"""The race detector on the corpus of racy crawlers and their correct twins, and its parts."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from examples import racy

import poolcheck
from fakeforum import FakeForumServer
from poolcheck import PoolcheckError, RacesFound

SEEDS = range(20)


@pytest.fixture(scope="module")
def forum() -> Iterator[FakeForumServer]:
    with FakeForumServer(latency="1ms..8ms") as server:
        yield server


def detect(server: FakeForumServer, kind: type, seed: int, n: int = 16) -> poolcheck.RaceDetector:
    server.reset()
    server.configure(latency="1ms..8ms", seed=seed)  # a different interleaving per seed
    urls = server.subject_urls(n)
    store = racy.Store(urls)  # its lock and queue exist before the detector
    subjects = [kind(url, store) for url in urls]
    with poolcheck.race_detector(watch=[racy.Store, racy.Subject]) as races:
        report = poolcheck.run(subjects, "update", workers=8, server=server)
    report.assert_no_errors()
    return races


@pytest.mark.parametrize("kind", racy.RACY, ids=lambda k: k.__name__)
def test_every_racy_crawler_is_reported_in_one_run_whatever_the_seed(
    forum: FakeForumServer, kind: type
) -> None:
    missed = [seed for seed in SEEDS if not detect(forum, kind, seed).races]
    assert missed == [], f"{kind.__name__}: no race reported with seeds {missed}"


@pytest.mark.parametrize("kind", racy.SAFE, ids=lambda k: k.__name__)
def test_every_safe_twin_is_clean_whatever_the_seed(forum: FakeForumServer, kind: type) -> None:
    for seed in SEEDS:
        races = detect(forum, kind, seed)
        assert races.races == [], f"seed {seed}:\n{races.report()}"


@pytest.mark.parametrize(
    ("kind", "race_kind", "target"),
    [
        (racy.CounterSubject, "lost update", "Store.fetched"),
        (racy.CacheSubject, "check-then-act", "Store.pages["),
        (racy.RebuiltListSubject, "lost update", "Store.results"),
        (racy.GeneratorSubject, "unordered writes", "Store.urls (a generator, advanced)"),
    ],
)
def test_reports_are_classified(
    forum: FakeForumServer, kind: type, race_kind: str, target: str
) -> None:
    races = detect(forum, kind, seed=1)
    assert any(r.kind == race_kind and r.target.startswith(target) for r in races.races), (
        races.report()
    )


def test_the_failure_names_attribute_threads_both_lines_and_locks(forum: FakeForumServer) -> None:
    races = detect(forum, racy.HalfLockedSubject, seed=0)
    with pytest.raises(RacesFound) as info:
        races.assert_none()
    message = str(info.value)
    assert "Store.seen" in message
    assert message.count("(worker)") >= 2  # both threads, by name
    assert "examples/racy.py:" in message
    lines = {line.strip() for line in message.splitlines() if "examples/racy.py:" in line}
    assert len(lines) >= 2  # both sides' file:line
    assert "holding Lock Store.lock" in message
    assert "holding no lock" in message
    assert "Fix:" in message
    race = races.races[0]
    assert race.count >= 1
    assert race.first.thread != race.second.thread


def test_no_race_report_says_so(forum: FakeForumServer) -> None:
    races = detect(forum, racy.Subject, seed=0)
    races.assert_none()
    assert races.report() == "No races on Store, Subject."


class Box:
    def __init__(self) -> None:
        self.items: list[int] = []
        self.index: dict[str, int] = {}
        self.tags: set[str] = set()
        self.value = 0


def test_containers_behave_as_themselves_and_are_put_back() -> None:
    box = Box()
    original = box.items
    with poolcheck.race_detector(watch=[Box]):
        items = box.items
        items.append(1)
        items.extend([2, 3])
        assert isinstance(items, list)
        assert items == [1, 2, 3]
        assert list(items) == [1, 2, 3]
        assert len(items) == 3
        assert items[0] == 1
        assert pickle.loads(pickle.dumps(items)) == [1, 2, 3]
        box.index["a"] = 1
        assert box.index.get("a") == 1
        assert "a" in box.index
        assert isinstance(box.index, dict)
        box.tags.add("x")
        assert "x" in box.tags
        box.items += [4]
    assert box.items is original  # the very list, not a copy
    assert type(box.items) is list
    assert original == [1, 2, 3, 4]
    assert type(box.index) is dict
    assert type(box.tags) is set


def test_threads_start_and_join_order_accesses() -> None:
    box = Box()
    with poolcheck.race_detector(watch=[Box]) as races:
        box.value = 1  # before start: ordered before the thread's read

        def work() -> None:
            box.value = box.value + 1

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert box.value == 2  # after join: ordered after the thread's write
    races.assert_none()


def test_unordered_threads_are_a_race() -> None:
    box = Box()
    barrier = threading.Barrier(2)  # made before the detector: it orders nothing
    with poolcheck.race_detector(watch=[Box]) as races:

        def work() -> None:
            barrier.wait()
            box.value = box.value + 1

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [r.kind for r in races.races] == ["lost update"]


def test_executor_hand_off_and_results_are_ordered() -> None:
    box = Box()
    with poolcheck.race_detector(watch=[Box]) as races:
        box.value = 5
        with ThreadPoolExecutor(4) as executor:
            futures = [executor.submit(lambda: box.value) for _ in range(8)]
            assert [f.result() for f in futures] == [5] * 8
        box.value = 6
    races.assert_none()


def test_a_lock_made_before_the_detector_still_orders() -> None:
    lock = threading.Lock()

    class Counter:
        def __init__(self) -> None:
            self.lock = lock
            self.n = 0

        def bump(self) -> None:
            with self.lock:
                self.n += 1

    counter = Counter()
    with poolcheck.race_detector(watch=[Counter]) as races:
        poolcheck.run([counter] * 16, "bump", workers=8)
    races.assert_none()
    assert counter.n == 16
    assert counter.lock is lock  # put back


def test_detectors_do_not_nest() -> None:
    with (
        poolcheck.race_detector(watch=[Box]),
        pytest.raises(PoolcheckError, match="already active"),
    ):
        poolcheck.race_detector(watch=[Box]).__enter__()


def test_watch_takes_classes() -> None:
    with pytest.raises(PoolcheckError, match="takes classes"):
        poolcheck.race_detector(watch=[Box()])  # type: ignore[list-item]


class Philosopher:
    def __init__(self, first: threading.Lock, second: threading.Lock, gate: Any) -> None:
        self.first, self.second, self.gate = first, second, gate

    def update(self) -> None:
        with self.first:
            self.gate.wait()  # both hold their first lock: now each wants the other's
            if self.second.acquire(timeout=3):  # gives up after a while: no thread leaks
                self.second.release()


def test_a_deadlock_is_named_with_its_cycle() -> None:
    with poolcheck.race_detector(watch=[Philosopher]):
        fork_a, fork_b = threading.Lock(), threading.Lock()
        gate = threading.Barrier(2)
        diners = [Philosopher(fork_a, fork_b, gate), Philosopher(fork_b, fork_a, gate)]
        with pytest.raises(PoolcheckError) as info:
            poolcheck.run(diners, "update", workers=2, timeout=1)
    message = str(info.value)
    assert "deadlock" in message
    assert message.count(" waits for ") == 2
    assert "in update" in message
