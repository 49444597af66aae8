"""Wrong on purpose: one requests.Session shared by every thread, at its default pool size.

A Session keeps at most 10 idle connections per host (``pool_maxsize=10``). With 32 threads,
32 connections are open at the end of each burst of requests; 22 of them are thrown away
("Connection pool is full, discarding connection") and the next burst opens 22 new ones: the
server sees connections churn instead of keep-alive reuse. The fix: mount
``HTTPAdapter(pool_maxsize=32)`` on the shared session, or give each thread its own.
"""

from __future__ import annotations

from typing import Any

import requests

session = requests.Session()  # shared by all threads: the pool is capped at 10


class Subject:
    """Like examples.crawler.Subject, but every thread shares one module-level session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last_reply_id = 0
        self.replies: list[dict[str, Any]] = []

    def update(self) -> None:
        """Fetch new replies through the shared session."""
        data = session.get(f"{self.url}/replies?since={self.last_reply_id}", timeout=30).json()
        self.replies.extend(data["replies"])
        self.last_reply_id = data["last_reply_id"]

    def __repr__(self) -> str:
        return f"<Subject {self.url.rsplit('/', 1)[-1]} last_reply_id={self.last_reply_id}>"
