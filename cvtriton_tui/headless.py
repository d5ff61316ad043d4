"""Headless runs: the same core pipeline the wizard drives, printed as lines or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cvtriton_core.errors import UserError
from cvtriton_core.event_text import describe_event
from cvtriton_core.events import Event, LogLine, Progress, StateChanged, StepFailed, StepFinished, StepStarted
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.settings import Settings
from cvtriton_core.steps.registry import RunOptions, build_steps


def _print_human(event: Event) -> None:
    if isinstance(event, StepStarted):
        line = f"==> {event.title}"
    elif isinstance(event, Progress):
        pct = f"{event.fraction * 100:5.1f}% " if event.fraction is not None else ""
        eta = f" (ETA {event.eta_s:.0f}s)" if event.eta_s is not None else ""
        line = f"    {pct}{event.message}{eta}"
    elif isinstance(event, LogLine):
        line = f"    [{event.source or event.step}] {event.line}"
    elif isinstance(event, StepFinished):
        line = f"[ok] {event.step}: {event.summary}" + (" (already done)" if event.skipped else "")
    elif isinstance(event, StepFailed):
        line = f"[failed] {event.step}: {event.message}"
    elif isinstance(event, StateChanged):
        line = "    " + describe_event(event).plain
    else:
        return
    print(line, file=sys.stderr, flush=True)


async def _drive(steps: list, run: RunContext, *, json_events: bool, quiet_logs: bool = False) -> tuple[int, list[Event]]:
    from cvtriton_tui.cli import print_json

    finished: list[Event] = []
    code = 0
    async for event in run_steps(steps, run):
        if json_events:
            print_json(event.to_dict())
        elif not (quiet_logs and isinstance(event, LogLine)):
            _print_human(event)
        if isinstance(event, StepFailed):
            code = event.exit_code
        if isinstance(event, StepFinished):
            finished.append(event)
    return code, finished


async def run_local(args: argparse.Namespace, workdir: Path) -> int:
    """import -> repository -> local Triton -> test -> stop; ``--json`` prints one result object."""
    from cvtriton_core.steps.local_target import TestResult
    from cvtriton_tui.cli import print_json

    model, image = args.model, args.image
    for path, flag in ((model, "--model"), (image, "--image")):
        if path is not None and not Path(path).exists():
            raise UserError(f"{flag} {path} does not exist", f"give an existing file for {flag}")
    if model is None:
        from cvtriton_triton.sample_models import SAMPLE_IMAGES_DIRNAME, build_sample_export

        sample_dir = workdir / "sample"
        model = build_sample_export(sample_dir)
        if image is None:
            image = sorted((sample_dir / SAMPLE_IMAGES_DIRNAME).glob("*.jpg"))[0]
        print(f"No --model given: using the sample colour classifier {model}", file=sys.stderr)
    if image is None:
        raise UserError("no test image", "pass --image PATH (any JPEG or PNG)")
    settings = Settings.load(args.env_file)
    settings.require_valid("MODEL_NAME", "MODEL_VERSION")
    run = RunContext.create(settings, workdir / "local")
    options = RunOptions(model=Path(model), image=Path(image), requests=args.requests)
    steps = build_steps(["import", "repository", "serve-local", "test"], options)
    code, finished = await _drive(steps, run, json_events=False, quiet_logs=args.json)
    if code:
        return code
    result = next(e.result for e in finished if isinstance(e.result, TestResult))
    if args.json:
        print_json(result.to_json())
    else:
        print(f"{result.model} ({result.task}) on {result.image.name}: {result.latency_ms:.1f} ms median")
        for p in result.predictions[:10]:
            box = f"  box l={p.box.left:.3f} t={p.box.top:.3f} w={p.box.width:.3f} h={p.box.height:.3f}" if p.box else ""
            print(f"  {p.label:<20} {p.probability:7.4f}{box}")
    return 0


async def run_pipeline(args: argparse.Namespace, workdir: Path) -> int:
    names = [n.strip() for n in args.steps.split(",") if n.strip()]
    settings = Settings.load(args.env_file, required=True)
    from cvtriton_tui.cli_azureml import options_from

    options = RunOptions(model=args.model, image=args.image, images=args.images, domain=args.domain,
                         requests=args.requests, azure=options_from(args))
    steps = build_steps(names, options)
    run = RunContext.create(settings, workdir)
    code, _ = await _drive(steps, run, json_events=args.json)
    return code
