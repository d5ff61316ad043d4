"""The whole chain headless, spelt as issue 3 spells it: Custom Vision (real SDK -> emulator) -> export ->
Triton repository -> real local Triton -> test image; a second identical run redoes no work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays

KEY = "fedcba9876543210fedcba9876543210"
STEPS = "project,upload,train,publish,export,import,repository,serve-local,test"


def _images(root: Path) -> Path:
    for t, (tag, colour) in enumerate({"red": (220, 30, 30), "green": (30, 180, 50), "blue": (30, 50, 220)}.items()):
        (root / tag).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (64, 48), tuple(max(0, v - 3 * i - t) for v in colour)).save(root / tag / f"{i}.jpg")
    return root


def _run(tmp_path: Path, env: Path) -> tuple[int, list[dict], str]:
    cmd = [sys.executable, "-m", "cvtriton_tui", "run", "--env-file", str(env), "--steps", STEPS,
           "--images", "images", "--image", "images/red/0.jpg", "--workdir", "wd", "--json"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_full_chain_against_emulator_and_real_triton(tmp_path):
    _images(tmp_path / "images")
    with CustomVisionEmulator(KEY, delays=Delays(training_s=0.05, export_s=0.05)) as emulator:
        env = tmp_path / ".env"
        env.write_text(
            f"VISION_TRAINING_ENDPOINT={emulator.url}\nVISION_TRAINING_KEY={KEY}\nVISION_PROJECT_NAME=colours\n"
            "VISION_PUBLISH_ITERATION_NAME=colours-v1\nVISION_PREDICTION_RESOURCE_ID=/subscriptions/"
            "11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.CognitiveServices/"
            "accounts/cvpred\n")
        code, events, stderr = _run(tmp_path, env)
        assert code == 0, stderr
        assert all(set(e) >= {"step", "kind"} and e["kind"] in {"started", "progress", "log", "finished", "failed"}
                   for e in events)
        finished = [e["step"] for e in events if e["kind"] == "finished"]
        assert finished == STEPS.split(",")
        assert {"model.onnx", "labels.txt"} <= {p.name for p in (tmp_path / "wd" / "export").iterdir()}
        test = next(e for e in events if e["step"] == "test" and e["kind"] == "finished")["result"]
        assert test["task"] == "classification" and test["latency_ms"] > 0
        assert {p["label"] for p in test["predictions"]} == {"red", "green", "blue"}
        assert KEY not in json.dumps(events) and KEY not in stderr
        saved = env.read_text()
        assert "VISION_PROJECT_ID=" in saved and "VISION_ITERATION_ID=" in saved and (tmp_path / ".env.bak").exists()

        uploads, trainings = emulator.counters["images_created"], emulator.counters["trainings_started"]
        code, events, stderr = _run(tmp_path, env)
        assert code == 0, stderr
        assert emulator.counters["images_created"] == uploads and emulator.counters["trainings_started"] == trainings
        assert [e["step"] for e in events if e["kind"] == "finished"] == STEPS.split(",")
