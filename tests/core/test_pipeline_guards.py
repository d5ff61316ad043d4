"""What the pipeline guarantees around the steps: checks before anything is written, one run per work folder
and settings file, no traceback for expected errors, and no stale result used by a later step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvtriton_core.errors import UserError
from cvtriton_core.events import StepFailed, StepFinished, StepStarted
from cvtriton_core.pipeline import RunContext, StepContext, run_steps
from cvtriton_core.run_lock import WORKDIR_LOCK, env_file_lock, workdir_lock
from cvtriton_core.run_state import FILENAME
from cvtriton_core.settings import Settings
from cvtriton_core.steps import local_target
from cvtriton_core.steps.registry import stale_results
from cvtriton_triton.sample_models import build_classifier, build_legacy_winml


class Step:
    def __init__(self, name: str, *, fail: Exception | None = None, refuse: Exception | None = None,
                 locks_env_file: bool = False) -> None:
        self.name, self.title, self.fail, self.refuse = name, f"Step {name}", fail, refuse
        self.locks_env_file = locks_env_file
        self.ran = False

    def check(self, settings: Settings) -> None:
        if self.refuse:
            raise self.refuse

    async def run(self, ctx: StepContext) -> None:
        self.ran = True
        if self.fail:
            raise self.fail


async def collect(steps, run):
    return [event async for event in run_steps(steps, run)]


async def test_a_refused_check_stops_the_run_before_any_step_or_state_write(tmp_path):
    first, refused = Step("a"), Step("b", refuse=UserError("b's input is wrong", "fix it"))
    events = await collect([first, refused], RunContext.create(Settings({}), tmp_path))
    assert [type(e) for e in events] == [StepFailed]
    assert events[0].step == "b" and events[0].message == "b's input is wrong — fix it" and events[0].exit_code == 2
    assert not first.ran and not (tmp_path / FILENAME).exists()


async def test_expected_errors_carry_no_traceback_unexpected_ones_do(tmp_path):
    run = RunContext.create(Settings({}), tmp_path)
    expected = (await collect([Step("a", fail=UserError("no server", "start it", details="last log line"))], run))[-1]
    assert isinstance(expected, StepFailed) and expected.details == "last log line"
    run = RunContext.create(Settings({}), tmp_path)
    unexpected = (await collect([Step("a", fail=KeyError("boom"))], run))[-1]
    assert "Traceback" in unexpected.details and "KeyError" in unexpected.details


async def test_a_second_run_on_the_same_work_folder_is_refused_while_the_first_holds_it(tmp_path):
    holder = workdir_lock(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    holder.acquire()
    try:
        step = Step("a")
        events = await collect([step], RunContext.create(Settings({}), tmp_path))
        assert len(events) == 1 and isinstance(events[0], StepFailed) and events[0].exit_code == 2
        assert f"another cvtriton-tui run (pid {os.getpid()}) is using the work folder" in events[0].message
        assert not step.ran and not (tmp_path / FILENAME).exists()
    finally:
        holder.release()
    events = await collect([Step("a")], RunContext.create(Settings({}), tmp_path))
    assert isinstance(events[-1], StepFinished)
    assert (tmp_path / WORKDIR_LOCK).exists()     # the file stays; the lock went with the descriptor


async def test_the_settings_file_is_locked_only_for_steps_that_act_on_its_project(tmp_path):
    env = tmp_path / ".env"
    env.write_text("MODEL_NAME=m\n")
    holder = env_file_lock(env)
    holder.acquire()
    try:
        local_only = await collect([Step("a")], RunContext.create(Settings.load(env), tmp_path / "one"))
        assert isinstance(local_only[-1], StepFinished)
        project = await collect([Step("a", locks_env_file=True)], RunContext.create(Settings.load(env), tmp_path / "two"))
        assert isinstance(project[-1], StepFailed) and "is using the settings file" in project[-1].message
    finally:
        holder.release()


def test_a_killed_holder_releases_its_lock(tmp_path):
    """The kernel drops a flock with its process, even on SIGKILL: no stale lock to clean by hand."""
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from cvtriton_core.run_lock import workdir_lock;"
        f"lock = workdir_lock(Path({str(tmp_path)!r})); lock.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {child.pid}"):
            workdir_lock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    lock = workdir_lock(tmp_path)
    lock.acquire()
    lock.release()


def test_results_dropped_from_a_step_on_are_its_own_and_every_later_steps():
    image = {"image_context", "image_context_digest", "image_scoring_port", "image_customvision_route", "customvision_url", "image_id", "image_ref", "image_size", "image_digest",
             "image_remote", "image_pushed", "container_id", "registry", "registry_auth", "registry_login"}
    deployed = {"azureml_endpoint", "azureml_deployment", "azureml_scoring_uri", "azureml_model_asset"}
    assert set(stale_results("import")) == {"onnx_path", "imported", "model_source", "repository", "model_name",
                                            "model_version", "triton_url", *image, *deployed}
    assert set(stale_results("serve-local")) == {"triton_url", *deployed}
    assert set(stale_results("push")) == {"image_digest", "image_remote", "image_pushed", "container_id",
                                          "triton_url", "customvision_url", *deployed}
    assert set(stale_results("deploy")) == deployed and stale_results("traffic") == ()
    assert "project_id" not in stale_results("project") and "iteration_id" not in stale_results("train")
    assert "azureml_endpoints_created" not in stale_results("deploy")     # a record of what exists in Azure


@pytest.fixture
def packaged(tmp_path):
    """A work folder whose run state holds a packaged model (import + repository done)."""
    model = build_classifier("float", tmp_path / "good" / "model.onnx")
    return model, tmp_path / "work"


async def _package(model: Path, workdir: Path) -> list:
    run = RunContext.create(Settings({"MODEL_NAME": "m"}), workdir)
    return await collect([local_target.ImportModel(model), local_target.WriteRepository()], run)


async def test_after_package_is_refused_local_test_does_not_serve_the_previous_model(packaged, tmp_path):
    model, workdir = packaged
    assert isinstance((await _package(model, workdir))[-1], StepFinished)
    assert json.loads((workdir / FILENAME).read_text())["values"]["repository"]
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    refused = await _package(corrupt, workdir)
    assert isinstance(refused[-1], StepFailed) and refused[-1].exit_code == 2
    values = json.loads((workdir / FILENAME).read_text())["values"]
    assert not {"repository", "model_name", "onnx_path"} & set(values)
    serve = await collect([local_target.ServeLocal()], RunContext.create(Settings({}), workdir))
    failed = serve[-1]
    assert isinstance(failed, StepFailed) and failed.message.startswith("no model repository — run Package first")
    assert not (workdir / "triton").exists()             # nothing was started


async def test_a_step_failing_at_run_time_drops_what_later_steps_would_read(packaged, tmp_path):
    model, workdir = packaged
    await _package(model, workdir)
    broken_export = tmp_path / "export"
    build_legacy_winml(broken_export / "model.onnx")
    run = RunContext.create(Settings({}), workdir)
    run.state.set(export_dir=broken_export)
    events = await collect([local_target.ImportModel(None)], run)    # the export step's download, checked at run
    assert isinstance(events[0], StepStarted) and events[0].step == "import"     # it passed its check, then failed
    assert isinstance(events[-1], StepFailed) and "legacy" in events[-1].message
    values = json.loads((workdir / FILENAME).read_text())["values"]
    assert "repository" not in values and "onnx_path" not in values and values["export_dir"]


async def test_import_does_not_fall_back_to_an_old_export_after_a_failed_export(tmp_path):
    workdir = tmp_path / "work"
    build_classifier("float", workdir / "export" / "model.onnx")      # an older, complete export
    run = RunContext.create(Settings({}), workdir)
    run.state.mark("export", "failed", "the download stopped")
    events = await collect([local_target.ImportModel(None)], run)
    assert isinstance(events[-1], StepFailed) and "no exported model in this run" in events[-1].message
