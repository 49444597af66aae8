from __future__ import annotations

import statistics
from datetime import timedelta

import pytest

from fakeforum import FakeForumError, Fixed, LatencyRules, LogNormal, Normal, Uniform, parse_latency
from fakeforum.latency import parse_bandwidth, parse_duration


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", Fixed(0.0)),
        ("50ms", Fixed(0.05)),
        ("0.2s", Fixed(0.2)),
        ("800us", Fixed(0.0008)),
        (" 20ms..80ms ", Uniform(0.02, 0.08)),
        ("50ms~10ms", Normal(0.05, 0.01)),
        ("lognormal(50ms, 0.5)", LogNormal(0.05, 0.5)),
        (timedelta(milliseconds=30), Fixed(0.03)),
        (Uniform(0.01, 0.02), Uniform(0.01, 0.02)),
        (None, Fixed(0.0)),
    ],
)
def test_specs_parse(spec: object, expected: object) -> None:
    assert parse_latency(spec) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["50ms", "20ms..80ms", "50ms~10ms", "lognormal(50ms, 0.5)", "0"])
def test_a_spec_prints_as_it_parses(spec: str) -> None:
    assert str(parse_latency(spec)) == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("50", r"'50' has no unit; write '50ms' or '50s'"),
        ("50 minutes", r"not a duration"),
        ("-5ms", r"not a duration"),
        ("80ms..20ms", r"upper bound is below its lower one"),
        ("lognormal(50ms)", r"not a duration"),
        ("lognormal(50ms, x)", r"'x' is not a number"),
        ("2h", r"not a duration"),
        ("5000s", r"over an hour"),
        (0.05, r"is a float; give a string such as '50ms'"),
        (Uniform(0.1, float("inf")), r"finite and non-negative"),
    ],
)
def test_bad_specs_name_the_spec_and_the_accepted_forms(spec: object, message: str) -> None:
    with pytest.raises(FakeForumError, match=message) as info:
        parse_latency(spec)  # type: ignore[arg-type]
    assert repr(spec) in str(info.value) or str(spec) in str(info.value)
    if isinstance(spec, str):
        assert "lognormal(50ms, 0.5)" in str(info.value)  # the accepted forms are listed


def test_parse_duration_units() -> None:
    assert parse_duration("1.5s") == 1.5
    assert parse_duration(".5ms") == pytest.approx(0.0005)
    with pytest.raises(FakeForumError, match="must be a string"):
        parse_duration(5)  # type: ignore[arg-type]


def test_rules_first_match_wins_and_unmatched_paths_wait_nothing() -> None:
    rules = LatencyRules({"/api/subjects/*/replies": "100ms", "/api/*": "10ms"})
    assert rules.latency_for("/api/subjects/3/replies") == Fixed(0.1)
    assert rules.latency_for("/api/subjects/3") == Fixed(0.01)
    assert rules.latency_for("/subjects/3") == Fixed(0.0)
    assert rules.delay("/subjects/3", 0) == 0.0
    assert rules.as_specs() == {"/api/subjects/*/replies": "100ms", "/api/*": "10ms"}


def test_glob_characters_other_than_star_are_literal() -> None:
    rules = LatencyRules({"/a?b": "5ms", "/[x]": "6ms"})
    assert rules.latency_for("/a?b") == Fixed(0.005)
    assert rules.latency_for("/aXb") == Fixed(0.0)
    assert rules.latency_for("/[x]") == Fixed(0.006)


def test_one_spec_applies_to_every_route() -> None:
    assert LatencyRules("5ms").latency_for("/anything/at/all") == Fixed(0.005)
    assert not LatencyRules(None)
    assert not LatencyRules("0")
    assert LatencyRules("1ms")


def test_bad_rules_are_refused() -> None:
    with pytest.raises(FakeForumError, match="non-empty glob"):
        LatencyRules({"": "5ms"})
    with pytest.raises(FakeForumError, match="A seed must be a whole number"):
        LatencyRules("5ms", seed="x")  # type: ignore[arg-type]


def test_the_same_seed_path_and_count_give_the_same_delay() -> None:
    a = LatencyRules("20ms..80ms", seed=42)
    b = LatencyRules("20ms..80ms", seed=42)
    assert [a.delay("/p", n) for n in range(50)] == [b.delay("/p", n) for n in range(50)]
    assert a.delay("/p", 0) != a.delay("/q", 0)
    assert [a.delay("/p", n) for n in range(50)] != [
        LatencyRules("20ms..80ms", seed=43).delay("/p", n) for n in range(50)
    ]


def test_schedules_are_pinned_across_machines() -> None:
    # blake2b and IEEE arithmetic: the same numbers everywhere. Change only on purpose.
    delays = [round(LatencyRules("20ms..80ms", seed=0).delay("/p", n), 9) for n in range(3)]
    assert delays == PINNED_DELAYS


PINNED_DELAYS = [0.055001896, 0.024074734, 0.037187697]


@pytest.mark.parametrize(
    ("spec", "low", "high", "mean"),
    [
        ("20ms..80ms", 0.02, 0.08, 0.05),
        ("50ms~10ms", 0.0, 1.0, 0.05),
        ("lognormal(50ms, 0.5)", 0.0, 10.0, 0.05 * 1.133),  # mean = median·exp(σ²/2)
    ],
)
def test_distributions_have_their_shape(spec: str, low: float, high: float, mean: float) -> None:
    rules = LatencyRules(spec, seed=3)
    samples = [rules.delay("/p", n) for n in range(4000)]
    assert min(samples) >= low
    assert max(samples) <= high
    assert statistics.fmean(samples) == pytest.approx(mean, rel=0.05)


def test_normal_is_clipped_at_zero() -> None:
    rules = LatencyRules("1ms~10ms", seed=0)
    samples = [rules.delay("/p", n) for n in range(500)]
    assert min(samples) == 0.0


def test_bandwidth() -> None:
    assert parse_bandwidth("512B/s") == 512
    assert parse_bandwidth("100KB/s") == 100_000
    assert parse_bandwidth("2MiB/s") == 2 * 1024 * 1024
    assert parse_bandwidth(None) is None
    assert parse_bandwidth(1000) == 1000.0
    for bad in ("100", "fast", "0B/s", -1):
        with pytest.raises(FakeForumError, match="Bandwidth"):
            parse_bandwidth(bad)
