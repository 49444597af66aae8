"""Latency models, their string grammar, per-route rules and seeded sampling.

Specs (strings, as the CLI, the admin API and markers take them)::

    "0"                      no latency
    "50ms", "0.2s", "800us"  fixed
    "20ms..80ms"             uniform between the two
    "50ms~10ms"              normal, mean~stddev, clipped at 0
    "lognormal(50ms, 0.5)"   log-normal with this median and sigma

Sampling is a pure function of (seed, path, n) where n counts the requests to that path (the
server counts): the n-th request to ``/api/subjects/3/replies`` waits the same time in every run
with the same seed, whatever order the threads of the client happen to send their requests in.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from .errors import FakeForumError

__all__ = [
    "Fixed",
    "Latency",
    "LatencyRules",
    "LogNormal",
    "Normal",
    "Uniform",
    "parse_bandwidth",
    "parse_duration",
    "parse_latency",
]

FORMS = (
    "'0', '50ms' or '0.2s' (fixed), '20ms..80ms' (uniform), '50ms~10ms' (normal, mean~stddev) "
    "or 'lognormal(50ms, 0.5)' (median, sigma); units are us, ms and s"
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s)\s*$")
# Divisors, not factors: 800 / 1e6 is exactly 0.0008, 800 * 1e-6 is not.
_UNITS = {"us": 1e6, "µs": 1e6, "ms": 1e3, "s": 1.0}
_LOGNORMAL = re.compile(r"^\s*lognormal\s*\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)\s*$", re.IGNORECASE)
_BANDWIDTH = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmMgG]i?)?B/s\s*$")
# exp(x) overflows a float past x = 709.78; 3600 s * exp(700) is still finite.
_MAX_EXPONENT = 700.0
_BANDWIDTH_UNITS = {"": 1, "k": 1e3, "ki": 1024, "m": 1e6, "mi": 1024**2, "g": 1e9, "gi": 1024**3}


@dataclass(frozen=True)
class Fixed:
    """Always the same delay, in seconds."""

    seconds: float

    def sample(self, u1: float, u2: float) -> float:
        """The delay for two uniform draws in [0, 1) (ignored: the delay is fixed)."""
        return self.seconds

    def __str__(self) -> str:
        return "0" if self.seconds == 0 else _fmt(self.seconds)


@dataclass(frozen=True)
class Uniform:
    """A delay drawn uniformly between ``low`` and ``high`` seconds."""

    low: float
    high: float

    def sample(self, u1: float, u2: float) -> float:
        """The delay for two uniform draws in [0, 1)."""
        return self.low + (self.high - self.low) * u1

    def __str__(self) -> str:
        return f"{_fmt(self.low)}..{_fmt(self.high)}"


@dataclass(frozen=True)
class Normal:
    """A normal delay, ``mean`` and ``stddev`` in seconds, clipped at zero."""

    mean: float
    stddev: float

    def sample(self, u1: float, u2: float) -> float:
        """The delay for two uniform draws in [0, 1) (Box-Muller)."""
        return max(0.0, self.mean + self.stddev * _gauss(u1, u2))

    def __str__(self) -> str:
        return f"{_fmt(self.mean)}~{_fmt(self.stddev)}"


@dataclass(frozen=True)
class LogNormal:
    """A log-normal delay with this ``median`` (seconds) and shape ``sigma``."""

    median: float
    sigma: float

    def sample(self, u1: float, u2: float) -> float:
        """The delay for two uniform draws in [0, 1)."""
        # With a large sigma (a spec may have up to 3600) exp() overflows for some draws, and
        # the OverflowError escaped on the event loop, dropping the request. Capping the
        # exponent keeps such a delay finite, if vast: "for ever", as the draw meant.
        return self.median * math.exp(min(self.sigma * _gauss(u1, u2), _MAX_EXPONENT))

    def __str__(self) -> str:
        return f"lognormal({_fmt(self.median)}, {self.sigma:g})"


Latency = Fixed | Uniform | Normal | LogNormal
LatencySpec = str | timedelta | Fixed | Uniform | Normal | LogNormal
NO_LATENCY = Fixed(0.0)


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in a duration such as ``"50ms"``; a bare number is refused (which unit?)."""
    if not isinstance(text, str):
        raise FakeForumError(f"A {what} must be a string such as '50ms', not {text!r}.")
    m = _DURATION.match(text)
    if m is None:
        if re.fullmatch(r"\s*\d+(\.\d*)?\s*", text):
            bare = text.strip()
            raise FakeForumError(f"{bare!r} has no unit; write '{bare}ms' or '{bare}s'.")
        raise FakeForumError(f"{text.strip()!r} is not a {what} such as '50ms'.")
    return float(m.group(1)) / _UNITS[m.group(2)]


def parse_latency(spec: LatencySpec | None) -> Latency:
    """Turn a spec (string, timedelta or latency object) into a latency object.

    Raises FakeForumError naming the spec and the accepted forms when it is not one of them.
    """
    if spec is None:
        return NO_LATENCY
    if isinstance(spec, (Fixed, Uniform, Normal, LogNormal, timedelta)):
        try:
            return _checked(
                Fixed(spec.total_seconds()) if isinstance(spec, timedelta) else spec, spec
            )
        except FakeForumError as exc:
            raise FakeForumError(f"Latency {spec!r} is not valid: {exc}") from None
    if not isinstance(spec, str):
        raise FakeForumError(
            f"Latency {spec!r} is a {type(spec).__name__}; give a string such as '50ms', a "
            f"datetime.timedelta or a latency object. Accepted strings: {FORMS}."
        )
    text = spec.strip()
    try:
        if text == "0":
            return NO_LATENCY
        if m := _LOGNORMAL.match(text):
            return _checked(LogNormal(parse_duration(m.group(1)), _number(m.group(2))), spec)
        if ".." in text:
            low, high = text.split("..", 1)
            return _checked(Uniform(parse_duration(low), parse_duration(high)), spec)
        if "~" in text:
            mean, stddev = text.split("~", 1)
            return _checked(Normal(parse_duration(mean), parse_duration(stddev)), spec)
        return _checked(Fixed(parse_duration(text)), spec)
    except FakeForumError as exc:
        raise FakeForumError(
            f"Latency spec {spec!r} is not valid: {exc} Accepted forms: {FORMS}."
        ) from None


def parse_bandwidth(spec: str | float | None) -> float | None:
    """Bytes per second in ``"100KB/s"``, ``"1MiB/s"`` or ``"512B/s"``; None means unlimited."""
    if spec is None:
        return None
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        rate = float(spec)
    elif isinstance(spec, str) and (m := _BANDWIDTH.match(spec)):
        rate = float(m.group(1)) * _BANDWIDTH_UNITS[(m.group(2) or "").lower()]
    else:
        raise FakeForumError(
            f"Bandwidth {spec!r} is not valid; write bytes per second such as '512B/s', "
            f"'100KB/s' or '2MiB/s'."
        )
    if not rate > 0 or math.isinf(rate):
        raise FakeForumError(f"Bandwidth {spec!r} must be a positive, finite rate.")
    return rate


class LatencyRules:
    """Per-route latency: globs matched against the request path, first match wins.

    ``rules`` is one spec for every route, or a mapping ``{glob: spec}`` in priority order, e.g.
    ``{"/api/subjects/*/replies": "100ms", "*": "10ms"}`` (``*`` also matches ``/``). A path that
    no glob matches gets no latency.
    """

    # Paths whose rule is remembered; past this many the memo starts over.
    MAX_PATHS = 65_536

    def __init__(
        self, rules: LatencySpec | Mapping[str, LatencySpec] | None = None, *, seed: int = 0
    ) -> None:
        if isinstance(rules, Mapping):
            items = list(rules.items())
        else:
            items = [] if rules is None else [("*", rules)]
        compiled: list[tuple[str, re.Pattern[str], Latency]] = []
        for glob, spec in items:
            if not isinstance(glob, str) or not glob:
                raise FakeForumError(
                    f"A latency rule's route must be a non-empty glob, not {glob!r}."
                )
            compiled.append((glob, re.compile(glob_regex(glob)), parse_latency(spec)))
        self._rules = compiled
        self.seed = check_seed(seed)
        self._match_cache: dict[str, Latency] = {}

    @property
    def rules(self) -> dict[str, Latency]:
        """The rules as ``{glob: latency}`` in priority order."""
        return {glob: latency for glob, _, latency in self._rules}

    def as_specs(self) -> dict[str, str]:
        """The rules as ``{glob: spec string}``, the form the admin API and CLI use."""
        return {glob: str(latency) for glob, _, latency in self._rules}

    def latency_for(self, path: str) -> Latency:
        """The latency model that applies to ``path``."""
        latency = self._match_cache.get(path)
        if latency is None:
            latency = NO_LATENCY
            for _, regex, candidate in self._rules:
                if regex.match(path):
                    latency = candidate
                    break
            if len(self._match_cache) >= self.MAX_PATHS:
                self._match_cache.clear()
            self._match_cache[path] = latency
        return latency

    def delay(self, path: str, n: int) -> float:
        """The delay of the ``n``-th (from 0) request to ``path``, in seconds."""
        latency = self.latency_for(path)
        if latency is NO_LATENCY:
            return 0.0
        return latency.sample(*uniforms(self.seed, path, n))

    def __bool__(self) -> bool:
        return any(latency != NO_LATENCY for _, _, latency in self._rules)

    def __repr__(self) -> str:
        return f"LatencyRules({self.as_specs()!r}, seed={self.seed})"


def uniforms(seed: int, path: str, n: int) -> tuple[float, float]:
    """Two uniform numbers in [0, 1) that depend only on (seed, path, n), on every machine."""
    digest = hashlib.blake2b(f"{seed}\x00{path}\x00{n}".encode(), digest_size=16).digest()
    scale = 2.0**-64
    return (
        int.from_bytes(digest[:8], "big") * scale,
        int.from_bytes(digest[8:], "big") * scale,
    )


def _gauss(u1: float, u2: float) -> float:
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


def glob_regex(glob: str) -> str:
    """A regex matching paths for a route glob whose only wildcard is `*` (also matching `/`)."""
    # Unlike fnmatch, '?' and '[' stay literal: they occur in real paths, and nobody writing a
    # route rule means them as wildcards.
    return "^" + ".*".join(re.escape(part) for part in glob.split("*")) + "$"


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FakeForumError(f"{text!r} is not a number.") from None
    return value


def _checked(latency: Latency, spec: object) -> Latency:
    values = list(vars(latency).values())
    problem = None
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values):
        problem = "its values must be finite and non-negative."
    elif isinstance(latency, Uniform) and latency.high < latency.low:
        problem = "its upper bound is below its lower one."
    elif any(v > 3600 for v in values):
        problem = "it is over an hour, surely a typo."
    if problem is not None:
        raise FakeForumError(problem)
    return latency


def check_seed(seed: object) -> int:
    """The seed, if it is a whole number; FakeForumError otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise FakeForumError(f"A seed must be a whole number, not {seed!r}.")
    return seed


def _fmt(seconds: float) -> str:
    # Six significant digits, as :g writes them. The unit is chosen for the rounded value, so
    # what is shown reads back as a value shown the same: '0.069690402s' once showed as
    # '69690.4us', which read back showed as '69.6904ms'.
    seconds = float(f"{seconds:.6g}")
    if seconds >= 1:
        return f"{seconds:g}s"
    if seconds * 1000 == round(seconds * 1000, 6) and seconds >= 0.001:
        return f"{seconds * 1000:g}ms"
    micros = f"{seconds * 1e6:g}"
    if "e" in micros:
        # Below 0.1 ns :g writes an exponent ('1e-06us'), which no spec may have: the config
        # the admin API shows must be one it takes back.
        micros = format(Decimal(micros), "f")
    return f"{micros}us"
