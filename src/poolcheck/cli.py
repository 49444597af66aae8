"""``poolcheck demo`` tells the story in a few seconds; ``poolcheck check`` runs the battery."""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from fakeforum import FakeForumError, FakeForumServer, Forum

from .errors import PoolcheckError, PropertyFailed
from .report import Report
from .runner import POOLS, run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="poolcheck",
        description="Check that code run under thread pools updates, stays safe and overlaps.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="the same crawler sequential, threaded, in processes")
    demo.add_argument("--subjects", type=int, default=200, help="subjects (default %(default)s)")
    demo.add_argument("--latency", default="50ms", help="server latency (default %(default)s)")
    demo.add_argument("--workers", type=int, default=32, help="pool size (default %(default)s)")
    check = commands.add_parser(
        "check",
        help="run the battery on your subjects",
        description="Run the battery on MODULE:FACTORY, where FACTORY(base_url) returns a list "
        "of subjects with an update() method, against a fakeforum server with new replies on "
        "every subject. Exits 1 if a property fails.",
    )
    check.add_argument("factory", metavar="MODULE:FACTORY")
    check.add_argument("--workers", type=int, default=16, help="pool size (default %(default)s)")
    check.add_argument("--latency", default="50ms", help="server latency (default %(default)s)")
    check.add_argument("--pool", choices=POOLS, default="threadpool")
    check.add_argument("--method", default="update", help="method to call (default update)")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args.subjects, args.latency, args.workers)
        if args.command == "check":
            return _check(args.factory, args.workers, args.latency, args.pool, args.method)
    except (PoolcheckError, FakeForumError) as exc:
        print(f"poolcheck: error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


def _demo(n: int, latency: str, workers: int) -> int:
    from .demo import DemoSubject

    sample = min(n, 40)
    print(f"Starting fakeforum: {n} subjects, {latency} latency, in its own process...")
    forum = Forum.generate(subjects=n)
    with FakeForumServer(forum, mode="process", latency=latency) as server:
        server.post_replies(per_subject=2)
        urls = server.subject_urls(n)

        def fresh(count: int) -> list[DemoSubject]:
            return [DemoSubject(url) for url in urls[:count]]

        sequential = run(fresh(sample), "update", pool="sequential", server=server)
        threads = run(fresh(n), "update", workers=workers, pool="threadpool", server=server)
        processes = run(fresh(n), "update", workers=workers, pool="process", server=server)
    rows = [
        (f"sequential ({sample} of {n})", sequential),
        (f"ThreadPool({workers})", threads),
        (f"multiprocessing.Pool({workers})", processes),
    ]
    print()
    print(f"{'':28} {'wall':>8} {'speed-up':>9} {'server peak':>12} {'updated in caller':>18}")
    for label, report in rows:
        updated = sum(report.changed())
        peak = report.server_peak_concurrency
        print(
            f"{label:28} {report.wall_time:>7.2f}s {report.speedup:>8.1f}x {peak:>12} "
            f"{updated:>11}/{len(report.subjects)}"
        )
    per_task = sequential.wall_time / sample
    requests_at_server = processes.server.requests if processes.server else 0
    verdicts = [
        f"A plain loop waits for each response in turn: {per_task * 1000:.0f} ms a subject, "
        f"~{per_task * n:.1f} s for all {n}.",
        f"ThreadPool({workers}) overlapped the waits: {threads.server_peak_concurrency} requests "
        f"in flight at once, {per_task * n / threads.wall_time:.0f}x faster than the loop, and "
        f"all {sum(threads.changed())} subjects updated in the caller: threads share memory.",
        f"multiprocessing.Pool({workers}) sent the same requests ({requests_at_server} at the "
        f"server) but each worker updated a pickled copy: {sum(processes.changed())} of {n} "
        f"subjects changed in the caller.",
    ]
    print()
    for verdict in verdicts:
        print(textwrap.fill(verdict, width=96, initial_indent="- ", subsequent_indent="  "))
    _demo_race(forum, latency, workers)
    return 0


def _demo_race(forum: Forum, latency: str, workers: int) -> None:
    from .demo import RacyDemoSubject, Tally
    from .races import race_detector

    with FakeForumServer(forum, mode="process", latency=latency) as server:
        urls = server.subject_urls(64)
        expected = sum(server.reply_count(i) for i in server.forum.subject_ids()[:64])
        tally = Tally()
        run([RacyDemoSubject(url, tally) for url in urls], "update", workers=workers)
        with race_detector(watch=[Tally]) as races:
            # The detector's bookkeeping widens the race window: its run's tally proves
            # nothing, its report does.
            shared = Tally()
            run([RacyDemoSubject(url, shared) for url in urls], "update", workers=workers)
    print()
    print(
        textwrap.fill(
            f"Then one line more in update(): tally.replies += new, shared by all subjects and "
            f"unlocked. The tally came out {tally.replies} for {expected} replies "
            f"({'right, this time' if tally.replies == expected else 'wrong'}): under the GIL "
            f"such a race rarely loses an update, so tests pass and the bug ships. The race "
            f"detector reports the race itself, in one run:",
            width=96,
        )
    )
    print()
    print(races.report())


def _check(target: str, workers: int, latency: str, pool: str, method: str) -> int:
    factory = _load(target)
    with FakeForumServer(mode="process", latency=latency) as server:
        subjects = list(factory(server.url))
        if not subjects:
            raise PoolcheckError(f"{target}({server.url!r}) returned no subjects.")
        server.post_replies(per_subject=2)
        report = run(subjects, method, workers=workers, pool=pool, server=server)  # type: ignore[arg-type]
    print(report)
    expected = min(workers, len(subjects))
    checks: list[tuple[str, Callable[[], Report]]] = [
        ("no errors", report.assert_no_errors),
        ("mutations visible", report.assert_mutations_visible),
        (
            f"concurrency >= {max(1, expected // 2)}",
            lambda: report.assert_concurrency(at_least=max(1, expected // 2)),
        ),
        ("efficiency >= 0.5", lambda: report.assert_efficiency(at_least=0.5)),
    ]
    failed = 0
    for name, check in checks:
        try:
            check()
        except PropertyFailed as exc:
            failed += 1
            print(f"FAIL {name}\n{_indent(str(exc))}")
        else:
            print(f"ok   {name}")
    return 1 if failed else 0


def _load(target: str) -> Callable[[str], Any]:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise PoolcheckError(f"{target!r} is not MODULE:FACTORY, e.g. 'mycrawler:make_subjects'.")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like python -m: the current directory's modules are found
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PoolcheckError(f"Cannot import {module_name!r}: {exc}.") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise PoolcheckError(f"{module_name!r} has no callable {attribute!r}.")
    return factory  # type: ignore[no-any-return]


def _indent(text: str) -> str:
    return "\n".join("     " + line for line in text.splitlines())
