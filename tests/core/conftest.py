"""Fixtures for the Custom Vision tests: a running emulator, generated image folders, an env file, the CLI.

Images are generated with PIL (nothing binary is committed). Each tag gets its own colour and each image a
slightly different shade, so every file has distinct bytes (the service de-duplicates identical images).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays

CV_KEY = "0123456789abcdef0123456789abcdef"
PREDICTION_RESOURCE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
                       "Microsoft.CognitiveServices/accounts/cv-prediction")
_PALETTE = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40), (200, 60, 200), (60, 200, 200)]


@pytest.fixture
def cv_emulator():
    """A Custom Vision emulator with fast training/export (0.05 s), stopped after the test."""
    with CustomVisionEmulator(CV_KEY, delays=Delays(training_s=0.05, export_s=0.05)) as emulator:
        yield emulator


def write_image(path: Path, colour: tuple[int, int, int], *, size: tuple[int, int] = (300, 260),
                fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    for x in range(0, size[0], 7):            # a little texture so JPEG bytes differ per shade
        img.putpixel((x, (x * 3) % size[1]), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    img.save(path, fmt)
    return path


@pytest.fixture
def make_classification_folder(tmp_path: Path) -> Callable[..., Path]:
    """``make({"red": 6, "green": 6}) -> folder`` with one sub-folder of JPEGs per tag."""

    def make(tags: dict[str, int], *, name: str = "images", start: int = 0) -> Path:
        root = tmp_path / name
        for t, (tag, count) in enumerate(tags.items()):
            base = _PALETTE[t % len(_PALETTE)]
            for i in range(start, start + count):
                shade = tuple(max(0, min(255, v - 2 * i + t)) for v in base)
                write_image(root / tag / f"{tag}_{i:03d}.jpg", shade)
        return root

    return make


@pytest.fixture
def make_detection_folder(tmp_path: Path) -> Callable[..., Path]:
    """``make({"can": 15, "box": 15}) -> folder`` with one image per region and a regions.csv."""

    def make(tags: dict[str, int], *, name: str = "detection") -> Path:
        root = tmp_path / name
        rows = ["image,tag,left,top,width,height"]
        for t, (tag, count) in enumerate(tags.items()):
            for i in range(count):
                rel = f"shelf/{tag}_{i:03d}.jpg"
                write_image(root / rel, tuple(max(0, v - 3 * i) for v in _PALETTE[t % len(_PALETTE)]))
                rows.append(f"{rel},{tag},0.1,0.2,0.{3 + i % 5},0.25")
        (root / "regions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return root

    return make


@pytest.fixture
def cv_env(tmp_path: Path, cv_emulator: CustomVisionEmulator) -> Callable[..., Path]:
    """``cv_env(**overrides) -> path`` of a .env pointing at the emulator; ``NAME=None`` leaves NAME out."""

    def make(**overrides: str | None) -> Path:
        values: dict[str, str | None] = {
            "VISION_TRAINING_ENDPOINT": cv_emulator.url, "VISION_TRAINING_KEY": CV_KEY,
            "VISION_PROJECT_NAME": "colours", "VISION_PUBLISH_ITERATION_NAME": "colours-v1",
            "VISION_PREDICTION_RESOURCE_ID": PREDICTION_RESOURCE, "VISION_EXPORT_FLAVOR": "ONNX12",
        }
        values.update(overrides)
        path = tmp_path / ".env"
        path.write_text("# test settings\n" + "".join(f"{k}={v}\n" for k, v in values.items() if v is not None),
                        encoding="utf-8")
        return path

    return make


@dataclass
class CliRun:
    code: int
    events: list[dict]
    stderr: str

    def of(self, step: str, kind: str) -> list[dict]:
        return [e for e in self.events if e["step"] == step and e["kind"] == kind]


@pytest.fixture
def run_cli(capsys, tmp_path: Path) -> Callable[..., CliRun]:
    """Run ``cvtriton-tui run ... --json`` in-process (the real entry point) and parse its JSON lines."""
    from cvtriton_tui.cli import main

    def run(env: Path, steps: str, *extra: str, workdir: Path | None = None) -> CliRun:
        capsys.readouterr()
        code = main(["--env-file", str(env), "--workdir", str(workdir or tmp_path / "work"), "run", "--steps", steps,
                     "--json", *extra])
        out = capsys.readouterr()
        events = [json.loads(line) for line in out.out.splitlines() if line.strip()]
        return CliRun(code, events, out.err)

    return run
