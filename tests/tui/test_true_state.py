"""What the wizard claims about a step is true: a result that depended on something since changed or failed
is shown as outdated (↻, not ✔) and must run again; the step list, the palette and F5 follow the same rule
as Next; each target keeps its own marks; a cancel ends visibly, saying what goes on remotely; nothing
typed is lost (quit asks, choices survive a restart, fast typing is saved whole); an invalid setting blocks
only the steps that read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from textual.widgets import Input, Label, ProgressBar, Select, Static

from cvtriton_core.run_state import RunState
from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.confirm import ChoiceScreen, ConfirmScreen
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.progress_panel import ProgressPanel
from cvtriton_tui.widgets.step_list import StepList

from .conftest import SIZE, TRAINING_KEY, env_text, started, tritonservers_for, wait_for

AZURE = dict(AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZUREML_RESOURCE_GROUP="rg-test",
             AZUREML_WORKSPACE="ws-test", AZURE_LOCATION="westeurope", VISION_PROJECT_NAME="shapes",
             ENDPOINT_NAME="cv-triton-test", MODEL_NAME="shapes")


def marks(app: WizardApp) -> dict[str, str]:
    """The step list as the user reads it: step -> its mark (○ ● ✔ ↻ ✖ ■)."""
    steps = app.main.query_one(StepList)
    prompts = {step: str(steps.get_option_at_index(i).prompt) for i, step in enumerate(steps.steps)}
    return {step: next(c for c in prompt if c in "○●✔↻✖■") for step, prompt in prompts.items()}


async def package_sample(pilot, app: WizardApp) -> None:
    app.goto("package")
    await wait_for(pilot, lambda: app.state.current == "package", 10, "the Package step")
    await pilot.press("f5")
    await wait_for(pilot, lambda: app.state.status.get("package") in ("done", "failed"), 60, "packaging")
    assert app.state.status["package"] == "done", app.session_log[-5:]


async def click_step(pilot, app: WizardApp, step: str) -> None:
    """Choose ``step`` in the step list with the keyboard, as a user does (cursor, Enter)."""
    steps = app.main.query_one(StepList)
    steps.focus()
    steps.highlighted = steps.steps.index(step)
    await pilot.press("enter")
    await pilot.pause()


# 1. stale downstream steps ------------------------------------------------------------------------------------
async def test_a_failed_package_makes_the_local_test_outdated_and_unreachable(local_env: Path) -> None:
    Path("broken.zip").write_bytes(b"this is not a zip archive")
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await package_sample(pilot, app)
        app.goto("local-test")
        await wait_for(pilot, lambda: app.state.current == "local-test", 10, "the Local test step")
        test = app.main.pane("local-test")
        test.query_one("#image-path", Input).value = str(workdir / "sample" / "images" / "red.jpg")
        test.query_one("#requests", Input).value = "1"
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("local-test") in ("done", "failed"), 90, "the test")
        assert marks(app)["local-test"] == "✔" and marks(app)["package"] == "✔"

        # another model: what Package and Local test showed no longer follows from what is chosen
        app.goto("model")
        await wait_for(pilot, lambda: app.state.current == "model", 5, "the Model step")
        model = app.main.pane("model")
        model.query_one("#choice-path").value = True
        model.query_one("#model-path", Input).value = "broken.zip"
        await pilot.pause()
        assert marks(app)["package"] == "↻" and marks(app)["local-test"] == "↻"
        await click_step(pilot, app, "local-test")       # the step list follows the rule Next follows
        assert app.state.current == "package"             # sent where the problem is

        package = app.main.pane("package")
        assert "colours" in package.query_one("#config-text", Static).content.code     # the old config, for now
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("package") == "failed", 60, "the failed import")
        await pilot.press("escape")                       # the error modal
        await pilot.pause()
        assert marks(app)["package"] == "✖" and marks(app)["local-test"] == "↻"
        config = package.query_one("#config-text", Static).content
        assert "colours" not in str(config) and "failed" in str(config)   # not the previous model's config

        await click_step(pilot, app, "local-test")
        assert app.state.current == "package"
        runs = sum("(Local test)" in line for line in app.session_log)
        app.main.show("local-test")                       # even if shown (e.g. a stale resume), F5 refuses
        await pilot.pause()
        assert "Outdated" in str(app.main.pane("local-test").query_one(".outdated-note", Static).render())
        await pilot.press("f5")
        await pilot.pause(0.5)
        assert sum("(Local test)" in line for line in app.session_log) == runs     # nothing served
        assert not tritonservers_for(workdir)


async def test_a_setting_a_step_read_makes_it_outdated_until_it_is_back(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await package_sample(pilot, app)
        assert marks(app)["package"] == "✔"
        app.goto("settings")
        await wait_for(pilot, lambda: app.state.current == "settings", 5, "Settings")
        name = app.main.pane("settings").query_one("#input-MODEL_NAME", Input)
        name.value = "colours2"
        await pilot.pause()
        assert marks(app)["package"] == "↻"
        app.goto("local-test")
        await pilot.pause()
        assert app.state.current == "package"            # Next past an outdated step is refused
        assert "outdated" in app.main.pane("package").next_problem()
        name.value = "colours"                            # back to what it ran with: current again
        await pilot.pause()
        assert marks(app)["package"] == "✔"


async def test_a_result_older_than_the_step_it_used_is_outdated_after_a_restart(local_env: Path) -> None:
    state = RunState.load(Path("work/local"))
    state.mark("serve-local", "done", "Triton serving colours")
    state.mark("test", "done", "red 0.99")
    state.mark("import", "done", "imported")          # packaged again afterwards (e.g. by the headless command)
    state.mark("repository", "done", "written")
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status.get("local-test") == "done", 5, "the saved statuses")
        await pilot.pause()
        assert marks(app)["package"] == "✔" and marks(app)["local-test"] == "↻"


async def test_each_target_keeps_its_own_marks(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await package_sample(pilot, app)
        app.action_switch_target()
        await pilot.pause()
        assert app.state.target == "azure"
        assert marks(app)["package"] == "○" and app.state.status.get("package") is None
        app.action_switch_target()
        await pilot.pause()
        assert marks(app)["package"] == "✔"


# 2. cancel finishes visibly -----------------------------------------------------------------------------------
@pytest.fixture
def slow_emulator():
    with CustomVisionEmulator(training_key=TRAINING_KEY, delays=Delays(training_s=120, export_s=1)) as emu:
        emu.add_project("shapes", tags=("circle", "square"), trained=False)
        yield emu


async def test_cancelling_training_says_it_goes_on_remotely(in_tmp: Path, slow_emulator: CustomVisionEmulator) -> None:
    Path(".env").write_text(env_text(**AZURE, VISION_TRAINING_ENDPOINT=slow_emulator.url,
                                     VISION_TRAINING_KEY=TRAINING_KEY))
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.goto("project")
        await wait_for(pilot, lambda: app.state.project is not None, 30, "the project from the settings")
        app.goto("train")
        await wait_for(pilot, lambda: app.state.current == "train", 10, "the Train step")
        await pilot.press("f5")
        state_file = workdir / "run-state.json"
        await wait_for(pilot, lambda: state_file.exists() and RunState.load(workdir).get("training_iteration"),
                       60, "the training to start")
        iteration = RunState.load(workdir).get("training_iteration")
        pane = app.main.pane("train")
        row = pane.query_one(ProgressPanel).rows["train"]
        await wait_for(pilot, lambda: row.status == "running", 10, "the Train row running")

        await pilot.press("ctrl+q")                       # the quit dialog names the work really running
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the quit question")
        question = str(app.screen.query_one("#question").render())
        assert "Train & export is still running" in question and "local Triton" not in question
        await pilot.press("escape")
        await pilot.pause()

        await pilot.press("f8")
        await wait_for(pilot, lambda: app.state.status.get("train") == "cancelled", 30, "the cancel")
        await pilot.pause()
        assert row.status == "cancelled" and marks(app)["train"] == "■"
        message = str(row.query_one(".step-message", Label).render())
        assert message.startswith("cancelled") and f"keeps training iteration {iteration}" in message
        assert "re-attaches" in message
        assert row.query_one(ProgressBar).total is not None          # no indeterminate animation
        timing = str(row.query_one(".step-timing", Label).render())
        await pilot.pause(1.5)
        assert str(row.query_one(".step-timing", Label).render()) == timing     # the clock stopped
        log = pane.query_one(EventLog)
        assert any("cancelled" in t.plain and iteration in t.plain for t in log.texts)
        assert not pane.query_one("#train-run").disabled and pane.query_one("#train-cancel").disabled


async def test_cancelling_the_local_triton_start_ends_the_row(local_env: Path) -> None:
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await package_sample(pilot, app)
        app.goto("local-test")
        await wait_for(pilot, lambda: app.state.current == "local-test", 10, "the Local test step")
        pane = app.main.pane("local-test")
        pane.query_one("#image-path", Input).value = str(workdir / "sample" / "images" / "red.jpg")
        await pilot.press("f5")
        row = pane.query_one(ProgressPanel).rows["serve-local"]
        await wait_for(pilot, lambda: row.status == "running", 30, "Triton starting")
        await pilot.press("f8")
        await wait_for(pilot, lambda: app.state.status.get("local-test") == "cancelled", 60, "the cancel")
        await pilot.pause()
        assert row.status == "cancelled"
        assert "local Triton server was stopped" in str(row.query_one(".step-message", Label).render())
        assert pane.query_one(ProgressPanel).rows["test"].status == "pending"
        assert any(t.plain.startswith("■ cancelled") for t in pane.query_one(EventLog).texts)
        assert not tritonservers_for(workdir)


# 3. nothing typed is lost -------------------------------------------------------------------------------------
async def test_quitting_with_unsaved_settings_asks_and_cancel_keeps_the_wizard(local_env: Path) -> None:
    before = local_env.read_text()
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.main.pane("settings").query_one("#input-AZURE_LOCATION", Input).value = "northeurope"
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 5, "the unsaved question")
        assert "AZURE_LOCATION" in str(app.screen.query_one("#question").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and app.state.edits == {"AZURE_LOCATION": "northeurope"}
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 5, "the unsaved question")
        await pilot.press("d")                            # Discard
        await wait_for(pilot, lambda: not app.is_running, 30, "the wizard to close")
    assert local_env.read_text() == before


async def test_quitting_with_unsaved_settings_can_save_them(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.main.pane("settings").query_one("#input-AZURE_LOCATION", Input).value = "northeurope"
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 5, "the unsaved question")
        await pilot.press("enter")                        # Save and quit is focused
        await wait_for(pilot, lambda: not app.is_running, 30, "the wizard to close")
    assert "AZURE_LOCATION=northeurope\n" in local_env.read_text()


async def test_ctrl_s_saves_what_the_field_holds_even_before_its_change_message_arrives(local_env: Path) -> None:
    key = "0123456789abcdefABCDEF0123456789"
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        field = app.main.pane("settings").query_one("#input-VISION_TRAINING_KEY", Input)
        field.focus()
        await pilot.press(*key[:-1])                       # a burst of typing, without pauses
        # The last keystroke is in the Input, but its Input.Changed message has not reached the Settings
        # pane yet (messages travel on their own, after the key; Ctrl+S can be handled first).
        with field.prevent(Input.Changed):
            field.insert_text_at_cursor(key[-1])
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "VISION_TRAINING_KEY=" in local_env.read_text(), 10, "the save")
    assert f"VISION_TRAINING_KEY={key}\n" in local_env.read_text()


async def test_choices_survive_a_restart(local_env: Path) -> None:
    Path("my-export.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    Image.new("RGB", (32, 32), (10, 200, 10)).save("probe.png")
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.goto("model")
        await wait_for(pilot, lambda: app.state.current == "model", 5, "the Model step")
        model = app.main.pane("model")
        model.query_one("#choice-path").value = True
        model.query_one("#model-path", Input).value = "my-export.zip"
        app.main.pane("local-test").query_one("#image-path", Input).value = "probe.png"
        Path("pictures").mkdir()
        app.main.pane("project").query_one("#new-folder", Input).value = "pictures"
        app.main.pane("train").query_one("#export-flavor", Select).value = "ONNXFloat16"
        await wait_for(pilot, lambda: app.state.edits.get("VISION_EXPORT_FLAVOR") == "ONNXFloat16", 5,
                       "the flavour as an unsaved setting")                 # the flavour IS the setting
        app.main.pane("settings").action_save()
        await wait_for(pilot, lambda: "VISION_EXPORT_FLAVOR=ONNXFloat16" in local_env.read_text(), 10, "the save")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, 30, "the wizard to close")
    saved = json.loads((workdir / "wizard-choices.json").read_text())
    assert saved["model_path"] == "my-export.zip"

    again = WizardApp(Path(".env"), workdir)
    async with again.run_test(size=SIZE) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: again.main.has_pane("train"), 10, "the panes")
        assert again.state.model_choice == "path" and again.state.model_path == "my-export.zip"
        assert again.main.pane("model").query_one("#model-path", Input).value == "my-export.zip"
        assert again.main.pane("local-test").query_one("#image-path", Input).value == "probe.png"
        assert again.state.new_folder == "pictures"
        again.goto("train")
        await pilot.pause()
        assert again.main.pane("train").query_one("#export-flavor", Select).value == "ONNXFloat16"


# 4. invalid values --------------------------------------------------------------------------------------------
async def test_an_invalid_endpoint_name_warns_on_save_and_blocks_only_deploy(in_tmp: Path) -> None:
    with CustomVisionEmulator(training_key=TRAINING_KEY, delays=0.05) as emulator:
        emulator.add_project("shapes", tags=("circle", "square"))
        env = Path(".env")
        env.write_text(env_text(**AZURE, VISION_TRAINING_ENDPOINT=emulator.url, VISION_TRAINING_KEY=TRAINING_KEY))
        app = WizardApp(env, Path("work"))
        notes: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (notes.append(f"{kw.get('title', '')}: {message}"),  # type: ignore
                                            notify(message, **kw))[1]
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot)
            app.main.pane("settings").query_one("#input-ENDPOINT_NAME", Input).value = "9 bad"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: "ENDPOINT_NAME=" in env.read_text() and "9 bad" in env.read_text(), 10,
                           "the save")
            await pilot.pause()
            assert any("not valid" in n and "ENDPOINT_NAME" in n for n in notes), notes
            await pilot.press("ctrl+n")                   # Settings -> Project: the endpoint name is not read there
            await wait_for(pilot, lambda: app.state.current == "project", 10, "the Project step")
            # Cleanup deletes what Azure ML lists as this tool's (none here), not ENDPOINT_NAME: not blocked by it
            app.main.pane("cleanup").request_run()
            await pilot.pause()
            assert not any("ENDPOINT_NAME" in n and "cannot run" in n for n in notes), notes
            assert notes[-1].endswith("No endpoint to delete: Azure ML lists none created by this tool (List again "
                                      "reads the list anew)."), notes


async def test_a_check_result_is_cleared_when_its_value_is_edited(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pane = app.main.pane("settings")
        pane.check("triton")
        status = pane.query_one("#status-triton", Label)
        await wait_for(pilot, lambda: str(status.render()).startswith("✔"), 10, "the check")
        pane.query_one("#input-MODEL_NAME", Input).value = "other"
        await pilot.pause()
        assert str(status.render()) == "" and not status.has_class("shown")
