"""Headless runs: the same core pipeline the wizard drives, printed as lines (stderr) or JSON (stdout).

Every line comes from ``cvtriton_core.event_text.describe_event``, the formatter the wizard's logs use.
Triton's own log lines are shown only with ``--verbose``, or, when a step fails, its last lines under the
failure; bad input is refused (one line, exit 2) before anything is written or started.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Sequence, TypeVar

from cvtriton_core.errors import UserError
from cvtriton_core.event_text import describe_event
from cvtriton_core.events import Event, LogLine, StepFailed, StepFinished, StepStarted
from cvtriton_core.layout import local_run_dir, sample_dir
from cvtriton_core.pipeline import RunContext, preflight, run_steps
from cvtriton_core.redact import redact
from cvtriton_core.settings import Settings
from cvtriton_core.steps.registry import RunOptions, build_steps
from cvtriton_tui.cli_azureml import options_from

T = TypeVar("T")
LOCAL_STEPS = ["import", "repository", "serve-local", "test"]
CONTAINER_SERVE_STEPS = ["package", "build", "run-local"]   # local --container: in place of serve-local
SERVER_LOG_SOURCE = "triton"     # LocalTritonServer's lines, as ServeLocal logs them
FAILURE_LOG_LINES = 15           # Triton lines shown under a failed step (without --verbose)
TERMINATED_EXIT = 128 + signal.SIGTERM


class Terminated(Exception):
    """SIGTERM arrived; the run was cancelled and cleaned up like after Ctrl+C."""


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def say(line: str) -> None:
    """One line for the user on stderr (stdout is kept for results and JSON)."""
    print(line, file=sys.stderr, flush=True)


class HumanPrinter:
    """Events as lines on stderr. ``logs=False`` drops every log line (``local --json`` keeps stderr short)."""

    def __init__(self, *, verbose: bool = False, logs: bool = True) -> None:
        self.verbose, self.logs = verbose, logs
        self._held: collections.deque[str] = collections.deque(maxlen=FAILURE_LOG_LINES)

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self._held.clear()
        if isinstance(event, LogLine):
            if not self.logs:
                return
            if event.source == SERVER_LOG_SOURCE and not self.verbose:
                text = describe_event(event)
                if text is not None:
                    self._held.append(text.plain)
                return
        text = describe_event(event)
        if text is not None:
            say(text.plain)
        if isinstance(event, StepFailed) and not event.cancelled and self._held:
            say(f"    last {len(self._held)} lines of the Triton log (all of them with --verbose):")
            for line in self._held:
                say(f"      {line}")


class JsonPrinter:
    """One JSON object per event on stdout; a failure also gets its one line on stderr (the exit-status
    contract holds in both modes)."""

    def __call__(self, event: Event) -> None:
        print_json(event.to_dict())
        if isinstance(event, StepFailed):
            say(f"cvtriton-tui: {event.message}")


async def _drive(steps: list, run: RunContext, printer: Any) -> tuple[int, list[StepFinished]]:
    finished: list[StepFinished] = []
    code = 0
    async for event in run_steps(steps, run, checked=True):
        printer(event)
        if isinstance(event, StepFailed):
            code = event.exit_code
        if isinstance(event, StepFinished):
            finished.append(event)
    return code, finished


def _check(steps: Sequence[Any], settings: Settings, *, json_events: bool) -> None:
    """Preflight; in JSON mode a refused check is also one ``failed`` event on stdout."""
    try:
        preflight(steps, settings)
    except UserError as exc:
        if json_events:
            print_json(StepFailed(step=getattr(exc, "step", ""), message=redact(exc.one_line()),
                                  exit_code=exc.exit_code, details=redact(exc.details)).to_dict())
        raise


async def run_local(args: argparse.Namespace, workdir: Path) -> int:
    """import -> repository -> local Triton -> test -> stop; ``--json`` prints one result object.

    The model is checked first (a legacy or broken export is named even without ``--image``); without
    ``--image`` a user's model gets one smoke request with a generated picture of its input size."""
    from cvtriton_core.steps.local_target import TestResult

    model, image = args.model, args.image
    for path, flag in ((model, "--model"), (image, "--image")):
        if path is not None and not Path(path).exists():
            raise UserError(f"{flag} {path} does not exist", f"give an existing file for {flag}")
    if args.base_image and not args.container:
        raise UserError("--base-image is used only with --container", "add --container, or drop --base-image")
    if args.base_image:
        from cvtriton_triton.image_context import check_image_reference

        problem = check_image_reference(args.base_image)
        if problem:
            raise UserError(f"--base-image {args.base_image!r} is not a valid image reference", f"use {problem}")
    settings = Settings.load(args.env_file)
    if args.container:
        settings.require_valid("TRITON_BASE_IMAGE")
    names = [*LOCAL_STEPS[:2], *CONTAINER_SERVE_STEPS, LOCAL_STEPS[-1]] if args.container else LOCAL_STEPS

    def options(model: Path | None, image: Path | None) -> RunOptions:
        return RunOptions(model=model, image=image, requests=args.requests, concurrency=args.concurrency,
                          time_limit_s=args.time_limit, ensemble=args.ensemble, base_image=args.base_image)

    steps = build_steps(names, options(model, image))
    preflight(steps, settings)    # the model first, then the settings, then the image
    run = RunContext.create(settings, local_run_dir(workdir))
    run.acquire_locks(steps)      # before the sample is (re)written: another run may be reading it
    try:
        if model is None:
            from cvtriton_triton.sample_models import build_sample_export, sample_images

            model = build_sample_export(sample_dir(workdir))
            image = image or sample_images(sample_dir(workdir))[0]
            say(f"No --model given: using the sample colour classifier {model}")
            steps = build_steps(names, options(Path(model), Path(image)))
        printer = HumanPrinter(verbose=args.verbose, logs=not args.json)
        code, finished = await _drive(steps, run, printer)
    finally:
        run.release_locks()
    if code:
        return code
    result = next(e.result for e in finished if isinstance(e.result, TestResult))
    if args.json:
        built = next((e.result for e in finished if e.step == "build"), None)
        print_json({**result.to_json(), "image": built.image_id} if built is not None else result.to_json())
    elif result.smoke:
        print(f"{result.summary}.")
        print("Pass --image PATH for real predictions.")
    else:
        print(f"{result.model} ({result.task}) on {result.image.name}: {result.latency_ms:.1f} ms median")
        for p in result.predictions[:10]:
            box = f"  box l={p.box.left:.3f} t={p.box.top:.3f} w={p.box.width:.3f} h={p.box.height:.3f}" if p.box else ""
            print(f"  {p.label:<20} {p.probability:7.4f}{box}")
    return 0


async def run_pipeline(args: argparse.Namespace, workdir: Path) -> int:
    names = [n.strip() for n in args.steps.split(",") if n.strip()]
    settings = Settings.load(args.env_file, required=True)
    options = RunOptions(model=args.model, image=args.image, images=args.images, domain=args.domain,
                         requests=args.requests, concurrency=args.concurrency, time_limit_s=args.time_limit,
                         ensemble=args.ensemble, base_image=args.base_image, azure=options_from(args))
    steps = build_steps(names, options)
    _check(steps, settings, json_events=args.json)
    run = RunContext.create(settings, workdir)
    try:
        run.acquire_locks(steps)
    except UserError as exc:
        if args.json:
            print_json(StepFailed(step=steps[0].name, message=redact(exc.one_line()), exit_code=exc.exit_code).to_dict())
        raise
    try:
        printer = JsonPrinter() if args.json else HumanPrinter(verbose=args.verbose)
        code, _ = await _drive(steps, run, printer)
    finally:
        run.release_locks()
    return code


async def until_terminated(work: Awaitable[T]) -> T:
    """Await ``work``; SIGTERM cancels it like Ctrl+C does (the pipeline stops Triton and closes what it
    opened before the cancellation reaches here), then raises :class:`Terminated`. A second SIGTERM while
    that cleanup runs is ignored."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        if not terminated and me is not None:
            terminated = True
            me.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await work
    except asyncio.CancelledError:
        if not terminated:
            raise
        if hasattr(me, "uncancel"):     # Python 3.11+: the cancellation was ours and is handled
            me.uncancel()
        raise Terminated() from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
