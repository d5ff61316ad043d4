"""Cold-start time of the wizard to its first paint, measured in fresh processes on a real pseudo-terminal.

Each run starts ``python -m cvtriton_tui`` (no sub-command: the wizard) in a new process attached to a pty,
reads what it draws, and stops the clock when the first frame holds the step list ("1. Settings") — the
moment a user sees the wizard. Then it sends Ctrl+Q and waits for the process to exit. The figure printed is
the median over the runs (plus min/max); the first run is reported separately, and so is the worst case of
a start with an empty bytecode cache (every module compiled from source, as right after an upgrade).

Besides the wall-clock time it reports the CPU time the process had used at its first paint (user + system,
from /proc): on a loaded machine the wall-clock ratio swings with the neighbours, the CPU-time ratio much
less.

    .venv/bin/python bench/startup.py [--runs 7] [--budget 1.0]

Exit status 1 when the median exceeds the budget (seconds), so CI can hold the line.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = b"1. Settings"
# A settings field: the wizard paints its frame and the first step's heading first and builds the Settings
# step's body (all its fields at once) right after, so the time to this marker is when that step is complete.
COMPLETE_MARKER = b"AZURE_SUBSCRIPTION_ID"
TIMEOUT_S = 20.0


# The baseline, measured in the same run: the smallest Textual app that paints the same marker, started the
# same way. The ratio wizard/baseline is what the wizard adds on top of Python + Textual themselves.
BASELINE_APP = (
    "from textual.app import App\n"
    "from textual.widgets import Footer, Header, Static\n"
    "class Bare(App):\n"
    "    BINDINGS = [('ctrl+q', 'quit', 'Quit')]\n"
    "    def compose(self):\n"
    "        yield Header()\n"
    "        yield Static('1. Settings')\n"
    "        yield Footer()\n"
    "Bare().run()\n"
)


def wizard_command(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "cvtriton_tui", "--env-file", str(workdir / ".env"), "--workdir", str(workdir / "work")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(workdir: Path, *, no_bytecode: bool = False, command: list[str] | None = None,
            complete: bool = False) -> tuple[float, float, float | None]:
    """(wall seconds, CPU seconds) from spawning the process to the first frame with the wizard's step list,
    and (``complete``) the wall seconds until the Settings step's last field is drawn."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", "TEXTUAL_ANIMATIONS": "none"}
    if no_bytecode:   # an empty bytecode cache: every module is compiled from source, as after an upgrade
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="pycache-", dir=workdir)
    os.set_blocking(master, False)
    # the pty's window size: Textual reads it at start
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(command or wizard_command(workdir), stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True, start_new_session=True)
    os.close(slave)
    seen = b""
    painted = completed = None
    try:
        while time.perf_counter() - start < TIMEOUT_S:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                seen += chunk
                if painted is None and MARKER in seen:
                    painted = time.perf_counter() - start
                    cpu = cpu_seconds(proc.pid)
                if painted is not None and (not complete or COMPLETE_MARKER in seen):
                    completed = time.perf_counter() - start if complete else None
                    break
            if proc.poll() is not None:
                break
        if painted is None:
            raise RuntimeError(f"no first paint within {TIMEOUT_S}s; output tail: {seen[-400:]!r}")
        os.write(master, b"\x11")  # Ctrl+Q
        deadline = time.perf_counter() + 10
        while proc.poll() is None and time.perf_counter() < deadline:
            select.select([master], [], [], 0.05)
            try:
                os.read(master, 65536)
            except OSError:
                pass
        return painted, cpu, completed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        os.close(master)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds the median may take (default 1.0)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cvtriton-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / ".env").write_text("MODEL_NAME=bench\n", encoding="utf-8")
        bare = [sys.executable, "-c", BASELINE_APP]
        times, baseline = [], []
        for _ in range(max(2, args.runs)):          # interleaved, so both see the same machine load
            times.append(one_run(workdir, complete=True))
            baseline.append(one_run(workdir, command=bare))
        uncached = [one_run(workdir, no_bytecode=True)[0] for _ in range(2)]
    first, rest = times[0][0], [t for t, _, _ in times[1:]]
    median, base = statistics.median(rest), statistics.median([t for t, _, _ in baseline[1:]])
    cpu, base_cpu = statistics.median([c for _, c, _ in times[1:]]), statistics.median([c for _, c, _ in baseline[1:]])
    built = statistics.median([d for _, _, d in times[1:]])
    print(f"first paint (fresh process, {len(rest)} runs): median {median * 1000:.0f} ms, "
          f"min {min(rest) * 1000:.0f} ms, max {max(rest) * 1000:.0f} ms; very first run {first * 1000:.0f} ms; "
          f"with an empty bytecode cache {max(uncached) * 1000:.0f} ms")
    print(f"baseline (bare Textual app, same harness): median {base * 1000:.0f} ms -> "
          f"wizard/baseline = {median / base:.2f}x")
    print(f"CPU time to first paint: wizard {cpu * 1000:.0f} ms, baseline {base_cpu * 1000:.0f} ms -> "
          f"{cpu / base_cpu:.2f}x")
    print(f"Settings step complete (its fields drawn): median {built * 1000:.0f} ms -> "
          f"{built / base:.2f}x the baseline's first paint")
    return 0 if median <= args.budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
