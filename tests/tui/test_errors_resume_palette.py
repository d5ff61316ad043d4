"""Failures become a modal (cause, fix, details folded away), an interrupted run is offered for resume on
start, endpoints left running are listed for cleanup, and the command palette jumps and saves logs."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Input, RadioButton

from cvtriton_core.run_state import RunState
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.error_modal import ErrorModal
from cvtriton_tui.screens.resume import ResumePrompt

from .conftest import SIZE, env_text, started, wait_for


async def test_a_failing_step_opens_the_error_modal(local_env: Path) -> None:
    Path("broken.zip").write_bytes(b"this is not a zip archive")
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.goto("model")
        await wait_for(pilot, lambda: app.state.current == "model", 5, "the Model step")
        model = app.main.pane("model")
        await pilot.click(model.query_one("#choice-path", RadioButton))
        model.query_one("#model-path", Input).value = "broken.zip"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "package", 5, "the Package step")
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), 30, "the error modal")
        modal = app.screen
        assert modal.error_title == "Import model failed"
        cause = str(modal.query_one("#error-cause").render())
        fix = str(modal.query_one("#error-fix").render())
        assert "broken.zip" in cause and fix and fix != "see the details below"
        # An expected error (bad input the user can fix) carries no Python traceback, so no details section.
        assert "Traceback" not in modal.details and not modal.query("#error-details")
        assert modal.query("#retry")
        await pilot.press("r")                                  # Retry runs the step again: same failure
        await wait_for(pilot, lambda: sum("(Package)" in line for line in app.session_log) == 2, 10, "a retry")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal) and app.screen is not modal, 30,
                       "the second error modal")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ErrorModal), 5, "the modal to close")
        assert app.state.status["package"] == "failed"
        assert app.main.pane("package").query_one("#package-run").disabled is False   # can run again


async def test_interrupted_run_is_offered_and_can_be_discarded(local_env: Path) -> None:
    RunState.load(Path("work/local")).mark("serve-local", "running")
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResumePrompt) and app.screen.query("#discard"), 5,
                       "the resume prompt")
        assert "Local test (serve-local)" in str(app.screen.query_one("#resume-text").render())
        app.screen.query_one("#discard", Button).press()
        await wait_for(pilot, lambda: not isinstance(app.screen, ResumePrompt), 5, "the prompt to close")
    assert RunState.load(Path("work/local")).step_status("serve-local") == "discarded"
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.status.get("local-test") == "cancelled", 5, "the saved status")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ResumePrompt)                    # nothing left to resume


async def test_a_run_cancelled_by_quitting_is_offered_for_resume(local_env: Path) -> None:
    # What quitting while work runs leaves behind (the quit dialog promises that the next start offers to resume).
    state = RunState.load(Path("work/local"))
    state.mark("serve-local", "done", "Triton serving colours")
    state.mark("test", "cancelled")
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResumePrompt) and app.screen.query("#later"), 5,
                       "the resume prompt")
        assert "Local test (test)" in str(app.screen.query_one("#resume-text").render())
        assert app.state.status.get("local-test") == "cancelled"


async def test_resume_goes_to_the_step_and_runs_it(local_env: Path) -> None:
    RunState.load(Path("work/local")).mark("import", "running")
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResumePrompt) and app.screen.query("#resume"), 5,
                       "the resume prompt")
        app.screen.query_one("#resume", Button).press()
        await wait_for(pilot, lambda: app.state.current == "package", 5, "the Package step")
        await wait_for(pilot, lambda: app.state.status.get("package") == "done", 60, "the resumed packaging")
    assert RunState.load(Path("work/local")).step_status("repository") == "done"


async def test_endpoints_left_running_are_listed_for_cleanup(in_tmp: Path, azure_looks) -> None:
    """The start-up reminder: this tool's endpoints that still exist (as Azure ML lists them, by their tag —
    not from local records) are named in one notification and listed on Cleanup."""
    from cvtriton_core.adapters.azureml import EndpointInfo

    azure_looks.endpoints = [EndpointInfo("cv-triton-old", "key", "Succeeded", "https://x/score", {"blue": 100}),
                             EndpointInfo("cv-triton-older", "key", "Failed", "", {})]
    Path(".env").write_text(env_text(MODEL_NAME="m", AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001",
                                     AZUREML_RESOURCE_GROUP="rg-test", AZUREML_WORKSPACE="ws-test"))
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: "tool_endpoints" in app.state.results, 10, "the reminder's listing")
        assert azure_looks.calls.count("tool_endpoints") == 1
        reminder = ("2 endpoint(s) created by this tool are still running: cv-triton-old, cv-triton-older — "
                    "Cleanup deletes them.")
        await wait_for(pilot, lambda: reminder in [n.message for n in app._notifications], 10, "the reminder")
        app.action_switch_target()
        app.goto("cleanup")
        await wait_for(pilot, lambda: app.state.current == "cleanup", 5, "Cleanup")
        listed = str(app.main.pane("cleanup").query_one("#tool-endpoints").render())
        assert "cv-triton-old — Succeeded, blue 100%" in listed and "cv-triton-older — Failed" in listed


async def test_no_reminder_lookup_without_azure_settings(local_env: Path, azure_looks) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.pause(0.3)
        assert azure_looks.calls == [] and "tool_endpoints" not in app.state.results


async def test_a_failed_reminder_lookup_is_one_quiet_line(in_tmp: Path, azure_looks, monkeypatch) -> None:
    from cvtriton_core.errors import UserError
    from cvtriton_tui.screens import azure_reads

    async def refuse(settings):
        raise UserError("Azure refused the sign-in (no credential found)", "sign in (az login), then start again")

    monkeypatch.setattr(azure_reads, "find_tool_endpoints", refuse)
    Path(".env").write_text(env_text(MODEL_NAME="m", AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001",
                                     AZUREML_RESOURCE_GROUP="rg-test", AZUREML_WORKSPACE="ws-test"))
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: "tool_endpoints_problem" in app.state.results, 10, "the failed listing")
        assert not app._notifications and not isinstance(app.screen, ErrorModal)
        line = app.state.results["tool_endpoints_problem"]
        assert line == ("Could not check Azure ML for endpoints this tool created: Azure refused the sign-in (no "
                        "credential found) — sign in (az login), then start again")
        assert any(line in entry for entry in app.session_log)


async def test_palette_jumps_to_a_step_and_saves_the_logs(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"step 3")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.current == "package", 5, "the palette jump")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"save logs")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(Path("work/logs").glob("wizard-*.log")), 5, "the saved log")
    saved = next(Path("work/logs").glob("wizard-*.log")).read_text()
    assert saved.strip()


async def test_an_unwritable_work_folder_is_an_error_modal_not_silence(local_env: Path) -> None:
    Path("work").write_text("a file where the work folder should be")
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.goto("package")
        await wait_for(pilot, lambda: app.state.current == "package", 5, "the Package step")
        await pilot.press("f5")                       # generates the sample model into work/sample first
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), 30, "the error modal")
        message = app.screen.message
        assert "work/sample" in message and "writable --workdir" in message
        assert not app.busy()


async def test_a_worker_dying_of_an_unexpected_error_is_shown(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)

        async def broken() -> None:
            raise RuntimeError("disk on fire\nsecond line")

        app.main.pane("settings").run_worker(broken, group="save", exit_on_error=False,
                                             description="Saving settings")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), 5, "the error modal")
        modal = app.screen
        assert modal.error_title == "Saving settings failed"
        assert "RuntimeError: disk on fire" in modal.message and "\n" not in modal.message
        assert "Traceback" in modal.details
        assert app.is_running
