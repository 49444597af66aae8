"""How close the examples' good crawler gets to ideal overlap, and what poolcheck itself costs.

For 200 subjects, latency L in {50 ms, 100 ms} and workers w in {1, 8, 32, 64, 200}, against a
fakeforum in process mode (its CPU is not in this process's GIL), prints

    efficiency = ideal wall / measured wall,   ideal wall = ceil(200 / w) * L

and the CPU floor: the client's CPU time for the run, below which no wall time can go under
one GIL. Both clients of examples/crawler.py are measured: requests (a session per thread) and
urllib. Then poolcheck's bookkeeping: the same 200 x update() under poolcheck.run and under a
bare ThreadPool(32).map, alternated, medians. Run: ``python benchmarks/efficiency.py``
(``--quick`` for one latency and fewer worker counts).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.crawler import Subject

import poolcheck
from fakeforum import FakeForumServer, Forum

N = 200


def efficiency_table(latencies: list[int], workers: list[int], runs: int) -> None:
    print(
        f"{'client':9} {'latency':>7} {'workers':>7} {'ideal':>8} {'wall':>8} "
        f"{'efficiency':>10} {'cpu floor':>9}"
    )
    for latency_ms in latencies:
        with FakeForumServer(
            Forum.generate(subjects=N), mode="process", latency=f"{latency_ms}ms"
        ) as server:
            urls = server.subject_urls()
            for client in ("urllib", "requests"):
                for w in workers:
                    walls, cpus = [], []
                    for _ in range(runs if w > 1 else 1):
                        subjects = [Subject(u, client=client) for u in urls]
                        report = poolcheck.run(subjects, "update", workers=w, server=server)
                        report.assert_no_errors()
                        walls.append(report.wall_time)
                        cpus.append(report.cpu_time)
                    ideal = math.ceil(N / w) * latency_ms / 1000
                    wall = statistics.median(walls)
                    print(
                        f"{client:9} {latency_ms:>5}ms {w:>7} {ideal:>7.2f}s {wall:>7.3f}s "
                        f"{ideal / wall:>10.2f} {statistics.median(cpus):>8.3f}s",
                        flush=True,
                    )


def bookkeeping(runs: int) -> None:
    with FakeForumServer(Forum.generate(subjects=N), mode="process", latency="50ms") as server:
        urls = server.subject_urls()
        bare, checked, total = [], [], []
        for _ in range(runs):
            subjects = [Subject(u, client="urllib") for u in urls]
            with ThreadPool(32) as pool:
                started = time.perf_counter()
                pool.map(lambda s: s.update(), subjects, chunksize=1)
                bare.append(time.perf_counter() - started)
            subjects = [Subject(u, client="urllib") for u in urls]
            started = time.perf_counter()
            report = poolcheck.run(subjects, "update", workers=32, server=server)
            total.append(time.perf_counter() - started)
            checked.append(report.wall_time)
    b, c, t = (statistics.median(x) for x in (bare, checked, total))
    print(
        f"\nbare ThreadPool(32).map: {b * 1000:.0f} ms; the same run under poolcheck.run "
        f"(barrier, per-task records): {c * 1000:.0f} ms, {(c / b - 1) * 100:+.1f}% "
        f"(target <= 2%); the whole call with pool start, snapshots and the server's figures "
        f"from its process: {t * 1000:.0f} ms, {(t / b - 1) * 100:+.1f}% (medians of {runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bookkeeping-only", action="store_true")
    args = parser.parse_args()
    if args.bookkeeping_only:
        bookkeeping(max(5, args.runs))
        return
    latencies = [100] if args.quick else [50, 100]
    workers = [8, 64] if args.quick else [1, 8, 32, 64, 200]
    efficiency_table(latencies, workers, args.runs)
    bookkeeping(max(5, args.runs))


if __name__ == "__main__":
    main()
