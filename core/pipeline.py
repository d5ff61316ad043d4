"""Runs an ordered list of async steps and yields their events as an async iterator.

A step is any object with ``name``, ``title`` and ``async run(ctx) -> result``. It reports through its
:class:`StepContext` (progress, log lines) and raises :class:`UserError` for problems the user can fix.
The pipeline turns that into ``StepStarted`` / ``Progress`` / ``LogLine`` / ``StepFinished`` / ``StepFailed``
events, stops at the first failure, and closes every resource the steps opened (``ctx.resources``) whether
the run finished, failed or was cancelled. Cancelling the consumer (or calling ``aclose``) cancels the
running step cleanly.

Before the first step, every step's optional ``check(settings)`` runs (:func:`preflight`: cheap, synchronous,
it reads its inputs and writes nothing), so bad input is refused before anything is written or started; then
the run takes its locks (:mod:`cvtriton_core.run_lock`), held until it ends. When a step starts, fails or is
cancelled, the results it and every later step left in the run state are dropped
(:data:`cvtriton_core.steps.registry.RESULTS`), so a later step never uses a result of an older model.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol, Sequence, TypeVar

from cvtriton_core.errors import UserError
from cvtriton_core.events import Event, LogLine, Progress, StateChanged, StepFailed, StepFinished, StepStarted
from cvtriton_core.redact import redact
from cvtriton_core.run_lock import RunLock, env_file_lock, workdir_lock
from cvtriton_core.run_state import RunState
from cvtriton_core.settings import Settings
from cvtriton_core.steps.registry import stale_results

T = TypeVar("T")
_DONE = object()


class Step(Protocol):
    """Optionally also ``check(settings) -> None`` (raise ``UserError`` for bad input; see ``preflight``) and
    ``locks_env_file = True`` when the step acts on the settings file's Custom Vision project."""

    name: str
    title: str

    async def run(self, ctx: "StepContext") -> Any: ...


def preflight(steps: Sequence[Step], settings: Settings) -> None:
    """Run every step's ``check``; the first ``UserError`` is raised with ``.step`` naming its step."""
    for step in steps:
        check = getattr(step, "check", None)
        if check is None:
            continue
        try:
            check(settings)
        except UserError as exc:
            exc.step = step.name
            raise


@dataclass
class RunContext:
    """What every step of a run shares: settings, the work folder, the run state and open resources."""

    settings: Settings
    workdir: Path
    state: RunState
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    shared: dict[str, Any] = field(default_factory=dict)   # live objects between steps (a running server)
    locks: list[RunLock] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings, workdir: Path) -> "RunContext":
        workdir = Path(workdir).resolve()   # state and tools (tritonserver, docker) get absolute paths
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, workdir=workdir, state=RunState.load(workdir))

    def acquire_locks(self, steps: Sequence[Step]) -> None:
        """Hold the work folder — and the settings file, when a step acts on its Custom Vision project — for
        this run, or raise ``UserError`` naming the run that holds it. The run state is read again under the
        lock. ``run_steps`` calls this (and releases the locks at the end); calling it first is allowed."""
        if self.locks:
            return
        wanted = [workdir_lock(self.workdir)]
        if self.settings.path is not None and any(getattr(s, "locks_env_file", False) for s in steps):
            wanted.append(env_file_lock(self.settings.path))
        for lock in wanted:
            try:
                lock.acquire()
            except BaseException:
                self.release_locks()
                raise
            self.locks.append(lock)
        self.state = RunState.load(self.workdir)

    def release_locks(self) -> None:
        while self.locks:
            self.locks.pop().release()

    def drop_results(self, keys: Sequence[str]) -> None:
        """Forget results later steps would read (run-state values and shared objects)."""
        self.state.drop(*keys)
        for key in keys:
            self.shared.pop(key, None)


class StepContext:
    """Handed to a step's ``run``: emit progress and logs, run blocking code off the event loop."""

    def __init__(self, step: str, run: RunContext, emit: Callable[[Event], None]) -> None:
        self.step = step
        self.run = run
        self._emit = emit
        self.started = time.monotonic()

    @property
    def settings(self) -> Settings:
        return self.run.settings

    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def workdir(self) -> Path:
        return self.run.workdir

    def progress(self, message: str = "", *, fraction: float | None = None, done: int | None = None,
                 total: int | None = None, can_replace: bool = True) -> None:
        if fraction is None and done is not None and total:
            fraction = done / total
        eta = None
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            elapsed = time.monotonic() - self.started
            if 0.02 < fraction < 1.0 and elapsed > 0.5:
                eta = elapsed * (1.0 - fraction) / fraction
        self._emit(Progress(step=self.step, message=redact(message), fraction=fraction, done=done,
                            total=total, eta_s=eta, can_replace=can_replace))

    def log(self, line: str, *, source: str = "", level: str = "info") -> None:
        self._emit(LogLine(step=self.step, line=redact(line.rstrip("\n")), source=source, level=level))

    def state_changed(self, resource: str, name: str, state: str, previous: str | None = None,
                      detail: str = "") -> None:
        """A followed cloud resource (endpoint, deployment) changed state: a typed event panes can show live."""
        self._emit(StateChanged(step=self.step, resource=resource, name=name, state=state, previous=previous,
                                detail=redact(detail)))

    def emit(self, event: Event) -> None:
        """Emit a typed event with no free text of its own (``LayerProgress``); thread-safe like ``log``."""
        self._emit(event)

    def logger(self, source: str) -> Callable[[str], None]:
        """A plain callback for adapters that report line by line (thread-safe: see Pipeline)."""
        return functools.partial(self.log, source=source)

    async def blocking(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK or I/O call in a worker thread so the UI never freezes."""
        return await asyncio.to_thread(fn, *args, **kwargs)


async def run_steps(steps: Sequence[Step], run: RunContext, *, checked: bool = False) -> AsyncIterator[Event]:
    """Run ``steps`` in order; yield every event. Stops after the first failed step.

    A failed check or a held lock ends the run at once with one ``StepFailed`` (nothing written, nothing
    started). ``checked=True``: the caller already ran :func:`preflight` with these steps and settings."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def emit(event: Event) -> None:
        # Steps may report from worker threads (SDK callbacks): hop onto the loop thread.
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            queue.put_nowait(event)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, event)

    stopping = False    # the consumer went away (cancelled): no further step may start

    async def drive() -> None:
        try:
            if steps and _prepare(steps, run, checked, emit):
                try:
                    async with run.resources:
                        for step in steps:
                            if stopping:   # a cancellation some library swallowed must still stop the run
                                raise asyncio.CancelledError
                            if not await _run_one(step, run, emit):
                                break
                finally:
                    run.release_locks()
        finally:
            queue.put_nowait(_DONE)

    task = asyncio.create_task(drive(), name="cvtriton-pipeline")
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            yield item
        await task
    finally:
        if not task.done():
            stopping = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _prepare(steps: Sequence[Step], run: RunContext, checked: bool, emit: Callable[[Event], None]) -> bool:
    """Checks and locks before the first step; False (after one StepFailed) when the run must not start."""
    try:
        if not checked:
            try:
                preflight(steps, run.settings)
            except UserError as exc:
                _forget_replaced_results(run, steps, getattr(exc, "step", None))
                raise
        run.acquire_locks(steps)
        return True
    except UserError as exc:
        emit(StepFailed(step=getattr(exc, "step", None) or steps[0].name, message=redact(exc.one_line()),
                        exit_code=exc.exit_code, details=redact(_details(exc))))
    except OSError as exc:      # the work folder cannot hold a lock file (read-only, gone...)
        emit(StepFailed(step=steps[0].name, exit_code=2,
                        message=redact(f"cannot use the work folder {run.workdir} ({exc.strerror or exc}) — "
                                       "pass a writable --workdir")))
    return False


def _forget_replaced_results(run: RunContext, steps: Sequence[Step], refused: str | None) -> None:
    """A step refused by its check was meant to replace its results (a new model for the import step): the
    old ones, and what later steps made from them, are no longer what the user works with. Dropped under the
    run's lock; when another run holds it, that run owns the state and nothing is touched."""
    if refused is None:
        return
    try:
        run.acquire_locks(steps)
    except (UserError, OSError):
        return
    try:
        run.drop_results(stale_results(refused))
    finally:
        run.release_locks()


async def _run_one(step: Step, run: RunContext, emit: Callable[[Event], None]) -> bool:
    ctx = StepContext(step.name, run, emit)
    emit(StepStarted(step=step.name, title=step.title))
    stale = stale_results(step.name)
    run.drop_results(stale)
    run.state.mark(step.name, "running")
    try:
        result = await step.run(ctx)
    except asyncio.CancelledError:
        run.drop_results(stale)
        run.state.mark(step.name, "cancelled")
        emit(StepFailed(step=step.name, message=f"{step.title} cancelled — run it again to resume", cancelled=True))
        raise
    except UserError as exc:
        run.drop_results(stale)
        message = redact(exc.one_line())
        run.state.mark(step.name, "failed", message)
        emit(StepFailed(step=step.name, message=message, exit_code=exc.exit_code, details=redact(_details(exc))))
        return False
    except Exception as exc:  # an unexpected failure: still one line on screen, details kept for the log
        run.drop_results(stale)
        message = redact(f"{step.title} failed unexpectedly: {type(exc).__name__}: {_first_line(exc)} "
                         "— see the log for details")
        run.state.mark(step.name, "failed", message)
        emit(StepFailed(step=step.name, message=message, details=redact(_details(exc))))
        return False
    summary = redact(getattr(result, "summary", "") if result is not None else "")
    skipped = bool(getattr(result, "skipped", False))
    run.state.mark(step.name, "done", summary)
    emit(StepFinished(step=step.name, summary=summary, elapsed_s=time.monotonic() - ctx.started,
                      result=result, skipped=skipped))
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "(no message)"


def _details(exc: BaseException) -> str:
    """An expected error (``UserError``) is explained by its line: only what it carries beyond it (a server's
    last log lines), never a traceback. An unexpected one keeps its traceback, for a bug report."""
    if isinstance(exc, UserError):
        return exc.details[-8000:]
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
