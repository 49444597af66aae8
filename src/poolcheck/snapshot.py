"""Snapshots of a subject's state, to see whether the caller's object changed.

A snapshot is the object's attributes (``__dict__`` and ``__slots__``), and the contents of the
plain containers they hold (list, tuple, dict, set, frozenset), recursively, bounded in depth
and size; objects of the subject's own module and dataclasses are followed into the same way.
Other objects (sessions, locks, clients) are compared by identity: poolcheck does not guess at
their equality, nor walk into a library's internals.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["changed_attributes", "snapshot"]

MAX_DEPTH = 4
MAX_ITEMS = 10_000
_ATOMS = (str, bytes, int, float, complex, bool, type(None))


def snapshot(obj: object) -> dict[str, Any]:
    """``{attribute: frozen value}`` for one subject."""
    home = type(obj).__module__
    return {name: _freeze(value, MAX_DEPTH, home) for name, value in _attributes(obj).items()}


def changed_attributes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of attributes added, removed or changed between two snapshots."""
    names = sorted(set(before) | set(after))
    return [n for n in names if before.get(n, _MISSING) != after.get(n, _MISSING)]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


class _Opaque:
    """Stands for an object compared by identity."""

    __slots__ = ("ident", "kind")

    def __init__(self, obj: object) -> None:
        self.ident = id(obj)
        self.kind = type(obj).__qualname__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.ident == self.ident

    def __hash__(self) -> int:
        return self.ident

    def __repr__(self) -> str:
        return f"<{self.kind}>"


def _attributes(obj: object) -> dict[str, Any]:
    values: dict[str, Any] = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                values.setdefault(name, getattr(obj, name))
    return values


def _freeze(value: object, depth: int, home: str) -> object:
    if isinstance(value, _ATOMS):
        return value
    if depth <= 0:
        return _Opaque(value)
    if isinstance(value, (list, tuple)):
        items = value[:MAX_ITEMS]
        frozen = tuple(_freeze(v, depth - 1, home) for v in items)
        return (type(value).__name__, len(value), frozen)
    if isinstance(value, dict):
        pairs = list(value.items())[:MAX_ITEMS]
        frozen = tuple((_freeze(k, 1, home), _freeze(v, depth - 1, home)) for k, v in pairs)
        return ("dict", len(value), frozen)
    if isinstance(value, (set, frozenset)):
        members = list(value)[:MAX_ITEMS]
        return ("set", len(value), frozenset(_freeze(v, 1, home) for v in members))
    kind = type(value)
    if not isinstance(value, type) and (kind.__module__ == home or dataclasses.is_dataclass(value)):
        attributes = _attributes(value)
        return (
            kind.__qualname__,
            tuple((name, _freeze(v, depth - 1, home)) for name, v in sorted(attributes.items())),
        )
    return _Opaque(value)
