"""A snapshot of every wizard screen (pytest-textual-snapshot), at a fixed terminal size.

What a screen shows must not depend on the machine or the moment: the app runs in the test's own folder
with relative paths, no snapshot is taken while something animates or a cursor blinks (focus stays on the
step list or a button), and the data a pane renders is fixed (no ports, dates or durations) — the live
behaviour of the same panes is covered by the Pilot walks. Update with ``pytest --snapshot-update`` and
review the SVGs in ``__snapshots__`` like code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from textual.widgets import Input, RadioButton

from cvtriton_core.adapters.customvision_types import DomainInfo, IterationInfo, ProjectInfo
from cvtriton_core.run_state import RunState
from cvtriton_core.steps.image_ensemble import PathAnswer
from cvtriton_core.steps.local_target import TestResult as CoreTestResult
from cvtriton_triton.load_test import LoadReport
from cvtriton_triton.model_info import Box, Prediction
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.confirm import ChoiceScreen, ConfirmScreen
from cvtriton_tui.screens.project import ProjectPane
from cvtriton_tui.screens.error_modal import ErrorModal
from cvtriton_tui.screens.pickers import IMAGE_SUFFIXES, PathPicker

from .conftest import PREDICTION_KEY, SIZE, TRAINING_KEY, env_text, wait_for

AZURE = dict(AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZUREML_RESOURCE_GROUP="rg-demo",
             AZUREML_WORKSPACE="ws-demo", AZURE_LOCATION="westeurope",
             VISION_TRAINING_ENDPOINT="https://demo.cognitiveservices.azure.com/", VISION_TRAINING_KEY=TRAINING_KEY,
             VISION_PREDICTION_KEY=PREDICTION_KEY, VISION_PROJECT_NAME="shapes", ENDPOINT_NAME="cv-triton-demo",
             MODEL_NAME="shapes")
COMPACT = "0732100f-1a38-4e49-a514-c9b44c697ab5"
WHEN = datetime(2024, 5, 17, 9, 30)


@pytest.fixture
def local_app(in_tmp: Path) -> WizardApp:
    Path(".env").write_text(env_text(MODEL_NAME="colours", VISION_PREDICTION_KEY=PREDICTION_KEY))
    return WizardApp(Path(".env"), Path("work"))


@pytest.fixture
def azure_app(in_tmp: Path) -> WizardApp:
    Path(".env").write_text(env_text(**AZURE))
    return WizardApp(Path(".env"), Path("work"))


def at(step: str):
    """run_before: show ``step`` (after the panes mounted after the first paint are in). Shown directly: a
    snapshot is about what a step looks like, not whether the steps before it are done."""
    async def go(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.main.has_pane("cleanup"), 10, "the panes")
        await pilot.pause()
        app.main.show(step)
        await wait_for(pilot, lambda: app.state.current == step, 5, step)
        app.main.query_one("#steps").focus()
        await pilot.pause()
    return go


def test_settings_local(snap_compare, local_app: WizardApp) -> None:
    assert snap_compare(local_app, terminal_size=SIZE, run_before=at("settings"))


def test_settings_azure_with_problems(snap_compare, azure_app: WizardApp) -> None:
    async def before(pilot) -> None:
        await at("settings")(pilot)
        pane = pilot.app.main.pane("settings")
        pane.query_one("#input-AZURE_LOCATION", Input).value = "West Europe"
        pane.query_one("#input-VISION_PROJECT_ID", Input).value = "not-a-guid"
        pilot.app.main.query_one("#steps").focus()
        await pilot.pause()
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=before)


def test_model(snap_compare, local_app: WizardApp) -> None:
    assert snap_compare(local_app, terminal_size=SIZE, run_before=at("model"))


def test_package_with_config(snap_compare, local_app: WizardApp) -> None:
    async def before(pilot) -> None:
        from cvtriton_triton.model_import import import_model
        from cvtriton_triton.model_repository import render_config
        from cvtriton_triton.sample_models import build_sample_export

        await at("package")(pilot)
        export = build_sample_export(Path("work/sample"))
        info = import_model(export, Path("work/import")).info
        pilot.app.main.pane("package").show_config(render_config(info, "colours"))
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=SIZE, run_before=before)


def test_local_test_with_detection_results(snap_compare, local_app: WizardApp) -> None:
    async def before(pilot) -> None:
        image = Path("shelf.png")
        picture = Image.new("RGB", (320, 240), (235, 235, 225))
        ImageDraw.Draw(picture).rectangle((40, 60, 130, 170), fill=(180, 40, 40))
        picture.save(image)
        await at("local-test")(pilot)
        pane = pilot.app.main.pane("local-test")
        pane.query_one("#image-path", Input).value = str(image)
        predictions = (Prediction("can", 0.91, Box(0.125, 0.25, 0.28125, 0.4583)),
                       Prediction("box", 0.42, Box(0.6, 0.5, 0.3, 0.3)))
        tensor_ms = (2.4, 2.1, 2.0, 2.2, 3.9, 2.1, 2.0, 2.3)
        image_ms = (3.1, 3.0, 2.9, 3.3, 4.2, 3.0, 3.1)
        load = (LoadReport("shelf", 2, 8, 8, {}, tensor_ms, 0.01, "completed", 602_400),
                LoadReport("shelf_image", 2, 8, 7, {"503": 1}, image_ms, 0.012, "completed", 31_200))
        answers = (PathAnswer("tensor", "shelf", predictions, 2.6, 602_112),
                   PathAnswer("image", "shelf_image", predictions, 3.4, 30_981))
        result = CoreTestResult(summary="", model="shelf", task="detection", image=image, latency_ms=2.15,
                                latencies_ms=tensor_ms, predictions=predictions, answers=answers, load=load)
        pane.show_result(result)
        await wait_for(pilot, lambda: Path("work/results/shelf-predictions.png").exists(), 20, "the PNG")
        await wait_for(pilot, lambda: bool(pane.query_one("#preview").pixels), 20, "the preview")
        pilot.app.main.query_one("#steps").focus()
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=(120, 60), run_before=before)


def test_local_test_load_results(snap_compare, local_app: WizardApp) -> None:
    """Three paths of a container (tensor, ensemble, Custom Vision route) side by side, each path's load test
    with its errors by status, and the latency histogram with a column per path."""
    async def before(pilot) -> None:
        image = Path("red.png")
        Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
        await at("local-test")(pilot)
        pane = pilot.app.main.pane("local-test")
        pane.query_one("#image-path", Input).value = str(image)
        predictions = (Prediction("red", 0.9712, None), Prediction("green", 0.0201, None),
                       Prediction("blue", 0.0087, None))
        tensor_ms = tuple(4.0 + (i * 7 % 11) / 5 for i in range(40))
        image_ms = tuple(6.0 + (i * 5 % 13) / 4 for i in range(38))
        route_ms = tuple(6.5 + (i * 3 % 7) / 3 for i in range(40))
        load = (LoadReport("colours", 4, 40, 40, {}, tensor_ms, 0.05, "completed", 602_400),
                LoadReport("colours_image", 4, 40, 38, {"503": 1, "timeout": 1}, image_ms, 0.08, "completed",
                           1_320),
                LoadReport("Custom Vision route", 4, 40, 40, {}, route_ms, 0.09, "completed", 1_260))
        answers = (PathAnswer("tensor", "colours", predictions, 5.2, 602_112),
                   PathAnswer("image", "colours_image", predictions, 7.9, 1_102),
                   PathAnswer("customvision", "colours_image", predictions, 8.4, 1_102))
        result = CoreTestResult(summary="", model="colours", task="classification", image=image, latency_ms=4.9,
                                latencies_ms=tensor_ms, predictions=predictions, answers=answers, load=load)
        pane.show_result(result)
        await wait_for(pilot, lambda: bool(pane.query_one("#preview").pixels), 20, "the preview")
        pilot.app.main.query_one("#steps").focus()
        pane.query_one("#latency").scroll_visible(animate=False, top=False)
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=(120, 60), run_before=before)


def _projects() -> tuple[list[ProjectInfo], list[DomainInfo]]:
    domains = [DomainInfo(COMPACT, "General (compact)", "Classification", True),
               DomainInfo("ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", "Classification", False)]
    projects = [ProjectInfo("11111111-1111-4111-8111-111111111111", "portal-only", "Classification-Multiclass",
                            domains[1].id, "General", False, WHEN),
                ProjectInfo("22222222-2222-4222-8222-222222222222", "shapes", "Classification-Multiclass",
                            COMPACT, "General (compact)", True, WHEN)]
    return projects, domains


def test_project_existing(snap_compare, azure_app: WizardApp) -> None:
    async def before(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.main.has_pane("project"), 10, "the panes")
        pane = app.main.pane("project")
        pane.loaded = True                      # fixed data below instead of a listing with today's dates
        await at("project")(pilot)
        projects, domains = _projects()
        pane.post_message(ProjectPane.ProjectsLoaded(projects, domains))
        await wait_for(pilot, lambda: app.state.project is not None, 5, "a project")
        app.state.project = projects[1]
        iterations = [IterationInfo("33333333-3333-4333-8333-333333333333", "Iteration 1", "Completed", WHEN, WHEN,
                                    "shapes-v1", COMPACT, True, 0.962, 0.94, 0.981)]
        pane.query_one("#projects").move_cursor(row=1)
        await pilot.pause()
        pane.post_message(ProjectPane.IterationsLoaded(projects[1].id, iterations))
        await wait_for(pilot, lambda: app.state.iteration is not None, 5, "the iteration")
        app.main.query_one("#steps").focus()
        await pilot.pause()
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=before)


def test_project_new_from_folder(snap_compare, azure_app: WizardApp) -> None:
    async def before(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.main.has_pane("project"), 10, "the panes")
        for tag, colour in {"red": (220, 20, 20), "green": (20, 200, 20)}.items():
            Path("images", tag).mkdir(parents=True)
            for n in range(5 if tag == "red" else 3):
                shade = tuple(max(0, c - 12 * n) for c in colour)
                Image.new("RGB", (300, 260), shade).save(Path("images", tag, f"{n}.jpg"))
        pane = app.main.pane("project")
        pane.loaded = True
        await at("project")(pilot)
        await pilot.click(pane.query_one("#mode-new", RadioButton))
        form = pane.query_one("#new-box")
        form.set_domains(_projects()[1])
        form.query_one("#new-folder", Input).value = "images"
        await wait_for(pilot, lambda: form.plan is not None, 20, "the scan")
        app.main.query_one("#steps").focus()
        await pilot.pause()
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=before)


def test_train(snap_compare, azure_app: WizardApp) -> None:
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=at("train"))


def test_deploy_with_a_bad_name(snap_compare, azure_app: WizardApp) -> None:
    async def before(pilot) -> None:
        await at("deploy")(pilot)
        pilot.app.main.pane("deploy").query_one("#endpoint-name", Input).value = "9 bad"
        pilot.app.main.query_one("#steps").focus()
        await pilot.pause()
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=before)


def test_deploy_next_to_a_live_deployment(snap_compare, azure_app: WizardApp, azure_looks) -> None:
    """Safe rollout: the endpoint serves blue; green is to be deployed at 0%, and the split is shown."""
    from cvtriton_core.adapters.azureml import DeploymentInfo, EndpointInfo

    azure_looks.endpoints = [EndpointInfo("cv-triton-demo", "key", "Succeeded", "https://cv-triton-demo/score",
                                          {"blue": 100, "green": 0})]
    azure_looks.deployments["cv-triton-demo"] = [
        DeploymentInfo("blue", "cv-triton-demo", "Succeeded", "Standard_DS3_v2", 1),
        DeploymentInfo("green", "cv-triton-demo", "Succeeded", "Standard_DS3_v2", 1)]

    async def before(pilot) -> None:
        await at("deploy")(pilot)
        deploy = pilot.app.main.pane("deploy")
        deploy.query_one("#deployment-name", Input).value = "green"
        await wait_for(pilot, lambda: deploy.query_one("#traffic-box").display, 10, "the traffic split")
        pilot.app.main.query_one("#steps").focus()
        await pilot.pause()
        deploy.scroll_to_widget(deploy.query_one("#traffic-box"), animate=False, top=True)
        await pilot.pause()
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=before)


def test_deploy_failed(snap_compare, azure_app: WizardApp) -> None:
    """A deploy Azure ML failed: the states it reported, the container log, and the core's reason, last log
    lines and what to do, with cleanup offered (events as the deploy step sends them, at fixed times)."""
    from cvtriton_core.events import LogLine, StateChanged, StepFailed, StepStarted

    t0 = WHEN.timestamp()
    events = [StepStarted(step="deploy", title="Deploy to Azure ML", at=t0),
              StateChanged(step="deploy", resource="endpoint", name="cv-triton-demo", state="Succeeded", at=t0 + 2),
              StateChanged(step="deploy", resource="deployment", name="blue", state="Creating", at=t0 + 3),
              LogLine(step="deploy", line="error: model repository /models not found", source="inference-server",
                      at=t0 + 40),
              StateChanged(step="deploy", resource="deployment", name="blue", state="Failed", previous="Creating",
                           detail="ResourceNotReady", at=t0 + 95),
              StepFailed(step="deploy", at=t0 + 96, exit_code=1,
                         message="the container keeps crashing: Liveness probe failed; the container exited with "
                                 "code 3 — read the container log below (a model that fails to load stops "
                                 "tritonserver); run-local reproduces it on this machine. Deployment blue now exists "
                                 "in state Failed on endpoint cv-triton-demo (created by this run): run deploy again "
                                 "after the fix (it updates it in place), or the delete step to remove it",
                         details="Last container log lines:\nerror: model repository /models not found\n")]

    async def before(pilot) -> None:
        await at("deploy")(pilot)
        deploy = pilot.app.main.pane("deploy")
        deploy.run_kind = "deploy"
        for event in events:
            deploy.handle_event(event)
        await pilot.pause()
        deploy.scroll_to_widget(deploy.query_one("#deploy-failure-box"), animate=False, top=True)
        await pilot.pause()
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=before)


def test_results(snap_compare, azure_app: WizardApp) -> None:
    assert snap_compare(azure_app, terminal_size=SIZE, run_before=at("results"))


def test_cleanup_with_an_endpoint_left_running(snap_compare, in_tmp: Path, azure_looks) -> None:
    from cvtriton_core.adapters.azureml import EndpointInfo

    azure_looks.endpoints = [EndpointInfo("cv-triton-old", "key", "Succeeded", "https://cv-triton-old/score",
                                          {"blue": 100})]
    Path(".env").write_text(env_text(**AZURE))
    app = WizardApp(Path(".env"), Path("work"))
    assert snap_compare(app, terminal_size=SIZE, run_before=at("cleanup"))


def test_error_modal(snap_compare, local_app: WizardApp) -> None:
    async def before(pilot) -> None:
        await pilot.pause()
        pilot.app.push_screen(ErrorModal(
            "Import model failed",
            "work/model.zip is not a zip file — pick the export zip as downloaded from Custom Vision",
            f"Traceback (most recent call last):\n  zipfile.BadZipFile: File is not a zip file\n"
            f"  request header Training-Key: {TRAINING_KEY}"))
        await pilot.pause()
        pilot.app.screen.query_one("#error-details").collapsed = False
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=SIZE, run_before=before)


def test_confirm_quit(snap_compare, local_app: WizardApp) -> None:
    async def before(pilot) -> None:
        await pilot.pause()
        pilot.app.push_screen(ConfirmScreen("Quit while work is running?",
                                            "Local test is still running. Quitting cancels it: the local Triton "
                                            "server is stopped. The next start offers to resume.",
                                            yes="Stop and quit", no="Keep running"))
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=SIZE, run_before=before)


def test_unsaved_settings_on_quit(snap_compare, local_app: WizardApp) -> None:
    async def before(pilot) -> None:
        await at("settings")(pilot)
        pilot.app.main.pane("settings").query_one("#input-AZURE_LOCATION", Input).value = "northeurope"
        await pilot.pause()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChoiceScreen), 5, "the question")
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=SIZE, run_before=before)


def test_package_outdated_at_80x24(snap_compare, local_app: WizardApp) -> None:
    """The narrow layout, with the step list showing a result that no longer follows from the choices."""
    async def before(pilot) -> None:
        from cvtriton_tui.screens import freshness

        app = pilot.app
        await at("package")(pilot)
        freshness.record_start(app.state, "local", "package", "1")
        app.state.status["package"] = "done"
        app.state.model_choice = "path"               # the model changed since it was packaged
        app.state.model_path = "other.zip"
        app.steps_changed()
        app.main.query_one("#steps").focus()
        await pilot.pause()
    assert snap_compare(local_app, terminal_size=(80, 24), run_before=before)


def test_resume_prompt(snap_compare, in_tmp: Path) -> None:
    Path(".env").write_text(env_text(MODEL_NAME="colours"))
    RunState.load(Path("work/local")).mark("serve-local", "running")
    app = WizardApp(Path(".env"), Path("work"))
    assert snap_compare(app, terminal_size=SIZE)


def test_image_picker(snap_compare, local_app: WizardApp) -> None:
    async def before(pilot) -> None:
        Path("pictures/holiday").mkdir(parents=True)
        for name in ("a.jpg", "b.png", "notes.txt"):
            Path("pictures", name).write_bytes(b"x")
        await pilot.pause()
        pilot.app.push_screen(PathPicker("Choose a test image", start=Path("pictures"), suffixes=IMAGE_SUFFIXES))
        await pilot.pause(0.3)
    assert snap_compare(local_app, terminal_size=SIZE, run_before=before)
