"""The headless forms: ``cvtriton-tui local --container [--base-image IMAGE] --json`` (package → build →
run-local → test, no registry; the JSON object adds "image") and ``run --steps ...,package,build,push,
run-local,test`` printing every event, per-layer push progress included, as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys

from cvtriton_core.steps.image_steps import WORKDIR_LABEL
from cvtriton_triton.sample_models import SAMPLE_IMAGES_DIRNAME, build_sample_export

CLI = [sys.executable, "-m", "cvtriton_tui"]


def test_local_container_json_adds_the_image(tmp_path, standin_base, docker_api, kit, pillow_wheels):
    env_file = tmp_path / ".env"
    env_file.write_text(f"MODEL_NAME=cli-{kit.session}\nIMAGE_PIP_WHEELS={pillow_wheels}\n")
    done = subprocess.run([*CLI, "local", "--container", "--base-image", standin_base, "--env-file", str(env_file),
                           "--workdir", str(tmp_path / "work"), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert set(result) == {"model", "task", "predictions", "latency_ms", "answers", "agree", "disagreements",
                           "load_test", "image"}
    # the image serves the model, the ensemble and the Custom Vision route: three answers that agree, and a
    # load test per path (tensor, image, the route as an app posts to it)
    assert [a["path"] for a in result["answers"]] == ["tensor", "image", "customvision"] and result["agree"]
    assert [r["target"] for r in result["load_test"]][2:] == ["Custom Vision route"]
    assert all(r["ok"] == r["requests"] and not r["errors"] for r in result["load_test"])
    assert result["model"] == f"cli-{kit.session}" and result["predictions"]
    assert [a["path"] for a in result["answers"]] == ["tensor", "image", "customvision"] and result["agree"]
    image = docker_api.inspect_image(result["image"])
    assert image["Config"]["Labels"]["io.cvtriton.model.name"] == f"cli-{kit.session}"
    assert image["Config"]["Labels"]["org.opencontainers.image.base.name"] == standin_base
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={tmp_path / 'work' / 'local'}"})


def test_base_image_needs_container(tmp_path):
    done = subprocess.run([*CLI, "local", "--base-image", "x", "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("cvtriton-tui: --base-image is used only with --container — "
                                                    "add --container, or drop --base-image")
    assert not (tmp_path / "w").exists()


def test_run_steps_through_push_and_run_local(tmp_path, standin_base, registry, docker_api, kit, pillow_wheels):
    export = build_sample_export(tmp_path / "sample")
    image = sorted((tmp_path / "sample" / SAMPLE_IMAGES_DIRNAME).glob("*.jpg"))[0]
    env_file = tmp_path / ".env"
    env_file.write_text(f"MODEL_NAME=run-{kit.session}\nTRITON_BASE_IMAGE={standin_base}\n"
                        f"IMAGE_REGISTRY={registry.host}\nIMAGE_PIP_WHEELS={pillow_wheels}\n")
    done = subprocess.run([*CLI, "run", "--env-file", str(env_file), "--workdir", str(tmp_path / "work"),
                           "--steps", "import,repository,package,build,push,run-local,test", "--model", str(export),
                           "--image", str(image), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    finished = {e["step"]: e for e in events if e["kind"] == "finished"}
    assert list(finished) == ["import", "repository", "package", "build", "push", "run-local", "test"]
    assert finished["push"]["result"]["digest"].startswith("sha256:")
    assert finished["package"]["result"]["dockerfile"].splitlines()[4] == f"FROM {standin_base}"
    assert any(e["kind"] == "layer" and e["step"] == "push" for e in events)
    assert any(e["kind"] == "log" and e["step"] == "build" and e["line"].startswith("Step 1/8 : FROM") for e in events)
    assert finished["package"]["result"]["scoring_port"] == 8080
    assert finished["run-local"]["result"]["customvision_url"]
    assert finished["test"]["result"]["predictions"]
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={tmp_path / 'work'}"})
