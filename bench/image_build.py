"""Triton image: a model-only rebuild against a cold build, and the bytes a model-only push sends against
the image's size — both measured in the same run, on the real Docker daemon (``DOCKER_HOST``) and a real
registry on 127.0.0.1.

* cold build: a machine that has never seen the base image. The stand-in Triton base is flattened into a
  base with a layer this daemon has nowhere else, pushed to the registry and removed locally; the build
  step then pulls it (as it pulls nvcr.io's on a fresh machine) and builds.
* model-only rebuild: the same model name and version with new weights: package + build (median of 3).
* push: after the first image is pushed, each rebuilt image is pushed; only its model layer should travel.

The model is a classifier padded to ~6 MB, the size of a compact Custom Vision export.

Run: ``DOCKER_HOST=... .venv/bin/python bench/image_build.py`` (or under ``scripts/image-services.sh``);
results also go to ``bench/results/image_build.json``. Goal: rebuild / cold <= 0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

import docker
import docker.errors
import numpy as np
import onnx
from onnx import numpy_helper

from cvtriton_core.events import StepFailed, StepFinished
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.settings import Settings
from cvtriton_core.steps.image_steps import BuildImage, PackageImage, PushImage
from cvtriton_core.steps.local_target import ImportModel, WriteRepository
from cvtriton_standins.registry import LocalRegistry
from cvtriton_standins.triton_base_image import ensure_base_image
from cvtriton_triton.sample_models import build_classifier

GOAL = 0.1
PAD_BYTES = 6_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "image_build.json"


def padded_model(path: Path, seed: int) -> Path:
    build_classifier("float", path, seed=seed)
    model = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    model.graph.initializer.append(numpy_helper.from_array(
        rng.standard_normal(PAD_BYTES // 4).astype(np.float32), "padding_like_real_weights"))
    onnx.save(model, str(path))
    return path


async def steps(run: RunContext, chain: list) -> dict[str, StepFinished]:
    done: dict[str, StepFinished] = {}
    async for event in run_steps(chain, run):
        if isinstance(event, StepFailed):
            raise SystemExit(f"{event.step} failed: {event.message}")
        if isinstance(event, StepFinished):
            done[event.step] = event
    return done


def flattened_base(api: docker.APIClient, source: str, name: str, tmp: Path) -> str:
    """``source``'s filesystem as one fresh layer (docker export + import), its ENV and WORKDIR kept."""
    config = api.inspect_image(source)["Config"]
    container = api.create_container(source, command=["true"])["Id"]
    try:
        tar = tmp / "flat.tar"
        with open(tar, "wb") as out:
            for chunk in api.export(container):
                out.write(chunk)
    finally:
        api.remove_container(container, force=True)
    changes = [f"ENV {item}" for item in config.get("Env") or []] + [f"WORKDIR {config.get('WorkingDir') or '/'}"]
    repo, tag = name.rsplit(":", 1)
    api.import_image_from_file(str(tar), repository=repo, tag=tag, changes=changes)
    tar.unlink()
    return name


def remove_session_images(api: docker.APIClient, session: str) -> None:
    """Every image this run made (tags and digests carry the session id); children before their base."""
    for _ in range(3):
        for image in api.images():
            for ref in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
                if session in ref:
                    try:
                        api.remove_image(ref)
                    except docker.errors.APIError:
                        pass


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuilds", type=int, default=3)
    args = parser.parse_args()
    api = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=300)
    session = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="cvtriton-bench-image-") as tmpdir:
        tmp = Path(tmpdir)
        standin = ensure_base_image(api=api)
        with LocalRegistry(tmp / "registry") as registry:
            try:
                local_base = flattened_base(api, standin, f"cvtriton-bench/base:{session}", tmp)
                remote_base = f"{registry.host}/cvtriton-bench/base:{session}"
                api.tag(local_base, remote_base.rsplit(":", 1)[0], session)
                for line in api.push(remote_base.rsplit(":", 1)[0], tag=session, stream=True, decode=True):
                    if "error" in line:
                        raise SystemExit(f"pushing the bench base failed: {line['error']}")
                api.remove_image(remote_base)
                api.remove_image(local_base)            # the daemon no longer has the base: a cold machine
                values = {"MODEL_NAME": f"bench-{session}", "TRITON_BASE_IMAGE": remote_base,
                          "IMAGE_REGISTRY": registry.host}
                work = tmp / "work"

                async def model_version(seed: int) -> dict[str, StepFinished]:
                    model = padded_model(tmp / f"model-{seed}" / "model.onnx", seed)
                    run = RunContext.create(Settings(values), work)
                    return await steps(run, [ImportModel(model.parent), WriteRepository(), PackageImage(),
                                             BuildImage(), PushImage()])

                cold = await model_version(0)
                cold_s = cold["package"].elapsed_s + cold["build"].elapsed_s
                rebuild_s, build_only_s, pushed, layers = [], [], [], []
                for seed in range(1, args.rebuilds + 1):
                    again = await model_version(seed)
                    rebuild_s.append(again["package"].elapsed_s + again["build"].elapsed_s)
                    build_only_s.append(again["build"].elapsed_s)
                    pushed.append(again["push"].result.bytes_sent)
                    layers.append(again["push"].result.layers_sent)
                    cached = again["build"].result.cached_steps
                    print(f"rebuild {seed}: {rebuild_s[-1]:.2f} s, {cached} steps from cache, "
                          f"pushed {pushed[-1] / 1e6:.2f} MB in {layers[-1]} layer(s)", file=sys.stderr)
                size = again["push"].result.image_size
            finally:
                remove_session_images(api, session)
    rebuild = statistics.median(rebuild_s)
    push = statistics.median(pushed)
    report = {
        "cold_build_s": round(cold_s, 3), "model_rebuild_s": round(rebuild, 3),
        "rebuild_ratio": round(rebuild / cold_s, 4), "rebuild_goal": GOAL,
        "cold_build_step_s": round(cold["build"].elapsed_s, 3),
        "model_rebuild_build_step_s": round(statistics.median(build_only_s), 3),
        "image_size_bytes": size, "model_push_bytes": push, "push_ratio": round(push / size, 5),
        "layers_pushed_per_model_change": statistics.median(layers),
    }
    print(json.dumps(report, indent=2))
    print(f"model-only rebuild / cold build = {report['rebuild_ratio']:.3f} (goal <= {GOAL}); "
          f"bytes pushed for a model-only change / image size = {report['push_ratio']:.4f}", file=sys.stderr)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    api.close()
    return 0 if report["rebuild_ratio"] <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
