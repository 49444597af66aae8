"""``fakeforum serve``: the forum for manual testing, with latency, from the command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .errors import FakeForumError
from .faults import parse_fault_flag
from .latency import FORMS, LatencySpec, parse_latency
from .model import Forum
from .server import FakeForumServer

__all__ = ["main"]

EXAMPLES = """\
examples:
  fakeforum serve --port 8000 --latency 50ms
  fakeforum serve --latency 20ms..80ms \\
      --route-latency '/api/subjects/*/replies=lognormal(100ms, 0.5)'
  fakeforum serve --fault '/api/subjects/*/replies=status,status=503,p=0.1' \\
      --fault '*=429,retry_after=2,p=0.05' --fault '/subjects/*=reset,p=0.01'
  fakeforum serve --fault '/api/subjects/3/replies=truncate,times=2'   # the next 2 only
  fakeforum serve --activity 5/s          # seeded replies keep arriving
  fakeforum serve --port 0 --quiet        # the first line printed is the URL
  fakeforum serve --host 0.0.0.0 --admin-token s3cret   # off loopback the admin API needs it

latency specs: 0, 50ms, 0.2s, 20ms..80ms (uniform), 50ms~10ms (normal), lognormal(50ms, 0.5)
fault kinds: status (status=CODE), 429 (retry_after=SECONDS), reset, empty, truncate, hang,
  slow_body (bandwidth=RATE); each with p=PROBABILITY per request, or times=N (the next N)
admin API and dashboard: <url>/_fakeforum/
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    try:
        return _serve(args)
    except FakeForumError as exc:
        print(f"fakeforum: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakeforum", description="A fake web forum over real HTTP, for testing crawlers."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve a seeded forum until Ctrl-C",
        description="Serve a seeded forum over HTTP until Ctrl-C.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default %(default)s)"
    )
    serve.add_argument(
        "--seed", type=int, default=0, help="content and latency seed (default %(default)s)"
    )
    serve.add_argument("--boards", type=int, default=3, help="boards (default %(default)s)")
    serve.add_argument("--subjects", type=int, default=100, help="subjects (default %(default)s)")
    serve.add_argument(
        "--replies",
        default="0..20",
        metavar="A..B",
        help="replies per subject, drawn from A to B (default %(default)s)",
    )
    serve.add_argument("--latency", metavar="SPEC", help=f"latency of every route: {FORMS}")
    serve.add_argument(
        "--route-latency",
        action="append",
        default=[],
        metavar="GLOB=SPEC",
        help="latency of the routes matching GLOB (repeatable; first match wins, "
        "before --latency), e.g. '/api/subjects/*/replies=100ms'",
    )
    serve.add_argument("--bandwidth", metavar="RATE", help="pace response bodies, e.g. 100KB/s")
    serve.add_argument(
        "--backlog",
        type=int,
        default=4096,
        help="listen backlog (default %(default)s, capped by the kernel)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="close keep-alive connections idle this long (default %(default)s)",
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="GLOB=KIND[,k=v...]",
        help="inject a fault (repeatable), e.g. '/api/*=status,status=503,p=0.1'",
    )
    serve.add_argument(
        "--activity", metavar="RATE", help="post seeded replies at RATE, e.g. 5/s or 30/min"
    )
    serve.add_argument(
        "--journal-size",
        type=int,
        default=10_000,
        metavar="N",
        help="requests kept in the journal (default %(default)s)",
    )
    serve.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on the admin API",
    )
    serve.add_argument(
        "--admin",
        choices=("on", "off"),
        default="on",
        help="serve the admin API and dashboard under /_fakeforum/ (default on)",
    )
    serve.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def _serve(args: argparse.Namespace) -> int:
    forum = Forum.generate(
        seed=args.seed, boards=args.boards, subjects=args.subjects, replies=_replies(args.replies)
    )
    latency: dict[str, LatencySpec] = {}
    for rule in args.route_latency:
        glob, sep, spec = rule.partition("=")
        if not sep or not glob:
            raise FakeForumError(f"--route-latency {rule!r} is not GLOB=SPEC, e.g. '/api/*=50ms'.")
        latency[glob] = parse_latency(spec)
    if args.latency is not None:
        latency["*"] = parse_latency(args.latency)
    log = None if args.quiet else _log
    faults = [parse_fault_flag(text) for text in args.fault]
    server = FakeForumServer(
        forum,
        host=args.host,
        port=args.port,
        latency=latency or None,
        bandwidth=args.bandwidth,
        seed=args.seed,
        backlog=args.backlog,
        idle_timeout=args.idle_timeout,
        faults=faults,
        activity=args.activity,
        journal_size=args.journal_size,
        admin=args.admin == "on",
        admin_token=args.admin_token,
        log=log,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    server.start()
    try:
        print(server.url, flush=True)
        rules = ", ".join(f"{g}={s}" for g, s in server.latency.items()) or "none"
        extras = f", {len(faults)} fault rule(s)" if faults else ""
        extras += f", activity {args.activity}" if args.activity else ""
        admin = f"; dashboard {server.admin_url}/" if args.admin == "on" else ""
        print(
            f"fakeforum: {len(forum)} subjects on {len(forum.boards())} boards, seed {args.seed}, "
            f"latency {rules}{extras}{admin}; Ctrl-C stops.",
            flush=True,
        )
        # wait() with a timeout keeps the main thread responsive to Ctrl-C on every platform.
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    stats = server.stats
    print(
        f"fakeforum: stopped after {stats.requests} requests on "
        f"{stats.connections_opened} connections.",
        file=sys.stderr,
    )
    return 0


def _replies(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("..")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise FakeForumError(f"--replies {text!r} is not a range A..B such as 0..20.")
    return int(lo), int(hi)


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
