"""Runs an ordered list of async steps and yields their events as an async iterator.

A step is any object with ``name``, ``title`` and ``async run(ctx) -> result``. It reports through its
:class:`StepContext` (progress, log lines) and raises :class:`UserError` for problems the user can fix.
The pipeline turns that into ``StepStarted`` / ``Progress`` / ``LogLine`` / ``StepFinished`` / ``StepFailed``
events, stops at the first failure, and closes every resource the steps opened (``ctx.resources``) whether
the run finished, failed or was cancelled. Cancelling the consumer (or calling ``aclose``) cancels the
running step cleanly.
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
from cvtriton_core.run_state import RunState
from cvtriton_core.settings import Settings

T = TypeVar("T")
_DONE = object()


class Step(Protocol):
    name: str
    title: str

    async def run(self, ctx: "StepContext") -> Any: ...


@dataclass
class RunContext:
    """What every step of a run shares: settings, the work folder, the run state and open resources."""

    settings: Settings
    workdir: Path
    state: RunState
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    shared: dict[str, Any] = field(default_factory=dict)   # live objects between steps (a running server)

    @classmethod
    def create(cls, settings: Settings, workdir: Path) -> "RunContext":
        workdir = Path(workdir).resolve()   # state and tools (tritonserver, docker) get absolute paths
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, workdir=workdir, state=RunState.load(workdir))


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


async def run_steps(steps: Sequence[Step], run: RunContext) -> AsyncIterator[Event]:
    """Run ``steps`` in order; yield every event. Stops after the first failed step."""
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

    async def drive() -> None:
        try:
            async with run.resources:
                for step in steps:
                    if not await _run_one(step, run, emit):
                        break
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
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _run_one(step: Step, run: RunContext, emit: Callable[[Event], None]) -> bool:
    ctx = StepContext(step.name, run, emit)
    emit(StepStarted(step=step.name, title=step.title))
    run.state.mark(step.name, "running")
    try:
        result = await step.run(ctx)
    except asyncio.CancelledError:
        run.state.mark(step.name, "cancelled")
        emit(StepFailed(step=step.name, message=f"{step.title} cancelled — run it again to resume", cancelled=True))
        raise
    except UserError as exc:
        message = redact(exc.one_line())
        run.state.mark(step.name, "failed", message)
        details = getattr(exc, "details", "") or _details(exc)   # a step may attach what explains it (log lines)
        emit(StepFailed(step=step.name, message=message, exit_code=exc.exit_code, details=redact(details)))
        return False
    except Exception as exc:  # an unexpected failure: still one line on screen, details kept for the log
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
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
