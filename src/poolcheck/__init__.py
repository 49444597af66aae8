"""poolcheck: check that code run under thread pools updates, stays safe and overlaps its waits."""

from __future__ import annotations

from .errors import (
    ConcurrencyError,
    MutationsNotVisible,
    PoolcheckError,
    PropertyFailed,
    SpeedupError,
    TaskErrors,
)
from .races import Race, RaceDetector, RacesFound, race_detector
from .report import Report
from .runner import TaskRecord, run
from .stress import Outcome, StressResult, ThreadUnsafe, stress

__all__ = [
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

__version__ = "0.1.0.dev0"
