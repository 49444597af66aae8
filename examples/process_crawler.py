"""Wrong on purpose: the right crawler, run under multiprocessing.Pool instead of a ThreadPool.

    with multiprocessing.Pool(16) as pool:
        pool.map(update_one, subjects)      # each worker updates a pickled copy

The work happens — the server sees every request — but each worker process updates its own
copy of the Subject and the copy is thrown away: the caller's objects never change.
"""

from __future__ import annotations

import multiprocessing

from .crawler import Subject


def update_one(subject: Subject) -> None:
    """What the pool runs in each worker (it must be a module-level function to pickle)."""
    subject.update()


def crawl(subjects: list[Subject], workers: int = 16) -> None:
    """Update every subject under a process pool: the caller's subjects stay as they were."""
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(update_one, subjects)
