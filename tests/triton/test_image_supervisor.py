"""The image's supervisor (``cvtriton_triton.image_supervisor``), with small stand-in children: it forwards
SIGTERM to both, exits as soon as either exits (with its status), and kills what does not stop in time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

SUPERVISOR = [sys.executable, "-m", "cvtriton_triton.image_supervisor"]


def child(tmp: Path, name: str, body: str) -> list[str]:
    """A python child that writes ``<name>.started`` then runs ``body``; on SIGTERM it writes ``<name>.term``."""
    script = (f"import signal, sys, time, pathlib\n"
              f"here = pathlib.Path({str(tmp)!r})\n"
              f"def term(*_):\n    (here / '{name}.term').touch(); sys.exit(0)\n"
              f"signal.signal(signal.SIGTERM, term)\n"
              f"(here / '{name}.started').touch()\n{body}\n")
    return [sys.executable, "-c", script]


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def start(*commands: list[str], grace: float = 5.0) -> subprocess.Popen:
    argv = [f"--grace={grace}"]
    for position, command in enumerate(commands):
        argv += (["::"] if position else []) + command
    return subprocess.Popen([*SUPERVISOR, *argv], stderr=subprocess.PIPE, text=True)


def test_sigterm_reaches_both_and_the_exit_is_clean(tmp_path):
    proc = start(child(tmp_path, "a", "time.sleep(60)"), child(tmp_path, "b", "time.sleep(60)"))
    wait_for(tmp_path / "a.started")
    wait_for(tmp_path / "b.started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert (tmp_path / "a.term").exists() and (tmp_path / "b.term").exists()
    assert "SIGTERM: stopping 2 processes" in proc.stderr.read()


def test_one_child_failing_stops_the_other_with_its_status(tmp_path):
    proc = start(child(tmp_path, "server", "time.sleep(60)"), child(tmp_path, "front", "time.sleep(0.5); sys.exit(3)"))
    assert proc.wait(timeout=20) == 3
    assert (tmp_path / "server.term").exists()
    assert "exited with status 3: stopping the others" in proc.stderr.read()


def test_a_child_that_exits_cleanly_unasked_is_still_a_failure(tmp_path):
    proc = start(child(tmp_path, "a", "time.sleep(60)"), child(tmp_path, "b", "sys.exit(0)"))
    assert proc.wait(timeout=20) == 1


def test_a_child_killed_by_a_signal_gives_128_plus_n(tmp_path):
    proc = start(child(tmp_path, "a", "time.sleep(60)"),
                 child(tmp_path, "b", "import os; time.sleep(0.3); os.kill(os.getpid(), signal.SIGKILL)"))
    assert proc.wait(timeout=20) == 128 + signal.SIGKILL


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    stubborn = [sys.executable, "-c", f"import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                      f"pathlib.Path({str(tmp_path)!r}, 's.started').touch(); time.sleep(60)"]
    proc = start(stubborn, child(tmp_path, "b", "time.sleep(60)"), grace=1.0)
    wait_for(tmp_path / "s.started")
    wait_for(tmp_path / "b.started")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=20)
    assert time.monotonic() - started < 10
    assert code == 128 + signal.SIGKILL
    assert "did not stop in 1 s: killing it" in proc.stderr.read()


def test_usage_and_a_missing_program(tmp_path):
    proc = start([sys.executable, "-c", "pass"], [])
    assert proc.wait(timeout=20) == 2
    proc = start([str(tmp_path / "no-such-program")], child(tmp_path, "b", "time.sleep(60)"))
    assert proc.wait(timeout=20) == 127
