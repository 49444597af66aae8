"""Wrong on purpose: a lock held around the HTTP call serialises every thread.

Someone saw a race on the shared counter and wrapped the whole update in the lock. It is safe
now, and exactly as slow as a loop: at most one request is ever in flight.
"""

from __future__ import annotations

import threading
from typing import Any

import requests

_lock = threading.Lock()
fetched = 0  # shared: how many updates ran, across all subjects


class Subject:
    """Like examples.crawler.Subject, but update() holds a global lock across the request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last_reply_id = 0
        self.replies: list[dict[str, Any]] = []

    def update(self) -> None:
        """Fetch new replies, holding the lock for the whole call (the bug)."""
        global fetched
        with _lock:
            data = requests.get(f"{self.url}/replies?since={self.last_reply_id}", timeout=30).json()
            self.replies.extend(data["replies"])
            self.last_reply_id = data["last_reply_id"]
            fetched += 1

    def __repr__(self) -> str:
        return f"<Subject {self.url.rsplit('/', 1)[-1]} last_reply_id={self.last_reply_id}>"


def make_subjects(base_url: str) -> list[Subject]:
    """The factory for ``poolcheck check examples.locked_crawler:make_subjects``."""
    ids = requests.get(f"{base_url}/api/subjects?per_page=30", timeout=30).json()["subjects"]
    return [Subject(s["url"]) for s in ids]
