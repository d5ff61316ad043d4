"""The Triton image's entrypoint when it serves the Custom Vision route: start ``tritonserver`` and the front
(``customvision_front``) side by side, pass SIGTERM/SIGINT on to both, and exit as soon as either exits —
so a crash of one stops the container and the platform (Azure ML's liveness probe, Docker's restart
policy) sees it, instead of a container that answers on one port and is dead on the other.

    python3 image_supervisor.py tritonserver --model-repository=/models ... :: python3 customvision_front.py ...

Commands are separated by ``::``. Exit status: that of the first command to exit (1 when it exited 0
without being asked to stop), or 0 after a requested stop in which every command exited cleanly. The
others get SIGTERM, then SIGKILL after ``--grace`` seconds. Standard library only (it runs on the official
image's system python3); as PID 1 it also reaps the orphans it inherits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

SEPARATOR = "::"
DEFAULT_GRACE_S = 30.0        # Triton waits for in-flight requests and unloads models on SIGTERM


def _say(text: str) -> None:
    sys.stderr.write(f"cvtriton-supervisor: {text}\n")
    sys.stderr.flush()


def _name(child: subprocess.Popen) -> str:
    """The program and, for an interpreter, its script: "tritonserver", "python3 /opt/.../front.py"."""
    args = list(child.args)
    return " ".join(args[:2]) if args and os.path.basename(args[0]).startswith("python") and len(args) > 1 \
        else args[0]


def _shell_status(code: int) -> int:
    """A child's status as a shell reports it: killed by signal N gives 128+N."""
    return code if code >= 0 else 128 - code


def split_commands(argv: List[str]) -> List[List[str]]:
    commands: List[List[str]] = [[]]
    for arg in argv:
        if arg == SEPARATOR:
            commands.append([])
        else:
            commands[-1].append(arg)
    if any(not command for command in commands):
        raise ValueError(f"empty command (commands are separated by '{SEPARATOR}')")
    return commands


class Supervisor:
    def __init__(self, commands: List[List[str]], grace_s: float = DEFAULT_GRACE_S) -> None:
        self.commands = commands
        self.grace_s = grace_s
        self.children: Dict[int, subprocess.Popen] = {}
        self.stopping: Optional[int] = None       # the signal that asked us to stop

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping is None:
            self.stopping = signum
            _say(f"{signal.Signals(signum).name}: stopping {len(self.children)} processes")
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for child in self.children.values():
            if child.returncode is None:
                try:
                    child.send_signal(signum)
                except ProcessLookupError:
                    pass

    def _reap(self, block: bool) -> Optional[tuple]:
        """(pid, exit status) of one exited child (or inherited orphan), else None."""
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (
            -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        child = self.children.get(pid)
        if child is not None:
            child.returncode = code
        return pid, code

    def _running(self) -> List[subprocess.Popen]:
        return [c for c in self.children.values() if c.returncode is None]

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for command in self.commands:
            try:
                child = subprocess.Popen(command)
            except OSError as exc:
                _say(f"cannot start {command[0]}: {exc.strerror or exc}")
                self._signal_all(signal.SIGTERM)
                self._wait_all(time.monotonic() + self.grace_s)
                return 127
            self.children[child.pid] = child
            _say(f"started {_name(child)} (pid {child.pid})")
        first: Optional[subprocess.Popen] = None
        while first is None:
            reaped = self._reap(block=True)
            if reaped is None:                    # no child left at all
                break
            child = self.children.get(reaped[0])
            if child is not None:
                first = child
        if first is not None and self.stopping is None:
            _say(f"{_name(first)} (pid {first.pid}) exited with status {first.returncode}: stopping the others")
        self._signal_all(signal.SIGTERM)
        self._wait_all(time.monotonic() + self.grace_s)
        if self.stopping is not None:
            failed = [c for c in self.children.values() if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
            return _shell_status(failed[0].returncode) if failed else 0
        code = first.returncode if first is not None else 1
        if code is None or code == 0:
            return 1                              # it was not asked to stop: for the platform this is a failure
        return _shell_status(code)

    def _wait_all(self, deadline: float) -> None:
        while self._running():
            if time.monotonic() >= deadline:
                for child in self._running():
                    _say(f"{_name(child)} (pid {child.pid}) did not stop in {self.grace_s:.0f} s: killing it")
                    try:
                        child.kill()
                    except ProcessLookupError:
                        pass
                while self._running() and self._reap(block=True) is not None:
                    pass
                return
            if self._reap(block=False) is None:
                time.sleep(0.05)


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    grace = DEFAULT_GRACE_S
    if args[:1] and args[0].startswith("--grace="):
        grace = float(args.pop(0).split("=", 1)[1])
    try:
        commands = split_commands(args)
    except ValueError as exc:
        _say(f"{exc}; usage: image_supervisor.py [--grace=S] CMD ARGS... :: CMD ARGS...")
        return 2
    return Supervisor(commands, grace).run()


if __name__ == "__main__":
    sys.exit(main())
