"""The one exception root of fakeforum."""

from __future__ import annotations

__all__ = ["FakeForumError"]


class FakeForumError(Exception):
    """Raised for every misuse of fakeforum: a bad spec, a busy port, a server used out of order.

    The message is a full sentence that names the offending value and says what is accepted.
    """
