"""Issue 2 end to end: every Custom Vision contract served by the real Triton binary, predictions equal to
onnxruntime's on the same tensor; the headless ``local`` command's JSON contract; bad input -> exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio

from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.local_server import LocalTritonServer
from cvtriton_triton.model_import import import_model
from cvtriton_triton.model_repository import read_model_info, write_repository
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import (SAMPLE_IMAGES_DIRNAME, build_all_contracts, build_export_zip,
                                           build_sample_export)

SERVABLE = ["classification", "classification_dynamic", "classification_zipmap", "classification_mixed",
            "classification_fp16", "classification_rgb01", "colour_classifier", "detection_s1",
            "detection_compact"]
CLI = [sys.executable, "-m", "cvtriton_tui"]


@pytest.fixture(scope="module")
def contracts(tmp_path_factory) -> dict[str, Path]:
    return build_all_contracts(tmp_path_factory.mktemp("contracts"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    dest = tmp_path_factory.mktemp("sample")
    zip_path = build_sample_export(dest)
    images = {p.stem: p for p in (dest / SAMPLE_IMAGES_DIRNAME).glob("*.jpg")}
    return zip_path, images


@pytest.fixture(scope="module")
def repository(contracts, tmp_path_factory) -> Path:
    """One repository holding every servable contract, as the packaging step writes it."""
    repo = tmp_path_factory.mktemp("repo")
    for key in SERVABLE:
        imported = import_model(contracts[key].parent, tmp_path_factory.mktemp(f"import-{key}"))
        write_repository(imported, repo, key)
    return repo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(repository, tmp_path_factory):
    logs: list[str] = []
    async with LocalTritonServer(repository, log=logs.append, workdir=tmp_path_factory.mktemp("triton")) as srv:
        for key in SERVABLE:
            await srv.wait_ready(key)
        yield srv


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("key", SERVABLE)
async def test_contract_served_equals_onnxruntime(key, server, repository, sample):
    _, images = sample
    model_dir = repository / key
    info = read_model_info(model_dir)
    tensor = prepare(images["green"], info)
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in info.outputs]
    expected = dict(zip(names, session.run(names, {info.input.name: tensor})))
    with TritonHttpClient(server.url) as client:
        got = client.infer(key, info.input.name, tensor, names)
    for name in names:
        assert got[name].dtype == expected[name].dtype, name
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)
    # threshold 0 so detection lists are compared in full, not only above the default threshold
    served, local = predictions(got, info, threshold=0.0), predictions(expected, info, threshold=0.0)
    assert [p.label for p in served] == [p.label for p in local]
    assert served, "every contract model yields at least one prediction on the sample image"
    for a, b in zip(served, local):
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        assert (a.box is None) == (info.task == "classification")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=180)


def test_local_command_default_sample_json(tmp_path):
    result = run_cli("--workdir", str(tmp_path / "wd"), "local", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == {"model", "task", "predictions", "latency_ms", "answers", "agree", "disagreements",
                         "load_test"}
    assert [a["path"] for a in data["answers"]] == ["tensor", "image"] and data["agree"] is True
    assert data["task"] == "classification" and data["latency_ms"] > 0
    probs = [p["probability"] for p in data["predictions"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    # the default image is the first sample image by name: black.jpg
    assert data["predictions"][0]["label"] == "black" and probs[0] > 0.9
    assert all("box" not in p for p in data["predictions"])


def test_run_test_step_load_test_options_json(sample, tmp_path):
    """``run --steps ...,test --concurrency C --requests N --time-limit S``: each path's load test runs N
    requests at concurrency C, with progress events counting up to both paths' total, and the result says
    its errors by status (none here)."""
    zip_path, images = sample
    (tmp_path / ".env").write_text("MODEL_NAME=colours\n")
    result = run_cli("run", "--env-file", str(tmp_path / ".env"), "--workdir", str(tmp_path / "wd"), "--json",
                     "--steps", "import,repository,serve-local,test", "--model", str(zip_path), "--image",
                     str(images["red"]), "--concurrency", "3", "--requests", "9", "--time-limit", "60", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress = [e for e in events if e["step"] == "test" and e["kind"] == "progress" and e.get("total")]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 18      # 9 requests x 2 paths
    assert [e["done"] for e in progress] == sorted(e["done"] for e in progress)
    tested = next(e for e in events if e["step"] == "test" and e["kind"] == "finished")["result"]
    assert [(r["target"], r["concurrency"], r["planned"], r["ok"], r["errors"], r["stopped"])
            for r in tested["load"]] == [("colours", 3, 9, 9, {}, "completed"),
                                         ("colours_image", 3, 9, 9, {}, "completed")]
    assert [a["path"] for a in tested["answers"]] == ["tensor", "image"] and tested["disagreements"] == []


@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_local_command_sample_predictions_make_sense(colour, sample, tmp_path):
    zip_path, images = sample
    result = run_cli("--workdir", str(tmp_path), "local", "--model", str(zip_path), "--image",
                     str(images[colour]), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] == colour


def test_local_command_detection_export_zip(contracts, sample, tmp_path):
    _, images = sample
    labels = tuple((contracts["detection_compact"].parent / "labels.txt").read_text().split())
    zip_path = build_export_zip(contracts["detection_compact"], labels, tmp_path / "det.zip")
    result = run_cli("--workdir", str(tmp_path / "wd"), "local", "--model", str(zip_path), "--image",
                     str(images["white"]), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["task"] == "detection" and data["predictions"]
    for p in data["predictions"]:
        assert set(p["box"]) == {"left", "top", "width", "height"}
        assert all(0.0 <= v <= 1.0 for v in p["box"].values())
        assert p["label"] in labels
    # the CLI's answer equals onnxruntime's on the same tensor
    imported = import_model(zip_path, tmp_path / "check")
    tensor = prepare(images["white"], imported.info)
    session = ort.InferenceSession(str(imported.onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in imported.info.outputs]
    expected = predictions(dict(zip(names, session.run(names, {imported.info.input.name: tensor}))), imported.info)
    assert [p["label"] for p in data["predictions"]] == [p.label for p in expected]
    assert [p["probability"] for p in data["predictions"]] == pytest.approx([p.probability for p in expected], abs=1e-6)


def _traversal_zip(path: Path, model: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(model, "model.onnx")
        archive.writestr("../../evil.txt", "x")
    return path


@pytest.mark.parametrize("case", ["legacy_winml", "non_image", "corrupt_zip", "traversal_zip", "missing", "not_image"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, contracts, sample, tmp_path):
    _, images = sample
    image = images["red"]
    if case in ("legacy_winml", "non_image"):
        model = contracts[case]
    elif case == "corrupt_zip":
        model = tmp_path / "corrupt.zip"
        model.write_bytes(b"PK\x03\x04 this is not really a zip")
    elif case == "traversal_zip":
        model = _traversal_zip(tmp_path / "evil.zip", contracts["classification"])
    elif case == "missing":
        model = tmp_path / "nope.zip"
    else:
        model = contracts["classification"]
        image = tmp_path / "notes.jpg"
        image.write_text("not a picture")
    workdir = tmp_path / "wd"
    result = run_cli("--workdir", str(workdir), "local", "--model", str(model), "--image", str(image), "--json",
                     cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("cvtriton-tui:") or "[failed]" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and " — " in errors[0]
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    model_dir = workdir / "local" / "model"
    assert not model_dir.exists() or case == "not_image"
    assert not (workdir / "local" / "model_repository").exists() or case == "not_image"
