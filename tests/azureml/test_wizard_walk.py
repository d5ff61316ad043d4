"""Pilot walk of the wizard's Azure target against the offline Azure (the real azure-ai-ml and azure-identity on
the wire, deployments really run in Docker) and the Custom Vision emulator: Project → Train & export →
Package & build → Deploy (live provisioning states, container log) → Test results (the same predictions as the
headless endpoint test) → a second deployment next to the live one (safe rollout at 0%) → traffic shift with
confirmation → roll back → a deploy cancelled while Azure ML provisions (it ends visibly, the pane says what goes
on there) → a deployment that fails (the service's reason in the pane, cleanup offered) →
Cleanup deletes the failed deployment, then the endpoint (the emulator says gone). Also the start-up reminder
of endpoints this tool created."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest
from textual.widgets import Button, DataTable, Input, RadioButton, Static

from cvtriton_core.adapters.azureml import AzureML
from cvtriton_core.pipeline import RunContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.endpoint_test import EndpointTest
from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens import azure_reads
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.screens.error_modal import ErrorModal
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.timeline import Timeline

TRAINING_KEY = "0123456789abcdef0123456789abcdef"
SIZE = (120, 40)


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.1)


def shown(widget: Any) -> str:
    return str(widget.render())


def log_text(log: EventLog) -> str:
    return "\n".join(text.plain for text in log.texts)


async def close_error_modal(pilot: Any, app: WizardApp) -> str:
    """A failed run opens the error modal (with Retry): read it and close it."""
    await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), 10, "the error modal")
    text = f"{app.screen.error_title}: {app.screen.message}"
    await pilot.pause()
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, ErrorModal), 5, "the modal to close")
    return text


async def confirm(pilot: Any, app: WizardApp) -> str:
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the confirmation")
    question = app.screen.question
    app.screen.query_one("#yes", Button).press()
    await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen), 5, "the confirmation to close")
    return question


async def run_and_wait(pilot: Any, app: WizardApp, pane: Any, timeout: float, what: str) -> None:
    await wait_for(pilot, lambda: pane.running, 10, f"{what} to start")
    await wait_for(pilot, lambda: not pane.running, timeout, what)
    await wait_for(pilot, lambda: not app.busy(), 10, f"the worker of {what} to end")   # F5 is refused until then


async def goto_next(pilot: Any, app: WizardApp, step: str) -> None:
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: app.state.current == step, 10, f"the {step} step")


async def export_and_package(pilot: Any, app: WizardApp, package_timeout: float) -> None:
    """Project (the emulator's project and its iteration) → Train & export → Package & build, each done."""
    await goto_next(pilot, app, "project")
    await wait_for(pilot, lambda: app.state.iteration is not None, 30, "the project and its iteration")
    await goto_next(pilot, app, "train")
    await pilot.press("f5")
    await wait_for(pilot, lambda: app.state.status.get("train") in ("done", "failed"), 120, "the export")
    assert app.state.status["train"] == "done", app.session_log[-6:]
    await goto_next(pilot, app, "package")
    await pilot.press("f5")
    await wait_for(pilot, lambda: app.state.status.get("package") in ("done", "failed"), package_timeout,
                   "package (and build)")
    assert app.state.status["package"] == "done", app.session_log[-8:]


async def choose_test_image(pilot: Any, app: WizardApp, image: Path) -> None:
    await goto_next(pilot, app, "local-test")
    app.main.pane("local-test").query_one("#image-path", Input).value = str(image)
    await pilot.pause()


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch, kit: Any) -> None:
    """The emulated operations take a fraction of a second: read state and logs as often as the headless tests."""
    monkeypatch.setattr(azure_reads, "POLL_S", kit.poll_s)


async def test_wizard_deploy_test_rollout_rollback_failure_cleanup(azure, standin_base, pillow_wheels, test_image,
                                                                   tmp_path, kit, docker_api, fast_polls,
                                                                   monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    endpoint = f"wiz-{kit.session}"
    with CustomVisionEmulator(TRAINING_KEY, delays=Delays(training_s=0.05, export_s=0.05)) as cv:
        cv.add_project(f"colours-{kit.session}")
        values = {**azure.settings(), "VISION_TRAINING_ENDPOINT": cv.url, "VISION_TRAINING_KEY": TRAINING_KEY,
                  "VISION_PROJECT_NAME": f"colours-{kit.session}", "MODEL_NAME": f"colours-{kit.session}",
                  "TRITON_BASE_IMAGE": standin_base, "IMAGE_PIP_WHEELS": str(pillow_wheels),
                  "ENDPOINT_NAME": endpoint}
        Path(".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        workdir = Path("work")
        app = WizardApp(Path(".env"), workdir)
        async with app.run_test(size=SIZE) as pilot:        # the images it builds carry the session: swept after
            await walk(pilot, app, azure, test_image, endpoint, values, workdir, docker_api, kit)


async def walk(pilot: Any, app: WizardApp, azure: Any, test_image: Path, endpoint: str, values: dict,
               workdir: Path, docker_api: Any, kit: Any) -> None:
    kit_time_scale = azure.arm.time_scale
    await wait_for(pilot, lambda: app.main.has_pane("cleanup"), 30, "the wizard to be built")
    await wait_for(pilot, lambda: "tool_endpoints" in app.state.results, 60, "the start-up look at Azure ML")
    assert app.state.results["tool_endpoints"] == []          # none yet: no reminder
    assert app.state.target == "azure"

    # Custom Vision → export → package (the image is built; Deploy pushes it to the workspace's registry)
    await export_and_package(pilot, app, 600)
    await choose_test_image(pilot, app, test_image)

    # Deploy blue: a new endpoint; the timeline shows the states Azure ML reported, the log the container's lines
    await goto_next(pilot, app, "deploy")
    deploy = app.main.pane("deploy")
    status = deploy.query_one("#endpoint-status", Static)
    await wait_for(pilot, lambda: "does not exist yet" in shown(status), 60, "the endpoint read")
    await pilot.press("f5")
    await run_and_wait(pilot, app, deploy, 300, "the deploy")
    assert app.state.status["deploy"] == "done", app.session_log[-10:]
    timeline = deploy.query_one(Timeline).text
    # (the emulated endpoint may be created before its first read: Creating is not always seen)
    assert f"◆ endpoint {endpoint}: Creating" in timeline or f"◆ endpoint {endpoint}: Succeeded" in timeline, timeline
    assert "deployment blue: Creating" in timeline and "deployment blue: Creating → Succeeded" in timeline, timeline
    log = log_text(deploy.query_one("#container-log", EventLog))
    loaded = [line for line in log.splitlines() if line.startswith("[inference-server]") and "successfully loaded" in line]
    assert loaded and len(loaded) == len(set(loaded)), log          # streamed live, each line once
    # Triton's CUDA start-up warnings (no GPU on a CPU instance): one explained line instead of each of them
    assert log.count("(no usable GPU on the deployment's instance") == 1, log
    assert "CudaDriverHelper has not been initialized" not in log and "pinned_memory_manager" not in log
    assert azure.arm.endpoints[endpoint].traffic == {"blue": 100}
    assert (endpoint, "blue") in azure.arm.deployments

    # Test results: the Local test step's image, through blue's header; the same answer as the headless step
    await goto_next(pilot, app, "results")
    results = app.main.pane("results")
    assert str(test_image) in shown(results.query_one("#test-target"))
    results.query_one("#endpoint-requests", Input).value = "4"
    results.query_one("#endpoint-concurrency", Input).value = "2"
    await pilot.pause()
    await pilot.press("f5")
    await run_and_wait(pilot, app, results, 120, "the endpoint test")
    assert app.state.status["results"] == "done", app.session_log[-10:]
    tested = app.state.results["endpoint-test"]
    assert tested.deployment == "blue" and tested.requests == 4 and tested.concurrency == 2
    source = shown(results.query_one("#results-source"))
    assert f"Azure ML endpoint {endpoint}, deployment blue" in source and "local" not in source.lower()
    table = results.query_one("#predictions", DataTable)
    rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
    run = RunContext.create(Settings(values), workdir)
    headless = kit.result_of(await kit.collect([EndpointTest(test_image, requests=2, options=AzureOptions(
        deployment="blue", poll_s=kit.poll_s))], run), "endpoint-test")
    assert [(r[1], r[2]) for r in rows] == [(p["label"], f"{p['probability']:.4f}") for p in headless.predictions]
    assert {r[1] for r in rows} == {"red", "green", "blue"}

    # green next to it: the pane says blue is live and defaults green to 0% (safe rollout)
    await pilot.press("ctrl+b")
    await wait_for(pilot, lambda: app.state.current == "deploy", 5, "Deploy again")
    deploy.query_one("#deployment-name", Input).value = "green"
    await wait_for(pilot, lambda: "Safe rollout" in shown(status), 30, "the safe-rollout note")
    assert "It serves blue 100% now" in shown(status)
    assert deploy.query_one("#traffic", Input).value == "0" and app.state.traffic == "0"
    deploy.query_one("#traffic", Input).value = "100"          # what typing 100 would do is said plainly
    await wait_for(pilot, lambda: "takes that share as soon as it is ready, untested" in shown(status), 10,
                   "the warning for 100%")
    deploy.query_one("#traffic", Input).value = "0"
    await wait_for(pilot, lambda: "Safe rollout" in shown(status), 10, "the safe-rollout note again")
    await pilot.press("f5")
    await run_and_wait(pilot, app, deploy, 300, "the green deploy")
    assert app.state.status["deploy"] == "done", app.session_log[-10:]
    split = deploy.query_one("#traffic-split", Static)
    assert deploy.query_one("#traffic-box").display
    assert "blue 100% · green 0%" in shown(split)
    assert azure.arm.endpoints[endpoint].traffic == {"blue": 100}

    # shift 10% to green, confirmed; then roll back
    deploy.query_one("#traffic-share", Input).value = "10"
    await pilot.pause()
    deploy.query_one("#traffic-shift", Button).press()
    question = await confirm(pilot, app)
    assert f"Send 10% of endpoint {endpoint}'s traffic to deployment green?" in question
    assert "Asked for: blue 90% · green 10%" in question
    await run_and_wait(pilot, app, deploy, 120, "the traffic shift")
    assert "(as Azure ML reports it): blue 90% · green 10%" in shown(split), shown(split)
    assert azure.arm.endpoints[endpoint].traffic == {"blue": 90, "green": 10}
    assert app.state.status["deploy"] == "done"                 # the deployment itself is what it was

    deploy.query_one("#traffic-rollback", Button).press()
    question = await confirm(pilot, app)
    assert "Back to: blue 100% · green 0%" in question
    await run_and_wait(pilot, app, deploy, 120, "the rollback")
    assert "(as Azure ML reports it): blue 100% · green 0%" in shown(split), shown(split)
    assert {k: v for k, v in azure.arm.endpoints[endpoint].traffic.items() if v} == {"blue": 100}
    assert (endpoint, "green") in azure.arm.deployments        # kept until deleted on Cleanup

    # cancel while Azure ML provisions: the run ends visibly, and the pane says what goes on there
    azure.arm.time_scale = 0.3                       # 3 s before the first probe: time to cancel
    deploy.query_one("#deployment-name", Input).value = "purple"
    await pilot.pause()
    await pilot.press("f5")
    await wait_for(pilot, lambda: "deployment purple: Creating" in deploy.query_one(Timeline).text, 120,
                   "purple creating")
    await pilot.press("f8")
    await wait_for(pilot, lambda: not deploy.running, 30, "the cancel to finish")
    assert app.state.status["deploy"] == "cancelled"
    assert "■ cancelled here" in deploy.query_one(Timeline).text
    log = log_text(deploy.query_one("#container-log", EventLog))
    assert "■ cancelled — deployment purple keeps provisioning in Azure ML: Deploy (F5) follows it again" in log, log
    await wait_for(pilot, lambda: "purple Creating" in shown(status) or "purple Succeeded" in shown(status), 60,
                   "the endpoint read after the cancel")
    await wait_for(pilot, lambda: azure.arm.deployments[(endpoint, "purple")].provisioning_state == "Succeeded",
                   120, "Azure ML to finish what it had accepted")
    azure.arm.time_scale = kit_time_scale

    # refused by the quota check (three deployments hold the family's 24 vCPUs): nothing created, no cleanup offered
    deploy.query_one("#deployment-name", Input).value = "red"
    await pilot.pause()
    await pilot.press("f5")
    await run_and_wait(pilot, app, deploy, 120, "the refused deploy")
    modal = await close_error_modal(pilot, app)
    assert "not enough quota for 1 x Standard_DS3_v2 in westeurope" in modal and "24/24 vCPUs in use" in modal
    failure = deploy.query_one("#deploy-failure", Static)
    assert deploy.query_one("#deploy-failure-box").display and "24/24 vCPUs in use" in shown(failure)
    assert not deploy.query_one("#goto-cleanup").display and "What was created" not in shown(failure)
    assert (endpoint, "red") not in azure.arm.deployments
    used, _ = azure.arm.quota["standardDSv2Family"]
    azure.arm.set_quota("standardDSv2Family", limit=64, used=used)

    # a deployment Azure ML fails: its reason in the pane, and cleanup offered
    azure.arm.fail_next_deployment("OutOfQuota", "Not enough quota available for Standard_DS3_v2 in SubscriptionId "
                                   f"{azure.arm.subscription}. Current usage/limit: 24/24. Additional needed: 8")
    await pilot.press("f5")
    await run_and_wait(pilot, app, deploy, 300, "the failing deploy")
    modal = await close_error_modal(pilot, app)
    assert modal.startswith("Deploy to Azure ML failed: Azure ML has not enough quota"), modal
    assert app.state.status["deploy"] == "failed"
    failure = shown(deploy.query_one("#deploy-failure", Static))
    assert "Azure ML has not enough quota for 1 x Standard_DS3_v2 in westeurope" in failure, failure
    assert "Current usage/limit: 24/24" in failure and "request more vCPU quota" in failure
    assert "Deployment red now exists in state Failed" in failure and "The container log was empty." in failure
    assert "deployment red: Creating → Failed" in deploy.query_one(Timeline).text or \
        "deployment red: Failed" in deploy.query_one(Timeline).text
    assert deploy.query_one("#goto-cleanup").display
    deploy.query_one("#goto-cleanup", Button).press()
    await wait_for(pilot, lambda: app.state.current == "cleanup", 5, "Cleanup")

    # Cleanup lists the endpoint (from Azure ML, by its tag); the failed deployment goes, then the endpoint
    cleanup = app.main.pane("cleanup")
    listed = cleanup.query_one("#tool-endpoints", Static)
    await wait_for(pilot, lambda: f"• {endpoint} — Succeeded" in shown(listed), 30, "the listing")
    cleanup.query_one("#delete-deployment", RadioButton).value = True
    detail = cleanup.query_one("#cleanup-detail", Static)
    await wait_for(pilot, lambda: "red (Failed, 0%)" in shown(detail), 30, "the endpoint's deployments")
    cleanup.query_one("#cleanup-deployment").value = "red"
    await pilot.pause()
    await pilot.press("f5")
    question = await confirm(pilot, app)
    assert question.startswith(f"Delete deployment red of endpoint {endpoint}?") and "0% of the traffic" in question
    await run_and_wait(pilot, app, cleanup, 120, "the deployment delete")
    assert (endpoint, "red") not in azure.arm.deployments and (endpoint, "green") in azure.arm.deployments

    cleanup.query_one("#delete-endpoint", RadioButton).value = True
    await wait_for(pilot, lambda: "red (" not in shown(detail) and "purple (" in shown(detail), 30, "a fresh read")
    await pilot.press("f5")
    question = await confirm(pilot, app)
    assert question.startswith(f"Delete endpoint {endpoint} and its deployment(s) blue, green, purple?"), question
    await run_and_wait(pilot, app, cleanup, 120, "the endpoint delete")
    assert app.state.status["cleanup"] == "done", app.session_log[-8:]
    assert endpoint not in azure.arm.endpoints and not [k for k in azure.arm.deployments if k[0] == endpoint]
    assert "Deleted" in log_text(cleanup.query_one("#cleanup-log", EventLog))
    await wait_for(pilot, lambda: "No endpoint created by this tool exists" in shown(listed), 30, "the new listing")
    assert shown(detail) == "", shown(detail)          # the deleted endpoint's last read is not shown any more
    assert not docker_api.containers(all=True, filters={"label": f"cvtriton.standin.emulator={azure.arm.id}"})


async def test_start_up_reminder_names_this_tools_endpoints(azure, tmp_path, monkeypatch) -> None:
    """Found by their tag in Azure ML (not from local files): a fresh work folder still gets the reminder."""
    monkeypatch.chdir(tmp_path)
    values = azure.settings()
    adapter = AzureML(values["AZURE_SUBSCRIPTION_ID"], values["AZUREML_RESOURCE_GROUP"], values["AZUREML_WORKSPACE"])
    adapter.begin_endpoint("left-running-1", "key").result()
    azure.arm.put_endpoint({"e": "someone-elses"}, {"location": "westeurope", "properties": {"authMode": "Key"}}, {})
    Path(".env").write_text("".join(f"{k}={v}\n" for k, v in {**values, "MODEL_NAME": "m"}.items()))
    app = WizardApp(Path(".env"), Path("fresh-work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "tool_endpoints" in app.state.results, 60, "the reminder's listing")
        assert [e.name for e in app.state.results["tool_endpoints"]] == ["left-running-1"]
        reminder = "1 endpoint(s) created by this tool are still running: left-running-1 — Cleanup deletes them."
        await wait_for(pilot, lambda: reminder in [n.message for n in app._notifications], 10, "the reminder")
        await wait_for(pilot, lambda: app.main.has_pane("cleanup"), 30, "the wizard to be built")
        if app.state.target != "azure":                 # no Custom Vision settings: the Local target first
            app.action_switch_target()
        app.goto("cleanup")
        await wait_for(pilot, lambda: app.state.current == "cleanup", 10, "Cleanup")
        listed = app.main.pane("cleanup").query_one("#tool-endpoints", Static)
        await wait_for(pilot, lambda: "• left-running-1 — Succeeded" in shown(listed), 30, "the list on Cleanup")
        assert "someone-elses" not in shown(listed)

    azure.arm.inject(503, count=50, ops=("endpoint.list",))
    app = WizardApp(Path(".env"), Path("fresh-work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "tool_endpoints_problem" in app.state.results, 90, "the failed listing")
        assert app.state.results["tool_endpoints_problem"].startswith(
            "Could not check Azure ML for endpoints this tool created: ")
        assert not isinstance(app.screen, ErrorModal) and not app._notifications
