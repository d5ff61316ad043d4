"""A real Triton Inference Server (2.51, from the ``nvidia-pytriton`` wheel) run as a child process.

Why it is built this way:

* The wheel ships only the python backend, so ``start()`` assembles a backend directory holding the
  python backend (library, utils, the stub for *this* Python minor version) plus our Python-based
  ``onnxruntime`` backend, which serves the same ``config.pbtxt``/``model.onnx`` as the official image.
* The stub finds site-packages through ``python3`` on PATH, so the venv's ``bin`` goes first on PATH.
* The server runs in its own process group (its python-backend stubs too), so ``stop()`` can make
  sure nothing survives, and it gets a unique shared-memory prefix so that ``stop()`` removes only
  this server's ``/dev/shm`` regions even after a SIGKILL.
* ``start()`` returns once the HTTP endpoint answers ``/v2/health/live``: Triton opens its endpoints
  only after the repository's initial load, and exits if any model fails to load, so start either
  succeeds or raises a ``ServerError`` that quotes Triton's own load error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from .backends import TritonInstall, assemble_backend_directory, find_tritonserver
from .errors import ServerError

# On SIGTERM Triton waits up to --exit-timeout-secs for in-flight requests, then again for models to unload,
# polling once a second. The python-backend stubs take ~2.5 s to unload even a tiny model, so the default wait
# made every stop last ~3 s. We stop the local server only when its requests are done (or cancelled), and its
# models hold nothing to flush, so 0: Triton exits at once, the stubs notice and exit (stop() takes ~0.15 s),
# and anything still alive in the group is killed below.
_EXIT_TIMEOUT_S = 0
_STOP_GRACE_S = 5.0         # SIGTERM -> SIGKILL
_DETAIL_LINES = 40          # the server's last log lines carried by a ServerError (details, not the one line)
_LEFTOVER_GRACE_S = 3.0     # stubs notice their parent is gone and exit by themselves
_PORT_ATTEMPTS = 3
_FAILED_LOAD = re.compile(r"failed to load '([^']+)' version \d+: (.*)")
_FAILED_SERVICE = re.compile(r"failed to start \w+ service: (.*)")


def _clean_log_text(text: str) -> str:
    """Triton quotes messages and escapes newlines; keep the message, drop the python traceback."""
    text = text.split("\\n")[0].strip().rstrip('"').strip()
    return " ".join(text.split())


def triton_failure_reason(lines: list[str]) -> str | None:
    """Why a ``tritonserver`` stopped, from its log: a model's load error, else a service's start error."""
    for line in lines:
        match = _FAILED_LOAD.search(line)
        if match:
            return f"model '{match.group(1)}' failed to load: {_clean_log_text(match.group(2))}"
    for line in lines:
        match = _FAILED_SERVICE.search(line)
        if match:
            return _clean_log_text(match.group(1))
    return None


async def _within(awaitable, timeout: float):
    """``asyncio.wait_for`` that never loses the caller's cancellation: on Python 3.11 ``wait_for`` swallows a
    cancel that arrives as the inner call completes (CPython gh-86296), and a stop request must never be lost
    (the run would go on to its next step). Raises ``asyncio.TimeoutError`` after ``timeout`` seconds."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())   # retrieved: no "never retrieved"
        raise asyncio.TimeoutError
    return task.result()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not dlopen between fork and exec


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """If our Python process dies without stop(), the kernel sends the server SIGTERM."""
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalTritonServer:
    """One ``tritonserver`` process serving ``repository`` on 127.0.0.1. Not reusable after stop()."""

    def __init__(self, repository: Path, *, log: Callable[[str], None] | None = None,
                 http_port: int | None = None, grpc_port: int | None = None,
                 workdir: Path | None = None) -> None:
        self.repository = Path(repository).resolve()
        self._log = log
        self._fixed_ports = (http_port, grpc_port)
        self.http_port = http_port
        self.grpc_port = grpc_port
        self._workdir = Path(workdir).resolve() if workdir is not None else None  # tritonserver needs absolute paths
        self._dir: Path | None = None
        self._shm_prefix = f"cvtriton_{os.getpid()}_{secrets.token_hex(4)}_"
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task] = []
        #: The latest log lines of the current attempt (the ``log`` callback gets every line as it comes).
        self.lines: collections.deque[str] = collections.deque(maxlen=400)
        self._stop_lock = asyncio.Lock()
        self._live = False  # HTTP endpoint answered: models loaded, SIGTERM is safe
        self._stopped = False
        self._quiet = False  # we asked it to stop: its shutdown chatter stays in ``lines``, off the log sink

    # ------------------------------------------------------------------ public
    @property
    def url(self) -> str:
        """``host:port`` for ``tritonclient.http`` (no scheme)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until its HTTP endpoint is live (models loaded), or raise."""
        if self._proc is not None:
            raise ServerError("this local Triton server was already started", "create a new LocalTritonServer")
        if not self.repository.is_dir():
            raise ServerError(f"model repository not found: {self.repository}",
                              "write the model repository first")
        install = find_tritonserver()
        try:
            base = self._workdir
            if base is not None:
                base.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="cvtriton-triton-", dir=base))
            assemble_backend_directory(self._dir / "backends", install)
            for attempt in range(_PORT_ATTEMPTS):
                self.http_port = self._fixed_ports[0] or _free_port()
                self.grpc_port = self._fixed_ports[1] or _free_port()
                await self._spawn(install)
                state = await self._wait_live(timeout)
                if state == "live":
                    self._live = True
                    return
                await self._shutdown()
                failure = self._failure_text() if state == "exited" else f"not live after {timeout:.0f} s"
                auto_ports = self._fixed_ports == (None, None)
                if "already in use" in failure and auto_ports and attempt + 1 < _PORT_ATTEMPTS:
                    self._emit("[cvtriton] port taken by another process; retrying with new ports")
                    self._proc = None
                    continue
                fix = ("choose free ports or leave them empty to pick free ones" if "already in use" in failure
                       else "fix the model repository (config.pbtxt must match model.onnx); the Triton log has details")
                raise ServerError(f"the local Triton server did not start: {failure}", fix, details=self.log_tail())
        except BaseException as exc:
            await self.stop()  # also on cancellation: never leave a half-started server behind
            if isinstance(exc, OSError):  # work folder unwritable, disk full, binary not executable...
                raise ServerError(f"the local Triton server could not be set up: {exc.strerror or exc}"
                                  f"{f' ({exc.filename})' if exc.filename else ''}",
                                  "check that the work folder is writable, the disk not full and "
                                  "nvidia-pytriton installed intact") from None
            raise

    async def wait_ready(self, model_name: str, timeout: float = 60.0) -> None:
        """Poll ``/v2/models/<name>/ready`` (health/ready may answer before a model is loaded)."""
        if self._proc is None or self._stopped:
            raise ServerError("the local Triton server is not running", "start it first")
        deadline = time.monotonic() + timeout
        path = f"/v2/models/{quote(model_name, safe='')}/ready"
        while True:
            if self._proc.returncode is not None:
                await self.stop()
                failure = self._failure_text()
                raise ServerError(f"the local Triton server exited while loading '{model_name}': {failure}",
                                  "fix the model repository; the Triton log has details", details=self.log_tail())
            status, _ = await self._http("GET", path)
            if status == 200:
                return
            if status in (400, 404) and not await self._in_repository(model_name):
                raise ServerError(f"model '{model_name}' is not in the repository {self.repository}",
                                  "use the model name of a folder in the model repository")
            if time.monotonic() > deadline:
                raise ServerError(f"model '{model_name}' was not ready after {timeout:.0f} s",
                                  "look at the Triton log; the model may be too large for this machine",
                                  details=self.log_tail())
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """SIGTERM, wait, SIGKILL as a last resort; then remove leftovers. Safe to call twice."""
        async with self._stop_lock:
            self._stopped = self._proc is not None
            try:
                await self._shutdown()
            except asyncio.CancelledError:
                self._kill_now()
                raise
            finally:
                if self._dir is not None:
                    shutil.rmtree(self._dir, ignore_errors=True)
                    self._dir = None

    async def __aenter__(self) -> "LocalTritonServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    def log_tail(self, count: int = _DETAIL_LINES) -> str:
        """The server's last ``count`` log lines of this attempt, for an error's details."""
        return "\n".join(list(self.lines)[-count:])

    # ------------------------------------------------------------- internals
    def _emit(self, line: str, *, ours: bool = False) -> None:
        self.lines.append(line)
        if self._quiet and not ours:
            return
        if self._log is not None:
            try:
                self._log(line)
            except Exception:  # a broken log sink must not stop us draining the server's pipes
                self._log = None

    async def _spawn(self, install: TritonInstall) -> None:
        env = dict(os.environ)
        libs = [sysconfig.get_config_var("LIBDIR") or "", str(install.libs), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        args = [str(install.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self._dir / 'backends'}",
                "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}", "--allow-metrics=false",
                f"--exit-timeout-secs={_EXIT_TIMEOUT_S}",
                f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}"]
        self.lines.clear()  # failure analysis looks at this attempt only; the log sink saw everything
        self._emit("[cvtriton] $ tritonserver " + " ".join(args[1:]))
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=self._dir, start_new_session=True,
            preexec_fn=_die_with_parent, limit=1 << 20)
        self._readers = [asyncio.create_task(self._pump(stream))
                         for stream in (self._proc.stdout, self._proc.stderr)]

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # over 1 MiB without a newline: asyncio has dropped it
                self._emit("[cvtriton] (an over-long log line was dropped)")
                continue
            if not raw:
                return
            self._emit(raw.decode("utf-8", "replace").rstrip())

    async def _wait_live(self, timeout: float) -> str:
        """"live" once /v2/health/live answers 200, "exited" if the server quit, else "timeout".

        Each probe races the process: a port squatted by another program may accept and never answer.
        """
        deadline = time.monotonic() + timeout
        exited = asyncio.ensure_future(self._proc.wait())
        probe: asyncio.Future | None = None
        try:
            while time.monotonic() < deadline:
                probe = asyncio.ensure_future(self._http("GET", "/v2/health/live"))
                await asyncio.wait({probe, exited}, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    return "exited"
                if probe.result()[0] == 200:
                    return "live"
                await asyncio.wait({exited}, timeout=0.1)
            return "timeout"
        finally:
            for future in (probe, exited):
                if future is not None:
                    future.cancel()

    async def _drain(self, timeout: float = 2.0) -> None:
        """Let the pipe readers catch the last lines the server wrote before it exited."""
        if self._readers:
            await asyncio.wait(self._readers, timeout=timeout)

    def _failure_text(self) -> str:
        """The server's own reason: a model's load error, else a service error, else its last error."""
        lines = list(self.lines)
        reason = triton_failure_reason(lines)
        if reason:
            return reason
        errors = [line for line in lines if line.startswith("E") or line.startswith("error")]
        tail = errors[-1] if errors else (lines[-1] if lines else "no output")
        return f"exit code {self._proc.returncode}: {_clean_log_text(tail)}"

    async def _in_repository(self, model_name: str) -> bool:
        status, body = await self._http("POST", "/v2/repository/index", b"{}")
        if status != 200:
            return True  # cannot tell: keep polling until the timeout
        try:
            return any(entry.get("name") == model_name for entry in json.loads(body))
        except (ValueError, AttributeError):
            return True

    async def _http(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """A tiny HTTP/1.1 request to our own server; (0, b"") while it is not answering."""
        try:
            reader, writer = await _within(asyncio.open_connection("127.0.0.1", self.http_port), 2.0)
        except (OSError, asyncio.TimeoutError):
            return 0, b""
        try:
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n")
            writer.write(head.encode("ascii") + body)
            await writer.drain()
            data = await _within(reader.read(), 2.0)
            status_line, _, rest = data.partition(b"\r\n")
            parts = status_line.split()
            return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), rest.partition(b"\r\n\r\n")[2]
        except (OSError, asyncio.TimeoutError):
            return 0, b""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _shutdown(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if not self._live:
                # Still loading: nothing to drain, and Triton 2.51 wedges (main process or orphaned
                # stubs) when SIGTERM lands while python-backend instances initialize.
                self._signal_group(signal.SIGKILL)
            else:
                self._quiet = True   # "Waiting for in-flight requests", "Timeout 0: Found 1 live models"...
                try:
                    proc.send_signal(signal.SIGTERM)
                    await _within(proc.wait(), _STOP_GRACE_S)
                except asyncio.TimeoutError:
                    self._emit("[cvtriton] server ignored SIGTERM; killing it", ours=True)
                    self._signal_group(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            await proc.wait()
        if proc is not None:
            deadline = time.monotonic() + _LEFTOVER_GRACE_S
            while _group_members(proc.pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self._signal_group(signal.SIGKILL)
            await self._drain()
            for task in self._readers:
                task.cancel()
        self._remove_shm()

    def _signal_group(self, sig: int) -> None:
        if self._proc is not None and _group_members(self._proc.pid):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                pass

    def _kill_now(self) -> None:
        """Synchronous last resort (stop() was cancelled): SIGKILL the whole group, drop our shm."""
        self._signal_group(signal.SIGKILL)
        self._remove_shm()

    def _remove_shm(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for entry in shm.glob(self._shm_prefix + "*"):
                entry.unlink(missing_ok=True)
