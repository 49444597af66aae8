"""What the race detector patches while it is active, and how each patch is undone.

Nothing here changes behaviour: tracked locks and queues are the real ones behind a thin
recording layer, container proxies delegate every operation to the original object (which is
put back in place at the end), and every patch is reverted on exit.
"""

from __future__ import annotations

import _thread
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from types import GeneratorType, ModuleType
from typing import TYPE_CHECKING, Any

from .races import _is_user_site

if TYPE_CHECKING:
    from .races import RaceDetector

__all__ = ["install"]

_LOCK_TYPES = (type(_thread.allocate_lock()), type(_thread.RLock()))
_REAL_SIMPLE_QUEUE = queue.SimpleQueue
Undo = Callable[[], None]


# -- locks and queues ------------------------------------------------------------------------


class TrackedLock:
    """A real Lock or RLock whose acquire and release the detector sees.

    The detector keys its clocks by the real lock, so two proxies of one lock (made by two
    threads at once) order each other as the lock itself does.
    """

    def __init__(self, detector: RaceDetector, real: Any, name: str) -> None:
        self._detector = detector
        self._real = real
        self._name = name

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        detector = self._detector
        if detector.active and blocking:
            detector.waiting(self._real)
        ok = bool(self._real.acquire(blocking, timeout))
        if detector.active and ok:
            detector.acquired(self._real, self._name)
        return ok

    def release(self) -> None:
        if self._detector.active:
            self._detector.released(self._real, self._name)
        self._real.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return bool(self._real.locked())

    def __getattr__(self, name: str) -> Any:
        # RLock's _is_owned, _release_save, _acquire_restore (Condition uses them).
        attribute = getattr(self._real, name)
        if name == "_release_save" and self._detector.active:

            def release_save() -> Any:
                self._detector.released(self._real, self._name)
                return attribute()

            return release_save
        if name == "_acquire_restore" and self._detector.active:

            def acquire_restore(state: Any) -> None:
                attribute(state)
                self._detector.acquired(self._real, self._name)

            return acquire_restore
        return attribute

    def __repr__(self) -> str:
        return f"<tracked {self._name}>"


def _site(frame: Any) -> str:
    from .races import _stack

    stack = _stack(frame, 1)
    return stack[0].split(" in ")[0] if stack else "?"


def _lock_factory(detector: RaceDetector, real: Callable[[], Any], kind: str) -> Callable[[], Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        lock = real(*args, **kwargs)
        frame = sys._getframe(1)
        if detector.active and _is_user_site(frame):
            return TrackedLock(detector, lock, f"{kind}@{_site(frame)}")
        return lock

    return make


def _simple_queue(detector: RaceDetector) -> type:
    class TrackedSimpleQueue(_REAL_SIMPLE_QUEUE[Any]):
        """queue.SimpleQueue whose put → get hand-off the detector sees (pools use it)."""

        def __init__(self) -> None:
            self._pc_track = detector.active and _is_user_site(sys._getframe(1))

        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            if self._pc_track and detector.active:
                detector.release(self)
            super().put(item, block, timeout)

        def put_nowait(self, item: Any) -> None:
            self.put(item, False)

        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            item = super().get(block, timeout)
            if self._pc_track and detector.active:
                detector.acquire(self)
            return item

        def get_nowait(self) -> Any:
            return self.get(False)

    TrackedSimpleQueue.__name__ = TrackedSimpleQueue.__qualname__ = "SimpleQueue"
    return TrackedSimpleQueue


def _threads(detector: RaceDetector) -> Undo:
    real_start, real_join = threading.Thread.start, threading.Thread.join

    def start(self: threading.Thread) -> None:
        if detector.active:
            parent = detector.snapshot()
            run = self.run

            def tracked_run() -> None:
                if detector.active:
                    detector.inherit(parent)
                try:
                    run()
                finally:
                    if detector.active:
                        self._pc_final = detector.snapshot()  # type: ignore[attr-defined]

            self.run = tracked_run  # type: ignore[method-assign]
        real_start(self)

    def join(self: threading.Thread, timeout: float | None = None) -> None:
        real_join(self, timeout)
        final = getattr(self, "_pc_final", None)
        if final is not None and detector.active and not self.is_alive():
            detector.inherit(final)

    threading.Thread.start = start  # type: ignore[method-assign]
    threading.Thread.join = join  # type: ignore[method-assign]

    def undo() -> None:
        threading.Thread.start = real_start  # type: ignore[method-assign]
        threading.Thread.join = real_join  # type: ignore[method-assign]

    return undo


# -- containers and generators ---------------------------------------------------------------


class _Proxy:
    """Delegates everything to the real object; records reads and writes on the way."""

    __slots__ = ("_pc_detector", "_pc_label", "_pc_real")
    _pc_detector: RaceDetector
    _pc_label: str
    _pc_real: Any
    _reads: frozenset[str] = frozenset()
    _writes: frozenset[str] = frozenset()
    _keyed: frozenset[str] = frozenset()

    def __init__(self, detector: RaceDetector, real: Any, label: str) -> None:
        object.__setattr__(self, "_pc_detector", detector)
        object.__setattr__(self, "_pc_real", real)
        object.__setattr__(self, "_pc_label", label)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, dict) stays True
        return type(self._pc_real)

    def _record(self, write: bool, key: Any = "*") -> None:
        detector = self._pc_detector
        if not detector.active:
            return
        real = self._pc_real
        label = self._pc_label if key == "*" else f"{self._pc_label}[{key!r}]"
        detector.access((id(real), _hashable(key)), label, write, container=True)
        if write and key != "*":
            detector.access((id(real), "*"), self._pc_label, write, container=True)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._pc_real, name)
        if name in self._writes or name in self._reads:
            write = name in self._writes

            def call(*args: Any, **kwargs: Any) -> Any:
                key = args[0] if name in self._keyed and args else "*"
                self._record(write, key)
                return attribute(*args, **kwargs)

            return call
        return attribute

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickles as the real object itself
        return self._pc_real.__reduce_ex__(protocol)

    def __repr__(self) -> str:
        return repr(self._pc_real)

    def __eq__(self, other: object) -> bool:
        self._record(False)
        return bool(self._pc_real == (other._pc_real if isinstance(other, _Proxy) else other))

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        self._record(False)
        return len(self._pc_real)

    def __iter__(self) -> Iterator[Any]:
        self._record(False)
        return iter(self._pc_real)

    def __contains__(self, item: object) -> bool:
        self._record(False, item if self._keyed else "*")
        return item in self._pc_real

    def __bool__(self) -> bool:
        self._record(False)
        return bool(self._pc_real)

    def __getitem__(self, key: Any) -> Any:
        self._record(False, key if self._keyed else "*")
        return self._pc_real[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._record(True, key if self._keyed else "*")
        self._pc_real[key] = value

    def __delitem__(self, key: Any) -> None:
        self._record(True, key if self._keyed else "*")
        del self._pc_real[key]

    def __add__(self, other: Any) -> Any:
        self._record(False)
        return self._pc_real + other

    def __iadd__(self, other: Any) -> Any:
        self._record(True)
        self._pc_real += other
        return self

    def __or__(self, other: Any) -> Any:
        self._record(False)
        return self._pc_real | other


class _ListProxy(_Proxy):
    __slots__ = ()
    _reads = frozenset({"index", "count", "copy"})
    _writes = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"})


class _DictProxy(_Proxy):
    __slots__ = ()
    _reads = frozenset({"get", "keys", "values", "items", "copy"})
    _writes = frozenset({"pop", "popitem", "clear", "update", "setdefault"})
    _keyed = frozenset({"get", "pop", "setdefault"})


class _SetProxy(_Proxy):
    __slots__ = ()
    _reads = frozenset({"copy", "issubset", "issuperset", "isdisjoint", "union", "intersection"})
    _writes = frozenset({"add", "discard", "remove", "pop", "clear", "update"})
    _keyed = frozenset({"add", "discard", "remove"})


class _GeneratorProxy:
    """A generator shared between threads: each step changes its state (a write)."""

    def __init__(self, detector: RaceDetector, real: Any, label: str) -> None:
        self._pc_detector = detector
        self._pc_real = real
        self._pc_label = label

    def _step(self) -> None:
        if self._pc_detector.active:
            self._pc_detector.access(
                (id(self._pc_real), "next"), f"{self._pc_label} (a generator, advanced)", True
            )

    def __iter__(self) -> _GeneratorProxy:
        return self

    def __next__(self) -> Any:
        self._step()
        return next(self._pc_real)

    def send(self, value: Any) -> Any:
        self._step()
        return self._pc_real.send(value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pc_real, name)


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key


def _track_sync(detector: RaceDetector, value: Any, label: str) -> Undo | None:
    """Make an existing Condition, Event, Semaphore or queue.Queue count for happens-before:
    put a tracked lock in place of the raw one inside it (and in its conditions)."""
    conditions: list[Any] = []
    owner = value
    if isinstance(value, queue.Queue):
        conditions = [value.not_empty, value.not_full, value.all_tasks_done]
    elif isinstance(value, threading.Condition):
        conditions = [value]
    elif isinstance(value, (threading.Event, threading.Semaphore)):
        conditions = [getattr(value, "_cond")]  # noqa: B009 (private: mypy must not look)
    else:
        return None
    raw = conditions[0]._lock
    if type(raw) not in _LOCK_TYPES:
        return None  # already tracked, or made while the detector was active
    name = "RLock" if type(raw) is _LOCK_TYPES[1] else "Lock"
    tracked = TrackedLock(detector, raw, f"{name} in {label}")
    saved = [(c, dict(c.__dict__)) for c in conditions]
    for condition in conditions:
        condition._lock = tracked
        condition.acquire = tracked.acquire
        condition.release = tracked.release
        for method in ("_release_save", "_acquire_restore", "_is_owned"):
            if method in condition.__dict__:
                setattr(condition, method, getattr(tracked, method))
    if isinstance(owner, queue.Queue):
        owner.mutex = tracked  # type: ignore[assignment]

    def undo() -> None:
        for condition, state in saved:
            condition.__dict__.clear()
            condition.__dict__.update(state)
        if isinstance(owner, queue.Queue):
            owner.mutex = raw

    return undo


def _wrap(detector: RaceDetector, value: Any, label: str) -> Any:
    kind = type(value)
    if kind is list:
        return _ListProxy(detector, value, label)
    if kind is dict:
        return _DictProxy(detector, value, label)
    if kind is set:
        return _SetProxy(detector, value, label)
    if kind is GeneratorType:
        return _GeneratorProxy(detector, value, label)
    if kind in _LOCK_TYPES:
        name = "RLock" if kind is _LOCK_TYPES[1] else "Lock"
        return TrackedLock(detector, value, f"{name} {label}")
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, (_Proxy, _GeneratorProxy)):
        return object.__getattribute__(value, "_pc_real")
    if type(value) is TrackedLock:
        return value._real
    return value


# -- watched classes -------------------------------------------------------------------------


def _watch_class(detector: RaceDetector, cls: type, swapped: list[tuple[Any, str, Any]]) -> Undo:
    names = ("__getattribute__", "__setattr__", "__delattr__")
    saved = {name: cls.__dict__.get(name) for name in names}
    base_get: Callable[..., Any] = cls.__getattribute__
    base_set: Callable[..., Any] = cls.__setattr__
    base_del: Callable[..., Any] = cls.__delattr__
    keep: list[Any] = []
    synced: set[int] = set()
    sync_undo: list[Undo] = []

    def __getattribute__(self: Any, name: str) -> Any:
        value = base_get(self, name)
        if not detector.active or name.startswith("__"):
            return value
        try:
            slots = object.__getattribute__(self, "__dict__")
        except AttributeError:
            return value
        if name not in slots:
            return value
        label = f"{type(self).__name__}.{name}"
        keep.append(self)  # ids of watched objects must not be reused while recording
        detector.access((id(self), name), label, False)
        if id(value) not in synced:
            synced.add(id(value))
            undo_sync = _track_sync(detector, value, label)
            if undo_sync is not None:
                sync_undo.append(undo_sync)
                return value
        wrapped = _wrap(detector, value, label)
        if wrapped is not value:
            slots[name] = wrapped
            swapped.append((slots, name, wrapped))
        return wrapped

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if detector.active and not name.startswith("__"):
            current = _unwrap(getattr(self, "__dict__", {}).get(name, _MISSING))
            # self.items += [..] on a list extends it in place and writes back the very object
            # it read: no change of value. (Only for containers: small ints are shared too.)
            same = current is _unwrap(value) and isinstance(current, (list, dict, set))
            if not same:
                detector.access((id(self), name), f"{type(self).__name__}.{name}", True)
        base_set(self, name, _unwrap(value) if isinstance(value, _Proxy) else value)

    def __delattr__(self: Any, name: str) -> None:
        if detector.active:
            detector.access((id(self), name), f"{type(self).__name__}.{name}", True)
        base_del(self, name)

    cls.__getattribute__ = __getattribute__  # type: ignore[method-assign,assignment]
    cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]
    cls.__delattr__ = __delattr__  # type: ignore[method-assign,assignment]

    def undo() -> None:
        for name, original in saved.items():
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        for undo_sync in sync_undo:
            undo_sync()
        keep.clear()

    return undo


_MISSING = object()


def _swap_existing_locks(detector: RaceDetector, namespaces: list[Any]) -> Undo:
    """Put tracking proxies in place of the locks that already exist where the watched code
    looks them up: its modules' globals and the watched classes' attributes."""
    done: list[tuple[Any, str, Any]] = []
    inside: list[Undo] = []
    for space in namespaces:
        items = vars(space) if isinstance(space, (ModuleType, type)) else {}
        for name, value in list(items.items()):
            label = f"{getattr(space, '__name__', '?')}.{name}"
            if type(value) in _LOCK_TYPES:
                setattr(space, name, _wrap(detector, value, label))
                done.append((space, name, value))
            elif (undo_sync := _track_sync(detector, value, label)) is not None:
                inside.append(undo_sync)

    def undo() -> None:
        for space, name, value in done:
            setattr(space, name, value)
        for undo_sync in inside:
            undo_sync()

    return undo


def install(detector: RaceDetector) -> list[Undo]:
    """Put every patch in place; returns what undoes them, in order."""
    undo: list[Undo] = []
    real_lock, real_rlock = threading.Lock, threading.RLock
    # setattr: these are functions in threading, whatever the type stubs say.
    setattr(threading, "Lock", _lock_factory(detector, real_lock, "Lock"))  # noqa: B010
    setattr(threading, "RLock", _lock_factory(detector, real_rlock, "RLock"))  # noqa: B010

    def restore_locks() -> None:
        setattr(threading, "Lock", real_lock)  # noqa: B010
        setattr(threading, "RLock", real_rlock)  # noqa: B010

    undo.append(restore_locks)
    setattr(queue, "SimpleQueue", _simple_queue(detector))  # noqa: B010
    undo.append(lambda: setattr(queue, "SimpleQueue", _REAL_SIMPLE_QUEUE))
    undo.append(_threads(detector))
    swapped: list[tuple[Any, str, Any]] = []
    modules = {sys.modules.get(cls.__module__) for cls in detector.watch}
    undo.append(_swap_existing_locks(detector, [*detector.watch, *(m for m in modules if m)]))
    for cls in detector.watch:
        undo.append(_watch_class(detector, cls, swapped))

    def restore_values() -> None:
        for slots, name, wrapped in swapped:
            if slots.get(name) is wrapped:
                slots[name] = _unwrap(wrapped)

    undo.append(restore_values)
    return undo
