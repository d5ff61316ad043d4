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
    if args.base_image and not args.container:
        raise UserError("--base-image is used only with --container", "add --container, or drop --base-image")
    if args.base_image:
        from cvtriton_triton.image_context import check_image_reference

        problem = check_image_reference(args.base_image)
        if problem:
            raise UserError(f"--base-image {args.base_image!r} is not a valid image reference", f"use {problem}")
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
    if args.container:
        settings.require_valid("TRITON_BASE_IMAGE")
    run = RunContext.create(settings, workdir / "local")
    options = RunOptions(model=Path(model), image=Path(image), requests=args.requests, base_image=args.base_image)
    serve = ["package", "build", "run-local"] if args.container else ["serve-local"]
    steps = build_steps(["import", "repository", *serve, "test"], options)
    code, finished = await _drive(steps, run, json_events=False, quiet_logs=args.json)
    if code:
        return code
    result = next(e.result for e in finished if isinstance(e.result, TestResult))
    if args.json:
        built = next((e.result for e in finished if e.step == "build"), None)
        print_json({**result.to_json(), "image": built.image_id} if built is not None else result.to_json())
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
                         base_image=args.base_image, requests=args.requests, azure=options_from(args))
    steps = build_steps(names, options)
    run = RunContext.create(settings, workdir)
    code, _ = await _drive(steps, run, json_events=args.json)
    return code
