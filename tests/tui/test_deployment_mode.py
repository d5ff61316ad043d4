"""The deployment mode is chosen on the Deploy step and is the DEPLOYMENT_MODE setting: each mode says what
it costs and cannot do, no-code makes Package & build write only the repository (no image, no image ensemble)
and Deploy run the core's deploy step alone; Ctrl+S saves the choice."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import RadioSet, Static

from cvtriton_core.deployment_mode import CONTAINER, DEPLOYMENT_MODES, NO_CODE
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.deploy import deploy_steps
from cvtriton_tui.screens.package import NO_CODE_PLAN
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton

from .conftest import SIZE, env_text, started, wait_for

AZURE = dict(AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZUREML_RESOURCE_GROUP="rg-test",
             AZUREML_WORKSPACE="ws-test", AZURE_LOCATION="westeurope", ENDPOINT_NAME="cv-triton-test",
             MODEL_NAME="shapes")


def test_deploy_steps_per_mode() -> None:
    assert deploy_steps(CONTAINER) == ["registry-login", "push", "deploy"]
    assert deploy_steps(NO_CODE) == ["deploy"]


async def test_choosing_no_code_on_deploy_changes_package_and_is_saved(in_tmp: Path) -> None:
    env = Path(".env")
    env.write_text(env_text(**AZURE))
    app = WizardApp(env, Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        if app.state.target != "azure":
            app.action_switch_target()
        await wait_for(pilot, lambda: app.state.target == "azure" and app.main.has_pane("deploy"), 10, "the panes")
        package = app.main.pane("package")
        assert package.step_names()[:2] == ["import", "repository"] and "build" in package.step_names()
        deploy = app.main.pane("deploy")      # reached only after Package: its choices are shown all the same
        deploy.entered()
        note = deploy.query_one("#mode-note", Static)
        assert DEPLOYMENT_MODES[CONTAINER].costs in str(note.render())      # the default, unset in the file
        button = deploy.query_one(f"#mode-{NO_CODE}", MarkedRadioButton)
        button.value = True
        await wait_for(pilot, lambda: app.state.value("DEPLOYMENT_MODE") == NO_CODE, 10, "the mode")
        rendered = str(note.render())
        assert DEPLOYMENT_MODES[NO_CODE].costs in rendered and DEPLOYMENT_MODES[NO_CODE].cannot in rendered
        assert "Runs: deploy" in rendered
        assert package.step_names() == ["import", "repository"]
        package.show_plan()
        assert NO_CODE_PLAN in str(package.query_one("#image-plan", Static).render())
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: f"DEPLOYMENT_MODE={NO_CODE}" in env.read_text(), 10, "the save")
        # the Settings step shows the same value; choosing it there moves the Deploy choice back
        app.setting_changed("DEPLOYMENT_MODE", CONTAINER)
        deploy.entered()
        await pilot.pause()
        assert deploy.query_one(f"#mode-{CONTAINER}", MarkedRadioButton).value
        assert deploy.query_one("#deployment-mode", RadioSet).pressed_button.id == f"mode-{CONTAINER}"
