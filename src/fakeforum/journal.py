"""The journal: the last N requests, with their timing, and their export as a Chrome trace."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Journal", "JournalEntry"]

DEFAULT_SIZE = 10_000


@dataclass(frozen=True)
class JournalEntry:
    """One request as the server saw it.

    ``start``/``end`` are ``time.monotonic()`` seconds (comparable with the client's own
    monotonic clock in the same process), ``wall_start``/``wall_end`` are ``time.time()``.
    ``status`` is None when no response was sent (a fault, or the client left first);
    ``delay`` is the injected latency in seconds; ``fault`` the injected fault's kind or None.
    """

    id: int
    connection: int
    method: str
    target: str
    path: str
    route: str
    status: int | None
    delay: float
    fault: str | None
    start: float
    end: float
    wall_start: float
    wall_end: float
    thread: str

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return asdict(self)


class Journal:
    """A bounded ring buffer of requests; the oldest fall off.

    The server appends plain tuples (cheap on its hot path); :meth:`entries` turns them into
    :class:`JournalEntry` objects only when someone reads the journal.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._lock = threading.Lock()
        self._rows: deque[tuple[Any, ...]] = deque(maxlen=size)
        self._next_id = 1

    @property
    def size(self) -> int:
        """How many entries the journal keeps."""
        return self._rows.maxlen or 0

    def add(self, *fields: Any) -> None:
        """Append a request: JournalEntry's fields after ``id``, in order."""
        with self._lock:
            self._rows.append((self._next_id, *fields))
            self._next_id += 1

    def entries(self, limit: int | None = None, since: float | None = None) -> list[JournalEntry]:
        """The entries, oldest first; with ``limit``, only the newest ``limit``; with
        ``since``, only those whose request arrived at or after that ``time.monotonic()``."""
        with self._lock:
            rows = list(self._rows)
        if since is not None:
            rows = [row for row in rows if row[9] >= since]  # row[9] is start
        if limit is not None:
            rows = rows[-limit:] if limit > 0 else []
        return [JournalEntry(*row) for row in rows]

    def clear(self) -> None:
        """Forget every entry (ids keep growing)."""
        with self._lock:
            self._rows.clear()


def chrome_trace(entries: list[JournalEntry] | list[dict[str, Any]]) -> dict[str, Any]:
    """Entries as Chrome trace JSON (Perfetto, chrome://tracing): one track per connection.

    Each request is a complete event named ``METHOD path`` with its status, fault and injected
    delay as arguments; the injected delay is a nested ``latency`` event, so a request's wait
    and its answer show apart.
    """
    rows = [e.as_dict() if isinstance(e, JournalEntry) else e for e in entries]
    if not rows:
        return {"traceEvents": [], "displayTimeUnit": "ms"}
    origin = min(r["start"] for r in rows)
    events: list[dict[str, Any]] = []
    for connection in sorted({r["connection"] for r in rows}):
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": 1,
                "tid": connection,
                "args": {"name": f"connection {connection}"},
            }
        )
    for r in rows:
        ts = (r["start"] - origin) * 1e6
        events.append(
            {
                "name": f"{r['method']} {r['path']}",
                "cat": "request",
                "ph": "X",
                "pid": 1,
                "tid": r["connection"],
                "ts": round(ts, 1),
                "dur": round(max(0.0, r["end"] - r["start"]) * 1e6, 1),
                "args": {
                    "status": r["status"],
                    "fault": r["fault"],
                    "delay_ms": r["delay"] * 1e3,
                    "target": r["target"],
                    "id": r["id"],
                },
            }
        )
        if r["delay"] > 0:
            events.append(
                {
                    "name": "latency",
                    "cat": "injected",
                    "ph": "X",
                    "pid": 1,
                    "tid": r["connection"],
                    "ts": round(ts, 1),
                    "dur": round(r["delay"] * 1e6, 1),
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms"}
