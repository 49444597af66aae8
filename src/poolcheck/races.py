"""A happens-before race detector for the objects a test watches.

``with poolcheck.race_detector(watch=[Store, Subject]) as races: ...`` records every read and
write of the instance attributes of the watched classes — and of the lists, dicts, sets and
generators they hold — with the thread, the code location and the locks held, and keeps a
vector clock per thread. Happens-before comes from lock release → acquire (Lock, RLock and
everything built on them: Condition, Semaphore, Event, queue.Queue, futures), from
``queue.SimpleQueue`` put → get (the hand-off of ThreadPool and ThreadPoolExecutor), and from
Thread start and join. Two accesses to the same place from different threads, at least one a
write, that nothing orders, are a race — whether or not this run happened to lose an update.

Python's own atomicity is respected: one built-in container operation (``append``,
``d[k] = v``, ``pop``, ``setdefault``...) is atomic, so many threads appending to one list is
correct; what races on a container is a read and a dependent write in one thread
(``d[k] = d.get(k, 0) + 1``, ``if x not in s: s.add(x)``) that another thread's unordered
write can split.

Only synchronisation created by user code counts: the locks inside HTTP clients (urllib3's
connection pool, for one) would otherwise order every task after every other and hide the
races this is for. See ``_is_user_site``.
"""

from __future__ import annotations

import _thread
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .errors import PoolcheckError, PropertyFailed

__all__ = ["Race", "RaceDetector", "RacesFound", "race_detector"]

_RAW_LOCK = _thread.allocate_lock
_STDLIB = os.path.normcase(sysconfig.get_paths()["stdlib"])
_LIBS = {os.path.normcase(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
_HERE = os.path.normcase(os.path.dirname(__file__))
_INFRA = {"threading.py", "queue.py"}  # stdlib files whose locks serve their caller


class RacesFound(PropertyFailed):
    """The race detector saw unordered conflicting accesses."""


@dataclass(frozen=True)
class Access:
    """One side of a race: which thread did what, where, holding which locks."""

    thread: str
    write: bool
    stack: tuple[str, ...]  # innermost first, "file:line in function"
    locks: tuple[str, ...]

    @property
    def site(self) -> str:
        """The innermost code location."""
        return self.stack[0] if self.stack else "?"


@dataclass
class Race:
    """Conflicting accesses from two threads that nothing orders; one per pair of sites."""

    kind: str  # "lost update", "check-then-act", "unordered writes", "stale read"
    target: str  # "Store.total", "Store.cache['k']"
    first: Access
    second: Access
    count: int = 1

    def describe(self) -> str:
        """A paragraph for people: what, where (both stacks), the locks each side held."""

        def side(label: str, a: Access) -> str:
            verb = "writes" if a.write else "reads"
            held = ", ".join(a.locks) if a.locks else "no lock"
            stack = "\n".join(f"        {frame}" for frame in a.stack)
            return f"    {label}: {a.thread} {verb} it, holding {held}, at\n{stack}"

        return (
            f"{self.kind}: {self.target} ({self.count} unordered pairs seen)\n"
            f"{side('first', self.first)}\n{side('then', self.second)}\n"
            f"    {_ADVICE[self.kind]}"
        )


@dataclass
class _Thread:
    id: int
    name: str
    vc: dict[int, int]
    held: list[str] = field(default_factory=list)
    reads: dict[Any, tuple[int, Access]] = field(default_factory=dict)  # container RMW origins


@dataclass
class _Place:
    label: str
    reads: dict[int, tuple[int, Access]] = field(default_factory=dict)
    writes: dict[int, tuple[int, Access]] = field(default_factory=dict)
    # For containers: the read each thread's last write depended on (its check), if any.
    origins: dict[int, Access] = field(default_factory=dict)


class RaceDetector:
    """The detector; use it through :func:`race_detector`."""

    def __init__(self, watch: Iterable[type], *, stack_depth: int = 4) -> None:
        self.watch = list(watch)
        for cls in self.watch:
            if not isinstance(cls, type):
                raise PoolcheckError(f"race_detector(watch=...) takes classes, not {cls!r}.")
        self.stack_depth = stack_depth
        self._mutex = _RAW_LOCK()
        self._local = threading.local()
        self._threads: dict[int, _Thread] = {}
        self._places: dict[Any, _Place] = {}
        self._races: dict[tuple[str, str], Race] = {}
        self._sync: dict[int, dict[int, int]] = {}
        self._keep: list[Any] = []  # sync objects whose id() keys _sync: kept alive
        self._undo: list[Callable[[], None]] = []
        self._owners: dict[int, int] = {}
        self._waiting: dict[int, Any] = {}
        self.active = False

    # -- results --------------------------------------------------------------------------

    @property
    def races(self) -> list[Race]:
        """One Race per distinct pair of code locations, in the order found."""
        with self._mutex:
            return list(self._races.values())

    def report(self) -> str:
        """Every race, described; or a sentence saying there was none."""
        races = self.races
        if not races:
            return f"No races on {', '.join(c.__name__ for c in self.watch)}."
        return f"{len(races)} race(s) found:\n\n" + "\n\n".join(r.describe() for r in races)

    def assert_none(self) -> None:
        """Fail, describing each race, if any was seen."""
        __tracebackhide__ = True
        if self.races:
            raise RacesFound(self.report())

    def wait_cycle(self) -> list[str]:
        """Threads waiting on each other's locks, as ``["A waits for B", ...]`` (a deadlock)."""
        with self._mutex:
            names = {i: t.name for i, t in self._threads.items()}
            waiting = dict(self._waiting)
            owners = dict(self._owners)
        for start in waiting:
            seen, chain, thread = set(), [], start
            while thread in waiting and thread not in seen:
                seen.add(thread)
                owner = owners.get(id(waiting[thread]))
                if owner is None:
                    break
                chain.append(f"{names.get(thread, thread)} waits for {names.get(owner, owner)}")
                thread = owner
            if thread == start and chain:
                return chain
        return []

    # -- the clocks -----------------------------------------------------------------------

    def _me(self) -> _Thread:
        ident = threading.get_ident()
        state = self._threads.get(ident)
        if state is None:
            state = _Thread(ident, _thread_name(ident), {ident: 1})
            self._threads[ident] = state
        elif state.name.startswith("thread "):
            state.name = _thread_name(ident)
        return state

    def release(self, obj: Any) -> None:
        """``obj`` publishes what this thread did so far (a lock release, a put, a start)."""
        with self._mutex:
            me = self._me()
            clock = self._sync.setdefault(id(obj), {})
            if not clock:
                self._keep.append(obj)
            _join(clock, me.vc)
            me.vc[me.id] += 1

    def acquire(self, obj: Any) -> None:
        """This thread sees what was published through ``obj`` (an acquire, a get, a join)."""
        with self._mutex:
            clock = self._sync.get(id(obj))
            if clock:
                _join(self._me().vc, clock)

    def inherit(self, parent: dict[int, int]) -> None:
        """This (new) thread starts after everything its starter did."""
        with self._mutex:
            _join(self._me().vc, parent)

    def snapshot(self) -> dict[int, int]:
        """This thread's clock, for a hand-off the detector cannot see (a task's start)."""
        with self._mutex:
            me = self._me()
            snap = dict(me.vc)
            me.vc[me.id] += 1
            return snap

    def task_started(self) -> None:
        """A new task on this thread: reads of earlier tasks are no longer pending."""
        with self._mutex:
            self._me().reads.clear()

    # -- accesses -------------------------------------------------------------------------

    def access(self, target: Any, label: str, write: bool, *, container: bool = False) -> None:
        """Record one access to ``target`` (a hashable place) and report unordered conflicts."""
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            stack = _stack(sys._getframe(2), self.stack_depth)
            with self._mutex:
                me = self._me()
                access = Access(me.name, write, stack, tuple(me.held))
                place = self._places.get(target)
                if place is None:
                    place = self._places[target] = _Place(label)
                epoch = me.vc[me.id]
                if container:
                    self._container(me, target, place, access, epoch)
                else:
                    self._attribute(me, place, access, epoch)
        finally:
            self._local.busy = False

    def _attribute(self, me: _Thread, place: _Place, access: Access, epoch: int) -> None:
        rmw = me.id in place.reads
        for other, (their_epoch, theirs) in list(place.writes.items()):
            if other != me.id and me.vc.get(other, 0) < their_epoch:
                kind = "unordered writes" if access.write and not rmw else "stale read"
                if access.write and rmw:
                    kind = _rmw_kind(place.reads[me.id][1], access)
                self._found(kind, place.label, theirs, access)
        if access.write:
            for other, (their_epoch, theirs) in list(place.reads.items()):
                if other != me.id and me.vc.get(other, 0) < their_epoch:
                    if other in place.writes or rmw:
                        # A read-modify-write split by this write: the other thread's read
                        # and this write on one statement (x += 1), or a check and an act.
                        kind = _rmw_kind(theirs, access)
                    else:
                        kind = "stale read"
                    self._found(kind, place.label, theirs, access)
            place.writes[me.id] = (epoch, access)
        else:
            place.reads[me.id] = (epoch, access)

    def _container(
        self, me: _Thread, target: Any, place: _Place, access: Access, epoch: int
    ) -> None:
        if not access.write:
            me.reads.setdefault(target, (epoch, access))
            # The same check that another thread acted on, unordered with its act: had this
            # check run a moment earlier, both threads would have acted. That is the race,
            # whichever way this run's timing fell.
            for other, (their_epoch, theirs) in list(place.writes.items()):
                check = place.origins.get(other)
                if (
                    other != me.id
                    and check is not None
                    and check.site == access.site
                    and me.vc.get(other, 0) < their_epoch
                ):
                    self._found(_rmw_kind(check, theirs), place.label, theirs, access)
            return
        origin = me.reads.pop(target, None)
        if origin is not None:
            read = origin[1]
            # The read saw a state that another thread's unordered write could change
            # before this write: the read-then-write can be split.
            for other, (their_epoch, theirs) in list(place.writes.items()):
                if other != me.id and me.vc.get(other, 0) < their_epoch:
                    self._found(_rmw_kind(read, access), place.label, theirs, access)
            place.origins[me.id] = read
        else:
            place.origins.pop(me.id, None)
        place.writes[me.id] = (epoch, access)

    def _found(self, kind: str, label: str, first: Access, second: Access) -> None:
        low, high = sorted((first.site, second.site))
        key = (low, high)
        race = self._races.get(key)
        if race is None:
            self._races[key] = Race(kind, label, first, second)
        else:
            race.count += 1
            if _SEVERITY[kind] > _SEVERITY[race.kind]:  # the worst reading of the pair wins
                race.kind, race.first, race.second = kind, first, second

    # -- locks ----------------------------------------------------------------------------

    def waiting(self, lock: Any) -> None:
        with self._mutex:
            self._waiting[threading.get_ident()] = lock

    def acquired(self, lock: Any, name: str) -> None:
        ident = threading.get_ident()
        with self._mutex:
            self._waiting.pop(ident, None)
            self._owners[id(lock)] = ident
            me = self._me()
            me.held.append(name)
            clock = self._sync.get(id(lock))
            if clock:
                _join(me.vc, clock)

    def released(self, lock: Any, name: str) -> None:
        with self._mutex:
            self._owners.pop(id(lock), None)
            me = self._me()
            if name in me.held:
                me.held.remove(name)
            clock = self._sync.setdefault(id(lock), {})
            if not clock:
                self._keep.append(lock)
            _join(clock, me.vc)
            me.vc[me.id] += 1

    # -- entering and leaving -------------------------------------------------------------

    def __enter__(self) -> RaceDetector:
        global _ACTIVE
        if _ACTIVE is not None:
            raise PoolcheckError("A race detector is already active; they cannot nest.")
        from . import _instrument

        self.active = True
        _ACTIVE = self
        self._me()
        self._undo = _instrument.install(self)
        return self

    def __exit__(self, *exc: object) -> None:
        global _ACTIVE
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        self.active = False
        _ACTIVE = None


_ACTIVE: RaceDetector | None = None


def active() -> RaceDetector | None:
    """The race detector in force, if any (the runner records pool hand-offs with it)."""
    return _ACTIVE


def race_detector(watch: Iterable[type]) -> RaceDetector:
    """A context manager that reports races on instances of the ``watch`` classes.

    ::

        with poolcheck.race_detector(watch=[Store, Subject]) as races:
            poolcheck.run(subjects, "update", workers=16)
        races.assert_none()
    """
    return RaceDetector(watch)


_ADVICE = {
    "lost update": "Fix: hold one lock around the read and the write, or keep the state per "
    "subject and combine it after the run.",
    "check-then-act": "Fix: make the check and the act one step under one lock (or use "
    "dict.setdefault, which is atomic).",
    "unordered writes": "Fix: order the writes with a lock, or give each thread its own "
    "(threading.local) or hand results over through a queue.Queue.",
    "stale read": "Fix: read under the lock that orders the writes, or hand the value over "
    "through a queue.Queue.",
}
_SEVERITY = {"stale read": 0, "unordered writes": 1, "check-then-act": 2, "lost update": 3}


def _join(into: dict[int, int], other: dict[int, int]) -> None:
    for key, value in other.items():
        if into.get(key, 0) < value:
            into[key] = value


def _thread_name(ident: int) -> str:
    # current_thread() would invent a "Dummy" thread for one still starting up (its Event
    # is set before it is registered): look it up without side effects.
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    if thread is None:
        thread = next(
            (t for t in list(threading._limbo) if t.ident == ident),  # type: ignore[attr-defined]
            None,
        )
    return thread.name if thread is not None else f"thread {ident}"


def _rmw_kind(read: Access, write: Access) -> str:
    # x += 1 and d[k] = d.get(k, 0) + 1 read and write on one line; a check and its act are
    # on different lines (if self.session is None: / self.session = ...).
    return "lost update" if read.site == write.site else "check-then-act"


def _stack(frame: FrameType | None, depth: int) -> tuple[str, ...]:
    """The user's frames, innermost first (the library and pool plumbing left out)."""
    out: list[str] = []
    fallback: list[str] = []
    while frame is not None and len(out) < depth:
        filename = frame.f_code.co_filename
        where = os.path.normcase(filename)
        line = f"{_short(filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
        if where.startswith(_HERE) and not where.endswith("demo.py"):
            pass  # poolcheck's own machinery (its demo crawler is user code, for the demo)
        elif where.startswith(_STDLIB) or any(where.startswith(lib) for lib in _LIBS):
            if not fallback:
                fallback.append(line)
        else:
            out.append(line)
        frame = frame.f_back
    return tuple(out or fallback)


def _short(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def _is_user_site(frame: FrameType | None) -> bool:
    """Whether the code that creates a lock or queue is the user's (or stdlib plumbing that
    the user called: threading, queue, concurrent.futures, multiprocessing.pool, poolcheck)."""
    while frame is not None:
        filename = os.path.normcase(frame.f_code.co_filename)
        infra = filename.startswith(_HERE) or (
            filename.startswith(_STDLIB)
            and (
                os.path.basename(filename) in _INFRA
                or f"{os.sep}concurrent{os.sep}" in filename
                or f"{os.sep}multiprocessing{os.sep}" in filename
            )
        )
        if not infra:
            if any(filename.startswith(lib) for lib in _LIBS):
                return False
            return not filename.startswith(_STDLIB)
        frame = frame.f_back
    return False
