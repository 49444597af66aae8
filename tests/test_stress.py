"""poolcheck.stress: rounds, the outcome table, seeds that replay, the switch interval."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from examples import racy

import poolcheck
from fakeforum import FakeForumServer
from poolcheck import PoolcheckError, ThreadUnsafe


@pytest.fixture(scope="module")
def forum() -> Iterator[FakeForumServer]:
    with FakeForumServer(latency="5ms") as server:
        yield server


def make_counter(server: FakeForumServer, kind: type = racy.LockedCounterSubject) -> Any:
    def make() -> list[Any]:
        urls = server.subject_urls(16)
        store = racy.Store(urls)
        return [kind(url, store) for url in urls]

    return make


def counted(subjects: Sequence[Any]) -> bool:
    return bool(subjects[0].store.fetched == len(subjects))


def test_a_safe_crawler_passes_every_round(forum: FakeForumServer) -> None:
    result = poolcheck.stress(
        make_counter(forum), workers=8, rounds=5, invariant=counted, server=forum, seed=3
    )
    result.assert_thread_safe()
    assert [(o.description, len(o.rounds)) for o in result.outcomes.values()] == [
        ("invariant held", 5)
    ]
    assert result.first_failing_seed is None


class Unlucky:
    """Breaks in one round out of three: stands for a race that shows now and then."""

    rounds = 0

    def __init__(self) -> None:
        self.ok = True

    def update(self) -> None:
        self.ok = Unlucky.rounds % 3 != 1


def make_unlucky() -> list[Unlucky]:
    Unlucky.rounds += 1
    return [Unlucky() for _ in range(4)]


def test_failures_are_tabled_with_the_seed_to_replay() -> None:
    Unlucky.rounds = 0

    def invariant(subjects: Sequence[Unlucky]) -> None:
        assert all(s.ok for s in subjects), "a subject is not ok"

    result = poolcheck.stress(make_unlucky, workers=4, rounds=6, invariant=invariant, seed=100)
    outcomes = {o.description: o for o in result.outcomes.values()}
    assert len(outcomes["invariant held"].rounds) == 4
    failed = outcomes["invariant failed: a subject is not ok"]
    assert failed.rounds == [0, 3]
    assert failed.seeds == [100, 103]
    assert not failed.acceptable
    assert result.first_failing_seed == 100
    with pytest.raises(ThreadUnsafe) as info:
        result.assert_thread_safe()
    message = str(info.value)
    assert "2 of 6 stress rounds (4 workers) ended in a forbidden state" in message
    assert "FORBIDDEN" in message
    assert "stress(..., seed=100, rounds=1)" in message
    assert "race_detector" in message


class Exploding:
    def update(self) -> None:
        raise KeyError("boom")


def test_errors_are_outcomes_too() -> None:
    result = poolcheck.stress(lambda: [Exploding(), Exploding()], workers=2, rounds=2)
    (outcome,) = result.outcomes.values()
    assert outcome.description == "tasks raised 2x KeyError"
    assert not outcome.acceptable


def test_the_same_seed_replays_the_same_latency_schedule(forum: FakeForumServer) -> None:
    def schedule(seed: int, rounds: int) -> list[tuple[str, float]]:
        forum.reset()
        poolcheck.stress(make_counter(forum), workers=8, rounds=rounds, server=forum, seed=seed)
        entries = forum.journal[-16:]  # the last round's requests
        return sorted((e.path, e.delay) for e in entries)

    last_of_three = schedule(seed=40, rounds=3)  # its last round used seed 42
    replayed = schedule(seed=42, rounds=1)
    assert replayed == last_of_three
    assert schedule(seed=43, rounds=1) != replayed
    assert forum.latency == {"*": "5ms"}  # the server's own latency is back afterwards


def test_the_switch_interval_is_shrunk_during_rounds_and_restored() -> None:
    seen: list[float] = []

    class Probe:
        def update(self) -> None:
            seen.append(sys.getswitchinterval())

    before = sys.getswitchinterval()
    poolcheck.stress(lambda: [Probe()], workers=1, rounds=2)
    assert seen == [1e-6, 1e-6]
    assert sys.getswitchinterval() == before


def test_bad_rounds() -> None:
    with pytest.raises(PoolcheckError, match="rounds must be a whole number"):
        poolcheck.stress(list, rounds=0)


def test_stress_alone_rarely_sees_the_counter_race_the_detector_sees_at_once(
    forum: FakeForumServer,
) -> None:
    make = make_counter(forum, racy.CounterSubject)
    with poolcheck.race_detector(watch=[racy.Store, racy.Subject]) as races:
        poolcheck.run(make(), workers=8, server=forum)
    assert [r.kind for r in races.races] == ["lost update"]
    # Stress may or may not lose an update in a few rounds; either way it must not raise.
    result = poolcheck.stress(make, workers=8, rounds=3, invariant=counted, server=forum)
    assert sum(len(o.rounds) for o in result.outcomes.values()) == 3
