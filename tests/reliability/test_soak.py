"""Soak: 100,000 requests over 256 keep-alive connections with 1 % injected faults, both modes.

The client is a separate process (``soak_client.py``), so it neither bottlenecks the server nor
shares its GIL. It sends the requests in rounds smaller than the journal (10,000 entries), and
after each round every request is checked against the entry the server journaled for it (each
request carries ``?r=<number>``, which the journal keeps in ``target``): a request the server
served plainly must have come back whole and byte-identical to the fault-free answer; a
request the server faulted must have failed on the client in exactly that way; and every
failure the client saw must be such an injected fault. The server's memory must stay flat once
the journal is full, and nothing may be left running afterwards.
"""

from __future__ import annotations

import gc
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from fakeforum import FakeForumServer
from fakeforum.journal import JournalEntry
from fakeforum.server import Mode

from ..helpers import open_socket_count
from .soak_client import digest

TOTAL = 100_000
ROUND = 5_000  # under the journal's 10,000 entries, so each round is checked whole
WARMUP_ROUNDS = 4  # the journal is full and every URL served before RSS is first read
CONNECTIONS = 256
LATENCY = 0.005
FAULT_STATUS = 503
P_EACH = 0.002  # five kinds: 1 % of the requests in all
RSS_GROWTH_LIMIT = 10 * 1024 * 1024
ROUND_TIMEOUT = 120.0
CLIENT = Path(__file__).with_name("soak_client.py")

FAULTS: list[dict[str, Any]] = [
    {"route": "*", "kind": "status", "status": FAULT_STATUS, "p": P_EACH},
    {"route": "*", "kind": "429", "retry_after": 1, "p": P_EACH},
    {"route": "*", "kind": "reset", "p": P_EACH},
    {"route": "*", "kind": "empty", "p": P_EACH},
    {"route": "*", "kind": "truncate", "p": P_EACH},
]
# For each injected fault (None: none), what the client must have seen and the journal's status.
SEEN = {
    None: "ok",
    "status": f"s{FAULT_STATUS}",
    "429": "s429",
    "reset": "reset",
    "empty": "empty",
    "truncate": "truncate",
}
JOURNALED_STATUS = {
    None: 200,
    "status": FAULT_STATUS,
    "429": 429,
    "reset": None,
    "empty": None,
    "truncate": 200,
}


def soak_urls(server: FakeForumServer) -> list[str]:
    """Every subject's JSON, replies, HTML page and feed, plus the boards: HTML, JSON and Atom.

    None of these echoes its query string in the body, so ``?r=<n>`` leaves bodies unchanged.
    """
    urls = ["/", "/api/boards"]
    for subject_id in server.forum.subject_ids():
        urls += [
            f"/api/subjects/{subject_id}",
            f"/api/subjects/{subject_id}/replies",
            f"/subjects/{subject_id}",
            f"/subjects/{subject_id}.atom",
        ]
    return urls


def reference_digests(server: FakeForumServer, urls: list[str]) -> list[str]:
    """The fault-free body of each URL, fetched with the Host header the client will send."""
    digests = []
    with requests.Session() as session:
        for url in urls:
            response = session.get(server.url + url, timeout=10)
            assert response.status_code == 200, url
            digests.append(digest(response.content))
    return digests


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux: VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS line in /proc/{pid}/status")


class ClientProcess:
    """The soak client in its own process; killed if it stops answering."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.command = [sys.executable, str(CLIENT), json.dumps(options)]
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._line(60) == "ready"

    def _line(self, timeout: float) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        if not line:
            self.kill()
            raise AssertionError(
                f"The soak client gave no answer within {timeout:g} s (exit status "
                f"{self.process.returncode}); its stderr is above. Command: {self.command[:2]}"
            )
        return line.strip()

    def round(self, start: int, count: int) -> list[str]:
        """Send requests start..start+count-1; the outcome of each, in order."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"start": start, "count": count, "timeout": ROUND_TIMEOUT}) + "\n")
        stdin.flush()
        outcomes: list[str] = json.loads(self._line(ROUND_TIMEOUT + 30))["outcomes"]
        return outcomes

    def finish(self) -> dict[str, Any]:
        """End the client; its totals (connections opened, latencies, CPU)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        totals: dict[str, Any] = json.loads(self._line(30))
        self.process.wait(30)
        return totals

    def kill(self) -> None:
        """Stop the process whatever it is doing, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


class Tally:
    """Checks each round's outcomes against the journal and keeps the totals."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.seen: Counter[str] = Counter()
        self.journaled_faults: Counter[str] = Counter()
        self.problems: list[str] = []
        self.problem_count = 0

    def check(self, start: int, outcomes: list[str], entries: list[JournalEntry]) -> None:
        """Match every request of the round with its journal entry."""
        self.seen.update(outcomes)
        by_rid: dict[int, JournalEntry] = {}
        for entry in entries:
            rid = _rid(entry)
            if rid is None or not start <= rid < start + len(outcomes) or rid in by_rid:
                self._problem(f"a journal entry belongs to no request of the round: {entry}")
                continue
            by_rid[rid] = entry
        for offset, outcome in enumerate(outcomes):
            rid = start + offset
            url = self.urls[rid % len(self.urls)]
            found = by_rid.get(rid)
            if found is None:
                self._problem(
                    f"request {rid} (GET {url}): the client saw {outcome!r}; not journaled"
                )
                continue
            entry = found
            if entry.fault is not None:
                self.journaled_faults[entry.fault] += 1
            expected = SEEN.get(entry.fault, f"no such fault {entry.fault!r}")
            where = (
                f"request {rid} (GET {entry.target}, server connection {entry.connection}): "
                f"journal says fault={entry.fault} status={entry.status}"
            )
            if outcome != expected:
                self._problem(f"{where}; the client saw {outcome!r}, not {expected!r}")
            elif entry.path != url:
                self._problem(f"{where}; the client asked for {url}")
            elif entry.status != JOURNALED_STATUS.get(entry.fault):
                self._problem(f"{where}; expected status {JOURNALED_STATUS.get(entry.fault)}")
            elif entry.delay != LATENCY:
                self._problem(f"{where}; injected delay {entry.delay}, not {LATENCY}")

    def _problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 20:
            self.problems.append(text)


def _rid(entry: JournalEntry) -> int | None:
    _, sep, value = entry.target.rpartition("?r=")
    return int(value) if sep and value.isdigit() else None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_every_request_is_right_or_its_injected_fault(mode: Mode) -> None:
    threads_before = set(threading.enumerate())
    sockets_before = open_socket_count()
    # A long idle timeout: connections wait idle while each round is checked.
    server = FakeForumServer(mode=mode, idle_timeout=300).start()
    child = server._backend._process if mode == "process" else None  # type: ignore[attr-defined]
    pid = child.pid if child is not None else os.getpid()
    rss: list[int] = []
    try:
        urls = soak_urls(server)
        tally = Tally(urls)
        options = {
            "host": server.host,
            "port": server.port,
            "urls": urls,
            "expected": reference_digests(server, urls),
            "connections": CONNECTIONS,
        }
        server.configure(latency=f"{LATENCY * 1000:g}ms", faults=FAULTS)
        server.reset_stats()
        began = time.monotonic()
        client = ClientProcess(options)
        try:
            for start in range(0, TOTAL, ROUND):
                round_began = time.monotonic()
                outcomes = client.round(start, ROUND)
                tally.check(start, outcomes, server.journal_since(round_began))
                if child is None:
                    gc.collect()  # the test's own garbage shares this process's RSS
                rss.append(rss_bytes(pid))
            totals = client.finish()
        finally:
            client.kill()
        took = time.monotonic() - began
        stats = server.stats
    finally:
        server.stop()

    warm, final = rss[WARMUP_ROUNDS - 1], rss[-1]
    mb = 1024 * 1024
    seen = ", ".join(f"{k} {v:,}" for k, v in sorted(tally.seen.items()))
    print(
        f"\nsoak [{mode}]: {TOTAL:,} requests in {took:.1f} s ({TOTAL / took:,.0f}/s), "
        f"{CONNECTIONS} keep-alive connections ({totals['connects']} opened), "
        f"{LATENCY * 1000:g} ms latency\n"
        f"  client saw: {seen}\n"
        f"  injected faults journaled: {dict(sorted(tally.journaled_faults.items()))}; "
        f"unexpected outcomes: {tally.problem_count}; server errors: {stats.errors}\n"
        f"  client latency p50 {totals['p50'] * 1000:.1f} ms, p99 {totals['p99'] * 1000:.1f} "
        f"ms, max {totals['max'] * 1000:.0f} ms; client CPU {totals['cpu']:.1f} s\n"
        f"  server RSS after warm-up ({WARMUP_ROUNDS * ROUND:,} requests) {warm / mb:.1f} MB, "
        f"at the end {final / mb:.1f} MB: {(final - warm) / mb:+.2f} MB; per round (MB): "
        f"{' '.join(f'{r / mb:.1f}' for r in rss)}"
    )

    assert not tally.problems, (
        f"{tally.problem_count} requests disagree with the journal; the first ones:\n"
        + "\n".join(tally.problems)
    )
    assert sum(tally.seen.values()) == TOTAL
    assert stats.requests == TOTAL
    assert stats.in_flight == 0
    assert stats.errors == 0
    assert dict(stats.faults) == dict(tally.journaled_faults)
    assert stats.by_status == {
        200: tally.seen["ok"] + tally.seen["truncate"],
        FAULT_STATUS: tally.seen[f"s{FAULT_STATUS}"],
        429: tally.seen["s429"],
    }
    # The faults really were a mix of about 1 %: every kind, each about 0.2 %.
    assert set(tally.journaled_faults) == set(SEEN) - {None}
    assert all(count > TOTAL * P_EACH / 2 for count in tally.journaled_faults.values())
    assert final - warm < RSS_GROWTH_LIMIT, f"server RSS grew by {(final - warm) / mb:.1f} MB"
    # Nothing left running: the server's thread or child process, and every socket.
    assert set(threading.enumerate()) == threads_before
    assert open_socket_count() == sockets_before
    if child is not None:
        assert child.returncode is not None
    print(
        f"  after stop: threads {len(threads_before)} = baseline, sockets "
        f"{open_socket_count()} = baseline {sockets_before}"
    )
