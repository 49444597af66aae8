"""``fakeforum serve`` as a user runs it: a real process, a real port, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests

from fakeforum.cli import main


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fakeforum", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_the_url_first_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    process = start("--latency", "5ms", "--subjects", "7", "--seed", "3")
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        summary = process.stdout.readline()
        assert "7 subjects on 3 boards, seed 3, latency *=5ms" in summary
        assert requests.get(url + "/api/subjects", timeout=10).json()["total"] == 7
        process.send_signal(stop_signal)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0
    assert "Traceback" not in err
    assert "GET /api/subjects 200" in err  # the request log
    assert "stopped after 1 requests on 1 connections" in err


def test_quiet_logs_no_requests() -> None:
    process = start("--quiet", "--route-latency", "/api/*=1ms")
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        requests.get(url + "/api/subjects/1", timeout=10)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert "GET /api" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency", "50"], "'50' has no unit; write '50ms' or '50s'"),
        (["--route-latency", "nospec"], "--route-latency 'nospec' is not GLOB=SPEC"),
        (["--replies", "3"], "--replies '3' is not a range A..B"),
        (["--bandwidth", "fast"], "Bandwidth 'fast' is not valid"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fakeforum: error: ")
    assert message in err


def test_a_busy_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_help_shows_examples_of_each_spec(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for example in ("20ms..80ms", "lognormal(50ms, 0.5)", "50ms~10ms", "GLOB=SPEC", "100KB/s"):
        assert example in out
