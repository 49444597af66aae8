"""The crawler that ``poolcheck demo`` runs: a subject that fetches its new replies."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

__all__ = ["DemoSubject"]


class DemoSubject:
    """One subject as a crawler tracks it; ``update()`` fetches replies since the last seen.

    urllib rather than requests: it costs a third of the CPU per request, and the demo is
    about waiting, not parsing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.last_reply_id = 0
        self.replies: list[dict[str, Any]] = []

    def update(self) -> None:
        """Fetch and keep the replies posted since the last update."""
        with urllib.request.urlopen(
            f"{self.url}/replies?since={self.last_reply_id}", timeout=30
        ) as response:
            data = json.loads(response.read())
        self.replies.extend(data["replies"])
        self.last_reply_id = data["last_reply_id"]

    def __repr__(self) -> str:
        return f"<DemoSubject {self.url.rsplit('/', 1)[-1]} last_reply_id={self.last_reply_id}>"


class Tally:
    """What every subject of the racy demo crawler shares: a count of replies seen."""

    def __init__(self) -> None:
        self.replies = 0


class RacyDemoSubject(DemoSubject):
    """The demo crawler with one line more: a shared counter, updated without a lock."""

    def __init__(self, url: str, tally: Tally) -> None:
        super().__init__(url)
        self.tally = tally

    def update(self) -> None:
        """Fetch new replies, then add their number to the shared tally (the race)."""
        before = len(self.replies)
        super().update()
        self.tally.replies += len(self.replies) - before
