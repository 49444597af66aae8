"""The child process of ``FakeForumServer(mode="process")``; not for direct use."""

from __future__ import annotations

import gc
import json
import os
import pickle
import signal
import sys
import threading

from .core import EMPTY_SCHEDULE
from .errors import FakeForumError
from .local import LocalServer

# How often the child checks that its parent is still the process that started it.
_PARENT_CHECK = 0.5


def main() -> int:
    """Serve until stdin closes, the parent changes, or SIGTERM/SIGINT arrives."""
    parent = os.getppid()
    settings = pickle.load(sys.stdin.buffer)
    schedule = EMPTY_SCHEDULE.replace(**settings.pop("schedule"))
    forum = settings.pop("forum")
    try:
        server = LocalServer(forum, schedule=schedule, log=None, **settings)
        server.start()
    except FakeForumError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    signal.signal(signal.SIGINT, lambda signum, frame: done.set())

    def watch_stdin() -> None:
        # EOF here means the parent closed the pipe (stop()) or died: the kernel closes it then.
        sys.stdin.buffer.read()
        done.set()

    threading.Thread(target=watch_stdin, name="fakeforum-parent", daemon=True).start()
    # What exists now (modules, the forum, the server) lives until the exit. Frozen, the
    # collector never scans it again: not while serving, and not at interpreter exit, where
    # that final collection took ~70 ms here -- most of stop() in process mode.
    gc.freeze()
    print(json.dumps({"port": server.port, "backlog": server.backlog}), flush=True)
    while not done.wait(_PARENT_CHECK):
        if os.getppid() != parent:  # reparented: the parent died while a fork kept the pipe
            break
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
