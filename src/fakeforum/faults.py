"""Injected faults: what a misbehaving server does to a request, per route, seeded or scripted.

A rule is a dict (the admin API's JSON is the same)::

    {"route": "/api/subjects/*/replies", "kind": "status", "status": 503, "p": 0.1}
    {"route": "*", "kind": "429", "retry_after": 2, "p": 0.05}
    {"route": "/subjects/*", "kind": "reset", "p": 0.01}
    {"route": "/api/subjects/3/replies", "kind": "truncate", "times": 2}   # scripted

Kinds: ``status`` (any code), ``429`` (with ``Retry-After``), ``reset`` (TCP RST), ``empty``
(close without a response), ``truncate`` (the declared Content-Length, half the body, close),
``hang`` (no response until the client gives up or the server stops), ``slow_body`` (the body
paced at ``bandwidth``). A rule with ``times`` applies to the next ``times`` requests its route
matches and is then spent; one with ``p`` applies to each matching request with that
probability, drawn from (seed, rule, path, n) so the same seed gives the same faults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import FakeForumError
from .latency import glob_regex, parse_bandwidth, uniforms

__all__ = ["KINDS", "Fault", "FaultPlan", "parse_fault_flag"]

KINDS = ("status", "429", "reset", "empty", "truncate", "hang", "slow_body")
_FIELDS = {"route", "kind", "p", "times", "status", "retry_after", "bandwidth"}
_EXTRA = {"status": {"status"}, "429": {"retry_after"}, "slow_body": {"bandwidth"}}


@dataclass(frozen=True)
class Fault:
    """One fault rule; build it with :meth:`from_dict` to have every field checked."""

    kind: str
    route: str = "*"
    p: float = 1.0
    times: int | None = None
    status: int = 503
    retry_after: int = 1
    bandwidth: float = 1000.0
    _regex: re.Pattern[str] = field(default=re.compile(".*"), repr=False, compare=False)

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any], *, where: str = "Fault rule") -> Fault:
        """Check and build a rule; errors name ``where`` and the field."""
        if not isinstance(rule, Mapping):
            raise FakeForumError(
                f"{where} must be an object such as {{'kind': 'reset'}}, not {rule!r}."
            )
        unknown = sorted(set(rule) - _FIELDS)
        if unknown:
            raise FakeForumError(
                f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                f"{', '.join(sorted(_FIELDS))}."
            )
        kind = str(rule.get("kind", ""))
        if kind not in KINDS:
            raise FakeForumError(
                f"{where}: 'kind' must be one of {', '.join(KINDS)}; got {rule.get('kind')!r}."
            )
        stray = sorted(
            (set(rule) & {"status", "retry_after", "bandwidth"}) - _EXTRA.get(kind, set())
        )
        if stray:
            raise FakeForumError(f"{where}: field {stray[0]!r} does not apply to kind {kind!r}.")
        route = rule.get("route", "*")
        if not isinstance(route, str) or not route:
            raise FakeForumError(f"{where}: 'route' must be a non-empty glob such as '/api/*'.")
        p = rule.get("p", 1.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise FakeForumError(f"{where}: 'p' must be a probability from 0 to 1, not {p!r}.")
        times = rule.get("times")
        if times is not None and (not _whole(times) or times < 1):
            raise FakeForumError(f"{where}: 'times' must be a whole number of at least 1.")
        if times is not None and "p" in rule:
            raise FakeForumError(f"{where}: give 'p' (random) or 'times' (scripted), not both.")
        status = rule.get("status", 503)
        if not _whole(status) or not 200 <= status <= 599:
            raise FakeForumError(f"{where}: 'status' must be a status code from 200 to 599.")
        retry_after = rule.get("retry_after", 1)
        if not _whole(retry_after) or retry_after < 0:
            raise FakeForumError(f"{where}: 'retry_after' must be whole seconds, 0 or more.")
        try:
            bandwidth = parse_bandwidth(rule.get("bandwidth", "1KB/s"))
        except FakeForumError as exc:
            raise FakeForumError(f"{where}: {exc}") from None
        assert bandwidth is not None
        return cls(
            kind,
            route,
            float(p),
            times,
            status,
            retry_after,
            bandwidth,
            re.compile(glob_regex(route)),
        )

    def matches(self, path: str) -> bool:
        """Whether this rule's route glob matches a request path."""
        return self._regex.match(path) is not None

    def as_dict(self) -> dict[str, Any]:
        """The rule as the admin API and ``set_faults`` take it."""
        out: dict[str, Any] = {"route": self.route, "kind": self.kind}
        if self.times is not None:
            out["times"] = self.times
        else:
            out["p"] = self.p
        if self.kind == "status":
            out["status"] = self.status
        elif self.kind == "429":
            out["retry_after"] = self.retry_after
        elif self.kind == "slow_body":
            out["bandwidth"] = self.bandwidth
        return out


class FaultPlan:
    """The fault rules in force: scripted ones first (oldest first), then the random ones.

    Not thread-safe on its own: the server consults it from its one event-loop thread, and
    replaces it whole when the rules change.
    """

    def __init__(self, rules: Iterable[Mapping[str, Any] | Fault] = (), *, seed: int = 0) -> None:
        if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Iterable):
            raise FakeForumError("Faults must be a list of rules, such as [{'kind': 'reset'}].")
        built = [
            r if isinstance(r, Fault) else Fault.from_dict(r, where=f"Fault rule {i + 1}")
            for i, r in enumerate(rules)
        ]
        self.seed = seed
        self._scripted = [_Scripted(r, r.times) for r in built if r.times is not None]
        self._random = [r for r in built if r.times is None and r.p > 0]

    def add_scripted(self, fault: Fault) -> None:
        """Apply ``fault`` to the next ``fault.times`` requests its route matches."""
        self._scripted.append(_Scripted(fault, fault.times or 1))

    def rules(self) -> list[dict[str, Any]]:
        """The rules in force (scripted ones with the count still to come)."""
        out = [{**s.fault.as_dict(), "times": s.left} for s in self._scripted]
        out += [fault.as_dict() for fault in self._random]
        return out

    def decide(self, path: str, n: int) -> Fault | None:
        """The fault for the ``n``-th request to ``path``, or None; spends scripted rules."""
        for scripted in self._scripted:
            if scripted.fault.matches(path):
                scripted.left -= 1
                if scripted.left <= 0:
                    self._scripted.remove(scripted)
                return scripted.fault
        for index, fault in enumerate(self._random):
            if fault.matches(path):
                u = uniforms(self.seed, f"fault{index}\x00{path}", n)[0]
                if u < fault.p:
                    return fault
        return None

    def __bool__(self) -> bool:
        return bool(self._scripted or self._random)


class _Scripted:
    __slots__ = ("fault", "left")

    def __init__(self, fault: Fault, left: int) -> None:
        self.fault = fault
        self.left = left


def parse_fault_flag(text: str) -> dict[str, Any]:
    """The CLI's compact form ``GLOB=KIND[,key=value...]`` as a rule dict.

    ``'/api/*=status,status=503,p=0.1'``, ``'*=429,retry_after=2,p=0.05'``,
    ``'/subjects/*=reset,p=0.01'``, ``'/api/subjects/3/replies=truncate,times=2'``.
    """
    route, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or not route or not parts[0]:
        raise FakeForumError(
            f"--fault {text!r} is not GLOB=KIND[,key=value...], e.g. '*=reset,p=0.01'."
        )
    rule: dict[str, Any] = {"route": route, "kind": parts[0]}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep:
            raise FakeForumError(f"--fault {text!r}: {part!r} is not key=value.")
        rule[key] = _number(value) if key in ("p", "times", "status", "retry_after") else value
    return rule


def _number(text: str) -> int | float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
