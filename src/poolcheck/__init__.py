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
from .report import Report
from .runner import TaskRecord, run

__all__ = [
    "ConcurrencyError",
    "MutationsNotVisible",
    "PoolcheckError",
    "PropertyFailed",
    "Report",
    "SpeedupError",
    "TaskErrors",
    "TaskRecord",
    "run",
]

__version__ = "0.1.0.dev0"
