"""Azure ML: time from an export to the first served request, no-code vs container mode, both against the offline
Azure in the same run (the Resource Manager emulator, Azurite behind the blob proxy, the ACR stand-in, the real
Docker Engine).

* container: import → repository → package → build → registry-login → push → deploy → endpoint-test (1 request)
* no-code:   import → repository → deploy (upload + triton_model asset) → endpoint-test (1 request)

Both start from a Custom Vision–sized export (a classifier padded to ~6 MB) with new weights each round, the
image ensemble off (a no-code deployment cannot run it) and the stand-in Triton base already on this machine,
so the container figure is a model-only rebuild and a local-registry push/pull — the best case for that mode.
In Azure the difference is dominated by the image build and pull (an NGC Triton base is ~15 GB, pushed once per
registry and pulled by every new instance), which no emulator here reproduces.

Run: ``DOCKER_HOST=... .venv/bin/python bench/no_code.py [--rounds 2]`` (or under ``scripts/image-services.sh``);
results also go to ``bench/results/no_code.json``. Goal: no-code / container <= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cvtriton_core.events import StepFailed
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.registry import RunOptions, build_steps
from cvtriton_standins.azure_world import AzureWorld
from cvtriton_standins.triton_base_image import ensure_base_image, pillow_wheels
from cvtriton_triton.sample_models import build_sample_export, sample_images

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_build import padded_model  # noqa: E402  (the same ~6 MB export as the image benchmark)

GOAL = 0.8
RESULTS = Path(__file__).resolve().parent / "results" / "no_code.json"
STEPS = {
    "container": ["import", "repository", "package", "build", "registry-login", "push", "deploy", "endpoint-test"],
    "no-code": ["import", "repository", "deploy", "endpoint-test"],
}


async def export_to_first_request(mode: str, world: AzureWorld, folder: Path, base: str, wheels: Path,
                                  image: Path, seed: int) -> float:
    model = padded_model(folder / "export" / "model.onnx", seed)
    values = {**world.settings(), "MODEL_NAME": f"bench-{seed}", "TRITON_ENSEMBLE": "false",
              "DEPLOYMENT_MODE": mode, "TRITON_BASE_IMAGE": base, "IMAGE_PIP_WHEELS": str(wheels),
              "ENDPOINT_NAME": f"ep-bench-{secrets.token_hex(3)}"}
    options = RunOptions(model=model.parent, image=image, requests=1, azure=AzureOptions(poll_s=0.2))
    steps = build_steps(STEPS[mode], options)
    run = RunContext.create(Settings(values), folder / "work")
    started = time.perf_counter()
    async for event in run_steps(steps, run):
        if isinstance(event, StepFailed):
            raise SystemExit(f"{mode}: step {event.step} failed: {event.message}")
    elapsed = time.perf_counter() - started
    teardown = build_steps(["delete"], RunOptions(azure=AzureOptions(poll_s=0.2)))
    async for event in run_steps(teardown, RunContext.create(Settings(values), folder / "work")):
        if isinstance(event, StepFailed):
            raise SystemExit(f"{mode}: delete failed: {event.message}")
    return elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cache = Path(".pytest_cache/d/cvtriton-standin")
    base = ensure_base_image(cache, log=lambda line: print(f"[standin] {line}"))
    wheels = pillow_wheels(cache)
    times: dict[str, list[float]] = {mode: [] for mode in STEPS}
    with tempfile.TemporaryDirectory(prefix="cvtriton-bench-nocode-") as tmp, \
            AzureWorld(Path(tmp) / "azure", time_scale=0.05) as world:
        world.arm.triton_image = base
        os.environ.update(world.env())
        build_sample_export(Path(tmp) / "sample")
        image = sample_images(Path(tmp) / "sample")[0]
        for round_ in range(args.rounds):
            for mode in (STEPS if round_ % 2 == 0 else reversed(list(STEPS))):
                seconds = await export_to_first_request(mode, world, Path(tmp) / f"{mode}-{round_}", base, wheels,
                                                        image, seed=100 + round_ * 10 + len(mode))
                times[mode].append(seconds)
                print(f"round {round_ + 1}: {mode:<9} export -> first served request {seconds:6.1f} s", flush=True)
    median = {mode: statistics.median(values) for mode, values in times.items()}
    ratio = median["no-code"] / median["container"]
    verdict = "meets" if ratio <= GOAL else "misses"
    print(f"no-code / container = {ratio:.2f} (median of {args.rounds}: {median['no-code']:.1f} s vs "
          f"{median['container']:.1f} s) — {verdict} the goal <= {GOAL}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds": times, "median_s": median, "ratio": ratio, "goal": GOAL}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
