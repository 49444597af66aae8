"""The forum itself: boards hold subjects, subjects hold replies, reply ids are global.

Everything here is plain Python and thread-safe: one lock guards the whole forum, because every
operation is a few dictionary look-ups and the lock is never held across I/O.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .errors import FakeForumError

__all__ = ["Board", "Forum", "Reply", "Subject"]

# Seeded content is dated from here, so the same seed gives the same bytes on every machine.
_EPOCH = 1_704_067_200.0  # 2024-01-01T00:00:00Z
_WORDS = (
    "thread pool queue lock socket request reply forum crawler update cache session timeout "
    "latency retry backoff server client worker barrier event future result page feed board "
    "subject author body answer question patch build test bug fix release python network"
).split()
_NAMES = (
    "ada alan barbara dennis edsger frances grace guido john ken leslie linus margaret niklaus "
    "radia tim tony ward"
).split()


@dataclass(frozen=True)
class Reply:
    """One reply; ``id`` is global and increasing across the whole forum."""

    id: int
    subject_id: int
    author: str
    body: str
    created_at: float


@dataclass
class Subject:
    """A subject (a thread of replies) on one board."""

    id: int
    board: str
    title: str
    created_at: float
    replies: list[Reply] = field(default_factory=list)
    # Whole seconds, strictly increasing per change, so If-Modified-Since never misses a reply
    # posted within the same second as the previous one.
    modified: int = 0

    @property
    def last_reply_id(self) -> int:
        """The id of the newest reply, or 0 when the subject has none."""
        return self.replies[-1].id if self.replies else 0


@dataclass(frozen=True)
class Board:
    """A board: a slug for URLs and a display name."""

    slug: str
    name: str


class Forum:
    """Boards → subjects → replies, safe to read and change from many threads at once.

    Build one with :meth:`generate` (deterministic for the same arguments) or empty and fill it
    with :meth:`add_board`, :meth:`add_subject` and :meth:`post_reply`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boards: dict[str, Board] = {}
        self._subjects: dict[int, Subject] = {}
        self._by_board: dict[str, list[int]] = {}
        self._next_subject_id = 1
        self._next_reply_id = 1
        self._version = 0

    def __getstate__(self) -> dict[str, Any]:
        # A lock cannot be pickled; process mode sends a forum to its child this way.
        with self._lock:
            state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- building -------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        boards: int = 3,
        subjects: int = 100,
        replies: tuple[int, int] = (0, 20),
    ) -> Forum:
        """Build the same forum for the same arguments on every machine and Python version.

        ``subjects`` are spread round-robin over ``boards``; each gets a number of replies drawn
        uniformly from the inclusive range ``replies``. Reply ids grow in posting order.
        """
        _check_count("boards", boards, minimum=1)
        _check_count("subjects", subjects, minimum=0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise FakeForumError(f"seed must be a whole number, not {seed!r}.")
        lo, hi = _check_range(replies)
        # A test server is built per test; a cached template makes that a copy, not a rebuild.
        forum = cls()
        forum.restore(_generated(seed, boards, subjects, lo, hi))
        return forum

    def add_board(self, slug: str, name: str | None = None) -> Board:
        """Add a board; ``slug`` is its URL segment and must be unique."""
        if not slug or not all(c.isalnum() or c in "-_" for c in slug):
            raise FakeForumError(
                f"Board slug {slug!r} is not usable in a URL; use letters, digits, '-' and '_'."
            )
        with self._lock:
            if slug in self._boards:
                raise FakeForumError(f"A board with slug {slug!r} already exists.")
            board = Board(slug, name or slug)
            self._boards[slug] = board
            self._by_board[slug] = []
            self._version += 1
            return board

    def add_subject(self, board: str, title: str, *, created_at: float | None = None) -> Subject:
        """Add a subject to ``board`` and return it (a copy: later replies don't show in it)."""
        with self._lock:
            if board not in self._boards:
                raise FakeForumError(f"No board {board!r}; the boards are {sorted(self._boards)}.")
            when = time.time() if created_at is None else created_at
            subject = Subject(self._next_subject_id, board, title, when, modified=int(when))
            self._next_subject_id += 1
            self._subjects[subject.id] = subject
            self._by_board[board].append(subject.id)
            self._version += 1
            return _copy(subject)

    def post_reply(
        self,
        subject_id: int,
        body: str = "",
        *,
        author: str = "anonymous",
        created_at: float | None = None,
    ) -> Reply:
        """Add a reply to a subject now and return it; its id is greater than every id before."""
        with self._lock:
            subject = self._subjects.get(subject_id)
            if subject is None:
                raise FakeForumError(f"No subject with id {subject_id!r}; cannot post a reply.")
            when = time.time() if created_at is None else created_at
            reply = Reply(self._next_reply_id, subject_id, author, body, when)
            self._next_reply_id += 1
            subject.replies.append(reply)
            subject.modified = max(int(when), subject.modified + 1)
            self._version += 1
            return reply

    def snapshot(self) -> Forum:
        """A deep copy of the forum as it is now, to :meth:`restore` later."""
        copy = type(self)()
        with self._lock:
            copy._boards = dict(self._boards)
            copy._subjects = {k: _copy(v) for k, v in self._subjects.items()}
            copy._by_board = {k: list(v) for k, v in self._by_board.items()}
            copy._next_subject_id = self._next_subject_id
            copy._next_reply_id = self._next_reply_id
            copy._version = self._version
        return copy

    def restore(self, snapshot: Forum) -> None:
        """Put back the content of a :meth:`snapshot`, in place: references stay valid."""
        state = snapshot.snapshot()
        with self._lock:
            self._boards = state._boards
            self._subjects = state._subjects
            self._by_board = state._by_board
            self._next_subject_id = state._next_subject_id
            self._next_reply_id = state._next_reply_id
            # The version keeps growing so that "same version" still means "same content".
            self._version += 1

    # -- reading ----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """A number that grows with every change; equal numbers mean identical content."""
        return self._version

    @property
    def last_reply_id(self) -> int:
        """The greatest reply id given so far (0 for none)."""
        with self._lock:
            return self._next_reply_id - 1

    def boards(self) -> list[Board]:
        """All boards in the order they were added."""
        with self._lock:
            return list(self._boards.values())

    def board(self, slug: str) -> Board | None:
        """The board with this slug, or None."""
        with self._lock:
            return self._boards.get(slug)

    def subject_ids(self, board: str | None = None) -> list[int]:
        """Ids of all subjects (or of one board's), in creation order."""
        with self._lock:
            if board is None:
                return list(self._subjects)
            return list(self._by_board.get(board, ()))

    def subject(self, subject_id: int) -> Subject | None:
        """A consistent copy of one subject with its replies, or None."""
        with self._lock:
            subject = self._subjects.get(subject_id)
            return None if subject is None else _copy(subject)

    def replies_since(
        self, subject_id: int, since: int = 0, limit: int | None = None
    ) -> tuple[list[Reply], int] | None:
        """Replies with id > ``since``, oldest first, at most ``limit``; and the last reply id.

        None when there is no such subject.
        """
        with self._lock:
            subject = self._subjects.get(subject_id)
            if subject is None:
                return None
            replies = subject.replies
            # Reply ids are increasing within a subject, so bisect instead of scanning.
            lo, hi = 0, len(replies)
            while lo < hi:
                mid = (lo + hi) // 2
                if replies[mid].id <= since:
                    lo = mid + 1
                else:
                    hi = mid
            end = len(replies) if limit is None else min(len(replies), lo + limit)
            return replies[lo:end], subject.last_reply_id

    def __len__(self) -> int:
        with self._lock:
            return len(self._subjects)

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<Forum boards={len(self._boards)} subjects={len(self._subjects)} "
                f"replies={self._next_reply_id - 1}>"
            )


@lru_cache(maxsize=16)
def _generated(seed: int, boards: int, subjects: int, lo: int, hi: int) -> Forum:
    rng = random.Random(seed)
    forum = Forum()
    slugs = [forum.add_board(f"board-{i + 1}", f"Board {i + 1}").slug for i in range(boards)]
    clock = _EPOCH
    for i in range(subjects):
        clock += rng.randrange(60, 3600)
        subject = forum.add_subject(slugs[i % boards], _sentence(rng, 3, 8), created_at=clock)
        for _ in range(rng.randint(lo, hi)):
            clock += rng.randrange(5, 600)
            forum.post_reply(
                subject.id, author=rng.choice(_NAMES), body=paragraph(rng), created_at=clock
            )
    return forum


def _copy(subject: Subject) -> Subject:
    return Subject(
        subject.id,
        subject.board,
        subject.title,
        subject.created_at,
        list(subject.replies),
        subject.modified,
    )


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = rng.choices(_WORDS, k=rng.randint(lo, hi))
    return " ".join(words).capitalize()


def paragraph(rng: random.Random) -> str:
    """A few sentences of forum-ish text drawn from rng."""
    return ". ".join(_sentence(rng, 4, 12) for _ in range(rng.randint(1, 3))) + "."


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FakeForumError(f"{name} must be a whole number of at least {minimum}, not {value!r}.")


def _check_range(value: Sequence[int]) -> tuple[int, int]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise FakeForumError(
            f"replies must be a pair (lowest, highest) such as (0, 20), not {value!r}."
        ) from None
    _check_count("replies' lowest", lo, minimum=0)
    _check_count("replies' highest", hi, minimum=0)
    if hi < lo:
        raise FakeForumError(f"replies range {value!r} has its highest below its lowest.")
    return lo, hi
