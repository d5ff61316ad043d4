"""``cvtriton-tui`` entry point: no sub-command opens the wizard; ``local`` and ``run`` are headless.

Headless commands print events (human lines on stderr, or JSON) and exit 0 on success, 1 when a step failed,
2 for bad input (refused before anything is written or started), 130 after Ctrl+C and 143 after SIGTERM —
always with one line naming the cause and the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Sequence


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 up")
    return int(text)


def _positive_seconds(text: str) -> float:
    from cvtriton_triton.load_test import MAX_TIME_LIMIT_S

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIME_LIMIT_S:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to {MAX_TIME_LIMIT_S:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from cvtriton_core.layout import DEFAULT_WORKDIR
    from cvtriton_triton.load_test import DEFAULT_TIME_LIMIT_S

    parser = argparse.ArgumentParser(
        prog="cvtriton-tui",
        description="Custom Vision -> Triton on Azure ML, as a terminal wizard. Without a command, opens the wizard.",
    )
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="settings file (default: ./.env)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help=f"where artifacts and run state go (default: ./{DEFAULT_WORKDIR})")
    # The same options are accepted after the sub-command too (`cvtriton-tui run --env-file F ...`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", type=Path, default=argparse.SUPPRESS, help="settings file (default: ./.env)")
    common.add_argument("--workdir", type=Path, default=argparse.SUPPRESS,
                        help=f"artifacts and run state (default: ./{DEFAULT_WORKDIR})")
    common.add_argument("--verbose", action="store_true",
                        help="also print Triton's own log lines (without it: only the last ones, when a step fails)")
    # How the test step tests (both headless commands).
    testing = argparse.ArgumentParser(add_help=False)
    testing.add_argument("--requests", type=_positive_int, default=5,
                         help="timed requests of the load test: the test step's (per path), endpoint-test's "
                         "(default 5)")
    testing.add_argument("--concurrency", type=_positive_int, default=1,
                         help="requests in flight at once during the load test (test, endpoint-test; default 1)")
    testing.add_argument("--time-limit", type=_positive_seconds, default=None, metavar="SECONDS",
                         help="no timed request starts later than this after a path's load test began "
                         f"(test, endpoint-test; default {DEFAULT_TIME_LIMIT_S:g})")
    testing.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=None,
                         help="write and test the image ensemble (image bytes in, Custom Vision JSON out) beside the "
                         "model (default: TRITON_ENSEMBLE, true)")
    sub = parser.add_subparsers(dest="command")

    local = sub.add_parser("local", parents=[common, testing], help="serve a model in a real Triton on this machine and test it (no Azure)")
    local.add_argument("--model", type=Path, help="export zip, folder with model.onnx + labels.txt, or .onnx "
                       "(default: the generated sample colour classifier)")
    local.add_argument("--image", type=Path, help="test image (default: a sample image with the sample model; with "
                       "your --model and no --image, one smoke request with a generated image)")
    local.add_argument("--json", action="store_true", help="print exactly one JSON object with the result on stdout")
    local.add_argument("--container", action="store_true", help="build the Triton image and test it in a container "
                       "(package -> build -> run-local -> test; needs Docker, no registry)")
    local.add_argument("--base-image", metavar="IMAGE", help="with --container: build FROM this image "
                       "(default: TRITON_BASE_IMAGE, else the pinned official Triton image)")

    from cvtriton_core.steps.registry import STEP_NAMES

    run = sub.add_parser("run", parents=[common, testing], help="run pipeline steps headless (CI)")
    run.add_argument("--steps", required=True, help="comma-separated, in order; known: " + ",".join(STEP_NAMES))
    run.add_argument("--images", type=Path, help="image folder for a new project (upload step)")
    run.add_argument("--domain", help="domain (id or name) for a new project (default: VISION_PROJECT_DOMAIN, "
                     "else the task's compact domain)")
    run.add_argument("--model", type=Path, help="model for the import step (default: the export step's download)")
    run.add_argument("--image", type=Path, help="test image for the test step (without it: one smoke request with "
                     "a generated image)")
    run.add_argument("--base-image", metavar="IMAGE", help="package step: build FROM this image (default: TRITON_BASE_IMAGE)")
    run.add_argument("--json", action="store_true", help="one JSON object per event per line on stdout")
    from cvtriton_tui.cli_azureml import add_arguments as add_azureml_arguments

    add_azureml_arguments(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("local", "run"):
            return _headless(args)
        from cvtriton_core.layout import DEFAULT_WORKDIR
        from cvtriton_tui.app import run_app

        return run_app(env_file=args.env_file, workdir=args.workdir or DEFAULT_WORKDIR)
    except KeyboardInterrupt:
        print("cvtriton-tui: interrupted — run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # the last guard: one line, never a traceback
        from cvtriton_core.errors import UserError
        from cvtriton_core.redact import redact

        if isinstance(exc, UserError):
            print(f"cvtriton-tui: {redact(exc.one_line())}", file=sys.stderr)
            return exc.exit_code
        if isinstance(exc, OSError) and exc.filename:   # a path given on the command line (--workdir...)
            print(f"cvtriton-tui: cannot use {redact(str(exc.filename))} ({exc.strerror or type(exc).__name__}) "
                  "— check the path, or pass a writable --workdir", file=sys.stderr)
            return 2
        first = (redact(str(exc)).strip().splitlines() or [""])[0][:300]
        print(f"cvtriton-tui: unexpected {type(exc).__name__}: {first} — please report this", file=sys.stderr)
        return 1


def _headless(args: argparse.Namespace) -> int:
    from cvtriton_core.layout import DEFAULT_WORKDIR
    from cvtriton_tui.headless import TERMINATED_EXIT, Terminated, run_local, run_pipeline, until_terminated

    workdir = args.workdir or DEFAULT_WORKDIR
    work = run_local if args.command == "local" else run_pipeline
    try:
        return asyncio.run(until_terminated(work(args, workdir)))
    except Terminated:
        print("cvtriton-tui: terminated (SIGTERM) — stopped cleanly; run the same command again to resume",
              file=sys.stderr)
        return TERMINATED_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
