"""Pilot walk of the wizard in no-code mode against the offline Azure (Azurite behind the blob proxy, the Resource
Manager emulator, deployments really run in Docker): the mode is chosen on Deploy, so Package & build writes only
the model repository — no image, no image ensemble, although TRITON_ENSEMBLE is on — and Deploy runs the deploy
step alone: the repository is uploaded as a triton_model asset (no push), the storage initializer's lines
reach the log, Test results gets real predictions, Cleanup deletes the endpoint."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static

from cvtriton_core.deployment_mode import NO_CODE
from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays
from cvtriton_tui.app import WizardApp
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.timeline import Timeline

from .test_wizard_walk import (  # noqa: F401 - fast_polls is a fixture
    SIZE, TRAINING_KEY, choose_test_image, confirm, export_and_package, fast_polls, goto_next, log_text,
    run_and_wait, shown, wait_for,
)


async def test_wizard_no_code_deploy_test_cleanup(azure, test_image, tmp_path, kit, docker_api, fast_polls,
                                                  monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    endpoint = f"wnc-{kit.session}"
    with CustomVisionEmulator(TRAINING_KEY, delays=Delays(training_s=0.05, export_s=0.05)) as cv:
        cv.add_project(f"nocode-{kit.session}")
        values = {**azure.settings(), "VISION_TRAINING_ENDPOINT": cv.url, "VISION_TRAINING_KEY": TRAINING_KEY,
                  "VISION_PROJECT_NAME": f"nocode-{kit.session}", "MODEL_NAME": f"nocode-{kit.session}",
                  "ENDPOINT_NAME": endpoint, "TRITON_ENSEMBLE": "true"}
        Path(".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        app = WizardApp(Path(".env"), Path("work"))
        notes: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (notes.append(str(message)), notify(message, **kw))[1]  # type: ignore
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.main.has_pane("cleanup"), 30, "the wizard to be built")
            assert app.state.target == "azure"
            # the mode is a choice on Deploy (reached later): chosen first here, as a user who knows it
            deploy = app.main.pane("deploy")
            deploy.query_one(f"#mode-{NO_CODE}", MarkedRadioButton).value = True
            await wait_for(pilot, lambda: app.state.value("DEPLOYMENT_MODE") == NO_CODE, 10, "the mode")
            package = app.main.pane("package")
            assert package.step_names() == ["import", "repository"]

            await export_and_package(pilot, app, 120)
            written = sorted({p.parent.name for p in Path("work").rglob("config.pbtxt")})
            assert written == [values["MODEL_NAME"]], written          # no image ensemble beside the model
            assert "build" not in app.state.results and "push" not in app.state.results
            await choose_test_image(pilot, app, test_image)

            await goto_next(pilot, app, "deploy")
            status = deploy.query_one("#endpoint-status", Static)
            await wait_for(pilot, lambda: "does not exist yet" in shown(status), 60, "the endpoint read")
            assert "Runs: deploy" in shown(deploy.query_one("#mode-note", Static))
            await pilot.press("f5")
            await run_and_wait(pilot, app, deploy, 300, "the no-code deploy")
            assert app.state.status["deploy"] == "done", app.session_log[-10:]
            log = log_text(deploy.query_one("#container-log", EventLog))
            assert "[storage-initializer]" in log and "Model download completed" in log, log
            assert any(note.endswith("(Deploy): deploy") for note in app.session_log), app.session_log[-12:]
            timeline = deploy.query_one(Timeline).text
            assert "deployment blue: Creating → Succeeded" in timeline, timeline
            props = azure.arm.deployments[(endpoint, "blue")].props
            assert "environmentId" not in props and "/models/" in props["model"]

            await goto_next(pilot, app, "results")
            results = app.main.pane("results")
            results.query_one("#endpoint-requests", Input).value = "3"
            await pilot.pause()
            await pilot.press("f5")
            await run_and_wait(pilot, app, results, 120, "the endpoint test")
            assert app.state.status["results"] == "done", app.session_log[-10:]
            tested = app.state.results["endpoint-test"]
            assert tested.deployment == "blue" and tested.failed == 0 and tested.predictions
            assert tested.customvision_url is None      # no route without the image ensemble

            await goto_next(pilot, app, "cleanup")
            cleanup = app.main.pane("cleanup")
            listed = cleanup.query_one("#tool-endpoints", Static)
            await wait_for(pilot, lambda: f"• {endpoint} — Succeeded" in shown(listed), 30, "the listing")
            await pilot.press("f5")
            question = await confirm(pilot, app)
            assert question.startswith(f"Delete endpoint {endpoint}"), question
            await run_and_wait(pilot, app, cleanup, 120, "the endpoint delete")
            assert endpoint not in azure.arm.endpoints
    assert not docker_api.containers(all=True, filters={"label": f"cvtriton.standin.emulator={azure.arm.id}"})
