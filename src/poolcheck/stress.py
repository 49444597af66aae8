"""Stress rounds: fresh subjects each round, a barrier start, a tiny switch interval, jittered
latency from the round's seed, and an invariant checked after every round."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import PoolcheckError, PropertyFailed
from .runner import Method, PoolKind, run

if TYPE_CHECKING:
    from fakeforum import FakeForumServer

__all__ = ["Outcome", "StressResult", "ThreadUnsafe", "stress"]

# While rounds run, the interpreter offers a thread switch this often (seconds), not every
# 5 ms: races get a chance to show. Never while measuring throughput.
SWITCH_INTERVAL = 1e-6


class ThreadUnsafe(PropertyFailed):
    """Some stress rounds ended in a state the invariant forbids, or raised."""


@dataclass
class Outcome:
    """One distinct way a round ended, how often, and whether it is acceptable."""

    description: str
    acceptable: bool
    rounds: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


@dataclass
class StressResult:
    """All rounds' outcomes, jcstress-style, and the first failing round's seed."""

    rounds: int
    workers: int
    seed: int
    outcomes: dict[str, Outcome]

    @property
    def failures(self) -> list[Outcome]:
        """The outcomes the invariant forbids."""
        return [o for o in self.outcomes.values() if not o.acceptable]

    @property
    def first_failing_seed(self) -> int | None:
        """The seed that replays the first failing round: stress(..., seed=it, rounds=1)."""
        failing = [(o.rounds[0], o.seeds[0]) for o in self.failures]
        return min(failing)[1] if failing else None

    def table(self) -> str:
        """The outcome table: each distinct ending, how many rounds, acceptable or not."""
        lines = [f"{'rounds':>6}  {'verdict':10}  outcome"]
        for outcome in sorted(self.outcomes.values(), key=lambda o: -len(o.rounds)):
            verdict = "ok" if outcome.acceptable else "FORBIDDEN"
            lines.append(f"{len(outcome.rounds):>6}  {verdict:10}  {outcome.description}")
        return "\n".join(lines)

    def assert_thread_safe(self) -> StressResult:
        """Fail with the outcome table and the seed to replay if any round went wrong."""
        __tracebackhide__ = True
        if self.failures:
            bad = sum(len(o.rounds) for o in self.failures)
            raise ThreadUnsafe(
                f"{bad} of {self.rounds} stress rounds ({self.workers} workers) ended in a "
                f"forbidden state:\n{self.table()}\nReplay the first failing round with "
                f"stress(..., seed={self.first_failing_seed}, rounds=1). A round that "
                f"passes proves little under the GIL: poolcheck.race_detector reports the "
                f"race itself, whether or not this run lost an update."
            )
        return self


def stress(
    make: Callable[[], Sequence[Any]],
    method: Method = "update",
    *,
    workers: int = 32,
    rounds: int = 50,
    invariant: Callable[[Sequence[Any]], object] | None = None,
    seed: int = 0,
    server: FakeForumServer | None = None,
    jitter: str = "1ms..20ms",
    pool: PoolKind = "threadpool",
) -> StressResult:
    """Run ``make()``'s fresh subjects ``rounds`` times and check ``invariant`` after each.

    Round r uses seed ``seed + r``: with a server, its latency becomes ``jitter`` drawn from
    that seed, so ``stress(..., seed=seed + r, rounds=1)`` replays round r's schedule. The
    invariant gets the round's subjects and returns a false value or raises AssertionError
    when the state is wrong; every round runs, and all outcomes are tabled.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise PoolcheckError(f"rounds must be a whole number of at least 1, not {rounds!r}.")
    previous_config = server.config if server is not None else None
    previous_interval = sys.getswitchinterval()
    outcomes: dict[str, Outcome] = {}
    try:
        sys.setswitchinterval(SWITCH_INTERVAL)
        for number in range(rounds):
            round_seed = seed + number
            if server is not None:
                server.configure(latency=jitter, seed=round_seed)
            subjects = list(make())
            report = run(subjects, method, workers=workers, pool=pool, server=server)
            description, acceptable = _judge(report.errors, subjects, invariant)
            outcome = outcomes.setdefault(description, Outcome(description, acceptable))
            outcome.rounds.append(number)
            outcome.seeds.append(round_seed)
    finally:
        sys.setswitchinterval(previous_interval)
        if server is not None and previous_config is not None:
            server.configure(latency=previous_config["latency"], seed=previous_config["seed"])
    return StressResult(rounds, workers, seed, outcomes)


def _judge(
    errors: list[Any], subjects: Sequence[Any], invariant: Callable[[Sequence[Any]], object] | None
) -> tuple[str, bool]:
    if errors:
        kinds = Counter((e.error or "").split(":")[0] for e in errors)
        return "tasks raised " + ", ".join(f"{n}x {k}" for k, n in sorted(kinds.items())), False
    if invariant is None:
        return "no errors", True
    try:
        verdict = invariant(subjects)
    except AssertionError as exc:
        # The first line: pytest's rewritten asserts add an explanation below the message.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "assertion failed"
        return f"invariant failed: {first}", False
    if verdict is False:
        return "invariant returned False", False
    return "invariant held", True
