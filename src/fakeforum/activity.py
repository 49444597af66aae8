"""Live activity: seeded replies posted at a steady rate, for watching a crawler keep up."""

from __future__ import annotations

import random
import re

from .errors import FakeForumError
from .model import Forum, paragraph

__all__ = ["Activity", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(spec: str | float) -> float:
    """Events per second in ``"5/s"``, ``"30/min"`` or ``"100/h"``."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        rate = float(spec)
    elif isinstance(spec, str) and (m := _RATE.match(spec)):
        rate = float(m.group(1)) / _PER[m.group(2)]
    else:
        raise FakeForumError(
            f"Activity rate {spec!r} is not valid; write replies per unit of time such as "
            f"'5/s', '30/min' or '100/h'."
        )
    if not 0 < rate <= 10_000:
        raise FakeForumError(f"Activity rate {spec!r} must be above 0 and at most 10000/s.")
    return rate


class Activity:
    """Posts a reply to a seeded-random subject every 1/rate seconds, from the caller's timer.

    The server's loop calls :meth:`tick`; the replies (subject, author, text) depend only on
    the seed and the count so far.
    """

    def __init__(self, forum: Forum, rate: float, seed: int) -> None:
        self.forum = forum
        self.rate = rate
        self.interval = 1.0 / rate
        self._rng = random.Random(f"activity:{seed}")
        self.posted = 0

    def tick(self) -> None:
        """Post one reply (to nothing when the forum has no subjects)."""
        ids = self.forum.subject_ids()
        if not ids:
            return
        subject_id = ids[self._rng.randrange(len(ids))]
        self.forum.post_reply(
            subject_id, paragraph(self._rng), author=f"visitor-{self._rng.randrange(1000)}"
        )
        self.posted += 1
