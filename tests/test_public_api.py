"""The exact public API: a change here is a change users see."""

from __future__ import annotations

import fakeforum


def test_fakeforum_exports() -> None:
    assert fakeforum.__all__ == sorted(fakeforum.__all__)
    assert fakeforum.__all__ == [
        "Board",
        "FakeForumError",
        "FakeForumServer",
        "Fixed",
        "Forum",
        "LatencyRules",
        "LogNormal",
        "Normal",
        "Reply",
        "RouteStats",
        "ServerError",
        "Stats",
        "Subject",
        "Uniform",
        "create_app",
        "parse_latency",
    ]
    for name in fakeforum.__all__:
        assert getattr(fakeforum, name).__doc__, f"{name} has no docstring"


def test_public_methods_have_docstrings() -> None:
    for cls in (fakeforum.FakeForumServer, fakeforum.Forum, fakeforum.LatencyRules):
        for name, member in vars(cls).items():
            public = not name.startswith("_")
            if public and (callable(member) or isinstance(member, property)):
                assert member.__doc__, f"{cls.__name__}.{name} has no docstring"


def test_poolcheck_exports() -> None:
    import poolcheck

    assert poolcheck.__all__ == sorted(poolcheck.__all__)
    assert poolcheck.__all__ == [
        "ConcurrencyError",
        "MutationsNotVisible",
        "Outcome",
        "PoolcheckError",
        "PropertyFailed",
        "Race",
        "RaceDetector",
        "RacesFound",
        "Report",
        "SpeedupError",
        "StressResult",
        "TaskErrors",
        "TaskRecord",
        "ThreadUnsafe",
        "race_detector",
        "run",
        "stress",
    ]
    for name in poolcheck.__all__:
        assert getattr(poolcheck, name).__doc__, f"{name} has no docstring"
    for failure in (
        poolcheck.ConcurrencyError,
        poolcheck.MutationsNotVisible,
        poolcheck.SpeedupError,
        poolcheck.TaskErrors,
    ):
        assert issubclass(failure, AssertionError)  # pytest shows them as failures
