"""Fixtures for the project's own tests: servers on 127.0.0.1 port 0, raw HTTP, leak checks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from fakeforum import FakeForumServer
from fakeforum.server import Mode


@pytest.fixture(autouse=True)
def no_thread_outlives_its_test() -> Iterator[None]:
    """Fail a test that leaves a thread running (servers, pools and clients must be closed)."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leftover:
        thread.join(timeout=5)  # a thread that is finishing gets its chance; a stuck one fails
    still = [t.name for t in leftover if t.is_alive()]
    assert not still, f"threads outlived the test: {still}"


@pytest.fixture
def server() -> Iterator[FakeForumServer]:
    """A started FakeForumServer with the default forum and no latency."""
    with FakeForumServer() as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeForumServer]]:
    """Start servers with any arguments; every one is stopped at teardown."""
    servers: list[FakeForumServer] = []

    def make(**kwargs: object) -> FakeForumServer:
        srv = FakeForumServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture(params=["thread", "process"])
def any_server(request: pytest.FixtureRequest) -> Iterator[FakeForumServer]:
    """A started server in each mode: the behaviour users rely on must not depend on it."""
    with FakeForumServer(mode=request.param) as srv:
        yield srv


@pytest.fixture(params=["thread", "process"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Each server mode, for tests that build their own server."""
    return cast(Mode, request.param)
