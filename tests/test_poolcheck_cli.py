"""``poolcheck demo`` and ``poolcheck check`` as users run them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from poolcheck.cli import main


def test_demo_tells_the_story() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "poolcheck", "demo", "--subjects", "40", "--latency", "20ms"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "sequential (40 of 40)" in out
    assert "ThreadPool(32)" in out
    assert "multiprocessing.Pool(32)" in out
    rows = {
        line.split()[0]: line for line in out.splitlines() if line.startswith(("Thread", "multi"))
    }
    assert rows["ThreadPool(32)"].rstrip().endswith("40/40")
    assert rows["multiprocessing.Pool(32)"].rstrip().endswith("0/40")
    assert "threads share memory" in out
    assert "pickled copy" in out
    assert "lost update: Tally.replies" in out  # the racy crawler, caught
    assert "src/poolcheck/demo.py:" in out or "poolcheck/demo.py:" in out


def test_check_passes_the_good_crawler(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "examples.crawler:make_subjects", "--workers", "16"]) == 0
    out = capsys.readouterr().out
    assert "ok   mutations visible" in out
    assert "ok   concurrency >= 8" in out


def test_check_fails_the_locked_crawler(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "examples.locked_crawler:make_subjects", "--workers", "8"]) == 1
    out = capsys.readouterr().out
    assert "ok   mutations visible" in out
    assert "FAIL concurrency >= 4" in out
    assert "a lock held around the HTTP call" in out


def test_check_fails_a_process_pool(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["check", "examples.crawler:make_subjects", "--workers", "4", "--pool", "process"]
    assert main(args) == 1
    assert "FAIL mutations visible" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nocolon", "is not MODULE:FACTORY"),
        ("no_such_module_here:f", "Cannot import 'no_such_module_here'"),
        ("examples.crawler:nothing", "has no callable 'nothing'"),
    ],
)
def test_check_reports_a_bad_target(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", target]) == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
