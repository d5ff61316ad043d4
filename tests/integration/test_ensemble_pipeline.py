"""The image ensemble in the pipeline: the repository step writes it (or removes it when turned off), the
ids it answers with come from the source Custom Vision project/iteration (real SDK -> emulator), and the
test step shows both answers side by side with a load test of each path — against the real local Triton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cvtriton_core.events import StepFailed, StepFinished
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.settings import Settings
from cvtriton_core.steps import local_target          # (TestModel imported by name would be collected)
from cvtriton_core.steps.registry import RunOptions, build_steps
from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays
from cvtriton_triton.ensemble import ensemble_names, find_ensemble
from cvtriton_triton.sample_models import SAMPLE_IMAGES_DIRNAME, build_sample_export

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    dest = tmp_path_factory.mktemp("sample")
    export = build_sample_export(dest)
    return export, dest / SAMPLE_IMAGES_DIRNAME / "red.jpg"


async def _run(steps, settings: Settings, workdir: Path):
    run = RunContext.create(settings, workdir)
    events = [e async for e in run_steps(steps, run)]
    return run, events


def _finished(events, step: str):
    return next(e.result for e in events if isinstance(e, StepFinished) and e.step == step)


async def test_local_chain_answers_both_ways_and_load_tests_each(sample, tmp_path):
    export, image = sample
    settings = Settings({"MODEL_NAME": "colours"})
    steps = build_steps(["import", "repository", "serve-local", "test"],
                        RunOptions(model=export, image=image, requests=12, concurrency=3))
    run, events = await _run(steps, settings, tmp_path / "wd")
    assert not [e for e in events if isinstance(e, StepFailed)], [e for e in events if isinstance(e, StepFailed)]
    assert _finished(events, "repository").ensemble == "colours_image"
    result = _finished(events, "test")
    tensor, image_answer = result.answers
    assert (tensor.path, tensor.model, image_answer.path, image_answer.model) == \
        ("tensor", "colours", "image", "colours_image")
    assert result.predictions == tensor.predictions and result.predictions[0].label == "red"
    assert not result.disagreements and "image ensemble agrees" in result.summary
    assert [p.label for p in image_answer.predictions] == [p.label for p in tensor.predictions]
    assert image_answer.request_bytes * 10 < tensor.request_bytes
    assert [r.target for r in result.load] == ["colours", "colours_image"]
    assert all(r.ok == 12 and not r.errors and r.concurrency == 3 for r in result.load)
    assert result.latencies_ms == result.load[0].latencies_ms and len(result.latencies_ms) == 12
    # the sample export names no Custom Vision iteration: generated, stable ids, said so in the log
    ids = find_ensemble(tmp_path / "wd" / "model_repository", "colours").ids
    assert not ids.known and image_answer.response["project"] == ids.project
    logs = " ".join(getattr(e, "line", "") for e in events)
    assert "answers with generated ids" in logs
    json.dumps(result.to_json())                      # serializable as the headless command prints it


async def test_turned_off_the_ensemble_is_removed_and_the_test_sends_tensors_only(sample, tmp_path):
    export, image = sample
    workdir, repo = tmp_path / "wd", tmp_path / "wd" / "model_repository"
    names = ensemble_names("colours")
    on = Settings({"MODEL_NAME": "colours"})
    _, events = await _run([local_target.ImportModel(export), local_target.WriteRepository()], on, workdir)
    assert all((repo / n).is_dir() for n in names.entries)

    off = Settings({"MODEL_NAME": "colours", "TRITON_ENSEMBLE": "False"})
    _, events = await _run([local_target.WriteRepository()], off, workdir)
    assert _finished(events, "repository").ensemble is None
    assert not any((repo / n).exists() for n in names.entries) and (repo / "colours" / "config.pbtxt").is_file()
    assert any("image ensemble turned off: removed" in getattr(e, "line", "") for e in events)

    _, events = await _run([local_target.WriteRepository(ensemble=True)], off, workdir)   # --ensemble wins
    assert _finished(events, "repository").ensemble == "colours_image"
    _, events = await _run([local_target.WriteRepository(ensemble=False)], on, workdir)   # --no-ensemble wins
    assert find_ensemble(repo, "colours") is None

    steps = [local_target.ServeLocal(), local_target.TestModel(image, requests=4)]
    _, events = await _run(steps, on, workdir)
    result = _finished(events, "test")
    assert [a.path for a in result.answers] == ["tensor"] and len(result.load) == 1

    _, events = await _run([local_target.ServeLocal(), local_target.TestModel(image, ensemble=True)], on, workdir)
    failed = next(e for e in events if isinstance(e, StepFailed))
    assert failed.step == "test" and "no image ensemble" in failed.message


async def test_a_bad_setting_is_refused_before_anything_is_written(sample, tmp_path):
    export, _ = sample
    bad = Settings({"MODEL_NAME": "colours", "TRITON_ENSEMBLE": "maybe"})
    _, events = await _run([local_target.ImportModel(export), local_target.WriteRepository()], bad, tmp_path / "wd")
    failed = next(e for e in events if isinstance(e, StepFailed))
    assert failed.step == "repository" and failed.exit_code == 2 and "TRITON_ENSEMBLE" in failed.message
    assert not (tmp_path / "wd" / "model_repository").exists()


def _images(root: Path) -> Path:
    for t, (tag, colour) in enumerate({"red": (220, 30, 30), "green": (30, 180, 50), "blue": (30, 50, 220)}.items()):
        (root / tag).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (64, 48), tuple(max(0, v - 3 * i - t) for v in colour)).save(root / tag / f"{i}.jpg")
    return root


def test_chain_from_custom_vision_answers_with_the_source_ids(tmp_path):
    """project -> ... -> export (emulator, real SDK) -> repository: the ensemble answers as that project,
    iteration and its tags do on the Custom Vision prediction API."""
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    _images(tmp_path / "images")
    steps = "project,upload,train,publish,export,import,repository,serve-local,test"
    with CustomVisionEmulator(KEY, delays=Delays(training_s=0.05, export_s=0.05)) as emulator:
        env = tmp_path / ".env"
        env.write_text(
            f"VISION_TRAINING_ENDPOINT={emulator.url}\nVISION_TRAINING_KEY={KEY}\nVISION_PROJECT_NAME=colours\n"
            "VISION_PUBLISH_ITERATION_NAME=colours-v1\nVISION_PREDICTION_RESOURCE_ID=/subscriptions/"
            "11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.CognitiveServices/"
            "accounts/cvpred\n")
        cmd = [sys.executable, "-m", "cvtriton_tui", "run", "--env-file", str(env), "--steps", steps,
               "--images", "images", "--image", "images/red/0.jpg", "--workdir", "wd", "--json"]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        saved = Settings.load(env)
        project, iteration = saved.get("VISION_PROJECT_ID"), saved.get("VISION_ITERATION_ID")
        trainer = CustomVisionTrainingClient(emulator.url, ApiKeyCredentials(in_headers={"Training-key": KEY}))
        tags = {t.name: t.id for t in trainer.get_tags(project)}
    ids = find_ensemble(tmp_path / "wd" / "model_repository", "customvision").ids
    assert ids.known and (ids.project, ids.iteration, ids.publish_name) == (project, iteration, "colours-v1")
    assert dict(ids.tags) == tags
    events = [json.loads(line) for line in done.stdout.splitlines()]
    test = next(e for e in events if e["step"] == "test" and e["kind"] == "finished")["result"]
    response = next(a for a in test["answers"] if a["path"] == "image")["response"]
    assert (response["project"], response["iteration"]) == (project, iteration)
    assert {p["tagName"]: p["tagId"] for p in response["predictions"]} == tags
    assert test["disagreements"] == [] and KEY not in done.stdout + done.stderr
