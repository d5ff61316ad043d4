"""Pilot walk of the Azure target against the Custom Vision emulator (the real SDK on the wire) and the
real local Triton: choose a project and iteration, export, package, test locally; then the Azure ML steps,
with no Azure ML here, keep what was entered (tests/azureml/test_wizard_walk.py deploys for real). Also: a new project from a folder,
with the upload preview, uploaded, trained and exported, its IDs written back to the settings file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from textual.widgets import Button, DataTable, Input, RadioButton, Static

from cvtriton_standins.customvision_emulator import CustomVisionEmulator
from cvtriton_tui.app import WizardApp

from .conftest import SIZE, TRAINING_KEY, env_text, started, tritonservers_for, wait_for

AZURE = dict(AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZUREML_RESOURCE_GROUP="rg-test",
             AZUREML_WORKSPACE="ws-test", AZURE_LOCATION="westeurope", VISION_PROJECT_NAME="shapes",
             ENDPOINT_NAME="cv-triton-test", MODEL_NAME="shapes")


@pytest.fixture
def emulator():
    with CustomVisionEmulator(training_key=TRAINING_KEY, delays=0.05) as emu:
        yield emu


@pytest.fixture
def azure_env(in_tmp: Path, emulator: CustomVisionEmulator, standin_base: str, pillow_wheels: Path) -> Path:
    env = in_tmp / ".env"
    env.write_text(env_text(**AZURE, VISION_TRAINING_ENDPOINT=emulator.url, VISION_TRAINING_KEY=TRAINING_KEY,
                            TRITON_BASE_IMAGE=standin_base, IMAGE_PIP_WHEELS=str(pillow_wheels)))
    return env


def rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def goto_next(pilot, app: WizardApp, step: str) -> None:
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: app.state.current == step, 10, f"the {step} step")


async def test_azure_walk_existing_project_to_local_test(azure_env: Path, emulator: CustomVisionEmulator,
                                                         docker_api: Any, request: pytest.FixtureRequest) -> None:
    emulator.add_project("shapes", tags=("circle", "square"))
    emulator.add_project("portal-only", exportable=False)
    image = Path("probe.png")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.state.target == "azure" and len(app.state.steps) == 8
        await goto_next(pilot, app, "project")
        pane = app.main.pane("project")
        projects = pane.query_one("#projects", DataTable)
        await wait_for(pilot, lambda: projects.row_count == 2, 30, "the project list")
        table = rows(projects)
        assert [r[0] for r in table] == ["portal-only", "shapes"]
        assert table[0][3] == "no" and table[1][3] == "yes"
        assert table[1][1] == "Classification-Multiclass" and table[1][2] == "General (compact)"

        # the project the settings name (VISION_PROJECT_NAME=shapes) is preselected
        await wait_for(pilot, lambda: app.state.project is not None, 10, "a highlighted project")
        assert app.state.project.name == "shapes"
        # a project that cannot export is refused with the reason
        projects.move_cursor(row=0)
        await wait_for(pilot, lambda: app.state.project.name == "portal-only", 10, "the portal-only project")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.current == "project"

        pane.query_one("#project-filter", Input).value = "sha"
        await wait_for(pilot, lambda: projects.row_count == 1, 5, "the filter")
        projects.focus()
        projects.move_cursor(row=0)
        await wait_for(pilot, lambda: app.state.project is not None and app.state.project.name == "shapes", 10,
                       "the shapes project")
        iterations = pane.query_one("#iterations", DataTable)
        await wait_for(pilot, lambda: app.state.iteration is not None, 30, "the completed iteration")
        it_rows = rows(iterations)
        assert it_rows[0][0] == "(train a new iteration)"
        assert it_rows[1][1] == "Completed" and it_rows[1][3].endswith("%")

        await goto_next(pilot, app, "train")
        train = app.main.pane("train")
        assert "Create or find project → Export and download ONNX" in str(train.query_one("#train-plan").render())
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("train") in ("done", "failed"), 60, "the export")
        assert app.state.status["train"] == "done", app.session_log[-6:]
        assert (workdir / "export" / "model.onnx").is_file()
        chosen = f"VISION_PROJECT_ID={app.state.project.id}\nVISION_ITERATION_ID={app.state.iteration.id}\n"
        await wait_for(pilot, lambda: chosen in azure_env.read_text(), 10, "the chosen IDs saved")
        assert Path(".env.bak").exists()

        await goto_next(pilot, app, "package")
        package = app.main.pane("package")
        # Azure builds the image; with no IMAGE_REGISTRY there is no push, and the pane says what it needs.
        assert package.step_names() == ["import", "repository", "package", "build"]
        assert not package.query_one("#build-choice").display
        assert "set IMAGE_REGISTRY" in str(package.query_one("#image-plan", Static).render())
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("package") in ("done", "failed"), 300, "packaging")
        assert app.state.status["package"] == "done", app.session_log[-6:]
        assert 'name: "shapes"' in package.query_one("#config-text", Static).content.code
        built = app.state.results["build"]
        request.addfinalizer(lambda: docker_api.remove_image(built.image_id, force=True))

        await goto_next(pilot, app, "local-test")
        local = app.main.pane("local-test")
        local.query_one("#image-path", Input).value = str(image)
        local.query_one("#requests", Input).value = "3"
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("local-test") in ("done", "failed"), 90, "the local test")
        assert app.state.status["local-test"] == "done", app.session_log[-6:]
        assert {p.label for p in app.state.results["test"].predictions} == {"circle", "square"}
        assert not tritonservers_for(workdir)

        await goto_next(pilot, app, "deploy")
        deploy = app.main.pane("deploy")
        # what the endpoint serves now is read from Azure ML (none here: tests/tui have no Azure ML)
        await wait_for(pilot, lambda: "does not exist yet" in str(deploy.query_one("#endpoint-status").render()), 10,
                       "the endpoint read")
        assert not deploy.query_one("#deploy-run", Button).disabled
        assert deploy.query_one("#endpoint-name", Input).value == "cv-triton-test"
        deploy.query_one("#endpoint-name", Input).value = "9-bad name"
        await pilot.pause()
        assert "endpoint name must be" in str(deploy.query_one("#deploy-errors").render())
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.current == "deploy"
        deploy.query_one("#endpoint-name", Input).value = "cv-triton-ok"
        token = deploy.query_one("#auth-aml_token", RadioButton)
        deploy.scroll_to_widget(token, animate=False)
        await pilot.pause()
        await pilot.click(token)
        await goto_next(pilot, app, "results")
        assert app.state.auth_mode == "aml_token"
        # the endpoint name typed on Deploy is the ENDPOINT_NAME setting: one value, shown on Settings too
        assert app.state.value("ENDPOINT_NAME") == "cv-triton-ok"
        settings_field = app.main.pane("settings").query_one("#input-ENDPOINT_NAME", Input)
        assert settings_field.value == "cv-triton-ok" and app.state.edits["ENDPOINT_NAME"] == "cv-triton-ok"
        results = app.main.pane("results")
        await pilot.click(results.query_one("#show-local", Button))
        await pilot.pause()
        assert results.query_one("#predictions", DataTable).row_count == 2

        await goto_next(pilot, app, "cleanup")
        assert "az ml online-endpoint delete --name cv-triton-ok" in str(
            app.main.pane("cleanup").query_one("#cleanup-note").render())
        await pilot.press("ctrl+b", "ctrl+b")
        await wait_for(pilot, lambda: app.state.current == "deploy", 5, "Deploy again")
        assert deploy.query_one("#endpoint-name", Input).value == "cv-triton-ok"   # Back kept it
        statuses = {s: app.state.status.get(s) for s in ("train", "package", "local-test")}
        assert statuses == {"train": "done", "package": "done", "local-test": "done"}


def make_folder(root: Path, tags: dict[str, tuple[int, int, int]], count: int) -> Path:
    for tag, colour in tags.items():
        (root / tag).mkdir(parents=True)
        for n in range(count):
            shade = tuple(max(0, c - 8 * n) for c in colour)
            Image.new("RGB", (320, 256), shade).save(root / tag / f"{tag}-{n}.jpg", quality=90)
    return root


async def test_new_project_from_folder_previews_then_uploads_trains_exports(
        azure_env: Path, emulator: CustomVisionEmulator) -> None:
    bad = make_folder(Path("too-few"), {"red": (220, 20, 20), "green": (20, 200, 20)}, 3)
    good = make_folder(Path("colours"), {"red": (220, 20, 20), "green": (20, 200, 20)}, 5)
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await goto_next(pilot, app, "project")
        pane = app.main.pane("project")
        await wait_for(pilot, lambda: pane.loaded, 30, "the project list")
        await pilot.click(pane.query_one("#mode-new", RadioButton))
        await pilot.pause()
        assert app.state.new_project
        form = pane.query_one("#new-box")
        form.query_one("#new-name", Input).value = "colours-new"
        form.query_one("#new-folder", Input).value = str(bad)
        preview = form.query_one("#preview-tags", DataTable)
        await wait_for(pilot, lambda: form.plan is not None and form.plan.root == bad, 20, "the scan")
        assert "at least 5" in str(form.query_one("#preview-problems").render())
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.current == "project"                       # the folder's problem blocks Next

        form.query_one("#new-folder", Input).value = str(good)
        await wait_for(pilot, lambda: form.plan is not None and form.plan.root == good, 20, "the second scan")
        assert rows(preview) == [["green", "5 images"], ["red", "5 images"]]
        assert "ready to upload" in str(form.query_one("#preview-problems").render())
        assert app.state.new_domain == "0732100f-1a38-4e49-a514-c9b44c697ab5"    # General (compact)

        await goto_next(pilot, app, "train")
        train = app.main.pane("train")
        plan = str(train.query_one("#train-plan").render())
        assert "Upload images → Train → Export" in plan and "Publishing is skipped" in plan
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("train") in ("done", "failed"), 90, "upload/train/export")
        assert app.state.status["train"] == "done", app.session_log[-6:]
        assert emulator.counters["images_created"] == 10 and emulator.counters["trainings_started"] == 1
        saved = azure_env.read_text()
        assert "VISION_PROJECT_ID=" in saved and "VISION_ITERATION_ID=" in saved
        settings_field = app.main.pane("settings").query_one("#input-VISION_ITERATION_ID", Input)
        await wait_for(pilot, lambda: bool(settings_field.value), 10, "the saved IDs on the Settings step")
        assert settings_field.value in saved                             # the Settings step shows what was saved
        assert not app.state.edits
