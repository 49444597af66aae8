"""Crawlers that share state between subjects: six racy on purpose, and their correct twins.

Every Subject here fetches its replies (a real wait on the network) and then touches a Store
that all subjects share. Under the GIL most of the racy ones *usually* give the right answer —
which is why a stress test passes for months — but each has two threads' accesses that nothing
orders, and poolcheck.race_detector reports exactly those.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any


def fetch(url: str) -> dict[str, Any]:
    """GET a fakeforum JSON URL."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return dict(json.loads(response.read()))


class Client:
    """Stands for an expensive shared client (a session with a connection pool)."""

    def get(self, url: str) -> dict[str, Any]:
        return fetch(url)


class Store:
    """State shared by every subject of one crawl."""

    def __init__(self, urls: list[str] | None = None) -> None:
        self.fetched = 0
        self.pages: dict[str, Any] = {}
        self.session: Client | None = None
        self.results: list[Any] = []
        self.seen = 0
        self.lock = threading.Lock()
        self.queue: queue.Queue[Any] = queue.Queue()
        self.local = threading.local()
        self.urls: Iterator[str] = (url for url in urls or [])


class Subject:
    """The base crawler subject: its URL, its own replies, and the shared store."""

    def __init__(self, url: str, store: Store) -> None:
        self.url = url
        self.store = store
        self.last_reply_id = 0
        self.replies: list[Any] = []

    def fetch_replies(self) -> dict[str, Any]:
        data = fetch(f"{self.url}/replies?since={self.last_reply_id}")
        self.replies.extend(data["replies"])
        self.last_reply_id = data["last_reply_id"]
        return data

    def update(self) -> None:
        self.fetch_replies()


# -- racy -------------------------------------------------------------------------------------


class CounterSubject(Subject):
    """Racy: an unlocked shared counter (a lost update when two threads interleave)."""

    def update(self) -> None:
        self.fetch_replies()
        self.store.fetched += 1


class CacheSubject(Subject):
    """Racy: a check-then-act cache of fetched pages (two threads both miss and both fetch)."""

    def update(self) -> None:
        self.fetch_replies()
        index = self.url.rsplit("/api/", 1)[0] + "/api/subjects?page=1"
        if index not in self.store.pages:
            self.store.pages[index] = fetch(index)


class LazySessionSubject(Subject):
    """Racy: lazy initialisation of a shared session (two threads may each build one)."""

    def update(self) -> None:
        if self.store.session is None:
            self.store.session = Client()
        data = self.store.session.get(f"{self.url}/replies?since={self.last_reply_id}")
        self.replies.extend(data["replies"])


class GeneratorSubject(Subject):
    """Racy: a shared generator of URLs, advanced by every thread ("already executing")."""

    def update(self) -> None:
        url = next(self.store.urls, None)
        if url is not None:
            self.replies.extend(fetch(f"{url}/replies")["replies"])


class RebuiltListSubject(Subject):
    """Racy: a result list rebuilt with + (read, build a new list, write it back)."""

    def update(self) -> None:
        data = self.fetch_replies()
        self.store.results = self.store.results + [data["last_reply_id"]]  # noqa: RUF005


class HalfLockedSubject(Subject):
    """Racy: the lock protects the write but not the read it depends on."""

    LIMIT = 10

    def update(self) -> None:
        self.fetch_replies()
        if self.store.seen < self.LIMIT:
            with self.store.lock:
                self.store.seen += 1


# -- their correct twins ---------------------------------------------------------------------


class LockedCounterSubject(Subject):
    """Safe: the counter's read-modify-write under the store's lock."""

    def update(self) -> None:
        self.fetch_replies()
        with self.store.lock:
            self.store.fetched += 1


class QueueSubject(Subject):
    """Safe: results handed to the caller through a queue.Queue."""

    def update(self) -> None:
        data = self.fetch_replies()
        self.store.queue.put(data["last_reply_id"])


class LocalSessionSubject(Subject):
    """Safe: one session per thread, in a threading.local."""

    def update(self) -> None:
        local = self.store.local
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = Client()
        self.replies.extend(session.get(f"{self.url}/replies")["replies"])


class AppendSubject(Subject):
    """Safe: every thread appends to one shared list; list.append is atomic."""

    def update(self) -> None:
        data = self.fetch_replies()
        self.store.results.append(data["last_reply_id"])


class LockedCacheSubject(Subject):
    """Safe: the cache's check and its fill under one lock."""

    def update(self) -> None:
        self.fetch_replies()
        index = self.url.rsplit("/api/", 1)[0] + "/api/subjects?page=1"
        with self.store.lock:
            if index not in self.store.pages:
                self.store.pages[index] = fetch(index)


RACY = [
    CounterSubject,
    CacheSubject,
    LazySessionSubject,
    GeneratorSubject,
    RebuiltListSubject,
    HalfLockedSubject,
]
SAFE = [
    Subject,
    LockedCounterSubject,
    QueueSubject,
    LocalSessionSubject,
    AppendSubject,
    LockedCacheSubject,
]
