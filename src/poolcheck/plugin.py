"""The pytest plugin: fixtures ``fakeforum``, ``fakeforum_factory`` and ``poolcheck``, markers,
options, and a summary table of the runs.

Settings resolve in one place with one precedence — marker > command line > ini > default — and
an invalid value names where it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakeforum import FakeForumError, FakeForumServer, Forum
from fakeforum.journal import chrome_trace

from .races import RaceDetector, race_detector
from .report import Report
from .runner import POOLS, Method, PoolKind, run
from .stress import StressResult, stress

MODE_HELP = "fakeforum server mode for the fixtures: thread (default) or process."
SEED_HELP = "seed of fakeforum's content, latency and faults (default 0)."
ROUNDS_HELP = "rounds for poolcheck.stress (default 50)."
TRACE_HELP = "write a Chrome trace (Perfetto) of each poolcheck run to this directory."

FAKEFORUM_MARKER = (
    "fakeforum(latency=None, faults=None, bandwidth=None, seed=None, subjects=100, boards=3, "
    "replies=(0, 20), mode=None): settings of the fakeforum fixture's server for this test."
)
POOLCHECK_MARKER = (
    "poolcheck(workers=16, pool='threadpool', rounds=None, seed=None): defaults of the "
    "poolcheck fixture's runs in this test."
)

_PROPERTY = "poolcheck"
_SERVER_ARGS = ("mode", "seed", "subjects", "boards", "replies")
_SCHEDULE_ARGS = ("latency", "faults", "bandwidth")
_POOLCHECK_ARGS = ("workers", "pool", "rounds", "seed")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poolcheck", "poolcheck and fakeforum")
    group.addoption("--fakeforum-mode", help=MODE_HELP)
    group.addoption("--fakeforum-seed", help=SEED_HELP)
    group.addoption("--poolcheck-rounds", help=ROUNDS_HELP)
    group.addoption("--poolcheck-trace-dir", help=TRACE_HELP)
    parser.addini("fakeforum_mode", MODE_HELP)
    parser.addini("fakeforum_seed", SEED_HELP)
    parser.addini("poolcheck_rounds", ROUNDS_HELP)
    parser.addini("poolcheck_trace_dir", TRACE_HELP)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", FAKEFORUM_MARKER)
    config.addinivalue_line("markers", POOLCHECK_MARKER)


def pytest_report_header(config: pytest.Config) -> str:
    seed = _resolve(config, None, "seed", _seed, 0)
    mode = _resolve(config, None, "mode", _mode, "thread")
    # Pasted back, this reproduces the run's content, latency and faults.
    return f"poolcheck: --fakeforum-seed={seed} --fakeforum-mode={mode}"


# -- settings --------------------------------------------------------------------------------

_OPTION = {
    "mode": "fakeforum_mode",
    "seed": "fakeforum_seed",
    "rounds": "poolcheck_rounds",
    "trace_dir": "poolcheck_trace_dir",
}


def _resolve(
    config: pytest.Config,
    marker: pytest.Mark | None,
    name: str,
    convert: Callable[[object, str], Any],
    default: Any,
) -> Any:
    """The setting from the marker, else the command line, else the ini file, else default."""
    if marker is not None and marker.kwargs.get(name) is not None:
        return convert(marker.kwargs[name], f"the {marker.name} marker")
    key = _OPTION[name]
    cli = config.getoption(key)
    if cli is not None:
        return convert(cli, f"--{key.replace('_', '-')}")
    ini = config.getini(key)
    if ini:
        return convert(ini, f"the {key} ini setting")
    return default


def _mode(value: object, source: str) -> str:
    if value not in ("thread", "process"):
        raise pytest.UsageError(
            f"Invalid fakeforum mode {value!r} from {source}; use thread or process."
        )
    return str(value)


def _whole(what: str, minimum: int) -> Callable[[object, str], int]:
    def convert(value: object, source: str) -> int:
        try:
            number = int(str(value))
        except ValueError:
            number = minimum - 1
        if isinstance(value, bool) or number < minimum:
            raise pytest.UsageError(
                f"Invalid {what} {value!r} from {source}; it must be a whole number "
                f"of at least {minimum}."
            )
        return number

    return convert


_seed = _whole("fakeforum seed", 0)
_rounds = _whole("poolcheck rounds", 1)


def _path(value: object, source: str) -> Path:
    return Path(str(value))


# -- fixtures --------------------------------------------------------------------------------


class _Servers:
    """The session's servers, one per (mode, seed, content) asked for, started when needed."""

    def __init__(self) -> None:
        self._servers: dict[tuple[Any, ...], FakeForumServer] = {}

    def get(
        self, mode: str, seed: int, subjects: int, boards: int, replies: Any
    ) -> FakeForumServer:
        key = (mode, seed, subjects, boards, tuple(replies))
        server = self._servers.get(key)
        if server is None:
            try:
                forum = Forum.generate(
                    seed=seed, boards=boards, subjects=subjects, replies=tuple(replies)
                )
                server = FakeForumServer(forum, mode=mode, seed=seed)  # type: ignore[arg-type]
            except FakeForumError as exc:
                raise pytest.UsageError(f"Invalid fakeforum marker arguments: {exc}") from None
            self._servers[key] = server.start()
        return server

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def _fakeforum_servers() -> Iterator[_Servers]:
    servers = _Servers()
    yield servers
    servers.stop()


@pytest.fixture
def fakeforum(
    request: pytest.FixtureRequest, _fakeforum_servers: _Servers
) -> Iterator[FakeForumServer]:
    """A running fakeforum server, reset for this test: content from the seed, no latency or
    faults unless the ``fakeforum`` marker asks, counters and journal at zero.

    One server per session (per xdist worker) is shared by the tests and reset before each:
    starting a server is the slow part. Exceptions the forum raised while serving fail the test
    at teardown.
    """
    marker = request.node.get_closest_marker("fakeforum")
    unknown = set(marker.kwargs) - set(_SERVER_ARGS + _SCHEDULE_ARGS) if marker else set()
    if unknown:
        raise pytest.UsageError(
            f"Unknown fakeforum marker argument(s): {sorted(unknown)}; see: {FAKEFORUM_MARKER}"
        )
    config = request.config
    kwargs = marker.kwargs if marker else {}
    server = _fakeforum_servers.get(
        mode=_resolve(config, marker, "mode", _mode, "thread"),
        seed=_resolve(config, marker, "seed", _seed, 0),
        subjects=kwargs.get("subjects", 100),
        boards=kwargs.get("boards", 3),
        replies=kwargs.get("replies", (0, 20)),
    )
    server.reset()
    schedule = {k: kwargs[k] for k in _SCHEDULE_ARGS if kwargs.get(k) is not None}
    if schedule:
        try:
            server.configure(**schedule)
        except FakeForumError as exc:
            raise pytest.UsageError(f"Invalid fakeforum marker arguments: {exc}") from None
    yield server
    server.raise_errors()


@pytest.fixture
def fakeforum_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., FakeForumServer]]:
    """Start more fakeforum servers with any FakeForumServer arguments; each is stopped (and
    its server-side errors raised) at teardown. The default seed and mode are the session's."""
    servers: list[FakeForumServer] = []
    config = request.config

    def make(forum: Forum | None = None, **kwargs: Any) -> FakeForumServer:
        kwargs.setdefault("seed", _resolve(config, None, "seed", _seed, 0))
        kwargs.setdefault("mode", _resolve(config, None, "mode", _mode, "thread"))
        server = FakeForumServer(forum, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@dataclass
class Poolcheck:
    """The poolcheck API bound to this test's ``fakeforum`` server (the ``poolcheck`` fixture).

    ``poolcheck.run(subjects, "update", workers=16)`` is :func:`poolcheck.run` with
    ``server=fakeforum``; workers and pool default to the ``poolcheck`` marker's.
    ``poolcheck.stress(make, invariant=...)`` and ``poolcheck.race_detector(watch=[...])``
    are :func:`poolcheck.stress` and :func:`poolcheck.race_detector`, bound the same way.
    """

    server: FakeForumServer
    workers: int = 16
    pool: PoolKind = "threadpool"
    rounds: int = 50
    seed: int = 0
    trace_dir: Path | None = None
    node: pytest.Item | None = None
    reports: list[Report] = field(default_factory=list)

    def run(
        self,
        subjects: Any,
        method: Method = "update",
        *,
        workers: int | None = None,
        pool: PoolKind | None = None,
        timeout: float | None = 300.0,
    ) -> Report:
        """Run ``method`` on every subject against this test's server; see poolcheck.run."""
        report = run(
            subjects,
            method,
            workers=self.workers if workers is None else workers,
            pool=self.pool if pool is None else pool,
            server=self.server,
            timeout=timeout,
        )
        self.reports.append(report)
        if self.node is not None:
            # Recorded now, so they travel with the call phase's report (under xdist too).
            self.node.user_properties.append((_PROPERTY, report.summary()))
        if self.trace_dir is not None and report.journal:
            self.trace_dir.mkdir(parents=True, exist_ok=True)
            node_id = self.node.nodeid if self.node is not None else "run"
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node_id).strip("_")
            target = self.trace_dir / f"{name}-{len(self.reports)}.json"
            target.write_text(json.dumps(chrome_trace(report.journal)))
        return report

    def stress(
        self,
        make: Callable[[], Any],
        method: Method = "update",
        *,
        workers: int | None = None,
        rounds: int | None = None,
        invariant: Callable[[Any], object] | None = None,
        seed: int | None = None,
    ) -> StressResult:
        """:func:`poolcheck.stress` against this test's server; rounds and seed default to
        the ``poolcheck`` marker's, then ``--poolcheck-rounds`` and ``--fakeforum-seed``."""
        return stress(
            make,
            method,
            workers=self.workers if workers is None else workers,
            rounds=self.rounds if rounds is None else rounds,
            invariant=invariant,
            seed=self.seed if seed is None else seed,
            server=self.server,
        )

    def race_detector(self, watch: Iterable[type]) -> RaceDetector:
        """:func:`poolcheck.race_detector`: ``with poolcheck.race_detector([Store]) as r:``."""
        return race_detector(watch)


@pytest.fixture
def poolcheck(request: pytest.FixtureRequest, fakeforum: FakeForumServer) -> Poolcheck:
    """poolcheck bound to the ``fakeforum`` server: ``poolcheck.run(subjects, "update")``.

    Each run shows in the terminal summary table (also under pytest-xdist).
    """
    marker = request.node.get_closest_marker("poolcheck")
    kwargs = marker.kwargs if marker else {}
    unknown = set(kwargs) - set(_POOLCHECK_ARGS)
    if unknown:
        raise pytest.UsageError(
            f"Unknown poolcheck marker argument(s): {sorted(unknown)}; see: {POOLCHECK_MARKER}"
        )
    pool = kwargs.get("pool", "threadpool")
    if pool not in POOLS:
        raise pytest.UsageError(
            f"Invalid pool {pool!r} from the poolcheck marker; use one of {', '.join(POOLS)}."
        )
    workers = _whole("poolcheck workers", 1)(kwargs.get("workers", 16), "the poolcheck marker")
    config = request.config
    return Poolcheck(
        server=fakeforum,
        workers=workers,
        pool=pool,
        rounds=_resolve(config, marker, "rounds", _rounds, 50),
        seed=_resolve(config, marker, "seed", _seed, 0),
        trace_dir=_resolve(config, None, "trace_dir", _path, None),
        node=request.node,
    )


# -- the summary table -----------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = []
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", None) not in ("call", "teardown"):
                continue
            for name, value in getattr(report, "user_properties", []):
                if name == _PROPERTY:
                    rows.append((report.nodeid, outcome, value))
    if not rows:
        return
    verbose = config.getoption("verbose") > 0
    shown = rows if verbose else rows[:20]
    terminalreporter.write_sep("=", "poolcheck runs")
    width = min(max(len(nodeid) for nodeid, _, _ in shown), 70)
    terminalreporter.write_line(
        f"{'test':{width}} {'pool':10} {'workers':>7} {'tasks':>5} {'wall':>8} "
        f"{'speed-up':>8} {'peak':>5}  verdict"
    )
    for nodeid, outcome, r in shown:
        name = nodeid if len(nodeid) <= width else "..." + nodeid[-(width - 3) :]
        peak = r["server_peak"] if r["server_peak"] is not None else r["peak_concurrency"]
        terminalreporter.write_line(
            f"{name:{width}} {r['pool']:10} {r['workers']:>7} {r['tasks']:>5} "
            f"{r['wall_time'] * 1000:>6.0f}ms {r['speedup']:>7.1f}x {peak:>5}  {outcome}"
        )
    if len(rows) > len(shown):
        terminalreporter.write_line(f"({len(rows) - len(shown)} more runs; -v to show them)")
