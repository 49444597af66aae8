"""What the race detector costs, and what stress testing alone needs to see the counter race.

1. The examples' good crawler (examples/crawler.py, urllib), 64 subjects at 16 workers against
   fakeforum with 20 ms latency: wall time under poolcheck.run without and with
   race_detector(watch=[Subject]), alternated in one run, medians; target ratio <= 3x.
2. The racy counter (examples/racy.py, CounterSubject): how many stress rounds (a tiny switch
   interval, jittered latency) pass before one loses an update, against the detector's single
   run, which reports the race every time.

Run: ``python benchmarks/race_overhead.py [--runs 5] [--max-rounds 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples import crawler, racy

import poolcheck
from fakeforum import FakeForumServer


def overhead(runs: int) -> None:
    with FakeForumServer(mode="process", latency="20ms") as server:
        urls = server.subject_urls(64)
        plain, detected = [], []
        for _ in range(runs):
            subjects = [crawler.Subject(u, client="urllib") for u in urls]
            plain.append(poolcheck.run(subjects, workers=16, server=server).wall_time)
            subjects = [crawler.Subject(u, client="urllib") for u in urls]
            with poolcheck.race_detector(watch=[crawler.Subject]) as races:
                report = poolcheck.run(subjects, workers=16, server=server)
            races.assert_none()
            detected.append(report.wall_time)
    p, d = statistics.median(plain), statistics.median(detected)
    print(
        f"good crawler, 64 subjects, 16 workers, 20 ms: {p * 1000:.0f} ms plain, "
        f"{d * 1000:.0f} ms under the detector: {d / p:.2f}x (medians of {runs}; target <= 3x)"
    )


def rounds_to_see_the_race(max_rounds: int, seeds: int) -> None:
    with FakeForumServer(mode="process", latency="5ms") as server:
        urls = server.subject_urls(32)

        def make() -> list[Any]:
            store = racy.Store(urls)
            return [racy.CounterSubject(u, store) for u in urls]

        def counted(subjects: Sequence[Any]) -> bool:
            return bool(subjects[0].store.fetched == len(subjects))

        found = []
        for seed in range(seeds):
            result = poolcheck.stress(
                make,
                workers=16,
                rounds=max_rounds,
                invariant=counted,
                server=server,
                seed=seed * 1000,
            )
            failing = [r for o in result.failures for r in o.rounds]
            found.append(min(failing) + 1 if failing else None)
        detector_hits = 0
        for _ in range(seeds):
            with poolcheck.race_detector(watch=[racy.Store, racy.Subject]) as races:
                poolcheck.run(make(), workers=16, server=server)
            detector_hits += bool(races.races)
    shown = ", ".join("never" if f is None else str(f) for f in found)
    print(
        f"racy counter, 32 subjects, 16 workers: stress rounds until the first lost update, "
        f"per seed (at most {max_rounds}): {shown}; the detector reported the race in "
        f"{detector_hits} of {seeds} single runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-rounds", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    overhead(args.runs)
    rounds_to_see_the_race(args.max_rounds, args.seeds)


if __name__ == "__main__":
    main()
