"""poolcheck's exceptions: one root for misuse, AssertionError subclasses for failed checks."""

from __future__ import annotations

__all__ = [
    "ConcurrencyError",
    "MutationsNotVisible",
    "PoolcheckError",
    "PropertyFailed",
    "SpeedupError",
    "TaskErrors",
]


class PoolcheckError(Exception):
    """poolcheck was used wrongly (a bad argument, a method that cannot be pickled, ...).

    The message is a full sentence that names the problem and the way out.
    """


class PropertyFailed(AssertionError):
    """A checked property did not hold; pytest shows it as a test failure."""


class TaskErrors(PropertyFailed):
    """Some tasks raised: see the message for each subject and its traceback."""


class MutationsNotVisible(PropertyFailed):
    """The caller's subjects do not show the state that ``update()`` should have given them."""


class SpeedupError(PropertyFailed):
    """The run's speed-up or efficiency is below what was asked."""


class ConcurrencyError(PropertyFailed):
    """Fewer requests or tasks ran at once than were asked for."""
