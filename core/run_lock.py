"""One run at a time per work folder and per settings file.

Two runs on the same work folder would interleave their ``run-state.json`` writes and fight over the model
repository and the export; two runs on the same ``.env`` would both create the Custom Vision project (two
projects of one name, after which every run without ``VISION_PROJECT_ID`` is refused) and both write IDs back.
So a run holds an exclusive ``flock`` on ``<workdir>/.cvtriton.lock`` and, when its steps act on the settings
file's Custom Vision project, on ``.<env name>.cvtriton.lock`` beside that file. The second run is refused
with one line naming the holder. The kernel drops a flock when its process dies, even on SIGKILL, so a crashed
run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from cvtriton_core.errors import UserError

WORKDIR_LOCK = ".cvtriton.lock"


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``path``; ``what`` names the protected thing in the refusal."""

    def __init__(self, path: Path, what: str, fix: str) -> None:
        self.path, self.what, self.fix = Path(path), what, fix
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            by = f" (pid {holder})" if holder else ""
            raise UserError(f"another cvtriton-tui run{by} is using {self.what}", self.fix) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)   # closing the only descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:   # a forgotten lock must not outlive its run inside a long-lived process
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def workdir_lock(workdir: Path) -> RunLock:
    return RunLock(Path(workdir) / WORKDIR_LOCK, f"the work folder {workdir}",
                   "wait for it to finish, or pass another --workdir")


def env_file_lock(env_file: Path) -> RunLock:
    """The lock beside the settings file; in the temporary folder when that folder is read-only (then nothing
    can be written back into the file either, but two runs could still create the same project)."""
    env_file = Path(env_file).resolve()
    what, fix = f"the settings file {env_file}", "wait for it to finish, or use another settings file"
    beside = env_file.with_name(f".{env_file.name}.cvtriton.lock")
    if os.access(beside.parent, os.W_OK):
        return RunLock(beside, what, fix)
    digest = hashlib.sha256(str(env_file).encode()).hexdigest()[:16]
    return RunLock(Path(tempfile.gettempdir()) / f"cvtriton-{os.getuid()}-env-{digest}.lock", what, fix)
