"""The crawler done right: each Subject keeps its own state and fetches only what is new.

    subjects = [Subject(url) for url in urls]
    ThreadPool(16).map(lambda s: s.update(), subjects)

Threads share memory, so every Subject the pool updates is the caller's own object. Each thread
keeps its own HTTP session (``threading.local``): a session is reused across a thread's requests
(keep-alive) but never shared between threads.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import requests

_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


class Subject:
    """One forum subject as a crawler tracks it: the replies seen so far, and the last id."""

    def __init__(self, url: str, client: str = "requests") -> None:
        self.url = url  # <base>/api/subjects/<id>
        self.client = client
        self.last_reply_id = 0
        self.replies: list[dict[str, Any]] = []

    def update(self) -> None:
        """Fetch the replies posted since the last update and append them."""
        data = self._get(f"{self.url}/replies?since={self.last_reply_id}")
        self.replies.extend(data["replies"])
        self.last_reply_id = data["last_reply_id"]

    def _get(self, url: str) -> dict[str, Any]:
        if self.client == "urllib":
            with urllib.request.urlopen(url, timeout=30) as response:
                return dict(json.loads(response.read()))
        response = _session().get(url, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def __repr__(self) -> str:
        return f"<Subject {self.url.rsplit('/', 1)[-1]} last_reply_id={self.last_reply_id}>"


def make_subjects(base_url: str) -> list[Subject]:
    """The factory ``poolcheck check examples.crawler:make_subjects`` calls: every subject."""
    with urllib.request.urlopen(f"{base_url}/api/subjects?per_page=100", timeout=30) as response:
        page = json.loads(response.read())
    return [Subject(s["url"]) for s in page["subjects"]]
