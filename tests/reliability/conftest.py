"""Fixtures for the reliability suite: exceptions on the server's loop must not hide."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

# Keep Hypothesis's files out of the work tree: with database=None it stores no examples, but it
# still caches constants and unicode tables, from collection on (so not from a fixture).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "poolcheck-hypothesis")


@pytest.fixture(autouse=True)
def no_event_loop_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test during which the event loop logged an error (thread mode: it shares this
    process's logging). An exception escaping a protocol callback never becomes a 500 or a
    server error: asyncio logs it and drops the connection, so only its log shows it."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    yield
    errors = [
        r for r in caplog.get_records("call") if r.name == "asyncio" and r.levelno >= logging.ERROR
    ]
    formatter = logging.Formatter()
    assert not errors, "the event loop logged errors:\n" + "\n".join(map(formatter.format, errors))
