"""The headless run (`cvtriton-tui run --steps project,upload,train,publish,export`) against the emulator, through
the real SDK: the whole flow, repeat runs, bad input, rate-limit storms, lost responses and interruptions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from cvtriton_core.events import Progress
from cvtriton_core.pipeline import RunContext, run_steps
from cvtriton_core.settings import Settings
from cvtriton_core.steps.registry import RunOptions, build_steps

from .conftest import write_image

STEPS = "project,upload,train,publish,export"
KINDS = {"started", "progress", "log", "finished", "failed"}
WORK = ("images_created", "trainings_started", "exports_started", "create_images_from_files", "train_project",
        "export_iteration", "publish_iteration", "create_project", "create_tag", "downloads")


def work(emulator) -> dict[str, int]:
    return {k: emulator.counters[k] for k in WORK}


def test_full_run_then_an_identical_run_repeats_no_work(cv_emulator, cv_env, make_classification_folder, run_cli,
                                                        tmp_path):
    env = cv_env()
    images = make_classification_folder({"red": 7, "green": 6, "blue": 5})
    first = run_cli(env, STEPS, "--images", str(images))
    assert first.code == 0, first.events[-1]
    assert all(e["kind"] in KINDS and e["step"] in STEPS.split(",") for e in first.events)
    assert [e["step"] for e in first.events if e["kind"] == "finished"] == STEPS.split(",")
    (project_id,) = cv_emulator.store.projects
    text = env.read_text()
    assert text.startswith("# test settings\n") and f"VISION_PROJECT_ID={project_id}\n" in text
    iteration_id = first.of("train", "finished")[0]["result"]["iteration_id"]
    assert f"VISION_ITERATION_ID={iteration_id}\n" in text and (tmp_path / ".env.bak").exists()
    export = tmp_path / "work" / "export"
    assert (export / "labels.txt").read_text().split() == ["blue", "green", "red"]
    assert onnx.load(str(export / "model.onnx")).graph.input[0].name == "data"
    assert cv_emulator.store.projects[project_id].iterations[0].publish_name == "colours-v1"
    assert work(cv_emulator) == {"images_created": 18, "trainings_started": 1, "exports_started": 1,
                                 "create_images_from_files": 1, "train_project": 1, "export_iteration": 1,
                                 "publish_iteration": 1, "create_project": 1, "create_tag": 3, "downloads": 1}
    before = work(cv_emulator)

    second = run_cli(env, STEPS, "--images", str(images))
    assert second.code == 0
    assert work(cv_emulator) == before
    assert [e["result"]["skipped"] for e in second.events if e["kind"] == "finished"] == [False, True, True, True, True]
    assert len(cv_emulator.store.projects) == 1


def test_detection_folder_makes_a_detection_project_and_a_detector_export(cv_emulator, cv_env, make_detection_folder,
                                                                          run_cli, tmp_path):
    folder = make_detection_folder({"can": 15, "box": 16})
    result = run_cli(cv_env(VISION_PROJECT_NAME="shelves"), "project,upload,train,export", "--images", str(folder))
    assert result.code == 0, result.events[-1]
    assert result.of("project", "finished")[0]["result"]["task"] == "ObjectDetection"
    (project,) = cv_emulator.store.projects.values()
    assert project.domain_id == "a27d5ca5-bb19-49d8-a70a-fec086c47f5b"
    regions = sorted(r["tagId"] for img in project.images.values() for r in img.regions)
    assert len(regions) == 31
    model = onnx.load(str(tmp_path / "work" / "export" / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["model_outputs0"]


BAD_INPUT = {
    "empty folder": ({}, lambda mk, p: p, "no images found"),
    "too few images": ({}, lambda mk, p: mk({"red": 6, "green": 3}), "tag 'green' has 3 images"),
    "non-image file": ({}, lambda mk, p: _with(mk({"red": 5, "green": 5}), "red/notes.txt", b"hello"),
                       "red/notes.txt is not an image file"),
    "damaged image": ({}, lambda mk, p: _with(mk({"red": 5, "green": 5}), "green/cut.jpg", b"\xff\xd8\xff\xe0broken"),
                      "green/cut.jpg is"),
    "image over 6 MB": ({}, lambda mk, p: _with(mk({"red": 5, "green": 5}), "red/big.jpg", None),
                        "training images may be at most 6 MB"),
    "missing folder": ({}, lambda mk, p: p / "nowhere", "does not exist"),
    "wrong key": ({"VISION_TRAINING_KEY": "ffffffffffffffffffffffffffffffff"}, lambda mk, p: mk({"a": 5, "b": 5}),
                  "refused the training key"),
    "missing variable": ({"VISION_TRAINING_KEY": None}, lambda mk, p: mk({"a": 5, "b": 5}),
                         "VISION_TRAINING_KEY is not set"),
    "non-exportable domain": ({"VISION_PROJECT_DOMAIN": "General"}, lambda mk, p: mk({"a": 5, "b": 5}),
                              "the domain 'General' cannot export models"),
}


def _with(root: Path, rel: str, data: bytes | None) -> Path:
    target = root / rel
    if data is None:
        write_image(target, (1, 2, 3))
        data = target.read_bytes() + b"\0" * (6 * 1024 * 1024)
    target.write_bytes(data)
    return root


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_stops_before_anything_is_created(case, cv_emulator, cv_env, make_classification_folder, run_cli,
                                                    tmp_path):
    overrides, folder, expected = BAD_INPUT[case]
    (tmp_path / "empty").mkdir()
    images = folder(make_classification_folder, tmp_path / "empty")
    result = run_cli(cv_env(**overrides), STEPS, "--images", str(images))
    assert result.code == 2
    (failed,) = [e for e in result.events if e["kind"] == "failed"]
    assert failed["step"] == "project" and expected in failed["message"] and "\n" not in failed["message"]
    assert " — " in failed["message"]
    assert cv_emulator.counters["create_project"] == 0 and cv_emulator.counters["create_images_from_files"] == 0


def test_existing_project_on_a_non_exportable_domain_is_refused(cv_emulator, cv_env, run_cli):
    cv_emulator.add_project("colours", exportable=False)
    result = run_cli(cv_env(), "project,export")
    assert result.code == 2 and "which cannot export models" in result.of("project", "failed")[0]["message"]
    assert cv_emulator.counters["export_iteration"] == 0


def test_unknown_project_id_and_settings_each_name_their_fix(cv_emulator, cv_env, run_cli):
    result = run_cli(cv_env(VISION_PROJECT_ID="12345678-1234-1234-1234-123456789012"), "project")
    assert result.code == 2 and "fix VISION_PROJECT_ID" in result.of("project", "failed")[0]["message"]
    cv_emulator.add_project("colours")
    no_resource = run_cli(cv_env(VISION_PREDICTION_RESOURCE_ID=None), "project,publish")
    assert no_resource.code == 2
    assert no_resource.of("publish", "failed")[0]["message"].startswith("VISION_PREDICTION_RESOURCE_ID is not set")
    flavor = run_cli(cv_env(VISION_EXPORT_FLAVOR="ONNX16"), "project,export")
    assert flavor.code == 2 and "ONNX10, ONNX12, ONNXFloat16" in flavor.of("export", "failed")[0]["message"]


def test_existing_project_and_existing_export_are_reused(cv_emulator, cv_env, run_cli, tmp_path):
    project_id = cv_emulator.add_project("colours", tags=("cat", "dog"))
    with cv_emulator.store.lock:
        project = cv_emulator.store.projects[project_id]
        cv_emulator.store.export(project, project.iterations[0], "ONNX", "ONNX12")
    result = run_cli(cv_env(), "project,export")
    assert result.code == 0, result.events[-1]
    assert any("reusing the existing ONNX export (flavor ONNX12)" in e["line"] for e in result.of("export", "log"))
    assert cv_emulator.counters["exports_started"] == 1 and cv_emulator.counters["export_iteration"] == 0
    assert (tmp_path / "work" / "export" / "labels.txt").read_text().split() == ["cat", "dog"]


def test_a_429_storm_makes_the_run_wait_not_fail(cv_emulator, cv_env, make_classification_folder, run_cli):
    images = make_classification_folder({"red": 5, "green": 5})
    cv_emulator.inject_429(12, retry_after=0)                             # whatever the next 12 requests are
    cv_emulator.inject_429(1, retry_after=1, ops=("train_project",))
    start = time.monotonic()
    result = run_cli(cv_env(), STEPS, "--images", str(images))
    assert result.code == 0, result.events[-1]
    assert time.monotonic() - start >= 1.0                                # Retry-After: 1 was obeyed
    waits = [e for e in result.events if e["kind"] == "log" and "rate limited (HTTP 429)" in e["line"]]
    assert len(waits) == 13 and all(e["source"] == "customvision" for e in waits)
    assert work(cv_emulator)["images_created"] == 10 and cv_emulator.counters["trainings_started"] == 1
    assert len(cv_emulator.store.projects) == 1


def test_lost_responses_never_create_anything_twice(cv_emulator, cv_env, make_classification_folder, run_cli):
    images = make_classification_folder({"red": 5, "green": 5})
    for op in ("create_project", "create_tag", "create_images_from_files", "train_project", "publish_iteration",
               "export_iteration"):
        cv_emulator.inject_error(503, ops=(op,), after=True, retry_after=0)
    result = run_cli(cv_env(), STEPS, "--images", str(images))
    assert result.code == 0, result.events[-1]
    (project,) = cv_emulator.store.projects.values()
    assert len(project.tags) == 2 and len(project.images) == 10 and len(project.iterations) == 1
    counts = work(cv_emulator)
    assert (counts["create_project"], counts["create_tag"], counts["train_project"], counts["export_iteration"],
            counts["publish_iteration"]) == (1, 2, 1, 1, 1)            # reconciled, not repeated
    assert counts["create_images_from_files"] == 2 and counts["images_created"] == 10   # repeated: de-duplicated


async def test_an_interrupted_upload_resumes_with_the_images_not_yet_sent(cv_emulator, cv_env,
                                                                           make_classification_folder, tmp_path):
    images = make_classification_folder({"red": 35, "green": 35})            # 70 images: batches of 64 + 6
    env, workdir = cv_env(), tmp_path / "work"
    held = cv_emulator.hold("create_images_from_files", skip=1)              # the second batch hangs in flight

    events = run_steps(build_steps(["project", "upload", "train"], RunOptions(images=images)),
                       RunContext.create(Settings.load(env), workdir))
    async for event in events:
        if isinstance(event, Progress) and event.step == "upload" and event.message.startswith("batch 1/2"):
            break
    assert await asyncio.to_thread(held.wait, 10)
    await events.aclose()                                                    # Ctrl-C while batch 2 is in flight
    cv_emulator.release(process=False)                                       # ...and it never reached the service
    assert cv_emulator.counters["images_created"] == 64

    resumed = [e async for e in run_steps(build_steps(["project", "upload", "train"], RunOptions(images=images)),
                                          RunContext.create(Settings.load(env), workdir))]
    finished = [e for e in resumed if e.kind == "finished"]
    assert [e.step for e in finished] == ["project", "upload", "train"]
    upload = finished[1].result
    assert (upload.uploaded, upload.already_uploaded, upload.batches) == (6, 64, 1)
    assert cv_emulator.counters["images_received"] == 70                     # every image sent exactly once
    assert cv_emulator.counters["images_created"] == 70 and cv_emulator.counters["trainings_started"] == 1


def test_a_run_interrupted_while_training_resumes_without_training_twice(cv_emulator, cv_env,
                                                                         make_classification_folder, run_cli, tmp_path):
    images = make_classification_folder({"red": 5, "green": 5})
    cv_emulator.store.training_s = 8.0    # long enough that a loaded machine still interrupts it mid-training
    env, workdir = cv_env(), tmp_path / "work"
    cmd = [sys.executable, "-m", "cvtriton_tui", "--env-file", str(env), "--workdir", str(workdir), "run", "--steps",
           STEPS, "--images", str(images), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 30
        while cv_emulator.counters["get_iteration"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)                                                 # training started and being polled
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert cv_emulator.counters["trainings_started"] == 1
    before = work(cv_emulator)

    result = run_cli(env, STEPS, "--images", str(images), workdir=workdir)
    assert result.code == 0, result.events[-1]
    assert any("resuming: waiting for the training started earlier" in e["line"] for e in result.of("train", "log"))
    after = work(cv_emulator)
    assert after["trainings_started"] == 1 and after["train_project"] == before["train_project"] == 1
    assert after["images_created"] == 10 and after["create_images_from_files"] == 1


def test_a_failed_training_fails_the_run_with_the_reason_and_a_rerun_trains_again(cv_emulator, cv_env,
                                                                                 make_classification_folder, run_cli):
    images = make_classification_folder({"red": 5, "green": 5})
    cv_emulator.fail_next_training("Tag 'green' has images that could not be decoded")
    failed = run_cli(cv_env(), "project,upload,train", "--images", str(images))
    assert failed.code == 1
    message = failed.of("train", "failed")[0]["message"]
    assert "training of Iteration 1 failed: Tag 'green' has images that could not be decoded" in message
    again = run_cli(cv_env(), "project,upload,train", "--images", str(images))
    assert again.code == 0 and cv_emulator.counters["trainings_started"] == 2
    assert again.of("train", "finished")[0]["result"]["iteration_name"] == "Iteration 2"


def test_a_fresh_workdir_finds_duplicates_not_failures_and_trains_nothing_new(cv_emulator, cv_env,
                                                                               make_classification_folder, run_cli,
                                                                               tmp_path):
    images = make_classification_folder({"red": 5, "green": 5})
    env = cv_env()
    assert run_cli(env, "project,upload,train", "--images", str(images), workdir=tmp_path / "a").code == 0
    again = run_cli(env, "project,upload,train", "--images", str(images), workdir=tmp_path / "b")
    assert again.code == 0, again.events[-1]
    assert "10 OKDuplicate" in again.of("upload", "progress")[-1]["message"]
    upload = again.of("upload", "finished")[0]["result"]
    assert (upload["uploaded"], upload["duplicates"]) == (0, 10)
    train = again.of("train", "finished")[0]["result"]
    assert train["trained"] is False and train["iteration_name"] == "Iteration 1"
    assert cv_emulator.counters["images_created"] == 10 and cv_emulator.counters["trainings_started"] == 1


def test_an_iteration_deleted_in_the_portal_is_trained_again_not_a_dead_end(cv_emulator, cv_env,
                                                                             make_classification_folder, run_cli):
    images = make_classification_folder({"red": 5, "green": 5})
    env = cv_env()
    assert run_cli(env, "project,upload,train", "--images", str(images)).code == 0
    (project_id,) = cv_emulator.store.projects
    (iteration,) = cv_emulator.store.projects[project_id].iterations
    from .test_customvision_emulator import client
    client(cv_emulator.url).delete_iteration(project_id, iteration.id)        # as the portal's delete does

    again = run_cli(env, "project,upload,train", "--images", str(images))
    assert again.code == 0, again.events[-1]
    assert any("no longer exists" in e["line"] for e in again.of("train", "log"))
    assert cv_emulator.counters["trainings_started"] == 2
    assert again.of("train", "finished")[0]["result"]["iteration_id"] != iteration.id


async def test_images_added_while_an_interrupted_training_ran_are_trained_on_resume(cv_emulator, cv_env,
                                                                                    make_classification_folder,
                                                                                    tmp_path):
    images = make_classification_folder({"red": 5, "green": 5})
    env, workdir = cv_env(), tmp_path / "work"
    cv_emulator.store.training_s = 0.6
    events = run_steps(build_steps(["project", "upload", "train"], RunOptions(images=images)),
                       RunContext.create(Settings.load(env), workdir))
    async for event in events:
        if isinstance(event, Progress) and event.step == "train" and "Training" in event.message:
            break
    await events.aclose()                                                    # Ctrl-C while it trains
    assert cv_emulator.counters["trainings_started"] == 1
    make_classification_folder({"red": 2, "green": 2}, start=5)               # more images before the rerun

    resumed = [e async for e in run_steps(build_steps(["project", "upload", "train"], RunOptions(images=images)),
                                          RunContext.create(Settings.load(env), workdir))]
    (train,) = [e.result for e in resumed if e.kind == "finished" and e.step == "train"]
    assert cv_emulator.counters["images_created"] == 14
    assert cv_emulator.counters["trainings_started"] == 2                    # the 4 new images are in the model
    (project,) = cv_emulator.store.projects.values()
    newest = project.iterations[-1]
    assert train.iteration_id == newest.id and sum(newest.tag_counts.values()) == 14


def test_an_expired_download_link_is_replaced_by_a_fresh_one(cv_emulator, cv_env, run_cli, tmp_path):
    cv_emulator.add_project("colours", tags=("cat", "dog"))
    cv_emulator.expire_download_links(next_issued=1)                    # the first link is stale when used
    result = run_cli(cv_env(), "project,export")
    assert result.code == 0, result.events[-1]
    assert any("asking for a fresh one" in e["line"] for e in result.of("export", "log"))
    assert cv_emulator.counters["exports_started"] == 1 and cv_emulator.counters["downloads"] == 1
    assert (tmp_path / "work" / "export" / "labels.txt").read_text().split() == ["cat", "dog"]
    assert not any("/exports/" in str(e) for e in result.events)        # the signed link never leaves the adapter
