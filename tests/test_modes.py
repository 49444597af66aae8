"""Thread and process mode behave the same; process mode's own promises."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from fakeforum import FakeForumError, FakeForumServer, Forum
from fakeforum.activity import Activity, parse_rate
from fakeforum.server import Mode

from .helpers import wait_for


class BrokenForum(Forum):
    """A forum whose subject 13 cannot be read: a stand-in for a bug in the server."""

    def subject(self, subject_id: int):  # type: ignore[no-untyped-def]
        if subject_id == 13:
            raise LookupError("subject 13 is cursed")
        return super().subject(subject_id)


def test_counters_are_exact_under_threads(any_server: FakeForumServer) -> None:
    threads, each = 16, 25
    barrier = threading.Barrier(threads)

    def hammer(worker: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            for k in range(each):
                session.get(f"{any_server.url}/api/subjects/{1 + (worker + k) % 100}", timeout=30)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(hammer, range(threads)))
    stats = any_server.stats
    assert stats.requests == threads * each
    assert stats.by_status == {200: threads * each}
    assert stats.connections_opened == threads
    assert len(any_server.journal) == threads * each


def test_the_forum_view_reads_and_writes(any_server: FakeForumServer) -> None:
    forum = any_server.forum
    assert forum.subject_ids()[:3] == [1, 2, 3]
    assert len(forum) == 100
    reply = forum.post_reply(5, "from the test", author="ada")
    subject = forum.subject(5)
    assert subject is not None
    assert subject.replies[-1] == reply
    assert forum.last_reply_id == reply.id
    assert forum.subject(12345) is None
    assert any_server.reply_count(5) == len(subject.replies)
    assert [r.subject_id for r in any_server.post_replies(1)] == list(range(1, 101))


def test_seeded_content_is_the_same_in_both_modes() -> None:
    with FakeForumServer(mode="process", seed=4) as remote, FakeForumServer(seed=4) as local:
        for path in ("/api/subjects?per_page=100", "/subjects/7", "/api/subjects/9/replies"):
            a = requests.get(remote.url + path, timeout=10).text.replace(remote.url, "")
            b = requests.get(local.url + path, timeout=10).text.replace(local.url, "")
            assert a == b


def test_a_given_forum_is_served_in_a_child_process() -> None:
    forum = Forum.generate(seed=2, subjects=5)
    forum.post_reply(1, "made before the child existed")
    with FakeForumServer(forum, mode="process") as server:
        body = requests.get(server.url + "/api/subjects", timeout=10).json()
        assert body["total"] == 5
        assert server.forum.subject(1).replies[-1].body == "made before the child existed"


def test_process_mode_re_raises_app_errors_at_stop() -> None:
    server = FakeForumServer(BrokenForum.generate(), mode="process").start()
    assert requests.get(server.url + "/api/subjects/13", timeout=10).status_code == 500
    assert requests.get(server.url + "/api/subjects/12", timeout=10).status_code == 200
    with pytest.raises(
        FakeForumError, match="raised RemoteError while serving GET /api/subjects/13"
    ):
        server.stop()


def test_process_mode_reports_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FakeForumError, match=f"Port {port} on 127.0.0.1 is already in use"):
            FakeForumServer(mode="process", port=port).start()


def test_process_mode_refuses_a_log_function() -> None:
    with pytest.raises(FakeForumError, match="mode='process' cannot call it"):
        FakeForumServer(mode="process", log=print)


PARENT = """
import sys
from fakeforum import FakeForumServer
server = FakeForumServer(mode="process").start()
print(server._backend._process.pid, server.url, flush=True)
sys.stdin.read()
"""


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid_text, url = parent.stdout.readline().split()
        child = int(pid_text)
        assert requests.get(url + "/", timeout=10).status_code == 200
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs in the parent
        parent.wait()
        wait_for(lambda: not _alive(child), timeout=20)
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/", timeout=5)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdin:
            parent.stdin.close()
        if parent.stdout:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_activity_posts_replies(mode: Mode) -> None:
    with FakeForumServer(mode=mode, activity="200/s") as server:
        start = server.forum.last_reply_id
        wait_for(lambda: server.forum.last_reply_id >= start + 5)
        assert server.config["activity"] == 200.0
        server.stop_activity()
        assert server.config["activity"] is None
        server.start_activity("10/min")
        assert server.config["activity"] == pytest.approx(1 / 6)


def test_activity_is_seeded() -> None:
    def posts(seed: int) -> list[tuple[int, str, str]]:
        forum = Forum.generate(subjects=10)
        before = forum.last_reply_id
        activity = Activity(forum, 1.0, seed)
        for _ in range(20):
            activity.tick()
        new = [r for i in forum.subject_ids() for r in (forum.replies_since(i, before) or [[]])[0]]
        return [(r.subject_id, r.author, r.body) for r in sorted(new, key=lambda r: r.id)]

    assert posts(1) == posts(1)
    assert posts(1) != posts(2)


@pytest.mark.parametrize(
    ("text", "rate"), [("5/s", 5.0), ("30/min", 0.5), ("36/h", 0.01), (2, 2.0)]
)
def test_rates(text: str | int, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["5", "fast", "0/s", "1e9/s"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(FakeForumError, match="Activity rate"):
        parse_rate(text)
